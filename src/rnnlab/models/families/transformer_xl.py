"""transformer-xl: segment-level recurrent memory with relative positions (``models/transformer_xl.py``,
Dai et al. 2019), for the ``lm`` head only; the memory is its state."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from rnnlab.errors import ConfigError
from rnnlab.models.families.transformer import check_attention_model, heads_divide_width
from rnnlab.models.family import COMMON_SEARCH_SPACE, BuildOptions, ModelFamily, require_positive_int
from rnnlab.models.heads import build_head
from rnnlab.models.task_model import TaskModel
from rnnlab.models.transformer import DEFAULT_NUM_HEADS
from rnnlab.models.transformer_xl import TransformerXLEncoder


@dataclass(frozen=True)
class TransformerXLOptions:
    """``feedforward_size`` ``None``: 4·d_model; ``segment_len`` ``None``: the task's ``seq_len``
    (else ``DEFAULT_SEGMENT_LEN``); ``mem_len`` ``None``: the segment length, 0: no memory."""

    num_heads: int = DEFAULT_NUM_HEADS
    feedforward_size: int | None = None
    segment_len: int | None = None
    mem_len: int | None = None

    def __post_init__(self) -> None:
        require_positive_int("transformer-xl num_heads", self.num_heads, optional=False)
        for option in ("segment_len", "feedforward_size"):
            require_positive_int(f"transformer-xl {option}", getattr(self, option))
        mem_len = self.mem_len
        if mem_len is not None and (isinstance(mem_len, bool) or not isinstance(mem_len, int) or mem_len < 0):
            raise ConfigError(f"transformer-xl mem_len must be an integer ≥ 0 (0: no memory); got {mem_len!r}")


def build_transformer_xl(
    name: str, spec: SimpleNamespace, width: int, options: BuildOptions[TransformerXLOptions]
) -> TaskModel:
    model = options.model
    encoder = TransformerXLEncoder(
        spec,
        width,
        num_layers=options.num_layers,
        num_heads=model.num_heads,
        feedforward_size=model.feedforward_size,
        dropout=options.dropout,
        segment_len=model.segment_len,
        mem_len=model.mem_len,
    )
    head = build_head(spec, width)
    return TaskModel(name, spec, encoder, head, dropout=options.dropout)


FAMILIES = {
    "transformer-xl": ModelFamily(
        build_transformer_xl,
        TransformerXLOptions,
        "Transformer-XL (Dai et al. 2019): segment memory, relative positions",
        heads=("lm",),
        check=check_attention_model,
        width_multiple=heads_divide_width,
        refine="feedforward_size",
        streamable=True,  # the memory is its state: step by step equals the whole sequence
        search_space={**COMMON_SEARCH_SPACE, "mem_len": (0, 256)},
    ),
}
