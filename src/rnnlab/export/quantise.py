"""Dynamic int8 quantisation of the recurrent and linear weights, in PyTorch and in an ONNX file.

Dynamic quantisation stores each weight matrix as int8 with a scale (``W ≈ scale · W_int8``, one
scale per matrix) and quantises the activations on the fly, batch by batch, before each integer
matmul; nothing needs calibrating, and the weights take a quarter of the float32 bytes.

* PyTorch (:func:`quantize_model`): ``torch.ao.quantization.quantize_dynamic`` covers
  ``nn.LSTM``, ``nn.GRU`` and ``nn.Linear``. An rnnlab ``LSTM`` / ``GRU`` is handed to it as its
  torch.nn twin (same weights, weight norm applied), wrapped so that it keeps the rnnlab call
  (``lengths=``); an rnnlab ``RNN`` runs torch's quantised ``RNNCell`` over time. Layers with an
  extra that torch's quantised kernels lack (layer norm, zoneout, the Cho GRU) keep float weights,
  and the notes say so.
* ONNX (:func:`quantize_onnx`): onnxruntime's ``quantize_dynamic`` turns ``MatMul`` (also inside
  loops), ``LSTM``, ``Gather`` (embeddings) and ``Conv`` into their integer forms, with 7-bit
  weights (``reduce_range``) so that CPUs without VNNI do not saturate. It leaves the ``GRU`` and
  ``RNN`` operators in float; their weights are stored here as int8 with a scale per row behind
  ``DequantizeLinear`` (a quarter of the bytes, float compute on the fast operator). A GRU or RNN
  exported with ``recurrence="loop"`` (and every step model) is plain matmuls, which the quantiser
  turns into integer matmuls.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.layers import GRU, LSTM, RNN, reverse_within_lengths

#: onnxruntime operator types quantised in the ONNX file.
ONNX_QUANTISED_OPS = ("MatMul", "LSTM", "Gather", "Conv", "Attention")


# --------------------------------------------------------------------------------------------- PyTorch
@contextlib.contextmanager
def _torch_quantisation() -> Iterator[None]:
    """torch announces that ``torch.ao.quantization`` moves to the separate torchao package; it is
    still the eager dynamic quantisation that ships with torch, so the notice is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions", category=UserWarning)
        yield


def _float_twin(layer: LSTM | GRU) -> nn.Module:
    """The torch.nn layer computing what ``layer`` computes (weight norm folded into the weights)."""
    twin_class = {"LSTM": nn.LSTM, "GRU": nn.GRU}[layer.mode]
    twin = twin_class(
        layer.input_size,
        layer.hidden_size,
        layer.num_layers,
        bias=layer.bias,
        batch_first=True,
        bidirectional=layer.bidirectional,
    )
    state = {}
    for layer_index in range(layer.num_layers):
        for direction in range(2 if layer.bidirectional else 1):
            weights = layer._cell_weights(layer_index, direction)
            suffix = f"_l{layer_index}{'_reverse' if direction else ''}"
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                tensor = getattr(weights, name)
                if tensor is not None:
                    state[name + suffix] = tensor.detach().clone()
    twin.load_state_dict(state)
    return twin.eval()


class QuantizedRecurrent(nn.Module):
    """torch's dynamically quantised LSTM or GRU behind an rnnlab layer's call.

    ``forward(input, hx=None, lengths=None) -> (output, state)`` with ``input`` batch first; with
    ``lengths`` the batch is packed, so padding never enters the recurrence.
    """

    def __init__(self, layer: LSTM | GRU) -> None:
        super().__init__()
        _copy_shape(layer, self)
        holder = nn.Sequential(_float_twin(layer))
        with _torch_quantisation():
            self.layer = torch.ao.quantization.quantize_dynamic(holder, {nn.LSTM, nn.GRU}, dtype=torch.qint8)[0]

    def forward(self, input: Tensor, hx=None, lengths: Tensor | None = None):
        if lengths is None:
            return self.layer(input, hx)
        packed = pack_padded_sequence(input, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, state = self.layer(packed, hx)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=input.shape[1])
        return output, state


