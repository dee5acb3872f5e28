"""Every model traces to ONNX with a symbolic batch and length, and onnxruntime agrees at new sizes.

The deployment stage (rnnlab.export) owns exporting; this guards that the models stay exportable
(no shape baked in at trace time, no data-dependent Python branches on the whole-sequence path).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime
import pytest
import torch
from model_helpers import SPECS, make_inputs, model_head_cases

from rnnlab.models import build_model

# torch.onnx has no operator for the cumulative product of minGRU / minLSTM's parallel scan
NOT_TRACEABLE = {
    name: f"{name}'s scan uses aten::cumprod, which torch.onnx cannot export" for name in ("mingru", "minlstm")
}


@pytest.mark.parametrize(
    ("name", "head"),
    [*model_head_cases(["classify"], NOT_TRACEABLE), ("gru+attn", "lm"), ("transformer", "lm"), ("tcn", "forecast")],
)
def test_exported_model_matches_pytorch_at_lengths_not_traced(name: str, head: str) -> None:
    spec = SPECS[head]
    torch.manual_seed(0)
    model = build_model(name, spec, hidden_size=8).eval()
    generator = torch.Generator().manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values recorded as constants
        torch.onnx.export(
            model,
            (make_inputs(spec, 2, 6, generator),),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch"}},
        )
    session = onnxruntime.InferenceSession(buffer.getvalue())
    for batch_size, seq_len in ((3, 11), (1, 4)):
        x = make_inputs(spec, batch_size, seq_len, generator)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)
