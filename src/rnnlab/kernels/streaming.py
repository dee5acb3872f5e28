"""One time step of a whole rnnlab layer in a single compiled call: the real-time (streaming) case.

Feeding a sequence one step at a time through ``layer(x_t.unsqueeze(0), state)`` pays the layer's
Python work (checks, the loop over layers, autograd bookkeeping) at every step; for a batch of one
and a hidden size of 128 that costs more than the arithmetic. :class:`LayerStepper` prepares the
layer's weights once and runs every layer of one step in C++ (``Stepper`` in ``recurrent.cpp``,
the same gate code as the training kernels), without autograd. For up to 4 rows of a plain LSTM,
GRU or RNN a step goes straight to two matrix-vector products and one pass over the gates, with
no intermediate tensors; layer norm and Cho's GRU take the general path through the kernels:

>>> lstm = rnnlab.LSTM(32, 128, num_layers=2)
>>> stepper = LayerStepper(lstm)
>>> state = stepper.initial_state(batch_size=1)
>>> for x_t in stream:                       # x_t: [1, 32]
...     h_t, state = stepper(x_t, state)     # h_t: [1, 128], the top layer's output

Stepping a sequence equals running it whole (tests/kernels). The stepper reads the layer's weight
tensors as they are when it is built and sees later in-place updates (an optimiser step,
``load_state_dict``); with ``weight_norm`` the normalised weights are computed once, at build.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.errors import ConfigError
from rnnlab.kernels import build

_WEIGHT_NAMES = (
    "weight_ih",
    "weight_hh",
    "bias_ih",
    "bias_hh",
    "layer_norm_ih",
    "layer_norm_hh",
    "layer_norm_cell_weight",
    "layer_norm_cell_bias",
)


class LayerStepper:
    """Runs one time step of a unidirectional rnnlab ``RNN``/``LSTM``/``GRU`` (evaluation mode).

    ``stepper(x_t, state) -> (h_t, state)`` with ``x_t`` ``[batch, input_size]`` and ``state`` a
    tuple of per-layer tensors ``[batch, hidden]`` (``h`` of each layer, and for the LSTM ``c``
    after each ``h``) as :meth:`initial_state` and :meth:`from_layer_state` give.
    """

    def __init__(self, layer) -> None:
        module = build.load()
        if module is None:
            raise ConfigError(f"LayerStepper needs rnnlab's compiled kernels, which are {build.status()}")
        name = type(layer).__name__
        if layer.bidirectional:
            raise ConfigError(
                f"{name} is bidirectional: its backward direction reads the future, so it cannot run one step at a time"
            )
        if layer.proj_size > 0 or layer.zoneout > 0:
            raise ConfigError(
                f"LayerStepper does not run proj_size or zoneout; {name} has "
                f"proj_size={layer.proj_size}, zoneout={layer.zoneout}"
            )
        kind = layer.cell_kind
        if kind == "rnn":
            kind = "rnn_relu" if layer.nonlinearity == "relu" else "rnn_tanh"
        elif kind == "gru" and layer.convention == "cho":
            kind = "gru_cho"
        self.kind = kind
        self.num_layers = layer.num_layers
        self.hidden_size = layer.hidden_size
        self.input_size = layer.input_size
        self.dtype = layer.weight_ih_l0.dtype
        with torch.no_grad():
            weights = [
                [None if tensor is None else tensor.detach() for tensor in layer._cell_weights(index, 0)]
                for index in range(layer.num_layers)
            ]
        names = layer._cell_weights(0, 0)._fields
        self._stepper = module.Stepper(
            kind, [[dict(zip(names, tensors)).get(name) for name in _WEIGHT_NAMES] for tensors in weights]
        )

    @property
    def state_count(self) -> int:
        return 2 if self.kind == "lstm" else 1

    def initial_state(self, batch_size: int = 1) -> tuple[Tensor, ...]:
        return tuple(
            torch.zeros(batch_size, self.hidden_size, dtype=self.dtype)
            for _ in range(self.num_layers * self.state_count)
        )

    def from_layer_state(self, hx) -> tuple[Tensor, ...]:
        """The layer's state (``h_n`` ``[layers, B, H]``, or ``(h_n, c_n)``) in the stepper's form."""
        parts = hx if isinstance(hx, tuple) else (hx,)
        return tuple(part[layer] for layer in range(self.num_layers) for part in parts)

    def to_layer_state(self, state: tuple[Tensor, ...]):
        """The stepper's state as the layer returns it (``h_n``, or ``(h_n, c_n)``)."""
        stacked = tuple(torch.stack(state[index :: self.state_count]) for index in range(self.state_count))
        return stacked if self.kind == "lstm" else stacked[0]

    def __call__(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        output, *new_state = self._stepper.step(x_t, state)
        return output, tuple(new_state)
