"""The long short-term memory cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers 2000)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.cells.base import (
    LAYER_NORM_EPS,
    CellModule,
    CellWeights,
    drop_recurrent,
    project_hidden,
    project_input,
)

GATE_NAMES = ("i", "f", "o", "c_tilde")


def lstm_step(
    x_projection_t: Tensor,
    state: tuple[Tensor, Tensor],
    weights: CellWeights,
    *,
    recurrent_mask: Tensor | None = None,
) -> tuple[tuple[Tensor, Tensor], dict[str, Tensor]]:
    """One step of :class:`LSTMCell` from the input projection ``W_ih x_t + b_ih`` of this step.

    Returns the new carry ``(h_t, c_t)`` and the gates ``{"i", "f", "o", "c_tilde"}``.
    """
    h_prev, c_prev = state
    gates = x_projection_t + project_hidden(drop_recurrent(h_prev, recurrent_mask), weights)
    i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=-1)  # torch.nn's row order: i, f, g, o
    i_t = torch.sigmoid(i_pre)
    f_t = torch.sigmoid(f_pre)
    o_t = torch.sigmoid(o_pre)
    c_tilde = torch.tanh(g_pre)
    c_t = f_t * c_prev + i_t * c_tilde
    if weights.layer_norm_cell_weight is not None:
        c_shown = F.layer_norm(
            c_t, c_t.shape[-1:], weights.layer_norm_cell_weight, weights.layer_norm_cell_bias, LAYER_NORM_EPS
        )
    else:
        c_shown = c_t
    h_t = o_t * torch.tanh(c_shown)
    if weights.weight_hr is not None:
        h_t = F.linear(h_t, weights.weight_hr)
    return (h_t, c_t), {"i": i_t, "f": f_t, "o": o_t, "c_tilde": c_tilde}


class LSTMCell(CellModule):
    r"""The LSTM cell (SPEC §1), a drop-in for ``torch.nn.LSTMCell``.

    With ``[i, f, g, o]`` the four row blocks of ``W_ih``, ``W_hh``, ``b_ih``, ``b_hh`` (torch.nn's
    order; the seeds write ``W_f [h_{t-1}, x_t] + b_f``, which is ``W_if x_t + W_hf h_{t-1}`` with
    ``b_f = b_if + b_hf``):

    .. math::
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi})        \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf})        \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho})        \\
        \tilde c_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg})  \\
        c_t &= f_t \odot c_{t-1} + i_t \odot \tilde c_t                     \\
        h_t &= o_t \odot \tanh(c_t)

    In the code: ``i_t, f_t, o_t, c_tilde, c_t, h_t``. With ``layer_norm=True`` (Ba et al. 2016,
    haste's LayerNormLSTM) the pre-activations are ``LN(W_ih x_t) + b_ih + LN(W_hh h_{t-1}) + b_hh``
    (each projection normalised over all four gates) and ``h_t = o_t ⊙ tanh(LN(c_t))``; the cell
    state carried on is the un-normalised ``c_t``.

    ``forward(input, hx=None) -> (h_t, c_t)`` with ``input`` ``[batch, input_size]`` (or
    unbatched ``[input_size]``) and ``hx = (h_{t-1}, c_{t-1})``, each ``[batch, hidden_size]``.
    """

    gate_count = 4
    state_count = 2

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        input, state, unbatched = self._batched(input, hx)
        weights = self.weights()
        (h_t, c_t), _ = lstm_step(project_input(input, weights), state, weights)
        return (h_t.squeeze(0), c_t.squeeze(0)) if unbatched else (h_t, c_t)
