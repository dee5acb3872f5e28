"""Tiny task descriptions and models for the export tests."""

from __future__ import annotations

import torch

from rnnlab.models import build_model

#: Tiny tasks, one per kind of input and head (token ids or features; sequence or per-step output).
SPECS = {
    "classify": {
        "task": "recall",
        "head": "classify",
        "input_size": 0,
        "vocab_size": 10,
        "num_classes": 8,
        "output_shape": [],
        "seq_len": 12,
        "causal": False,
    },
    "forecast": {
        "task": "forecast",
        "head": "forecast",
        "input_size": 3,
        "vocab_size": None,
        "num_classes": None,
        "output_shape": [4, 2],
        "seq_len": 12,
        "causal": False,
    },
    "tag": {
        "task": "tag",
        "head": "tag",
        "input_size": 0,
        "vocab_size": 15,
        "num_classes": 5,
        "output_shape": [],
        "seq_len": None,
        "causal": False,
    },
    "lm": {
        "task": "charlm",
        "head": "lm",
        "input_size": 0,
        "vocab_size": 12,
        "num_classes": 12,
        "output_shape": [],
        "seq_len": None,
        "causal": True,
    },
    "regress": {
        "task": "adding",
        "head": "regress",
        "input_size": 2,
        "vocab_size": None,
        "num_classes": None,
        "output_shape": [1],
        "seq_len": 12,
        "causal": False,
    },
}


def tiny(name: str, task: str, options: dict | None = None, *, hidden_size: int = 8, seed: int = 0):
    """A small model of family ``name`` for ``task`` (a key of ``SPECS``), in evaluation mode."""
    torch.manual_seed(seed)
    return build_model(name, SPECS[task], hidden_size=hidden_size, **(options or {})).eval()


def inputs(spec: dict, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Random token ids ``[batch, length]`` or features ``[batch, length, input_size]``."""
    if spec["vocab_size"] is not None:
        return torch.randint(0, spec["vocab_size"], (batch, length), generator=generator)
    return torch.randn(batch, length, spec["input_size"], generator=generator)
