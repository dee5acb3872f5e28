"""The recurrent encoder: an embedding (token ids) or the raw features, then a stacked
``rnnlab.RNN`` / ``LSTM`` / ``GRU`` layer.

For a batch with ``lengths`` the layer packs it (``pack_padded_sequence(..., enforce_sorted=False)``
on its fused path; masks on its reference loop), so padding never enters the recurrence and the
returned state is each sequence's state after its own last valid step. With
``H`` the hidden size and ``o_t = [→h_t ; ←h_t]`` the top layer's output,

    steps   = o_t                                            [B, T, H · directions]
    summary = [→h_{len−1} ; ←h_0]                            [B, H · directions]

(the forward direction's last valid step joined with the backward direction's first step: each
direction's state after reading the whole sequence). Two options for whole-sequence heads on long
real sequences (the ``classify`` task's defaults):

    pooling "mean+max"   summary = [mean_t o_t ; max_t o_t]   over the valid steps  [B, 2·H·directions]
            "mean"       summary = mean_t o_t
    patch p              x'_k = [x_{kp} ; … ; x_{kp+p−1}]      [B, ⌈T/p⌉, p·F]   (zeros past the end)

so the recurrence runs ⌈T/p⌉ steps and reads p steps at a time (the patches of PatchTST, Nie et
al. 2023): a 1,460-step series becomes 98 steps a GRU can carry a gradient through.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from rnnlab.layers import GRU, LSTM, RNN, MinGRU, MinLSTM
from rnnlab.models.task_model import EncoderOutput, input_layer, last_valid_step

LAYER_CLASSES = {"rnn": RNN, "lstm": LSTM, "gru": GRU, "mingru": MinGRU, "minlstm": MinLSTM}
RECURRENT_POOLINGS = ("last", "mean", "mean+max")


class RecurrentEncoder(nn.Module):
    """``cell`` ∈ rnn, lstm, gru; ``layer_options`` go to the rnnlab layer as they are
    (``layer_norm``, ``init``, ``chrono_max_len``, ``recurrent_dropout``, ``zoneout``, ``weight_norm``,
    ``gradient_checkpointing``, ``checkpoint_steps``, ``nonlinearity`` (rnn), ``convention`` (gru)).

    The layer is ``encoder.rnn``: pass it to ``rnnlab.layers.record_gates`` to read the gates.
    """

    stateful = True

    def __init__(
        self,
        spec: SimpleNamespace,
        cell: str,
        hidden_size: int,
        *,
        num_layers: int = 2,
        bidirectional: bool = False,
        dropout: float = 0.0,
        embedding_dim: int | None = None,
        pooling: str = "last",
        patch: int = 1,
        **layer_options: Any,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.pooling, self.patch = pooling, patch
        # a step's output depends on later steps (pooling) or on steps not yet read (patch)
        self.streamable = pooling == "last" and patch == 1
        self.embedding, input_size = input_layer(spec, embedding_dim or hidden_size, project_features=False)
        input_size *= patch
        self.rnn = LAYER_CLASSES[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            # torch.nn warns about dropout with one layer: dropout acts between layers only.
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            **layer_options,
        )
        self.step_size = hidden_size * (2 if bidirectional else 1)
        self.summary_size = self.step_size * (2 if pooling == "mean+max" else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state: Any = None) -> EncoderOutput:
        inputs = x if self.embedding is None else self.embedding(x)
        if self.patch > 1:
            inputs, lengths = patches(inputs, lengths, self.patch)
        seq_len = inputs.size(1)
        if lengths is not None and not torch.jit.is_tracing() and bool((lengths == seq_len).all()):
            lengths = None  # nothing is padded: the unpacked path is the same and faster
        steps, state = self.rnn(inputs, state, lengths=lengths)
        if self.pooling == "last":
            summary = last_valid_step(steps[..., : self.hidden_size], lengths)
            if self.bidirectional:
                summary = torch.cat([summary, steps[:, 0, self.hidden_size :]], dim=1)
        else:
            summary = pool_steps(steps, lengths, self.pooling)
        return EncoderOutput(steps, summary, state)


def patches(inputs: torch.Tensor, lengths: torch.Tensor | None, patch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, T, F]`` → ``[B, ⌈T/p⌉, p·F]``: each step reads ``p`` consecutive steps (zeros past each
    sequence's end); lengths become ``⌈length / p⌉``."""
    batch, seq_len, features = inputs.shape
    steps = -(-seq_len // patch)
    if lengths is not None:  # a patch that holds a sequence's end holds zeros after it, not the padding
        valid = torch.arange(seq_len, device=inputs.device)[None, :] < lengths.to(inputs.device)[:, None]
        inputs = inputs * valid.unsqueeze(-1).to(inputs.dtype)
    inputs = nn.functional.pad(inputs, (0, 0, 0, steps * patch - seq_len))
    inputs = inputs.reshape(batch, steps, patch * features)
    return inputs, None if lengths is None else torch.div(lengths + patch - 1, patch, rounding_mode="floor")


def pool_steps(steps: torch.Tensor, lengths: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """Mean (``"mean"``) or mean and max (``"mean+max"``) of ``steps [B, T, D]`` over each sequence's
    valid steps."""
    if lengths is None:
        mean, largest = steps.mean(dim=1), steps.amax(dim=1)
    else:
        valid = torch.arange(steps.size(1), device=steps.device)[None, :] < lengths.to(steps.device)[:, None]
        valid = valid.unsqueeze(-1)
        mean = (steps * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        largest = steps.masked_fill(~valid, float("-inf")).amax(dim=1)
    return mean if pooling == "mean" else torch.cat([mean, largest], dim=1)
