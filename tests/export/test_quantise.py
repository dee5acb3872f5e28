"""int8 dynamic quantisation: in PyTorch and in the ONNX file, GRU included."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from export_helpers import inputs, tiny

from rnnlab.export import OnnxModel, export_onnx, quantize_model
from rnnlab.export.onnx import _all_graphs, weight_bytes
from rnnlab.export.quantise import QuantizedRecurrent, QuantizedRNN, recurrent_weight_bytes


@pytest.mark.parametrize("name,bidirectional", [("lstm", False), ("gru", True), ("rnn", False)])
def test_torch_int8_shrinks_recurrent_weights_and_stays_close(name, bidirectional):
    model = tiny(name, "forecast", {"num_layers": 2, "bidirectional": bidirectional}, hidden_size=64)
    quantized, notes = quantize_model(model)
    layer_class = QuantizedRNN if name == "rnn" else QuantizedRecurrent
    assert isinstance(quantized.encoder.rnn, layer_class)
    assert any("weights int8" in note for note in notes)
    ratio = recurrent_weight_bytes(model) / recurrent_weight_bytes(quantized)
    assert ratio >= 3.0, f"{name}: recurrent weights only {ratio:.2f}× smaller"

    x = inputs(model.spec, 6, 15, torch.Generator().manual_seed(0))
    lengths = torch.tensor([15, 3, 9, 15, 1, 12])
    with torch.inference_mode():
        exact, approximate = model(x, lengths), quantized(x, lengths)
    error = (approximate - exact).abs().max()
    assert 0 < error < 0.05 * exact.abs().max()  # really rounded, yet a small fraction of the output's scale
    assert model.encoder.rnn.__class__.__name__ in ("RNN", "LSTM", "GRU")  # the original is untouched


def test_torch_int8_keeps_float_where_torch_has_no_kernel():
    model = tiny("lstm", "forecast", {"num_layers": 1, "layer_norm": True})
    quantized, notes = quantize_model(model)
    assert "kept float (layer norm" in " ".join(notes)
    x = inputs(model.spec, 2, 5, torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert (quantized(x) - model(x)).abs().max() < 0.05


def test_streaming_predictor_runs_a_quantised_model():
    from rnnlab.export import StreamingPredictor

    model = tiny("lstm", "forecast", {"num_layers": 2}, hidden_size=32)
    quantized, _ = quantize_model(model)
    predictor = StreamingPredictor(quantized)
    x = inputs(model.spec, 1, 6, torch.Generator().manual_seed(3))[0]
    outputs = predictor.feed("s", x)
    with torch.inference_mode():
        expected = model(x[None])[0].numpy()
    assert outputs.shape == (6, 4, 2)
    assert np.abs(outputs[-1] - expected).max() < 0.05 * np.abs(expected).max()


def test_quantised_model_streams_close_to_its_whole_sequence():
    """A quantised model still steps with a carried state (the Python API's int8 streaming). Not
    exactly like the whole sequence: dynamic quantisation picks each call's activation scale from
    the values in that call (a whole sequence, or one step), so the two round differently."""
    model = tiny("gru", "lm", {"num_layers": 2}, hidden_size=32)
    quantized, _ = quantize_model(model)
    x = inputs(model.spec, 2, 7, torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = quantized(x)
        state, steps = None, []
        for t in range(7):
            output, state = quantized.step(x[:, t], state)
            steps.append(output)
    difference = (torch.stack(steps, 1) - whole).abs().max()
    assert difference < 0.05 * whole.abs().max()  # the size of int8 rounding, as for the whole sequence


@pytest.mark.parametrize(
    "name,mode,recurrence,operator",
    [
        ("lstm", "sequence", "auto", "DynamicQuantizeLSTM"),  # onnxruntime's integer LSTM
        ("gru", "sequence", "auto", "DequantizeLinear"),  # int8 weights in front of the GRU operator
        ("rnn", "sequence", "auto", "DequantizeLinear"),
        ("gru", "sequence", "loop", "MatMulInteger"),  # integer matmuls inside the loop
        ("gru", "step", "auto", "MatMulInteger"),
    ],
)
def test_onnx_int8_quantises_every_recurrent_family(tmp_path, name, mode, recurrence, operator):
    model = tiny(name, "forecast", {"num_layers": 2}, hidden_size=64)
    float_report = export_onnx(model, tmp_path / "float.onnx", mode=mode, recurrence=recurrence)
    export_onnx(model, tmp_path / "int8.onnx", mode=mode, recurrence=recurrence, quantize="int8")
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    ops = {node.op_type for g in _all_graphs(graph) for node in g.node}
    assert operator in ops
    float_initialisers = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for node in graph.node:
        if node.op_type in ("GRU", "RNN", "LSTM"):  # no recurrent weight matrix left in float
            assert not set(node.input[1:3]) & float_initialisers, node.op_type
    shrink = weight_bytes(tmp_path / "float.onnx") / weight_bytes(tmp_path / "int8.onnx")
    assert shrink >= 3.0, f"{name} {mode}: weights only {shrink:.2f}× smaller"
    assert OnnxModel(tmp_path / "int8.onnx").metadata["quantized"] == "int8"
    assert float_report.max_abs_diff <= 1e-4

    x = inputs(model.spec, 4, 11, torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = model(x).numpy()
    int8 = OnnxModel(tmp_path / "int8.onnx")
    if mode == "sequence":
        got = int8.run_sequence(x)
    else:
        state = None
        for t in range(11):
            got, state = int8.run_step(x[:, t], state)
    error = np.abs(got - expected).max()
    assert 0 < error < 0.05 * np.abs(expected).max()


def test_unknown_quantisation_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown quantisation 'int4'.*int8"):
        export_onnx(tiny("gru", "forecast", {"num_layers": 1}), tmp_path / "m.onnx", quantize="int4")
