"""Shared pieces of the layer tests: torch.nn twins with the same weights, a loss over everything."""

from __future__ import annotations

import torch
from torch import nn

import rnnlab

# kind -> (rnnlab class, torch.nn class, constructor keywords)
KINDS = {
    "rnn_tanh": (rnnlab.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rnnlab.RNN, nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rnnlab.LSTM, nn.LSTM, {}),
    "gru": (rnnlab.GRU, nn.GRU, {}),
}


def make_twins(kind: str, *args, seed: int = 0, **kwargs):
    """A torch.nn layer and an rnnlab layer holding its weights (loaded through the state dict)."""
    ours_class, torch_class, extra = KINDS[kind]
    torch.manual_seed(seed)
    reference = torch_class(*args, **extra, **kwargs)
    ours = ours_class(*args, **extra, **kwargs)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def random_state(
    kind: str, num_directions_layers: int, batch: int, hidden: int, cell: int | None = None, generator=None
):
    h = torch.randn(num_directions_layers, batch, hidden, generator=generator)
    if kind == "lstm":
        return h, torch.randn(num_directions_layers, batch, cell or hidden, generator=generator)
    return h


def flat(value) -> list[torch.Tensor]:
    """The tensors of an output/state structure, in order (PackedSequence → its data)."""
    if isinstance(value, torch.nn.utils.rnn.PackedSequence):
        return [value.data]
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for item in value for t in flat(item)]


def weighted_sum(tensors: list[torch.Tensor], seed: int = 1) -> torch.Tensor:
    """A loss that gives every element its own random weight, so no gradient cancels by symmetry."""
    generator = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=generator)).sum() for t in tensors)
