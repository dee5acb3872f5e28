"""Export a model to ONNX, run the file through onnxruntime at once and compare it with PyTorch.

Two modes:

* ``"sequence"``: the whole-sequence model, inputs ``x`` (``[batch, time]`` token ids or
  ``[batch, time, features]``) and ``lengths`` (``[batch]``, valid steps of each sequence, padding
  on the right), output ``output`` shaped as the model's head says. Batch size and length are
  dynamic. ONNX has no packed sequences: recurrent layers get their lengths through the operators'
  ``sequence_lens`` or through masks in a loop (see :mod:`rnnlab.export.recurrence`).
* ``"step"``: the single-step model a real-time system calls once per sample, for unidirectional
  recurrent models without attention: inputs ``x`` (one step, ``[batch]`` or ``[batch, features]``)
  and the state ``h`` (and ``c`` for an LSTM), each ``[num_layers, batch, hidden_size]``; outputs
  ``output`` (what the whole-sequence model gives at this step) and the new state ``h_out``
  (``c_out``). A zero state starts a sequence.

The export is traced at one length (``EXPORT_LENGTH``) and checked at several others, none equal
to it, and at batch sizes other than the traced one; the largest absolute difference from the
PyTorch model must stay within ``tolerance`` (1e-4) or the export fails, and the file is written
to a temporary name and renamed only once it has passed, so a failed export leaves nothing behind.
The file carries its description (mode, model, task spec, state shapes) as ONNX metadata under the
key ``rnnlab``; :class:`OnnxModel` and :class:`rnnlab.export.StreamingPredictor` read it.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from rnnlab.errors import ConfigError, RnnlabError, unknown_name
from rnnlab.export.recurrence import replace_recurrent_layers
from rnnlab.io import atomic_write

if TYPE_CHECKING:
    from rnnlab.models.task_model import TaskModel

MODES = ("sequence", "step")
RECURRENCE_PATHS = ("auto", "native", "loop")
OPSET = 17
TOLERANCE = 1e-4
EXPORT_BATCH, EXPORT_LENGTH = 2, 6
#: (batch size, length) pairs the check runs: lengths and batch sizes differ from the traced ones.
CHECK_SHAPES = ((1, 1), (3, 4), (5, 11), (2, 23))
METADATA_KEY = "rnnlab"
FORMAT_VERSION = 1


class ExportCheckError(RnnlabError):
    """onnxruntime disagrees with PyTorch beyond the tolerance, or the file does not run."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how it compared with PyTorch."""

    path: Path
    mode: str
    model: str
    file_bytes: int
    max_abs_diff: float  # largest |onnxruntime − PyTorch| over every checked output element
    tolerance: float
    checked: list[str]  # the shapes run through onnxruntime ("batch 3 × length 4", ...)
    export_shape: str
    recurrence: list[str] = field(default_factory=list)  # how each recurrent layer was written
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    quantized: str | None = None
    float_max_abs_diff: float | None = None  # int8 files: the float file's difference, held to the tolerance

    def summary(self) -> str:
        shapes = "; ".join(self.checked)
        return (
            f"{self.path} ({self.mode} mode, {self.file_bytes / 1024:.1f} KiB): max |onnxruntime − PyTorch| = "
            f"{self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}) over {shapes}; "
            f"traced at {self.export_shape}"
        )


