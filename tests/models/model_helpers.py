"""Tiny task descriptions, one per head, and batches for them (shared by tests/models)."""

from __future__ import annotations

import pytest
import torch

from rnnlab.data import TaskSpec
from rnnlab.models import model_heads, model_names

SPECS = {
    "classify": TaskSpec("recall", "classify", 0, 10, 8, [], 12, False),
    "tag": TaskSpec("tag", "tag", 0, 15, 5, [], None, False),
    "lm": TaskSpec("charlm", "lm", 0, 20, 20, [], None, True),
    "forecast": TaskSpec("forecast", "forecast", 3, None, None, [4, 2], 12, False),
    "regress": TaskSpec("adding", "regress", 2, None, None, [1], 12, False),
    "multilabel": TaskSpec("music", "multilabel", 88, None, 88, [], None, True),
}


def expected_shape(spec: TaskSpec, batch_size: int, seq_len: int) -> list[int]:
    """The contract of ARCHITECTURE.md, written out independently of the heads."""
    return {
        "classify": [batch_size, spec.num_classes],
        "tag": [batch_size, seq_len, spec.num_classes],
        "lm": [batch_size, seq_len, spec.num_classes],
        "multilabel": [batch_size, seq_len, spec.num_classes],
        "forecast": [batch_size, *spec.output_shape],
        "regress": [batch_size],
    }[spec.head]


def make_inputs(spec: TaskSpec, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    if spec.vocab_size is not None:
        return torch.randint(0, spec.vocab_size, (batch_size, seq_len), generator=generator)
    return torch.randn(batch_size, seq_len, spec.input_size, generator=generator)


# models that refuse padded batches (their ConfigError says so): they read whole windows
FULL_LENGTH_ONLY = {
    "informer": "informer reads whole lookback windows (its decoder starts from the window's last steps)",
    "transformer-xl": "transformer-xl reads contiguous text: every row a full segment its memory continues",
}


def fits(name: str, head: str) -> bool:
    """Model ``name`` is built for tasks of ``head`` (``model_heads``: ``None`` is every head)."""
    heads = model_heads(name)
    return heads is None or head in heads


def model_head_cases(heads: list[str], cannot: dict[str, str] | None = None) -> list:
    """``(name, head)`` for every registered model and each of ``heads``; a pair the model does not
    fit (informer is forecast-only, transformer-xl lm-only), or a model of ``cannot`` (name →
    reason), is skipped, saying why."""
    cannot = cannot or {}

    def skip(name: str, head: str) -> tuple:
        if not fits(name, head):
            return (pytest.mark.skip(reason=f"{name} fits heads {model_heads(name)} only"),)
        return (pytest.mark.skip(reason=cannot[name]),) if name in cannot else ()

    return [pytest.param(name, head, marks=skip(name, head)) for name in model_names() for head in heads]
