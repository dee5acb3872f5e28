r"""The gated recurrent unit (Cho et al. 2014), in the seeds' convention and in PyTorch's.

Both conventions share the row layout of torch.nn (blocks ``r, z, n`` of ``W_ih``, ``W_hh``,
``b_ih``, ``b_hh``) and differ in two places:

* **the update gate's sign.** ``convention="cho"`` writes ``h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h~_t``
  (z lets new content in); ``convention="torch"`` writes ``h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}``
  (z keeps the old state). Since ``σ(−a) = 1 − σ(a)``, negating the z rows of ``W_ih, W_hh, b_ih,
  b_hh`` turns one into the other exactly: ``z_cho = 1 − z_torch``.
* **where the reset gate acts.** Cho applies it to the state *before* the recurrent matmul,
  ``W_hn (r_t ⊙ h_{t-1}) + b_hn``; torch.nn (like cuDNN) applies it *after*,
  ``r_t ⊙ (W_hn h_{t-1} + b_hn)``. The two agree for every ``r_t`` only when ``W_hn`` is diagonal
  and ``b_hn = 0``; in general they are different functions, and no reshuffling of weights maps one
  onto the other. :func:`convert_gru_convention` converts exactly when that holds and otherwise
  refuses (or, with ``exact=False``, converts the z sign and leaves the difference in place, a
  starting point for fine-tuning rather than the same network).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from rnnlab.cells.base import CellModule, CellWeights, drop_recurrent, project_hidden, project_input
from rnnlab.errors import ConfigError, unknown_name

CONVENTIONS = ("torch", "cho")
GATE_NAMES = {"torch": ("z", "r", "n"), "cho": ("z", "r", "h_tilde")}


def gru_step(
    x_projection_t: Tensor,
    state: tuple[Tensor],
    weights: CellWeights,
    *,
    convention: str = "torch",
    recurrent_mask: Tensor | None = None,
) -> tuple[tuple[Tensor], dict[str, Tensor]]:
    """One step of :class:`GRUCell` from the input projection ``W_ih x_t + b_ih`` of this step.

    Returns the new carry ``(h_t,)`` and the gates: ``{"z", "r", "n"}`` (torch) or
    ``{"z", "r", "h_tilde"}`` (cho).
    """
    (h_prev,) = state
    h_in = drop_recurrent(h_prev, recurrent_mask)
    x_r, x_z, x_n = x_projection_t.chunk(3, dim=-1)
    hidden_size = h_prev.shape[-1]
    if convention == "torch":
        h_r, h_z, h_n = project_hidden(h_in, weights).chunk(3, dim=-1)
        r_t = torch.sigmoid(x_r + h_r)
        z_t = torch.sigmoid(x_z + h_z)
        n_t = torch.tanh(x_n + r_t * h_n)
        h_t = (1 - z_t) * n_t + z_t * h_prev
        return (h_t,), {"z": z_t, "r": r_t, "n": n_t}
    h_r, h_z = project_hidden(h_in, weights, slice(0, 2 * hidden_size)).chunk(2, dim=-1)
    r_t = torch.sigmoid(x_r + h_r)
    z_t = torch.sigmoid(x_z + h_z)
    h_tilde = torch.tanh(x_n + project_hidden(r_t * h_in, weights, slice(2 * hidden_size, 3 * hidden_size)))
    h_t = (1 - z_t) * h_prev + z_t * h_tilde
    return (h_t,), {"z": z_t, "r": r_t, "h_tilde": h_tilde}


class GRUCell(CellModule):
    r"""The GRU cell (SPEC §1) in either convention; with ``convention="torch"`` a drop-in for
    ``torch.nn.GRUCell``.

    ``convention="torch"`` (default; loads torch.nn weights and reproduces torch.nn):

    .. math::
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr})            \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})            \\
        n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))  \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    ``convention="cho"`` (the seeds' and Cho et al. 2014's; ``W_h [r_t ⊙ h_{t-1}, x_t] + b_h`` is
    ``W_in x_t + W_hn (r_t ⊙ h_{t-1})`` with ``b_h = b_in + b_hn``):

    .. math::
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr})              \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})              \\
        \tilde h_t &= \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn}) \\
        h_t &= (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    In the code: ``r_t, z_t, n_t`` / ``h_tilde``, ``h_t``. The module docstring says when the two
    conventions are the same network. With ``layer_norm=True`` each projection is normalised
    before its bias is added (``LN(W_ih x_t) + b_ih``, ``LN(W_hh h_{t-1}) + b_hh``; in the Cho form
    the candidate's matmul on ``r_t ⊙ h_{t-1}`` is normalised on its own).

    ``forward(input, hx=None) -> h_t`` with ``input`` ``[batch, input_size]`` (or unbatched
    ``[input_size]``) and ``hx`` ``[batch, hidden_size]``.
    """

    gate_count = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        convention: str = "torch",
        layer_norm: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        if convention not in CONVENTIONS:
            raise unknown_name("GRU convention", convention, CONVENTIONS)
        super().__init__(input_size, hidden_size, bias, layer_norm=layer_norm, device=device, dtype=dtype)
        self.convention = convention

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, state, unbatched = self._batched(input, None if hx is None else (hx,))
        weights = self.weights()
        (h_t,), _ = gru_step(project_input(input, weights), state, weights, convention=self.convention)
        return h_t.squeeze(0) if unbatched else h_t

    def extra_repr(self) -> str:
        return super().extra_repr() + f", convention={self.convention!r}"


_GATE_TENSOR = re.compile(r"(^|\.)(weight|bias)_(ih|hh)(_l\d+(_reverse)?)?$")


def convert_gru_convention(state_dict: Mapping[str, Tensor], *, exact: bool = True) -> dict[str, Tensor]:
    """Turn GRU weights of one convention into the other (the map is its own inverse).

    Negates the update gate's rows (``z_cho = 1 − z_torch``) in every ``weight_ih*``,
    ``weight_hh*``, ``bias_ih*`` and ``bias_hh*`` of a :class:`GRUCell`, ``rnnlab.GRU`` or
    ``torch.nn.GRU`` state dict. The result computes the same function only when each ``W_hn`` is
    diagonal, each ``b_hn`` is zero and there is no layer norm (see the module docstring); unless
    ``exact=False`` anything else raises :class:`~rnnlab.errors.ConfigError` naming the tensor.
    """
    converted = dict(state_dict)
    for name, tensor in state_dict.items():
        if exact and "layer_norm" in name:
            raise ConfigError(
                f"{name}: layer norm mixes the update gate's rows with the others, so no "
                "weight conversion between GRU conventions is exact; pass exact=False to convert anyway"
            )
        if not _GATE_TENSOR.search(name):
            continue
        hidden_size = tensor.shape[0] // 3
        if exact and "weight_hh" in name:
            w_hn = tensor[2 * hidden_size :]
            if w_hn.shape[0] != w_hn.shape[1] or not torch.equal(w_hn, torch.diag_embed(w_hn.diagonal())):
                raise ConfigError(
                    f"{name}: the candidate block W_hn is not diagonal, so r_t ⊙ (W_hn h) ≠ W_hn (r_t ⊙ h) and "
                    "the torch and cho GRUs are different functions; pass exact=False to convert anyway"
                )
        if exact and "bias_hh" in name and bool(tensor[2 * hidden_size :].ne(0).any()):
            raise ConfigError(
                f"{name}: b_hn is not zero, so r_t ⊙ b_hn ≠ b_hn and the torch and cho GRUs differ; "
                "pass exact=False to convert anyway"
            )
        flipped = tensor.detach().clone()
        flipped[hidden_size : 2 * hidden_size] = -flipped[hidden_size : 2 * hidden_size]
        converted[name] = flipped
    return converted