class QuantizedRNN(nn.Module):
    """A vanilla rnnlab ``RNN`` on torch's dynamically quantised ``RNNCell``, run over time with masks
    (torch has no quantised RNN layer): finished sequences keep their state, their outputs are 0."""

    num_layers: int  # set by _copy_shape, as the layer's
    hidden_size: int

    def __init__(self, layer: RNN) -> None:
        super().__init__()
        _copy_shape(layer, self)
        self.directions = 2 if layer.bidirectional else 1
        cells = []
        for layer_index in range(layer.num_layers):
            for direction in range(self.directions):
                weights = layer._cell_weights(layer_index, direction)
                cell = nn.RNNCell(
                    weights.weight_ih.shape[1], layer.hidden_size, bias=layer.bias, nonlinearity=layer.nonlinearity
                )
                names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                cell.load_state_dict(
                    {
                        name: getattr(weights, name).detach().clone()
                        for name in names
                        if getattr(weights, name) is not None
                    }
                )
                cells.append(cell)
        with _torch_quantisation():
            self.cells = torch.ao.quantization.quantize_dynamic(nn.ModuleList(cells), {nn.RNNCell}, dtype=torch.qint8)

    def forward(self, input: Tensor, hx: Tensor | None = None, lengths: Tensor | None = None):
        x = input.transpose(0, 1)  # [T, B, I]
        seq_len, batch_size = x.shape[:2]
        if lengths is None:
            lengths = torch.full((batch_size,), seq_len, dtype=torch.long)
        lengths = lengths.long().cpu()
        valid = (torch.arange(seq_len).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)
        if hx is None:
            hx = x.new_zeros(self.num_layers * self.directions, batch_size, self.hidden_size)
        finals, layer_input = [], x
        for layer_index in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                row = layer_index * self.directions + direction
                cell = self.cells[row]
                sequence = layer_input if direction == 0 else reverse_within_lengths(layer_input, lengths)
                h_t, steps = hx[row], []
                for x_t, valid_t in zip(sequence.unbind(0), valid.unbind(0)):
                    h_new = cell(x_t, h_t)
                    h_t = torch.where(valid_t, h_new, h_t)
                    steps.append(torch.where(valid_t, h_new, 0.0))
                output = torch.stack(steps)
                outputs.append(output if direction == 0 else reverse_within_lengths(output, lengths))
                finals.append(h_t)
            layer_input = outputs[0] if self.directions == 1 else torch.cat(outputs, dim=-1)
        return layer_input.transpose(0, 1), torch.stack(finals)


def _copy_shape(layer: nn.Module, replacement: nn.Module) -> None:
    """What callers read off a recurrent layer (the state's layout): kept by its quantised stand-in."""
    for name in ("mode", "num_layers", "bidirectional", "hidden_size", "input_size", "batch_first"):
        setattr(replacement, name, getattr(layer, name))


def _float_only_reason(layer: nn.Module) -> str | None:
    if getattr(layer, "layer_norm", False):
        return "layer norm"
    if getattr(layer, "zoneout", 0.0) > 0:
        return "zoneout"
    if getattr(layer, "convention", "torch") == "cho":
        return "the Cho GRU"
    if getattr(layer, "proj_size", 0) > 0:
        return "proj_size"
    return None


