"""The recurrent layers in ONNX form (operators with sequence_lens, loops with masks) against the
layers' reference loop over the cells, for every cell, convention and extra."""

from __future__ import annotations

import pytest
import torch
from export_helpers import tiny

from rnnlab.export import export_onnx
from rnnlab.export.recurrence import ExportRecurrent, native_refusal, replace_recurrent_layers
from rnnlab.layers import GRU, LSTM, RNN, reference_path

VARIANTS = [
    (RNN, {}),
    (RNN, {"nonlinearity": "relu"}),
    (LSTM, {}),
    (GRU, {}),
    (GRU, {"convention": "cho"}),
    (LSTM, {"layer_norm": True}),
    (GRU, {"layer_norm": True}),
    (GRU, {"layer_norm": True, "convention": "cho"}),
    (RNN, {"layer_norm": True}),
    (LSTM, {"zoneout": 0.25}),
    (GRU, {"weight_norm": True}),
    (LSTM, {"bias": False}),
]


def variant_id(variant) -> str:
    layer_class, options = variant
    return "-".join([layer_class.__name__, *(f"{k}={v}" for k, v in options.items())])


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[variant_id(v) for v in VARIANTS])
def test_both_forms_equal_the_reference_loop(variant, bidirectional):
    layer_class, options = variant
    torch.manual_seed(0)
    layer = layer_class(3, 5, num_layers=2, batch_first=True, bidirectional=bidirectional, **options).eval()
    x = torch.randn(4, 7, 3)
    lengths = torch.tensor([7, 2, 5, 1])
    with torch.no_grad(), reference_path():
        expected, expected_state = layer(x, lengths=lengths)
    expected_state = expected_state if isinstance(expected_state, tuple) else (expected_state,)
    paths = ["loop"] if native_refusal(layer) else ["loop", "native"]
    for path in paths:
        with torch.no_grad():
            output, state = ExportRecurrent(layer, path)(x, lengths=lengths)
        state = state if isinstance(state, tuple) else (state,)
        torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)
        for ours, theirs in zip(state, expected_state):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_operators_refuse_what_they_cannot_express():
    assert "layer norm" in native_refusal(LSTM(2, 3, layer_norm=True))
    assert "zoneout" in native_refusal(GRU(2, 3, zoneout=0.1))
    assert native_refusal(GRU(2, 3, convention="cho")) is None  # linear_before_reset=0, z negated
    with pytest.raises(ValueError, match="cannot export this LSTM as an ONNX operator: layer norm"):
        ExportRecurrent(LSTM(2, 3, layer_norm=True, batch_first=True), "native")


def test_auto_picks_the_operator_unless_an_extra_needs_the_loop():
    model = tiny("lstm", "forecast", {"num_layers": 1, "zoneout": 0.2})
    notes = replace_recurrent_layers(model)
    assert notes == [
        "encoder.rnn: lstm → ONNX Loop over the cell equations (zoneout has no place in the ONNX "
        "LSTM/GRU/RNN operators)"
    ]
    plain = tiny("gru", "forecast", {"num_layers": 1})
    assert replace_recurrent_layers(plain) == ["encoder.rnn: gru → ONNX operator with sequence_lens"]


def test_zoneout_and_weight_norm_models_export_within_tolerance(tmp_path):
    for options in ({"num_layers": 2, "zoneout": 0.3}, {"num_layers": 2, "weight_norm": True}):
        model = tiny("gru", "tag", options)
        report = export_onnx(model, tmp_path / "model.onnx", force=True)
        assert report.max_abs_diff <= 1e-4, options
