"""informer: ProbSparse attention, distilling and a generative decoder (``models/informer.py``,
Zhou et al. 2021), for the ``forecast`` head only."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from rnnlab.errors import ConfigError, unknown_name
from rnnlab.models.families.transformer import check_attention_model, heads_divide_width
from rnnlab.models.family import COMMON_SEARCH_SPACE, BuildOptions, ModelFamily, require_positive_int
from rnnlab.models.heads import StepHead
from rnnlab.models.informer import ATTENTIONS, DEFAULT_FACTOR, InformerEncoder
from rnnlab.models.task_model import TaskModel
from rnnlab.models.transformer import DEFAULT_NUM_HEADS


@dataclass(frozen=True)
class InformerOptions:
    """``feedforward_size`` ``None``: 4·d_model; ``factor``: ProbSparse keeps ``factor·ln L``
    queries; ``label_len`` ``None``: the decoder's start token is half the lookback; ``attention``
    ``"full"`` replaces ProbSparse by full attention; ``distil``: halve the steps between encoder layers."""

    num_heads: int = DEFAULT_NUM_HEADS
    feedforward_size: int | None = None
    decoder_layers: int = 1
    factor: int = DEFAULT_FACTOR
    label_len: int | None = None
    attention: str = "prob"
    distil: bool = True

    def __post_init__(self) -> None:
        require_positive_int("informer num_heads", self.num_heads, optional=False)
        for option in ("factor", "label_len", "decoder_layers", "feedforward_size"):
            require_positive_int(f"informer {option}", getattr(self, option))
        if self.attention not in ATTENTIONS:
            raise unknown_name("informer attention", str(self.attention), ATTENTIONS)


def check_informer(name: str, spec: SimpleNamespace, options: BuildOptions[InformerOptions]) -> None:
    check_attention_model(name, spec, options)
    label_len = options.model.label_len
    if label_len is not None and spec.seq_len is not None and label_len > spec.seq_len:
        raise ConfigError(
            f"informer label_len (the decoder's start token) must be at most the lookback "
            f"{spec.seq_len}; got {label_len}"
        )


def build_informer(name: str, spec: SimpleNamespace, width: int, options: BuildOptions[InformerOptions]) -> TaskModel:
    model = options.model
    encoder = InformerEncoder(
        spec,
        width,
        num_layers=options.num_layers,
        decoder_layers=model.decoder_layers,
        num_heads=model.num_heads,
        feedforward_size=model.feedforward_size,
        dropout=options.dropout,
        attention=model.attention,
        factor=model.factor,
        label_len=model.label_len,
        distil=model.distil,
    )
    # one linear map per forecast step, from the decoder's output at that step
    head = StepHead(width, spec.output_shape[1])
    return TaskModel(name, spec, encoder, head, dropout=options.dropout)


FAMILIES = {
    "informer": ModelFamily(
        build_informer,
        InformerOptions,
        "Informer (Zhou et al. 2021): ProbSparse attention, distilling, generative decoder",
        heads=("forecast",),
        default_width=64,
        check=check_informer,
        width_multiple=heads_divide_width,
        refine="feedforward_size",
        search_space={**COMMON_SEARCH_SPACE, "factor": (3, 8)},
    ),
}