# --------------------------------------------------------------------------------------------- checks
def step_refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot run one step at a time (``None`` when it can)."""
    if not getattr(model, "stateful", False):
        return (
            f"its {type(getattr(model, 'encoder', model)).__name__} has no recurrent state to carry from one "
            "step to the next"
        )
    if getattr(model, "attention", None) is not None:
        return "its attention reads all earlier outputs, which no fixed-size state holds"
    if getattr(model.encoder, "bidirectional", False):
        return "it is bidirectional: the backward direction starts from the end of the sequence"
    return None


def _check_exportable(model: nn.Module, mode: str, recurrence: str) -> None:
    if mode not in MODES:
        raise unknown_name("export mode", mode, MODES)
    if recurrence not in RECURRENCE_PATHS:
        raise unknown_name("recurrence path", recurrence, RECURRENCE_PATHS)
    if not hasattr(model, "spec") or not hasattr(model, "encoder"):
        raise ConfigError(
            f"export_onnx expects an rnnlab TaskModel (from build_model or load_run); got {type(model).__name__}"
        )
    # An encoder whose computation an ONNX trace cannot follow says why (informer, transformer-xl).
    refusal = getattr(model.encoder, "onnx_refusal", None)
    if refusal:
        raise ConfigError(f"model {model.name!r} cannot be exported to ONNX: {refusal}")
    if mode == "step":
        refusal = step_refusal(model)
        if refusal:
            raise ConfigError(
                f"model {model.name!r} cannot be exported in step mode: {refusal}. "
                "Export the whole-sequence model instead (without --step)"
            )


# --------------------------------------------------------------------------------------------- graphs
class _SequenceGraph(nn.Module):
    """``(x, lengths) -> output``: the traced whole-sequence model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(x, lengths)


class _StepGraph(nn.Module):
    """``(x, h[, c]) -> (output, h_out[, c_out])``: one step with the state in and out."""

    def __init__(self, model: TaskModel, has_cell_state: bool) -> None:
        super().__init__()
        self.model = model
        self.has_cell_state = has_cell_state

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None):
        state = (h, c) if self.has_cell_state else h
        output, state = self.model.step(x, state)
        return (output, *state) if self.has_cell_state else (output, state)


def state_layout(model: TaskModel) -> list[dict[str, Any]]:
    """The step model's state tensors: name and shape (``"batch"`` for the dynamic axis)."""
    layer: Any = model.encoder.rnn  # an rnnlab layer, or its quantised stand-in with the same shape attributes
    rows = layer.num_layers * (2 if layer.bidirectional else 1)
    names = ("h", "c") if layer.mode == "LSTM" else ("h",)  # torch.nn's mode: LSTM, GRU, RNN_TANH, RNN_RELU
    return [{"name": name, "shape": [rows, "batch", layer.hidden_size]} for name in names]


def example_input(
    spec: dict[str, Any], batch_size: int, length: int | None, generator: torch.Generator
) -> torch.Tensor:
    """Random input of the model's kind: token ids ``[B, T]`` or features ``[B, T, F]`` (no ``T``
    when ``length`` is None: one step)."""
    shape = (batch_size,) if length is None else (batch_size, length)
    if spec["vocab_size"] is not None:
        return torch.randint(0, spec["vocab_size"], shape, generator=generator)
    return torch.randn(*shape, spec["input_size"], generator=generator)


