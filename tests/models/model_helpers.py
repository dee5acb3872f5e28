"""Tiny task descriptions, one per head, and batches for them (shared by tests/models)."""

from __future__ import annotations

import torch

from rnnlab.data import TaskSpec

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
