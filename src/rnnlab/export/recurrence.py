"""The recurrent layers in a form an ONNX file can hold, with dynamic batch size and length.

ONNX has no packed sequences and a trace unrolls a Python loop over time into a fixed number of
steps, so an ``rnnlab.RNN / LSTM / GRU`` is replaced, in a copy of the model made for export, by
:class:`ExportRecurrent`, which holds the same weights and computes the same function in one of two
forms:

* ``"native"``: one ONNX ``RNN`` / ``LSTM`` / ``GRU`` operator per layer (both directions in one),
  given the valid steps of each sequence as its ``sequence_lens`` input: padding never enters the
  recurrence, outputs past a sequence's end are 0 and the final state is the last valid one, as
  with packed sequences in PyTorch. Fast in onnxruntime; only for layers the operators can express
  (no layer norm, no zoneout). The operators order the gates differently from torch.nn: LSTM
  ``i, o, f, c`` (torch ``i, f, g, o``), GRU ``z, r, h`` (torch ``r, z, n``); the Cho GRU is the
  operator with ``linear_before_reset=0`` and its update gate negated (``z_onnx = 1 − z_cho``).
* ``"loop"``: an ONNX ``Loop`` over time whose body holds the cell's equations as plain
  ``MatMul`` / ``Sigmoid`` / ``Tanh`` ops, with masks for the padding (a finished sequence keeps
  its state; its outputs are 0). Works for every layer, layer norm and zoneout included, and its
  weights are ``MatMul`` initialisers that onnxruntime's dynamic quantiser turns into int8, which it
  does not do for the ``GRU`` and ``RNN`` operators.

The equations are those of :mod:`rnnlab.cells`, written once more in TorchScript, the form the
exporter turns into a ``Loop``: the input projection ``W_ih x_t + b_ih`` of every step is one
matmul before the loop, the step does the recurrent half (see :func:`recurrent_step`). The tests
check both forms against the layer's reference loop and onnxruntime against PyTorch.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.cells.base import LAYER_NORM_EPS
from rnnlab.errors import ConfigError
from rnnlab.layers import GRU, LSTM, RNN, reverse_within_lengths

PATHS = ("native", "loop")

# Cell kinds, as integers because TorchScript branches on them (a constant at export time, so the
# exporter keeps only the branch taken).
RNN_TANH, RNN_RELU, LSTM_CELL, GRU_TORCH, GRU_CHO = range(5)
KIND_NAMES = {RNN_TANH: "rnn (tanh)", RNN_RELU: "rnn (relu)", LSTM_CELL: "lstm", GRU_TORCH: "gru", GRU_CHO: "gru (cho)"}


def _script(function):
    """``torch.jit.script`` without its deprecation warning: the TorchScript ONNX exporter (the one
    that needs no onnxscript) turns a scripted loop into an ONNX ``Loop``, which a trace cannot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(function)


@_script
def _normalise(x: Tensor, gain: Tensor, bias: Tensor | None) -> Tensor:
    """Layer norm over the last dimension (``F.layer_norm`` needs a shape the loop cannot give it)."""
    centred = x - x.mean(-1, keepdim=True)
    variance = (centred * centred).mean(-1, keepdim=True)
    normalised = centred / torch.sqrt(variance + 1e-5) * gain
    if bias is not None:
        normalised = normalised + bias
    return normalised