def quantize_model(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` with int8 dynamic quantisation of its recurrent and linear weights.

    Returns the quantised copy (evaluation mode; CPU) and notes naming what was quantised and what
    kept float weights, and why. The original model is left as it was.
    """
    quantized = copy.deepcopy(model).cpu().eval()
    notes = []
    for parent_name, parent in list(quantized.named_modules()):
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, (RNN, LSTM, GRU)):
                continue
            full_name = f"{parent_name}.{child_name}" if parent_name else child_name
            reason = _float_only_reason(child)
            if reason:
                notes.append(f"{full_name}: kept float ({reason} has no quantised kernel in torch)")
                continue
            replacement = QuantizedRNN(child) if isinstance(child, RNN) else QuantizedRecurrent(child)
            setattr(parent, child_name, replacement)
            notes.append(f"{full_name}: {type(child).__name__} weights int8 (torch dynamic quantisation)")
    before = sum(isinstance(m, nn.Linear) for m in quantized.modules())
    with _torch_quantisation():
        quantized = torch.ao.quantization.quantize_dynamic(quantized, {nn.Linear}, dtype=torch.qint8)
    if before:
        notes.append(f"{before} linear layer(s): weights int8")
    return quantized, notes


def serialized_bytes(module: nn.Module) -> int:
    """Bytes of ``module``'s state dict as ``torch.save`` writes it (int8 weights packed as torch keeps them)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def recurrent_weight_bytes(model: nn.Module) -> int:
    """Serialised bytes of the recurrent layers inside ``model`` (float or quantised)."""
    kinds = (RNN, LSTM, GRU, QuantizedRecurrent, QuantizedRNN)
    return sum(serialized_bytes(module) for module in model.modules() if isinstance(module, kinds))


# --------------------------------------------------------------------------------------------- ONNX
def quantize_onnx(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write an int8 copy of the ONNX file ``source`` to ``target`` (onnxruntime dynamic quantisation,
    subgraphs included so that the matmuls inside a recurrence loop are quantised too)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    # onnxruntime logs a warning recommending its pre-processing pass (shape inference and graph
    # optimisation for static quantisation); dynamic quantisation of these graphs does not need it.
    root.setLevel(logging.ERROR)
    try:
        # reduce_range: 7-bit weights. On x86 CPUs without VNNI (AVX2 only) the u8·s8 kernels add
        # pairs of products in int16, which 8-bit weights can saturate: measured here on an AVX2
        # machine, an LSTM's int8 error dropped from 17% to 0.3% of the output's range with it.
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            reduce_range=True,
            op_types_to_quantize=list(ONNX_QUANTISED_OPS),
            extra_options={"EnableSubgraph": True},
        )
    finally:
        root.setLevel(level)
    _int8_operator_weights(target)
    return Path(target)


def _int8_operator_weights(path: str | os.PathLike) -> None:
    """Store the weights of ``GRU`` and ``RNN`` operators as int8 behind ``DequantizeLinear``.

    onnxruntime has no integer kernel for these operators, so its quantiser leaves them alone. Here
    each matrix ``W`` ``[D, rows, cols]`` becomes ``W_int8 = round(W / s)`` with one scale per row
    (``s = max|W_row| / 127``, symmetric, so zero stays exact), and a ``DequantizeLinear`` node
    gives the operator ``s · W_int8`` back: the file holds a quarter of the bytes, the recurrence
    runs in float on the fast operator. (``recurrence="loop"`` gives integer matmuls instead.)
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    new_nodes = []
    for node in graph.node:
        if node.op_type not in ("GRU", "RNN"):
            continue
        for position in (1, 2):  # W, R
            name = node.input[position]
            if name not in initializers:
                continue
            weights = numpy_helper.to_array(initializers[name]).astype(np.float32)
            _directions, rows, _cols = weights.shape
            by_row = np.abs(weights).max(axis=(0, 2))  # one scale per row (gate unit), both directions
            scale = np.where(by_row > 0, by_row / 127.0, 1.0).astype(np.float32)
            quantised = np.clip(np.round(weights / scale[None, :, None]), -127, 127).astype(np.int8)
            graph.initializer.remove(initializers[name])
            graph.initializer.extend(
                [
                    numpy_helper.from_array(quantised, f"{name}_int8"),
                    numpy_helper.from_array(scale, f"{name}_scale"),
                    numpy_helper.from_array(np.zeros(rows, dtype=np.int8), f"{name}_zero_point"),
                ]
            )
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"],
                    [name],
                    name=f"{name}_DequantizeLinear",
                    axis=1,
                )
            )
    if new_nodes:
        # A graph's nodes must come in topological order: the dequantised weights first.
        nodes = new_nodes + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.save(proto, str(path))
