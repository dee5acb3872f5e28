"""Deployment: ONNX export checked by onnxruntime, int8 quantisation, pruning, streaming inference.

    from rnnlab.export import export_onnx, StreamingPredictor
    report = export_onnx(model, "model.onnx")                 # whole sequence, checked at once
    export_onnx(model, "step.onnx", mode="step")              # one step, state in → output, state out
    predictor = StreamingPredictor("step.onnx")               # or StreamingPredictor(model)
    predictor.step({"sensor-1": x_t})

``export_run(run_dir, out, ...)`` does the same for a training run and reports file size, latency
and the test metric of each variant (float, int8, pruned) side by side: what ``rnnlab export``
prints. Files: ``onnx.py`` (export and check), ``recurrence.py`` (recurrent layers in ONNX form),
``quantise.py`` (int8), ``prune.py`` (magnitude pruning, fine-tuning), ``streaming.py``
(the streaming predictor), ``runs.py`` (run directories and the side-by-side report).
"""

from rnnlab.export.onnx import (
    MODES,
    TOLERANCE,
    ExportCheckError,
    ExportReport,
    OnnxModel,
    check_onnx,
    export_onnx,
    step_refusal,
)
from rnnlab.export.prune import PruneResult, finetune, prune_model
from rnnlab.export.quantise import quantize_model, quantize_onnx
from rnnlab.export.runs import RunExportReport, export_run
from rnnlab.export.streaming import StreamingPredictor

__all__ = [
    "MODES",
    "TOLERANCE",
    "ExportCheckError",
    "ExportReport",
    "OnnxModel",
    "PruneResult",
    "RunExportReport",
    "StreamingPredictor",
    "check_onnx",
    "export_onnx",
    "export_run",
    "finetune",
    "prune_model",
    "quantize_model",
    "quantize_onnx",
    "step_refusal",
]
