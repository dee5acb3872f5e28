"""What the three cells share: their weights, the input and recurrent projections, layer norm.

A cell's affine maps come in two halves, as in ``torch.nn``: the input projection
``W_ih x_t + b_ih`` and the recurrent projection ``W_hh h_{t-1} + b_hh``. The input half does not
depend on the previous step, so a layer computes it for every step at once (one large matmul
instead of T small ones) and hands each step its slice; the step itself does only the recurrent
half. With layer normalisation (Ba et al. 2016, as haste's LayerNormLSTM) each half is normalised
on its own before its bias is added: ``LN(W_ih x_t) + b_ih + LN(W_hh h_{t-1}) + b_hh``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.errors import ConfigError

LAYER_NORM_EPS = 1e-5

_State = TypeVar("_State", bound=tuple[Tensor, ...])  # a cell's carry: (h,) or (h, c)


class CellWeights(NamedTuple):
    """The tensors one step needs; names are those of ``torch.nn.LSTMCell`` and friends.

    ``weight_ih`` is ``[gates·H, I]`` and ``weight_hh`` ``[gates·H, H]`` (``[4H, P]`` for an LSTM
    with a projection of size P), rows grouped by gate in torch.nn's order (LSTM ``i, f, g, o``;
    GRU ``r, z, n``). The layer-norm tensors are ``None`` unless layer norm is on.
    """

    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None = None
    bias_hh: Tensor | None = None
    weight_hr: Tensor | None = None  # LSTM projection h_t = W_hr (o_t ⊙ tanh(c_t)), torch's proj_size
    layer_norm_ih: Tensor | None = None  # gain of LN(W_ih x_t), [gates·H]
    layer_norm_hh: Tensor | None = None  # gain of LN(W_hh h_{t-1}), [gates·H]
    layer_norm_cell_weight: Tensor | None = None  # LSTM: gain of LN(c_t) before tanh, [H]
    layer_norm_cell_bias: Tensor | None = None  # LSTM: bias of LN(c_t), [H]


def project_input(x: Tensor, weights: CellWeights) -> Tensor:
    """``W_ih x + b_ih`` (``LN(W_ih x) + b_ih`` with layer norm) over any leading shape."""
    if weights.layer_norm_ih is None:
        return F.linear(x, weights.weight_ih, weights.bias_ih)
    projected = F.linear(x, weights.weight_ih)
    projected = F.layer_norm(projected, projected.shape[-1:], weights.layer_norm_ih, None, LAYER_NORM_EPS)
    return projected if weights.bias_ih is None else projected + weights.bias_ih


def project_hidden(h: Tensor, weights: CellWeights, rows: slice = slice(None)) -> Tensor:
    """``W_hh[rows] h + b_hh[rows]`` (layer-normalised over those rows when layer norm is on).

    ``rows`` picks the gates one matmul serves: all of them, except in the Cho GRU, where the
    candidate's rows multiply ``r_t ⊙ h_{t-1}`` in a second matmul and are normalised on their own.
    """
    weight_hh = weights.weight_hh[rows]
    bias_hh = None if weights.bias_hh is None else weights.bias_hh[rows]
    if weights.layer_norm_hh is None:
        return F.linear(h, weight_hh, bias_hh)
    projected = F.linear(h, weight_hh)
    projected = F.layer_norm(projected, projected.shape[-1:], weights.layer_norm_hh[rows], None, LAYER_NORM_EPS)
    return projected if bias_hh is None else projected + bias_hh


def drop_recurrent(h_prev: Tensor, recurrent_mask: Tensor | None) -> Tensor:
    """``h_{t-1} ⊙ m``: the hidden state as it enters the recurrent matmul (variational dropout).

    Only the matmul sees the mask; the state carried on (and the GRU's interpolation) does not, as
    in Gal & Ghahramani 2016 and Semeniuta et al. 2016, so dropout never erases the memory itself.
    """
    return h_prev if recurrent_mask is None else h_prev * recurrent_mask


class CellModule(nn.Module):
    """A cell with its own parameters, usable standalone like ``torch.nn.LSTMCell``.

    Parameter names and shapes are torch.nn's (``weight_ih, weight_hh, bias_ih, bias_hh``), so
    ``cell.load_state_dict(torch_cell.state_dict())`` works; with ``layer_norm=True`` the gains
    ``layer_norm_ih`` and ``layer_norm_hh`` are added (and, for the LSTM, ``layer_norm_cell_weight``
    and ``layer_norm_cell_bias``).
    """

    gate_count: int = 1
    state_count: int = 1  # tensors in the carry: (h,) or (h, c)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        layer_norm: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.layer_norm = layer_norm
        gate_rows = self.gate_count * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gate_rows, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gate_rows, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gate_rows, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gate_rows, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if layer_norm:
            self.layer_norm_ih = nn.Parameter(torch.empty(gate_rows, **factory))
            self.layer_norm_hh = nn.Parameter(torch.empty(gate_rows, **factory))
            if self.state_count == 2:
                self.layer_norm_cell_weight = nn.Parameter(torch.empty(hidden_size, **factory))
                self.layer_norm_cell_bias = nn.Parameter(torch.empty(hidden_size, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's init (uniform ±1/√H, same order, so a seed gives torch's weights); LN gains 1."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            tensor = getattr(self, name)
            if tensor is not None:
                nn.init.uniform_(tensor, -bound, bound)
        for name, tensor in self.named_parameters():
            if name.startswith("layer_norm"):
                nn.init.constant_(tensor, 0.0 if name.endswith("bias") else 1.0)

    def weights(self) -> CellWeights:
        fields: dict[str, Any] = {name: getattr(self, name, None) for name in CellWeights._fields}
        return CellWeights(**fields)

    def _batched(self, input: Tensor, hx: _State | None) -> tuple[Tensor, _State, bool]:
        """Give a batch dimension to an unbatched input and check shapes, as torch.nn's cells do."""
        if input.dim() not in (1, 2):
            raise ConfigError(
                f"{type(self).__name__}: expected input of shape [batch, {self.input_size}] or "
                f"[{self.input_size}], got {list(input.shape)}"
            )
        if input.size(-1) != self.input_size:
            raise ConfigError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.size(-1)}"
            )
        unbatched = input.dim() == 1
        if unbatched:
            input = input.unsqueeze(0)
        sizes = (self.hidden_size,) * self.state_count
        states: tuple[Tensor, ...]
        if hx is None:
            states = tuple(input.new_zeros(input.size(0), size) for size in sizes)
        else:
            states = tuple(state.unsqueeze(0) if unbatched else state for state in hx)
            for state, size in zip(states, sizes):
                if tuple(state.shape) != (input.size(0), size):
                    expected = [size] if unbatched else [input.size(0), size]
                    got = list(state.shape[1:] if unbatched else state.shape)
                    raise ConfigError(f"{type(self).__name__}: expected a state of shape {expected}, got {got}")
        # state_count tensors, one per tensor of the carry the cell's forward passes (or would pass)
        return input, cast(_State, states), unbatched

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        if self.layer_norm:
            text += ", layer_norm=True"
        return text