@_script
def recurrent_step(
    kind: int,
    x_projection_t: Tensor,
    h_prev: Tensor,
    c_prev: Tensor,
    hidden_weight: Tensor,
    hidden_bias: Tensor,
    candidate_weight: Tensor | None,
    candidate_bias: Tensor | None,
    hidden_gain: Tensor | None,
    candidate_gain: Tensor | None,
    cell_gain: Tensor | None,
    cell_bias: Tensor | None,
    zoneout: float,
) -> tuple[Tensor, Tensor]:
    """One step of any cell from this step's input projection ``x_projection_t = W_ih x_t + b_ih``.

    ``hidden_weight`` is ``W_hhᵀ`` (transposed once, so the body is ``h @ W``, a ``MatMul`` the
    quantiser recognises); with layer norm ``LN(h W) + b_hh`` replaces ``h W + b_hh``. Returns
    ``(h_t, c_t)``; cells without a cell state return ``c_prev`` unchanged.

        rnn     h_t = tanh | relu(x_t' + W_hh h_{t-1} + b_hh)
        lstm    i_t, f_t, o_t = σ(·), c_tilde = tanh(·)  (torch rows i, f, g, o)
                c_t = f_t ⊙ c_{t-1} + i_t ⊙ c_tilde,  h_t = o_t ⊙ tanh(c_t)   (tanh(LN(c_t)) with layer norm)
        gru     r_t, z_t = σ(·), n_t = tanh(x_n + r_t ⊙ (W_hn h_{t-1} + b_hn)),
                h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        cho     h_tilde = tanh(x_n + W_hn (r_t ⊙ h_{t-1}) + b_hn), h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h_tilde
                (for cho, ``hidden_weight`` holds the r and z rows, ``candidate_weight`` the n rows)

    With zoneout ``p`` (evaluation form): ``h_t = p h_{t-1} + (1 − p) h_t``.
    """
    recurrent = torch.matmul(h_prev, hidden_weight)
    if hidden_gain is not None:
        recurrent = _normalise(recurrent, hidden_gain, None)
    recurrent = recurrent + hidden_bias
    c_t = c_prev
    if kind == 2:  # LSTM
        gates = x_projection_t + recurrent
        i_pre, f_pre, g_pre, o_pre = gates.chunk(4, -1)
        i_t = torch.sigmoid(i_pre)
        f_t = torch.sigmoid(f_pre)
        o_t = torch.sigmoid(o_pre)
        c_tilde = torch.tanh(g_pre)
        c_t = f_t * c_prev + i_t * c_tilde
        c_shown = c_t
        if cell_gain is not None:
            c_shown = _normalise(c_t, cell_gain, cell_bias)
        h_t = o_t * torch.tanh(c_shown)
    elif kind == 3:  # GRU, torch convention
        x_r, x_z, x_n = x_projection_t.chunk(3, -1)
        h_r, h_z, h_n = recurrent.chunk(3, -1)
        r_t = torch.sigmoid(x_r + h_r)
        z_t = torch.sigmoid(x_z + h_z)
        n_t = torch.tanh(x_n + r_t * h_n)
        h_t = (1.0 - z_t) * n_t + z_t * h_prev
    elif kind == 4:  # GRU, Cho convention
        assert candidate_weight is not None and candidate_bias is not None
        x_r, x_z, x_n = x_projection_t.chunk(3, -1)
        h_r, h_z = recurrent.chunk(2, -1)
        r_t = torch.sigmoid(x_r + h_r)
        z_t = torch.sigmoid(x_z + h_z)
        candidate = torch.matmul(r_t * h_prev, candidate_weight)
        if candidate_gain is not None:
            candidate = _normalise(candidate, candidate_gain, None)
        h_tilde = torch.tanh(x_n + candidate + candidate_bias)
        h_t = (1.0 - z_t) * h_prev + z_t * h_tilde
    elif kind == 1:
        h_t = torch.relu(x_projection_t + recurrent)
    else:
        h_t = torch.tanh(x_projection_t + recurrent)
    if zoneout > 0.0:
        h_t = zoneout * h_prev + (1.0 - zoneout) * h_t
    return h_t, c_t


