"""Transformer encoder (Vaswani et al. 2017) with pre-norm layers (Xiong et al. 2020).

    u_t = E x_t · √d_model   (token ids)      or   u_t = W_in x_t + b_in   (float features)
    z_t = Dropout(u_t + PE_t)
    PE_{t, 2i} = sin(t / 10000^{2i/d_model}),   PE_{t, 2i+1} = cos(t / 10000^{2i/d_model})
    each layer:  z ← z + MHA(LN(z));  z ← z + FFN(LN(z))       then a final LN

Attention never reads padding (a key-padding mask from ``lengths``) and, for causal tasks (``lm``)
or ``bidirectional=False``, never reads later steps (a causal mask). The positional encoding is
computed for the length at hand, so any length works.

Sequence-level pooling (``pooling``): ``"last"`` reads the last valid step, ``"mean"`` averages the
valid steps. On the recall task (the answer is the first token; the query sits at the last step)
``"last"`` is the default: see ``tests/models/test_transformer.py`` and the figures in the models
report for the measurement that chose it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from rnnlab.models.task_model import EncoderOutput, input_layer, last_valid_step, valid_mask

POOLINGS = ("last", "mean")


def sinusoidal_positions(seq_len: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``PE`` ``[T, size]`` (equation above); an odd ``size`` drops the last cosine column."""
    position = torch.arange(seq_len, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, size, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / size))
    angles = position * frequency  # [T, ceil(size / 2)]
    encoding = torch.stack([torch.sin(angles), torch.cos(angles)], dim=2).flatten(1)[:, :size]
    return encoding.to(dtype)


class TransformerEncoder(nn.Module):
    """``steps`` ``[B, T, d_model]``; ``summary`` pooled as ``pooling`` says."""

    stateful = False

    def __init__(
        self,
        spec: SimpleNamespace,
        d_model: int,
        *,
        num_layers: int = 2,
        num_heads: int = 4,
        feedforward_size: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.causal = causal
        self.bidirectional = not causal
        self.pooling = pooling
        self.input, _ = input_layer(spec, d_model, project_features=True)
        self.scale_input = math.sqrt(d_model) if spec.vocab_size is not None else 1.0
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward=feedforward_size or 4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # The nested-tensor fast path drops padded positions in eval mode only: turned off so
        # training and evaluation run the same code (and the ONNX export traces it).
        self.layers = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.step_size = self.summary_size = d_model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        batch_size, seq_len = x.shape[:2]
        inputs = self.input(x) * self.scale_input
        z = self.dropout(inputs + sinusoidal_positions(seq_len, self.d_model, inputs.device, inputs.dtype))
        valid = valid_mask(lengths, batch_size, seq_len, inputs.device)
        padding_mask = None if lengths is None else ~valid
        causal_mask = None
        if self.causal:
            causal_mask = torch.ones(seq_len, seq_len, dtype=torch.bool, device=inputs.device).triu(1)
        steps = self.layers(z, mask=causal_mask, src_key_padding_mask=padding_mask)
        if self.pooling == "mean":
            weights = valid.to(steps.dtype).unsqueeze(2)
            summary = (steps * weights).sum(1) / weights.sum(1)
        else:
            summary = last_valid_step(steps, lengths)
        return EncoderOutput(steps, summary, None)