def _example_lengths(batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Lengths in ``[1, length]`` with the first sequence full, so the padded length is ``length``."""
    lengths = torch.randint(1, length + 1, (batch_size,), generator=generator)
    lengths[0] = length
    return lengths


# --------------------------------------------------------------------------------------------- export
def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    mode: str = "sequence",
    recurrence: str = "auto",
    quantize: str | None = None,
    force: bool = False,
    tolerance: float = TOLERANCE,
    check_shapes: tuple[tuple[int, int], ...] = CHECK_SHAPES,
    seed: int = 0,
) -> ExportReport:
    """Write ``model`` (an rnnlab ``TaskModel``) to ``path`` as ONNX and check it with onnxruntime.

    ``mode``: ``"sequence"`` or ``"step"`` (module docstring). ``recurrence``: how recurrent layers
    are written: ``"native"`` ONNX operators, a ``"loop"`` over the cell equations, or ``"auto"``
    (operators where they can express the layer). ``quantize="int8"``: after the float file has
    passed its check, quantise it with :func:`rnnlab.export.quantise.quantize_onnx`; the report's
    difference is then the int8 file's from the float PyTorch model, for information, not held to
    the tolerance (int8 rounding is larger; the test metric says what it costs).
    ``force``: overwrite an existing file. Raises :class:`ExportCheckError` when onnxruntime differs
    from PyTorch by more than ``tolerance``; nothing is written then.
    """
    path = Path(path)
    _check_exportable(model, mode, recurrence)
    if quantize not in (None, "int8"):
        raise unknown_name("quantisation", str(quantize), ("int8",))
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a file name such as model.onnx")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; choose another output or pass force=True (--force) to overwrite it")
    task_model = cast("TaskModel", model)  # _check_exportable: it has a spec and an encoder
    was_training = model.training
    try:
        return _export(task_model.eval(), path, mode, recurrence, quantize, tolerance, check_shapes, seed)
    finally:
        model.train(was_training)


def _export(
    model: TaskModel,
    path: Path,
    mode: str,
    recurrence: str,
    quantize: str | None,
    tolerance: float,
    check_shapes: tuple[tuple[int, int], ...],
    seed: int,
) -> ExportReport:
    export_copy = copy.deepcopy(model).eval()
    notes = replace_recurrent_layers(export_copy, recurrence, single_step=mode == "step")
    generator = torch.Generator().manual_seed(seed)
    spec = model.spec
    if mode == "step":
        layout = state_layout(model)
        graph: nn.Module = _StepGraph(export_copy, has_cell_state=len(layout) == 2)
        state_names = [item["name"] for item in layout]
        args = (
            example_input(spec, EXPORT_BATCH, None, generator),
            *[torch.zeros(item["shape"][0], EXPORT_BATCH, item["shape"][2]) for item in layout],
        )
        input_names = ["x", *state_names]
        output_names = ["output", *[f"{name}_out" for name in state_names]]
        dynamic_axes = {"x": {0: "batch"}, "output": {0: "batch"}}
        dynamic_axes.update({name: {1: "batch"} for name in state_names})
        dynamic_axes.update({f"{name}_out": {1: "batch"} for name in state_names})
        export_shape = f"batch {EXPORT_BATCH}, one step"
    else:
        layout = []
        graph = _SequenceGraph(export_copy)
        args = (
            example_input(spec, EXPORT_BATCH, EXPORT_LENGTH, generator),
            _example_lengths(EXPORT_BATCH, EXPORT_LENGTH, generator),
        )
        input_names, output_names = ["x", "lengths"], ["output"]
        output_axes = {0: "batch", 1: "time"} if model.per_step else {0: "batch"}
        dynamic_axes = {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "output": output_axes}
        export_shape = f"batch {EXPORT_BATCH} × length {EXPORT_LENGTH}"
    metadata = {
        "format_version": FORMAT_VERSION,
        "mode": mode,
        "model": model.name,
        "spec": spec,
        "options": getattr(model, "options", {}),
        "per_step": bool(model.per_step),
        "inputs": input_names,
        "outputs": output_names,
        "state": layout,
        "recurrence": notes,
        "quantized": quantize,
    }
    report: dict[str, Any] = {}

    def write(tmp: str) -> None:
        float_path = tmp
        with tempfile.TemporaryDirectory() as scratch:
            if quantize:
                float_path = os.path.join(scratch, "float.onnx")
            _trace_to_file(graph, args, float_path, input_names, output_names, dynamic_axes)
            _finish_file(
                float_path,
                {**metadata, "quantized": None},
                graph_inputs=args,
                input_names=input_names,
                dynamic_axes=dynamic_axes,
            )
            difference, checked = check_onnx(model, float_path, check_shapes=check_shapes, seed=seed)
            if difference > tolerance:
                raise ExportCheckError(
                    f"onnxruntime differs from PyTorch by {difference:.3e} (tolerance {tolerance:.0e}) on "
                    f"{model.name} in {mode} mode; nothing was written to {path}"
                )
            report.update(max_abs_diff=difference, checked=checked)
            if quantize:
                from rnnlab.export.quantise import quantize_onnx

                quantize_onnx(float_path, tmp)
                _add_metadata(tmp, metadata)
                report["float_max_abs_diff"] = difference
                report["max_abs_diff"], _ = check_onnx(model, tmp, check_shapes=check_shapes, seed=seed)

    atomic_write(path, write)
    return ExportReport(
        path=path,
        mode=mode,
        model=model.name,
        file_bytes=path.stat().st_size,
        max_abs_diff=report["max_abs_diff"],
        tolerance=tolerance,
        checked=report["checked"],
        export_shape=export_shape,
        recurrence=notes,
        inputs=input_names,
        outputs=output_names,
        quantized=quantize,
        float_max_abs_diff=report.get("float_max_abs_diff"),
    )


def _trace_to_file(
    graph: nn.Module,
    args: tuple,
    path: str,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    # Traced with gradients enabled: under no_grad torch.nn's Transformer layers take a fused fast
    # path (aten::_transformer_encoder_layer_fwd) that has no ONNX form.
    with warnings.catch_warnings(), torch.enable_grad():
        # The TorchScript exporter (no onnxscript needed) warns that it is the legacy one, and the
        # trace warns about Python values it records as constants; both are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            args,
            path,
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )


def _finish_file(
    path: str,
    metadata: dict[str, Any],
    *,
    graph_inputs: tuple,
    input_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Declare inputs the graph does not read (a TCN tagger ignores ``lengths``: padding sits after
    every valid step of a causal network), so every file of a mode takes the same inputs; then
    add the description."""
    import onnx

    proto = onnx.load(path)
    declared = {value.name for value in proto.graph.input}
    for name, example in zip(input_names, graph_inputs):
        if name in declared:
            continue
        element = onnx.TensorProto.INT64 if not example.is_floating_point() else onnx.TensorProto.FLOAT
        shape = [dynamic_axes.get(name, {}).get(axis, size) for axis, size in enumerate(example.shape)]
        proto.graph.input.append(onnx.helper.make_tensor_value_info(name, element, shape))
    onnx.save(proto, path)
    _add_metadata(path, metadata)


def _add_metadata(path: str, metadata: dict[str, Any]) -> None:
    """Store the description under ``rnnlab``; drop the exporter's per-node doc strings, which hold
    the exporting machine's source paths and are a quarter of a small int8 file."""
    import onnx

    proto = onnx.load(path)
    for graph in _all_graphs(proto.graph):
        for node in graph.node:
            node.doc_string = ""
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.producer_name = "rnnlab"
    onnx.save(proto, path)


def _all_graphs(graph):
    """``graph`` and every subgraph (loop bodies) inside it."""
    import onnx

    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_graphs(attribute.g)


def weight_bytes(path: str | os.PathLike) -> int:
    """Bytes of the weights (initialisers and constant tensors, loop bodies included) of an ONNX file."""
    import onnx

    total = 0
    for graph in _all_graphs(onnx.load(str(path)).graph):
        total += sum(onnx.numpy_helper.to_array(tensor).nbytes for tensor in graph.initializer)
        for node in graph.node:
            if node.op_type == "Constant":
                total += sum(onnx.numpy_helper.to_array(a.t).nbytes for a in node.attribute if a.name == "value")
    return total


# --------------------------------------------------------------------------------------------- running
class OnnxModel:
    """An rnnlab ONNX file opened in onnxruntime, with the description it carries.

    ``run_sequence(x, lengths)`` (sequence files) and ``run_step(x, state)`` (step files) take and
    return numpy arrays. ``threads`` sets onnxruntime's intra-op threads (default: its own choice).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such ONNX file")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as error:  # onnx raises DecodeError and friends for a file that is not ONNX
            raise ConfigError(f"{self.path} is not an ONNX file ({type(error).__name__}: {error})") from None
        described = {entry.key: entry.value for entry in proto.metadata_props}
        if METADATA_KEY not in described:
            raise ConfigError(
                f"{self.path} is an ONNX file but not one rnnlab exported (no '{METADATA_KEY}' "
                "metadata); export it with `rnnlab export RUN --format onnx`"
            )
        self.metadata: dict[str, Any] = json.loads(described[METADATA_KEY])
        if self.metadata.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"{self.path}: rnnlab ONNX format version {self.metadata.get('format_version')!r}; "
                f"this rnnlab reads version {FORMAT_VERSION}"
            )
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.mode: str = self.metadata["mode"]
        self.spec: dict[str, Any] = self.metadata["spec"]
        self.state: list[dict[str, Any]] = self.metadata["state"]
        self.per_step: bool = self.metadata["per_step"]
        self.output_names: list[str] = self.metadata["outputs"]

    def _input(self, x: Any) -> np.ndarray:
        array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return array.astype(np.int64 if self.spec["vocab_size"] is not None else np.float32, copy=False)

    def run_sequence(self, x: Any, lengths: Any = None) -> np.ndarray:
        if self.mode != "sequence":
            raise ConfigError(f"{self.path} is a {self.mode}-mode export; run_sequence needs a whole-sequence export")
        x = self._input(x)
        if lengths is None:
            lengths = np.full(x.shape[0], x.shape[1], dtype=np.int64)
        lengths = lengths.detach().cpu().numpy() if isinstance(lengths, torch.Tensor) else np.asarray(lengths)
        return self.session.run(["output"], {"x": x, "lengths": lengths.astype(np.int64)})[0]

    def zero_state(self, batch_size: int) -> list[np.ndarray]:
        return [np.zeros((item["shape"][0], batch_size, item["shape"][2]), dtype=np.float32) for item in self.state]

    def run_step(self, x: Any, state: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        if self.mode != "step":
            raise ConfigError(f"{self.path} is a {self.mode}-mode export; run_step needs a step export (--step)")
        x = self._input(x)
        state = self.zero_state(x.shape[0]) if state is None else state
        feeds = {"x": x, **{item["name"]: value for item, value in zip(self.state, state)}}
        output, *new_state = self.session.run(self.output_names, feeds)
        return output, new_state


class OnnxSequenceModule(nn.Module):
    """An ONNX file behind the ``model(x, lengths)`` call of a ``TaskModel`` (evaluation only).

    Sequence files run whole; step files are stepped through time, and each sequence's output is
    read at its last valid step (sequence heads) or at every step (per-step heads).
    """

    def __init__(self, onnx_model: OnnxModel) -> None:
        super().__init__()
        self.onnx_model = onnx_model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        model = self.onnx_model
        if model.mode == "sequence":
            return torch.from_numpy(model.run_sequence(x, lengths))
        state, outputs = None, []
        for t in range(x.shape[1]):
            output, state = model.run_step(x[:, t], state)
            outputs.append(torch.from_numpy(output))
        stacked = torch.stack(outputs, 1)  # [B, T, ...]
        if model.per_step:
            return stacked
        if lengths is None:
            return stacked[:, -1]
        return stacked[torch.arange(x.shape[0]), lengths.long() - 1]


def check_onnx(
    model: TaskModel, path: str | os.PathLike, *, check_shapes=CHECK_SHAPES, seed: int = 0
) -> tuple[float, list[str]]:
    """Run the ONNX file at ``check_shapes`` and return the largest |onnxruntime − PyTorch| and what ran.

    Sequence files get random lengths in ``[1, T]`` per sequence (padding on the right); per-step
    outputs are compared on the valid steps. Step files are stepped through whole sequences from a
    zero state; each step's output and the final state are compared with PyTorch's ``step``.
    """
    onnx_model = OnnxModel(path)
    generator = torch.Generator().manual_seed(seed + 1)
    spec = model.spec
    worst, checked = 0.0, []
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a TCN's receptive-field note at long check lengths
        for batch_size, length in check_shapes:
            x = example_input(spec, batch_size, length, generator)
            if onnx_model.mode == "sequence":
                lengths = _example_lengths(batch_size, length, generator)
                expected = model(x, lengths).numpy()
                got = onnx_model.run_sequence(x, lengths)
                if got.shape != expected.shape:
                    raise ExportCheckError(
                        f"onnxruntime gave output shape {list(got.shape)}, PyTorch "
                        f"{list(expected.shape)} (batch {batch_size} × length {length})"
                    )
                if model.per_step:
                    valid = np.arange(length)[None, :] < lengths.numpy()[:, None]
                    expected, got = expected[valid], got[valid]
                worst = max(worst, float(np.abs(got - expected).max()))
                checked.append(f"batch {batch_size} × length {length}")
            else:
                state, torch_state = None, None
                for t in range(length):
                    expected, torch_state = model.step(x[:, t], torch_state)
                    got, state = onnx_model.run_step(x[:, t], state)
                    worst = max(worst, float(np.abs(got - expected.numpy()).max()))
                torch_states = torch_state if isinstance(torch_state, tuple) else (torch_state,)
                assert state is not None  # at least one step ran
                for ours, theirs in zip(state, torch_states):
                    worst = max(worst, float(np.abs(ours - theirs.numpy()).max()))
                checked.append(f"batch {batch_size} × {length} steps")
    return worst, checked
