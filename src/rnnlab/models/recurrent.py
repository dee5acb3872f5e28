"""The recurrent encoder: an embedding (token ids) or the raw features, then a stacked
``rnnlab.RNN`` / ``LSTM`` / ``GRU`` layer.

For a batch with ``lengths`` the layer packs it (``pack_padded_sequence(..., enforce_sorted=False)``
on its fused path; masks on its reference loop), so padding never enters the recurrence and the
returned state is each sequence's state after its own last valid step. With
``H`` the hidden size and ``o_t = [→h_t ; ←h_t]`` the top layer's output,

    steps   = o_t                                            [B, T, H · directions]
    summary = [→h_{len−1} ; ←h_0]                            [B, H · directions]

(the forward direction's last valid step joined with the backward direction's first step: each
direction's state after reading the whole sequence).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from rnnlab.cells.min_rnn import MinGRU, MinLSTM
from rnnlab.layers import GRU, LSTM, RNN
from rnnlab.models.task_model import EncoderOutput, input_layer, last_valid_step

LAYER_CLASSES = {"rnn": RNN, "lstm": LSTM, "gru": GRU, "mingru": MinGRU, "minlstm": MinLSTM}


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
        **layer_options: Any,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.embedding, input_size = input_layer(spec, embedding_dim or hidden_size, project_features=False)
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
        self.step_size = self.summary_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state: Any = None) -> EncoderOutput:
        inputs = x if self.embedding is None else self.embedding(x)
        seq_len = inputs.size(1)
        if lengths is not None and not torch.jit.is_tracing() and bool((lengths == seq_len).all()):
            lengths = None  # nothing is padded: the unpacked path is the same and faster
        steps, state = self.rnn(inputs, state, lengths=lengths)
        summary = last_valid_step(steps[..., : self.hidden_size], lengths)
        if self.bidirectional:
            summary = torch.cat([summary, steps[:, 0, self.hidden_size :]], dim=1)
        return EncoderOutput(steps, summary, state)
