"""Export a training run, and compare what deployment changes: size, latency, test metric.

:func:`export_run` is what ``rnnlab export RUN --format onnx --out FILE`` calls. It rebuilds the
run's model, optionally prunes it (and fine-tunes it with the engine), writes the ONNX file
(checked by onnxruntime against PyTorch; int8 when asked) and measures each variant it made on the
run's own test split, so the report puts them side by side:

    variant   runtime       file        latency    accuracy  change
    float     PyTorch       139.2 KiB   0.464 ms   1.0000
    int8      PyTorch        42.9 KiB   0.659 ms   1.0000    +0.00 points
    float     onnxruntime   145.6 KiB   0.119 ms   1.0000    +0.00 points
    int8      onnxruntime    53.3 KiB   0.106 ms   1.0000    +0.00 points

(PyTorch's file is its state dict as ``torch.save`` writes it; ONNX's is the ``.onnx`` file,
graph included. ``Variant.weight_bytes`` has the weights alone.)

Latency is the median time of one call at batch 1: the whole test-length sequence (sequence mode)
or one step (step mode), after warm-up; onnxruntime gets as many threads as torch has
(``torch.get_num_threads()``), so both runtimes compete on equal terms.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from rnnlab.errors import ConfigError, unknown_name
from rnnlab.export.onnx import (
    ExportReport,
    OnnxModel,
    OnnxSequenceModule,
    example_input,
    export_onnx,
    step_refusal,
    weight_bytes,
)
from rnnlab.export.prune import check_fraction, compressed_bytes, finetune, prune_model
from rnnlab.export.quantise import quantize_model, serialized_bytes

if TYPE_CHECKING:
    from rnnlab.models.task_model import TaskModel

FORMATS = ("onnx",)
QUANTISATIONS = ("int8",)
LATENCY_REPEATS = 50


@dataclass
class Variant:
    """One row of the side-by-side report."""

    name: str  # "float", "int8", "pruned 50%", ...
    runtime: str  # "PyTorch" | "onnxruntime"
    weight_bytes: int  # the weights alone: PyTorch state dict as torch.save writes it, or the ONNX initialisers
    file_bytes: int  # the file you would ship: that state dict (PyTorch) or the .onnx file (graph included)
    compressed_bytes: int | None  # gzip of the weights: what zeros from pruning save
    latency_ms: float
    metrics: Mapping[str, float | None]


@dataclass
class RunExportReport:
    """What :func:`export_run` wrote and measured."""

    run_dir: Path
    export: ExportReport  # the file written (int8 when asked)
    float_export: ExportReport | None  # with int8: the float twin, checked against PyTorch within the tolerance
    metric: str  # the task's primary metric
    metric_mode: str  # "max" | "min"
    latency_unit: str  # what one latency call does
    variants: list[Variant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def change(self, variant: Variant) -> float | None:
        """``variant``'s primary metric minus the float PyTorch model's."""
        base = self.variants[0].metrics.get(self.metric)
        value = variant.metrics.get(self.metric)
        return None if base is None or value is None else value - base

    def describe_change(self, variant: Variant) -> str:
        """The change as a person reads it: points for shares (accuracy, F1), percent for errors."""
        change = self.change(variant)
        base = self.variants[0].metrics.get(self.metric)
        if change is None or variant is self.variants[0]:
            return ""
        if self.metric_mode == "max" and base is not None and 0.0 <= base <= 1.0:
            return f"{100 * change:+.2f} points"
        return f"{100 * change / abs(base):+.2f}%" if base else f"{change:+.4g}"

    def rows(self) -> list[dict[str, str]]:
        """The side-by-side table as text, one dict per variant (what ``rnnlab export`` prints)."""
        table = []
        for variant in self.variants:
            value = variant.metrics.get(self.metric)
            pruned = any(v.name.startswith("pruned") for v in self.variants)
            row = {"variant": variant.name, "runtime": variant.runtime, "file": _kib(variant.file_bytes)}
            if pruned:  # zeros only show once compressed
                row["gzip"] = _kib(variant.compressed_bytes) if variant.compressed_bytes is not None else "–"
            row["latency"] = f"{variant.latency_ms:.3f} ms"
            if any(v.metrics for v in self.variants):
                row[self.metric] = "" if value is None else f"{value:.4f}"
                row["change"] = self.describe_change(variant)
            table.append(row)
        return table


def _kib(size: int) -> str:
    return f"{size / 1024:,.1f} KiB"


def check_options(
    *, format: str = "onnx", quantize: str | None = None, prune: float | None = None, finetune_epochs: int = 0
) -> None:
    """Refuse bad options before any work, naming the option and the value."""
    if format not in FORMATS:
        raise unknown_name("export format", format, FORMATS)
    if quantize is not None and quantize not in QUANTISATIONS:
        raise unknown_name("quantisation", quantize, QUANTISATIONS)
    if prune is not None:
        check_fraction(prune)
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ConfigError(f"finetune epochs must be a whole number ≥ 0; got {finetune_epochs!r}")
    if finetune_epochs and prune is None:
        raise ConfigError("finetune epochs retrain a pruned model; give a prune fraction too (--prune FRACTION)")


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "onnx",
    step: bool = False,
    quantize: str | None = None,
    prune: float | None = None,
    prune_scope: str = "global",
    finetune_epochs: int = 0,
    recurrence: str = "auto",
    force: bool = False,
    evaluate: bool = True,
) -> RunExportReport:
    """Export the model of the finished run in ``run_dir`` to ``out`` and measure every variant.

    ``step``: the single-step model (unidirectional recurrent models). ``quantize="int8"``: the file
    written is int8 (its float twin is measured beside it). ``prune``: the share of weights to zero
    (in [0, 1)), over all matrices (``prune_scope="global"``) or per matrix (``"layer"``), then
    ``finetune_epochs`` of training with the engine. ``evaluate=False`` skips the test-split metrics.
    """
    from rnnlab.train import load_run

    check_options(format=format, quantize=quantize, prune=prune, finetune_epochs=finetune_epochs)
    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory (expected the directory `rnnlab train` wrote)")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; choose another --out or pass --force to overwrite it")
    config, model, task = load_run(run_dir)
    mode = "step" if step else "sequence"
    if step and step_refusal(model):
        raise ConfigError(
            f"the {task['model']} model of {run_dir} cannot be exported with --step: "
            f"{step_refusal(model)}. Export the whole-sequence model (without --step)"
        )
    metric, metric_mode = task["primary_metric"], task["primary_mode"]
    task_data = _load_test_data(config) if evaluate or finetune_epochs else None
    spec = model.spec
    length = spec.get("seq_len") or _typical_length(task_data) or 50
    latency_input = example_input(spec, 1, None if step else length, torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    latency_unit = ("one step" if step else f"one sequence of {length} steps") + f", batch 1, {threads} thread(s)"
    notes: list[str] = []

    def measure(name: str, runtime: str, module: nn.Module, *, onnx_path: Path | None = None) -> Variant:
        metrics = _evaluate(module, task_data, task) if evaluate else {}
        if onnx_path is not None:
            onnx_model = cast(OnnxSequenceModule, module).onnx_model  # the module measured over the file
            call = (
                (lambda: onnx_model.run_step(latency_input))
                if step
                else (lambda: onnx_model.run_sequence(latency_input))
            )
            return Variant(
                name, runtime, weight_bytes(onnx_path), onnx_path.stat().st_size, None, _median_ms(call), metrics
            )
        state_dict_bytes = serialized_bytes(module)
        with torch.inference_mode():
            step_model = cast("TaskModel", module)  # not an ONNX file: the model, pruned or quantised copy
            call = (lambda: step_model.step(latency_input)) if step else (lambda: module(latency_input))
            latency = _median_ms(call)
        return Variant(name, runtime, state_dict_bytes, state_dict_bytes, compressed_bytes(module), latency, metrics)

    variants = [measure("float", "PyTorch", model)]
    exported: nn.Module = model
    label = "float"
    if prune is not None:
        result = prune_model(model, prune, scope=prune_scope)
        label = f"pruned {prune:.0%}"
        notes.append(
            f"pruned {result.overall_sparsity:.1%} of {sum(m.numel() for m in result.masks.values()):,} "
            f"prunable weights ({prune_scope} magnitude threshold); biases, gains and embeddings kept"
        )
        exported = result.model
        variants.append(measure(label, "PyTorch", exported))
        if finetune_epochs:
            tuned = finetune(result, config, finetune_epochs, task_data=task_data)
            exported = tuned.model.eval()
            label = f"pruned {prune:.0%} +{finetune_epochs} ep"
            notes.append(f"fine-tuned {finetune_epochs} epoch(s) with the training engine; pruned weights held at zero")
            variants.append(measure(label, "PyTorch", exported))
    if quantize:
        quantized, quantise_notes = quantize_model(exported)
        notes.extend(quantise_notes)
        variants.append(measure(f"{label} int8" if label != "float" else "int8", "PyTorch", quantized))

    with tempfile.TemporaryDirectory(prefix="rnnlab-export-") as scratch:
        if quantize:
            float_path = Path(scratch) / "float.onnx"
            float_report = export_onnx(exported, float_path, mode=mode, recurrence=recurrence)
            report = export_onnx(exported, out, mode=mode, recurrence=recurrence, quantize=quantize, force=force)
            variants.append(
                measure(
                    label,
                    "onnxruntime",
                    OnnxSequenceModule(OnnxModel(float_path, threads=threads)),
                    onnx_path=float_path,
                )
            )
            variants.append(
                measure(
                    f"{label} int8" if label != "float" else "int8",
                    "onnxruntime",
                    OnnxSequenceModule(OnnxModel(out, threads=threads)),
                    onnx_path=out,
                )
            )
        else:
            float_report = None
            report = export_onnx(exported, out, mode=mode, recurrence=recurrence, force=force)
            variants.append(
                measure(label, "onnxruntime", OnnxSequenceModule(OnnxModel(out, threads=threads)), onnx_path=out)
            )
    return RunExportReport(run_dir, report, float_report, metric, metric_mode, latency_unit, variants, notes)


def _load_test_data(config) -> Any:
    from rnnlab.train import load_task_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_task_data(config)


def _typical_length(task_data: Any) -> int | None:
    """The median length of the test sequences, for tasks without a fixed length."""
    if task_data is None or len(task_data.test) == 0:
        return None
    lengths = [task_data.test[i][0].shape[0] for i in range(min(len(task_data.test), 200))]
    return int(statistics.median(lengths))


def _evaluate(module: nn.Module, task_data: Any, task: dict[str, Any]) -> dict[str, float]:
    from rnnlab.train import evaluate_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return evaluate_model(module, task_data.test, task["spec"], task["meta"])


def _median_ms(call, repeats: int = LATENCY_REPEATS) -> float:
    for _ in range(5):  # warm-up: first calls allocate and pick kernels
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
