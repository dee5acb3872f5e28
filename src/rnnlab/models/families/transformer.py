"""transformer: the pre-norm Transformer encoder of ``models/transformer.py``."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.models.family import (
    COMMON_SEARCH_SPACE,
    BuildOptions,
    ModelFamily,
    refuse_recurrent_options,
    require_positive_int,
)
from rnnlab.models.heads import build_head
from rnnlab.models.task_model import TaskModel
from rnnlab.models.transformer import DEFAULT_NUM_HEADS, POOLINGS, TransformerEncoder


@dataclass(frozen=True)
class TransformerOptions:
    """``num_heads`` divides the width (d_model); ``feedforward_size`` ``None``: 4·d_model;
    ``pooling``: the summary of a sequence head, the last step or the mean over the valid ones."""

    num_heads: int = DEFAULT_NUM_HEADS
    feedforward_size: int | None = None
    pooling: str = "last"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(f"transformer pooling must be one of {', '.join(POOLINGS)}; got {self.pooling!r}")
        require_positive_int("transformer num_heads", self.num_heads, optional=False)


def check_transformer(name: str, spec: SimpleNamespace, options: BuildOptions[TransformerOptions]) -> None:
    refuse_recurrent_options(name, options)


def build_transformer(
    name: str, spec: SimpleNamespace, width: int, options: BuildOptions[TransformerOptions]
) -> TaskModel:
    model = options.model
    encoder = TransformerEncoder(
        spec,
        width,
        num_layers=options.num_layers,
        num_heads=model.num_heads,
        feedforward_size=model.feedforward_size,
        dropout=options.dropout,
        causal=spec.causal or options.bidirectional is False,
        pooling=model.pooling,
    )
    head = build_head(spec, encoder.step_size)
    return TaskModel(name, spec, encoder, head, dropout=options.dropout)


def heads_divide_width(options: TransformerOptions | Any) -> int:
    """The width an attention model is built at splits into ``num_heads`` equal heads."""
    return int(options.num_heads)


def check_attention_model(name: str, spec: SimpleNamespace, options: BuildOptions[Any]) -> None:
    """informer and transformer-xl: they normalise their own layers, have no recurrent weights, and
    fix which steps they read (the informer the whole lookback, transformer-xl only earlier steps)."""
    for option, value in (("layer_norm", options.layer_norm), ("init", options.init)):
        if value:
            raise ConfigError(
                f"{option}={value!r} applies to rnn, lstm and gru; {name} normalises its own "
                "layers and has no recurrent weights"
            )
    if options.bidirectional is not None and options.bidirectional != (name == "informer"):
        reading = "reads the whole lookback" if name == "informer" else "is causal by construction"
        raise ConfigError(f"{name} {reading}: bidirectional must be None or {name == 'informer'}")


FAMILIES = {
    "transformer": ModelFamily(
        build_transformer,
        TransformerOptions,
        "pre-norm Transformer encoder with sinusoidal positions",
        default_width=64,
        check=check_transformer,
        width_multiple=heads_divide_width,
        refine="feedforward_size",
        search_space={**COMMON_SEARCH_SPACE, "num_layers": (1, 4), "num_heads": (1, 8)},
    ),
}
