"""Temporal convolutional network (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of Generic
Convolutional and Recurrent Networks for Sequence Modeling").

A stack of ``levels`` residual blocks; block ``i`` has dilation ``d_i = 2^i`` and holds two causal
dilated convolutions of kernel size ``k``, each with weight normalisation, ReLU and dropout:

    z = Dropout(ReLU(WN-Conv_{k,d}(pad_left(x, (k−1)d))))     twice (x → z → z')
    y = ReLU(z' + R x)          R = 1×1 convolution when the widths differ, else the identity

Left padding by ``(k−1)d`` makes every convolution causal: output ``t`` reads inputs ``≤ t`` only.
The receptive field (how many inputs one output sees) is

    receptive_field = 1 + 2(k − 1)(2^levels − 1)

When the task's ``seq_len`` is known, ``levels`` is the smallest number whose receptive field covers
it. Because the network is causal and padding sits on the right, padding never reaches a valid
step; sequence-level heads read the last valid step.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from rnnlab.errors import ConfigError
from rnnlab.models.task_model import EncoderOutput, input_layer, last_valid_step

DEFAULT_KERNEL_SIZE = 3
DEFAULT_LEVELS = 8  # when the sequence length is unknown: receptive field 1021 at kernel size 3


def receptive_field(kernel_size: int, levels: int) -> int:
    """``1 + 2(k − 1)(2^levels − 1)``: two convolutions per block, dilations 1, 2, 4, …"""
    return 1 + 2 * (kernel_size - 1) * (2**levels - 1)


def levels_to_cover(seq_len: int, kernel_size: int) -> int:
    """The fewest levels whose receptive field is at least ``seq_len``."""
    levels = 1
    while receptive_field(kernel_size, levels) < seq_len:
        levels += 1
    return levels


class CausalConv1d(nn.Module):
    """A weight-normalised dilated convolution padded on the left only, so output t sees inputs ≤ t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.left_padding = (kernel_size - 1) * dilation
        # torch's default (Kaiming-uniform) direction and gain g = ‖v‖. Bai et al.'s code writes
        # N(0, 0.01) into `.weight` *after* weight normalisation, which the next forward overwrites
        # from g and v; drawing v from N(0, 0.01) *before* it instead (as this file once did) sets
        # g ≈ 0.01·√(C·k): every block starts near zero and the TCN stays at chance on recall T ≥ 100.
        self.conv = weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left_padding, 0)))


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions with ReLU and dropout, and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = CausalConv1d(out_channels, out_channels, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None
        if self.downsample is not None:
            nn.init.normal_(self.downsample.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.dropout(torch.relu(self.conv1(x)))
        z = self.dropout(torch.relu(self.conv2(z)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.relu(z + residual)


class TCNEncoder(nn.Module):
    """Token ids are embedded (``embedding_dim`` features), float features used directly; then
    ``levels`` temporal blocks of ``channels`` width. ``steps`` ``[B, T, channels]``; ``summary`` is
    the last valid step."""

    stateful = False
    bidirectional = False

    def __init__(
        self,
        spec: SimpleNamespace,
        channels: int,
        *,
        levels: int,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        dropout: float = 0.0,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding, in_channels = input_layer(spec, embedding_dim or channels, project_features=False)
        self.kernel_size = kernel_size
        self.levels = levels
        self.receptive_field = receptive_field(kernel_size, levels)
        self.blocks = nn.Sequential(
            *[
                TemporalBlock(in_channels if i == 0 else channels, channels, kernel_size, 2**i, dropout)
                for i in range(levels)
            ]
        )
        self.step_size = self.summary_size = channels
        self._warned_short_field = False  # said once per model: pieces of many lengths would repeat it

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        seq_len = x.size(1)
        if seq_len > self.receptive_field and not self._warned_short_field and not torch.jit.is_tracing():
            self._warned_short_field = True
            warnings.warn(
                f"TCN receptive field {self.receptive_field} (kernel {self.kernel_size}, {self.levels} levels) "
                f"is shorter than the sequence length {seq_len}: the output at step t only sees steps "
                f"t−{self.receptive_field - 1}…t; build the model with the task's seq_len or more levels",
                stacklevel=3,
            )
        inputs = x if self.embedding is None else self.embedding(x)
        steps = self.blocks(inputs.transpose(1, 2)).transpose(1, 2)  # Conv1d wants [B, C, T]
        return EncoderOutput(steps, last_valid_step(steps, lengths), None)


def choose_levels(spec: SimpleNamespace, kernel_size: int, levels: int | None) -> int:
    """Levels forced by the user (refused if they cannot see the whole sequence), else the fewest
    that cover ``spec.seq_len``, else ``DEFAULT_LEVELS``."""
    if kernel_size < 2:
        raise ConfigError(f"tcn kernel_size must be ≥ 2 (a kernel of 1 never looks back); got {kernel_size}")
    if levels is not None:
        if levels < 1:
            raise ConfigError(f"tcn levels must be ≥ 1; got {levels}")
        field = receptive_field(kernel_size, levels)
        if spec.seq_len is not None and field < spec.seq_len:
            raise ConfigError(
                f"tcn with levels={levels}, kernel_size={kernel_size} has receptive field {field}, shorter "
                f"than the task's sequence length {spec.seq_len}; use levels ≥ "
                f"{levels_to_cover(spec.seq_len, kernel_size)} or leave levels unset to choose it"
            )
        return levels
    if spec.seq_len is not None:
        return levels_to_cover(spec.seq_len, kernel_size)
    return DEFAULT_LEVELS
