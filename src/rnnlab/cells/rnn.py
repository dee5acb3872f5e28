"""The vanilla (Elman) recurrent cell."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.cells.base import CellModule, CellWeights, drop_recurrent, project_hidden, project_input
from rnnlab.errors import unknown_name

NONLINEARITIES = ("tanh", "relu")


def rnn_step(
    x_projection_t: Tensor,
    state: tuple[Tensor],
    weights: CellWeights,
    *,
    nonlinearity: str = "tanh",
    recurrent_mask: Tensor | None = None,
) -> tuple[tuple[Tensor], dict[str, Tensor]]:
    """One step of :class:`RNNCell` from the input projection ``W_ih x_t + b_ih`` of this step.

    Returns the new carry ``(h_t,)`` and the gates (none: the vanilla cell has no gate).
    """
    (h_prev,) = state
    pre_activation = x_projection_t + project_hidden(drop_recurrent(h_prev, recurrent_mask), weights)
    h_t = torch.tanh(pre_activation) if nonlinearity == "tanh" else torch.relu(pre_activation)
    return (h_t,), {}


class RNNCell(CellModule):
    r"""The vanilla RNN cell (SPEC §1), a drop-in for ``torch.nn.RNNCell``.

    .. math::
        h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    (``relu`` instead of ``tanh`` with ``nonlinearity="relu"``). The seeds write one bias
    ``b_h = b_ih + b_hh``; torch.nn keeps two, and so do we, so its weights load unchanged. With
    ``layer_norm=True``: ``h_t = tanh(LN(W_ih x_t) + b_ih + LN(W_hh h_{t-1}) + b_hh)``.

    ``forward(input, hx=None) -> h_t`` with ``input`` ``[batch, input_size]`` (or unbatched
    ``[input_size]``) and ``hx`` ``[batch, hidden_size]``.
    """

    gate_count = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        layer_norm: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise unknown_name("nonlinearity", nonlinearity, NONLINEARITIES)
        super().__init__(input_size, hidden_size, bias, layer_norm=layer_norm, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, state, unbatched = self._batched(input, None if hx is None else (hx,))
        weights = self.weights()
        (h_t,), _ = rnn_step(project_input(input, weights), state, weights, nonlinearity=self.nonlinearity)
        return h_t.squeeze(0) if unbatched else h_t

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")
