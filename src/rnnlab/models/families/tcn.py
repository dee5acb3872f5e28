"""tcn: the temporal convolutional network of ``models/tcn.py`` (Bai et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from rnnlab.errors import ConfigError
from rnnlab.models.family import COMMON_SEARCH_SPACE, BuildOptions, ModelFamily, refuse_recurrent_options
from rnnlab.models.heads import build_head
from rnnlab.models.task_model import TaskModel
from rnnlab.models.tcn import DEFAULT_KERNEL_SIZE, TCNEncoder, choose_levels


@dataclass(frozen=True)
class TCNOptions:
    """``levels`` ``None``: the fewest whose receptive field covers the task's ``seq_len``
    (``models/tcn.py``); ``embedding_dim`` ``None``: token ids embedded at the width."""

    kernel_size: int = DEFAULT_KERNEL_SIZE
    levels: int | None = None
    embedding_dim: int | None = None


def check_tcn(name: str, spec: SimpleNamespace, options: BuildOptions[TCNOptions]) -> None:
    refuse_recurrent_options(name, options)
    if options.bidirectional:
        raise ConfigError("tcn is causal by construction: bidirectional must be None or False")
    if options.layer_norm:
        raise ConfigError(
            "tcn normalises its weights (weight normalisation, Bai et al. 2018); layer_norm applies "
            "to rnn, lstm, gru and their +attn forms"
        )


def build_tcn(name: str, spec: SimpleNamespace, width: int, options: BuildOptions[TCNOptions]) -> TaskModel:
    model = options.model
    encoder = TCNEncoder(
        spec,
        width,
        levels=choose_levels(spec, model.kernel_size, model.levels),
        kernel_size=model.kernel_size,
        dropout=options.dropout,
        embedding_dim=model.embedding_dim,
    )
    head = build_head(spec, encoder.step_size)
    task_model = TaskModel(name, spec, encoder, head, dropout=options.dropout)
    task_model.receptive_field = encoder.receptive_field
    return task_model


FAMILIES = {
    "tcn": ModelFamily(
        build_tcn,
        TCNOptions,
        "temporal convolutional network (Bai et al. 2018)",
        default_width=64,
        check=check_tcn,
        # the depth is levels, not num_layers
        search_space={
            "hidden_size": COMMON_SEARCH_SPACE["hidden_size"],
            "dropout": COMMON_SEARCH_SPACE["dropout"],
            "kernel_size": (2, 8),
        },
    ),
}