@_script
def scan(
    kind: int,
    x_projection: Tensor,
    valid: Tensor,
    h_0: Tensor,
    c_0: Tensor,
    hidden_weight: Tensor,
    hidden_bias: Tensor,
    candidate_weight: Tensor | None,
    candidate_bias: Tensor | None,
    hidden_gain: Tensor | None,
    candidate_gain: Tensor | None,
    cell_gain: Tensor | None,
    cell_bias: Tensor | None,
    zoneout: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`recurrent_step` over time: ``x_projection`` ``[T, B, gates·H]``, ``valid`` ``[T, B, 1]``
    (False on padding) → outputs ``[T, B, H]`` (0 on padding) and the last valid ``(h, c)``."""
    h_t = h_0
    c_t = c_0
    outputs: list[Tensor] = []
    for t in range(x_projection.size(0)):
        h_new, c_new = recurrent_step(
            kind,
            x_projection[t],
            h_t,
            c_t,
            hidden_weight,
            hidden_bias,
            candidate_weight,
            candidate_bias,
            hidden_gain,
            candidate_gain,
            cell_gain,
            cell_bias,
            zoneout,
        )
        valid_t = valid[t]
        h_t = torch.where(valid_t, h_new, h_t)
        c_t = torch.where(valid_t, c_new, c_t)
        outputs.append(torch.where(valid_t, h_new, torch.zeros_like(h_new)))
    return torch.stack(outputs), h_t, c_t


# ONNX operator gate order as a permutation of torch.nn's row blocks.
_ONNX_GATE_ORDER = {LSTM_CELL: (0, 3, 1, 2), GRU_TORCH: (1, 0, 2), GRU_CHO: (1, 0, 2), RNN_TANH: (0,), RNN_RELU: (0,)}


def _to_onnx_order(kind: int, rows: Tensor) -> Tensor:
    """torch.nn row blocks → the ONNX operator's (Cho GRU: update gate negated, z_onnx = 1 − z_cho)."""
    blocks = list(rows.chunk(len(_ONNX_GATE_ORDER[kind]), dim=0))
    if kind == GRU_CHO:
        blocks[1] = -blocks[1]
    return torch.cat([blocks[i] for i in _ONNX_GATE_ORDER[kind]], dim=0)


def _from_onnx_order(kind: int, rows: Tensor) -> Tensor:
    """The inverse of :func:`_to_onnx_order`."""
    order = _ONNX_GATE_ORDER[kind]
    blocks = rows.chunk(len(order), dim=0)
    restored = [blocks[order.index(i)] for i in range(len(order))]
    if kind == GRU_CHO:
        restored[1] = -restored[1]
    return torch.cat(restored, dim=0)


class _OnnxOperator(torch.autograd.Function):
    """One layer (all its directions) as the ONNX ``RNN`` / ``LSTM`` / ``GRU`` operator.

    ``forward`` computes the operator's result with :func:`scan` (what the trace sees); ``symbolic``
    writes the operator into the ONNX graph. Weights arrive in the operator's layout: ``W``
    ``[D, gates·H, I]``, ``R`` ``[D, gates·H, H]``, ``B`` ``[D, 2·gates·H]`` (input then recurrent
    bias), gate blocks in the operator's order.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        sequence_lens: Tensor,
        h_0: Tensor,
        c_0: Tensor,
        W: Tensor,
        R: Tensor,
        B: Tensor,
        kind: int,
        hidden_size: int,
    ):
        # The exporter traces inside a Function's forward too, and cannot lower the scripted scan
        # there; the symbolic below replaces all of it anyway, so compute untraced.
        tracing_state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)  # type: ignore[attr-defined]  # in torch._C, missing from its stubs
        try:
            with torch.no_grad():
                return _OnnxOperator._compute(x, sequence_lens, h_0, c_0, W, R, B, kind, hidden_size)
        finally:
            torch._C._set_tracing_state(tracing_state)  # type: ignore[attr-defined]  # as above

    @staticmethod
    def _compute(
        x: Tensor,
        sequence_lens: Tensor,
        h_0: Tensor,
        c_0: Tensor,
        W: Tensor,
        R: Tensor,
        B: Tensor,
        kind: int,
        hidden_size: int,
    ):
        seq_len = x.shape[0]
        valid = (torch.arange(seq_len).unsqueeze(1) < sequence_lens.long().unsqueeze(0)).unsqueeze(-1)
        outputs, finals_h, finals_c = [], [], []
        gate_rows = W.shape[1]
        for direction in range(W.shape[0]):
            weight_ih = _from_onnx_order(kind, W[direction])
            weight_hh = _from_onnx_order(kind, R[direction])
            bias_ih = _from_onnx_order(kind, B[direction, :gate_rows])
            bias_hh = _from_onnx_order(kind, B[direction, gate_rows:])
            sequence = x if direction == 0 else reverse_within_lengths(x, sequence_lens.long())
            projection = F.linear(sequence, weight_ih, bias_ih)
            hidden_weight, candidate_weight = weight_hh.t(), None
            hidden_bias, candidate_bias = bias_hh, None
            if kind == GRU_CHO:
                hidden_weight, candidate_weight = weight_hh[: 2 * hidden_size].t(), weight_hh[2 * hidden_size :].t()
                hidden_bias, candidate_bias = bias_hh[: 2 * hidden_size], bias_hh[2 * hidden_size :]
            output, h_n, c_n = scan(
                kind,
                projection,
                valid,
                h_0[direction],
                c_0[direction],
                hidden_weight,
                hidden_bias,
                candidate_weight,
                candidate_bias,
                None,
                None,
                None,
                None,
                0.0,
            )
            if direction == 1:
                output = reverse_within_lengths(output, sequence_lens.long())
            outputs.append(output)
            finals_h.append(h_n)
            finals_c.append(c_n)
        return torch.stack(outputs, 1), torch.stack(finals_h), torch.stack(finals_c)

    @staticmethod
    def symbolic(g, x, sequence_lens, h_0, c_0, W, R, B, kind: int, hidden_size: int):
        direction = "bidirectional" if _static_size(W, 0) == 2 else "forward"
        if kind == LSTM_CELL:
            return g.op(
                "LSTM", x, W, R, B, sequence_lens, h_0, c_0, hidden_size_i=hidden_size, direction_s=direction, outputs=3
            )
        if kind in (GRU_TORCH, GRU_CHO):
            y, y_h = g.op(
                "GRU",
                x,
                W,
                R,
                B,
                sequence_lens,
                h_0,
                hidden_size_i=hidden_size,
                direction_s=direction,
                linear_before_reset_i=1 if kind == GRU_TORCH else 0,
                outputs=2,
            )
        else:
            activation = "Tanh" if kind == RNN_TANH else "Relu"
            activations = [activation] * (2 if direction == "bidirectional" else 1)
            y, y_h = g.op(
                "RNN",
                x,
                W,
                R,
                B,
                sequence_lens,
                h_0,
                hidden_size_i=hidden_size,
                direction_s=direction,
                activations_s=activations,
                outputs=2,
            )
        return y, y_h, c_0


def _static_size(value, dim: int) -> int:
    sizes = value.type().sizes()
    return int(sizes[dim])


def cell_kind(layer: nn.Module) -> int:
    """The kind constant of an rnnlab layer."""
    if isinstance(layer, LSTM):
        return LSTM_CELL
    if isinstance(layer, GRU):
        return GRU_CHO if layer.convention == "cho" else GRU_TORCH
    if isinstance(layer, RNN):
        return RNN_RELU if layer.nonlinearity == "relu" else RNN_TANH
    raise ConfigError(f"expected an rnnlab RNN, LSTM or GRU layer; got {type(layer).__name__}")


def native_refusal(layer: nn.Module) -> str | None:
    """Why the ONNX operators cannot express ``layer`` (``None`` when they can)."""
    if getattr(layer, "layer_norm", False):
        return "layer norm has no place in the ONNX LSTM/GRU/RNN operators"
    if getattr(layer, "zoneout", 0.0) > 0:
        return "zoneout has no place in the ONNX LSTM/GRU/RNN operators"
    if getattr(layer, "proj_size", 0) > 0:
        return "the ONNX LSTM operator has no projection (proj_size)"
    return None


class ExportRecurrent(nn.Module):
    """Stands in for an rnnlab ``RNN`` / ``LSTM`` / ``GRU`` (``batch_first=True``) in a model copy
    made for export: the same weights (weight norm applied, as constants) and the same
    ``forward(input, hx=None, lengths=None) -> (output, state)``, in the form ``path`` names
    (see the module docstring). With ``single_step=True`` it expects inputs of one step and runs
    the cell equations once, without a loop (the step model a real-time system calls).
    """

    def __init__(self, layer: RNN | LSTM | GRU, path: str = "loop", *, single_step: bool = False) -> None:
        super().__init__()
        if path not in PATHS:
            raise ConfigError(f"recurrence path must be one of {', '.join(PATHS)}; got {path!r}")
        if path == "native" and native_refusal(layer):
            raise ConfigError(
                f"cannot export this {type(layer).__name__} as an ONNX operator: "
                f"{native_refusal(layer)}; use the loop path"
            )
        if not getattr(layer, "batch_first", False):
            raise ConfigError("ExportRecurrent stands in for a batch_first layer, as rnnlab's encoders build them")
        self.kind = cell_kind(layer)
        self.path = path
        self.single_step = single_step
        self.hidden_size = layer.hidden_size
        self.num_layers = layer.num_layers
        self.directions = 2 if layer.bidirectional else 1
        self.zoneout = float(getattr(layer, "zoneout", 0.0))
        self.has_cell_state = self.kind == LSTM_CELL
        with torch.no_grad():
            for layer_index in range(self.num_layers):
                for direction in range(self.directions):
                    weights = layer._cell_weights(layer_index, direction)
                    for name, tensor in self._unit_tensors(weights).items():
                        self.register_buffer(
                            f"{name}_{layer_index}_{direction}", None if tensor is None else tensor.detach().clone()
                        )
                if path == "native":
                    self._register_operator_weights(layer, layer_index)

    # ------------------------------------------------------------------------------- weights
    def _unit_tensors(self, weights) -> dict[str, Tensor | None]:
        """The tensors of one layer and direction in the loop's layout (see :func:`recurrent_step`)."""
        hidden_size = self.hidden_size
        gate_rows = weights.weight_hh.shape[0]
        bias_ih = weights.bias_ih if weights.bias_ih is not None else weights.weight_ih.new_zeros(gate_rows)
        bias_hh = weights.bias_hh if weights.bias_hh is not None else weights.weight_ih.new_zeros(gate_rows)
        tensors = {
            "input_weight": weights.weight_ih,
            "input_bias": bias_ih,
            "input_gain": weights.layer_norm_ih,
            "cell_gain": weights.layer_norm_cell_weight,
            "cell_bias": weights.layer_norm_cell_bias,
        }
        if self.kind == GRU_CHO:
            split = 2 * hidden_size
            tensors.update(
                hidden_weight=weights.weight_hh[:split].t(),
                hidden_bias=bias_hh[:split],
                candidate_weight=weights.weight_hh[split:].t(),
                candidate_bias=bias_hh[split:],
                hidden_gain=None if weights.layer_norm_hh is None else weights.layer_norm_hh[:split],
                candidate_gain=None if weights.layer_norm_hh is None else weights.layer_norm_hh[split:],
            )
        else:
            tensors.update(
                hidden_weight=weights.weight_hh.t(),
                hidden_bias=bias_hh,
                candidate_weight=None,
                candidate_bias=None,
                hidden_gain=weights.layer_norm_hh,
                candidate_gain=None,
            )
        return {name: None if t is None else t.contiguous() for name, t in tensors.items()}

    def _register_operator_weights(self, layer: RNN | LSTM | GRU, layer_index: int) -> None:
        stacks: dict[str, list[Tensor]] = {"W": [], "R": [], "B": []}
        for direction in range(self.directions):
            weights = layer._cell_weights(layer_index, direction)
            gate_rows = weights.weight_hh.shape[0]
            zeros = weights.weight_ih.new_zeros(gate_rows)
            bias_ih = weights.bias_ih if weights.bias_ih is not None else zeros
            bias_hh = weights.bias_hh if weights.bias_hh is not None else zeros
            stacks["W"].append(_to_onnx_order(self.kind, weights.weight_ih))
            stacks["R"].append(_to_onnx_order(self.kind, weights.weight_hh))
            stacks["B"].append(torch.cat([_to_onnx_order(self.kind, bias_ih), _to_onnx_order(self.kind, bias_hh)]))
        for name, parts in stacks.items():
            self.register_buffer(f"operator_{name}_{layer_index}", torch.stack(parts).detach().clone())

    def _unit(self, layer_index: int, direction: int) -> dict[str, Tensor | None]:
        suffix = f"_{layer_index}_{direction}"
        names = (
            "input_weight",
            "input_bias",
            "input_gain",
            "hidden_weight",
            "hidden_bias",
            "candidate_weight",
            "candidate_bias",
            "hidden_gain",
            "candidate_gain",
            "cell_gain",
            "cell_bias",
        )
        return {name: getattr(self, name + suffix) for name in names}

    # ------------------------------------------------------------------------------- forward
    def forward(self, input: Tensor, hx=None, lengths: Tensor | None = None):
        batch_size, seq_len = input.shape[0], input.shape[1]
        rows = self.num_layers * self.directions
        if hx is None:
            h_0 = input.new_zeros(rows, batch_size, self.hidden_size)
            c_0 = h_0
        elif self.has_cell_state:
            h_0, c_0 = hx
        else:
            h_0 = c_0 = hx
        x = input.transpose(0, 1)  # time-major [T, B, I]
        if self.single_step:
            output, h_n, c_n = self._one_step(x[0], h_0, c_0)
            output = output.unsqueeze(1)
        else:
            if lengths is None:
                lengths = torch.full((batch_size,), seq_len, dtype=torch.long)
            lengths = lengths.long()
            if self.path == "native":
                output, h_n, c_n = self._run_operators(x, lengths, h_0, c_0)
            else:
                output, h_n, c_n = self._run_loops(x, lengths, h_0, c_0)
            output = output.transpose(0, 1)
        state = (h_n, c_n) if self.has_cell_state else h_n
        return output, state

    def _project(self, x: Tensor, unit: dict[str, Tensor | None]) -> Tensor:
        """``W_ih x + b_ih`` (``LN(W_ih x) + b_ih`` with layer norm) for every step at once."""
        weight, bias = unit["input_weight"], unit["input_bias"]
        assert weight is not None and bias is not None  # always there (a zero bias for bias=False)
        if unit["input_gain"] is None:
            return F.linear(x, weight, bias)
        projected = F.linear(x, weight)
        gain = unit["input_gain"]
        return F.layer_norm(projected, (gain.shape[0],), gain, None, LAYER_NORM_EPS) + bias

    def _step_arguments(self, unit: dict[str, Tensor | None]) -> tuple:
        return (
            unit["hidden_weight"],
            unit["hidden_bias"],
            unit["candidate_weight"],
            unit["candidate_bias"],
            unit["hidden_gain"],
            unit["candidate_gain"],
            unit["cell_gain"],
            unit["cell_bias"],
            self.zoneout,
        )

    def _one_step(self, x_t: Tensor, h_0: Tensor, c_0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.directions != 1:
            raise ConfigError(
                "a bidirectional layer cannot run one step at a time: its backward direction "
                "starts from the end of the sequence"
            )
        finals_h, finals_c = [], []
        layer_input = x_t
        for layer_index in range(self.num_layers):
            unit = self._unit(layer_index, 0)
            h_t, c_t = recurrent_step(
                self.kind,
                self._project(layer_input, unit),
                h_0[layer_index],
                c_0[layer_index],
                *self._step_arguments(unit),
            )
            finals_h.append(h_t)
            finals_c.append(c_t)
            layer_input = h_t
        return layer_input, torch.stack(finals_h), torch.stack(finals_c)

    def _run_loops(self, x: Tensor, lengths: Tensor, h_0: Tensor, c_0: Tensor):
        valid = (torch.arange(x.shape[0]).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)  # [T, B, 1]
        finals_h, finals_c = [], []
        layer_input = x
        for layer_index in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                unit = self._unit(layer_index, direction)
                row = layer_index * self.directions + direction
                sequence = layer_input if direction == 0 else reverse_within_lengths(layer_input, lengths)
                output, h_n, c_n = scan(
                    self.kind, self._project(sequence, unit), valid, h_0[row], c_0[row], *self._step_arguments(unit)
                )
                outputs.append(output if direction == 0 else reverse_within_lengths(output, lengths))
                finals_h.append(h_n)
                finals_c.append(c_n)
            layer_input = outputs[0] if self.directions == 1 else torch.cat(outputs, dim=-1)
        return layer_input, torch.stack(finals_h), torch.stack(finals_c)

    def _run_operators(self, x: Tensor, lengths: Tensor, h_0: Tensor, c_0: Tensor):
        sequence_lens = lengths.to(torch.int32)  # the operators take int32 lengths
        finals_h, finals_c = [], []
        layer_input = x
        rows = self.directions
        for layer_index in range(self.num_layers):
            span = slice(layer_index * rows, (layer_index + 1) * rows)
            # Detached: the trace needs no gradient, and a Function's outputs that require one are
            # not tied to the PythonOp the exporter replaces.
            y, y_h, y_c = _OnnxOperator.apply(
                layer_input.detach(),
                sequence_lens,
                h_0[span].detach(),
                c_0[span].detach(),
                getattr(self, f"operator_W_{layer_index}"),
                getattr(self, f"operator_R_{layer_index}"),
                getattr(self, f"operator_B_{layer_index}"),
                self.kind,
                self.hidden_size,
            )
            # Y is [T, D, B, H]: the directions side by side per step, as torch.nn returns them.
            layer_input = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], rows * self.hidden_size)
            finals_h.append(y_h)
            finals_c.append(y_c)
        return layer_input, torch.cat(finals_h), torch.cat(finals_c)


def replace_recurrent_layers(model: nn.Module, path: str = "auto", *, single_step: bool = False) -> list[str]:
    """Swap every rnnlab recurrent layer inside ``model`` (in place) for an :class:`ExportRecurrent`.

    ``path="auto"`` takes the ONNX operators where they can express the layer and the loop
    elsewhere. Returns one line per swapped layer saying which form it took and why.
    """
    if path not in (*PATHS, "auto"):
        raise ConfigError(f"recurrence path must be auto, native or loop; got {path!r}")
    notes = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, (RNN, LSTM, GRU)):
                continue
            refusal = native_refusal(child)
            chosen = path if path != "auto" else ("loop" if refusal else "native")
            if single_step:
                chosen = "loop"
            setattr(module, child_name, ExportRecurrent(child, chosen, single_step=single_step))
            full_name = f"{name}.{child_name}" if name else child_name
            how = (
                "cell equations, one step"
                if single_step
                else "ONNX operator with sequence_lens"
                if chosen == "native"
                else "ONNX Loop over the cell equations"
            )
            why = f" ({refusal})" if refusal and path == "auto" and not single_step else ""
            notes.append(f"{full_name}: {KIND_NAMES[cell_kind(child)]} → {how}{why}")
    return notes
