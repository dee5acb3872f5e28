"""ONNX export: every model family in both modes, checked by onnxruntime against PyTorch.

The check inside ``export_onnx`` is itself under test here, so each test also runs the written file
in onnxruntime on fresh inputs of its own (lengths and batch sizes other than the traced ones) and
compares with the PyTorch model.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import inputs, tiny

from rnnlab.export import ExportCheckError, OnnxModel, export_onnx
from rnnlab.export.onnx import EXPORT_LENGTH, METADATA_KEY

# (model name, task, build options): every family, with layers, both directions and layer norm.
SEQUENCE_MATRIX = [
    ("rnn", "classify", {"num_layers": 2}),
    ("lstm", "forecast", {"num_layers": 2}),
    ("gru", "regress", {"num_layers": 2}),
    ("lstm", "tag", {"num_layers": 2, "bidirectional": True}),
    ("gru", "classify", {"num_layers": 2, "layer_norm": True, "bidirectional": True}),
    ("lstm+attn", "classify", {"num_layers": 1}),
    ("gru+attn", "lm", {"num_layers": 1}),
    ("tcn", "forecast", {}),
    ("tcn", "tag", {}),
    ("transformer", "classify", {"num_layers": 1}),
    ("transformer", "lm", {"num_layers": 1}),
]
STEP_MATRIX = [
    ("rnn", "forecast", {"num_layers": 2}),
    ("lstm", "classify", {"num_layers": 2}),
    ("gru", "lm", {"num_layers": 2}),
    ("lstm", "regress", {"num_layers": 1, "layer_norm": True}),
    ("gru", "forecast", {"num_layers": 1, "convention": "cho"}),
]
# Families that cannot run one step at a time, and the reason the refusal must name.
STEP_REFUSED = [
    ("lstm", "tag", {"bidirectional": True}, "bidirectional"),
    ("gru+attn", "classify", {}, "attention"),
    ("tcn", "forecast", {}, "no recurrent state"),
    ("transformer", "lm", {}, "no recurrent state"),
]
FRESH_SHAPES = ((4, 9), (1, 17), (6, 2))  # (batch, length): none traced, none used by the export's own check


@pytest.mark.filterwarnings("ignore:TCN receptive field")  # length 17 reaches past a TCN built for 12
@pytest.mark.parametrize(
    "name,task,options", SEQUENCE_MATRIX, ids=[f"{n}-{t}-{'-'.join(o)}" for n, t, o in SEQUENCE_MATRIX]
)
def test_sequence_export_matches_pytorch_on_unseen_lengths(tmp_path, name, task, options):
    model = tiny(name, task, options)
    path = tmp_path / "model.onnx"
    report = export_onnx(model, path)
    assert report.max_abs_diff <= 1e-4
    assert all(f"length {EXPORT_LENGTH}" not in shape for shape in report.checked)

    session = ort.InferenceSession(str(path))
    generator = torch.Generator().manual_seed(7)
    for batch, length in FRESH_SHAPES:
        x = inputs(model.spec, batch, length, generator)
        lengths = torch.randint(1, length + 1, (batch,), generator=generator)
        lengths[-1] = length
        got = session.run(["output"], {"x": x.numpy(), "lengths": lengths.numpy()})[0]
        with torch.inference_mode():
            expected = model(x, lengths).numpy()
        assert got.shape == expected.shape
        if model.per_step:  # padded steps carry no prediction; compare the valid ones
            valid = np.arange(length)[None, :] < lengths.numpy()[:, None]
            got, expected = got[valid], expected[valid]
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_native_and_loop_recurrences_give_the_same_file_outputs(tmp_path):
    """The two ONNX forms of a recurrent layer (operator with sequence_lens, loop with masks)."""
    model = tiny("gru", "tag", {"num_layers": 2, "bidirectional": True})
    native = export_onnx(model, tmp_path / "native.onnx", recurrence="native")
    loop = export_onnx(model, tmp_path / "loop.onnx", recurrence="loop")
    ops = {
        kind: {node.op_type for node in onnx.load(str(tmp_path / f"{kind}.onnx")).graph.node}
        for kind in ("native", "loop")
    }
    assert "GRU" in ops["native"] and "Loop" not in ops["native"]
    assert "Loop" in ops["loop"] and "GRU" not in ops["loop"]
    assert max(native.max_abs_diff, loop.max_abs_diff) <= 1e-4


@pytest.mark.parametrize("name,task,options", STEP_MATRIX, ids=[f"{n}-{t}-{'-'.join(o)}" for n, t, o in STEP_MATRIX])
def test_step_export_streams_like_the_whole_sequence(tmp_path, name, task, options):
    model = tiny(name, task, options)
    path = tmp_path / "step.onnx"
    report = export_onnx(model, path, mode="step")
    assert report.max_abs_diff <= 1e-4
    onnx_model = OnnxModel(path)
    state_names = [item["name"] for item in onnx_model.state]
    assert state_names == (["h", "c"] if name == "lstm" else ["h"])

    generator = torch.Generator().manual_seed(3)
    batch, length = 3, 10
    x = inputs(model.spec, batch, length, generator)
    with torch.inference_mode():
        whole, whole_state = model(x, return_state=True)
    state, steps = None, []
    for t in range(length):
        output, state = onnx_model.run_step(x[:, t], state)
        steps.append(output)
    if model.per_step:
        np.testing.assert_allclose(np.stack(steps, 1), whole.numpy(), atol=1e-4, rtol=0)
    else:
        np.testing.assert_allclose(steps[-1], whole.numpy(), atol=1e-4, rtol=0)
    whole_state = whole_state if isinstance(whole_state, tuple) else (whole_state,)
    for ours, theirs in zip(state, whole_state):
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name,task,options,reason", STEP_REFUSED, ids=[r[0] for r in STEP_REFUSED])
def test_step_mode_is_refused_with_the_reason(tmp_path, name, task, options, reason):
    model = tiny(name, task, options)
    path = tmp_path / "step.onnx"
    with pytest.raises(ValueError, match=reason) as error:
        export_onnx(model, path, mode="step")
    assert name in str(error.value) and "without --step" in str(error.value)
    assert not path.exists()


def test_file_describes_itself(tmp_path):
    model = tiny("lstm", "classify", {"num_layers": 2})
    path = tmp_path / "step.onnx"
    export_onnx(model, path, mode="step")
    proto = onnx.load(str(path))
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert metadata["mode"] == "step" and metadata["model"] == "lstm"
    assert metadata["state"] == [{"name": "h", "shape": [2, "batch", 8]}, {"name": "c", "shape": [2, "batch", 8]}]
    assert [i.name for i in proto.graph.input] == ["x", "h", "c"]
    assert all(not node.doc_string for node in proto.graph.node)  # no source paths of the exporting machine


def test_existing_file_is_refused_unless_forced(tmp_path):
    model = tiny("gru", "regress", {"num_layers": 1})
    path = tmp_path / "model.onnx"
    path.write_text("keep me")
    with pytest.raises(ValueError, match=r"exists.*force"):
        export_onnx(model, path)
    assert path.read_text() == "keep me"
    export_onnx(model, path, force=True)
    assert onnx.load(str(path)).graph.node


def test_failed_check_leaves_no_file(tmp_path, monkeypatch):
    """A file onnxruntime disagrees on is never left behind, not even half-written."""
    import rnnlab.export.onnx as onnx_module

    monkeypatch.setattr(onnx_module, "check_onnx", lambda *args, **kwargs: (0.5, ["batch 1 × length 1"]))
    model = tiny("lstm", "classify", {"num_layers": 1})
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportCheckError, match=r"differs from PyTorch by 5.000e-01"):
        export_onnx(model, path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_mode_and_path_are_named(tmp_path):
    model = tiny("lstm", "classify", {"num_layers": 1})
    with pytest.raises(ValueError, match="unknown export mode 'stpe'; did you mean 'step'"):
        export_onnx(model, tmp_path / "m.onnx", mode="stpe")
    with pytest.raises(ValueError, match="unknown recurrence path 'loops'"):
        export_onnx(model, tmp_path / "m.onnx", recurrence="loops")
    with pytest.raises(ValueError, match="TaskModel"):
        export_onnx(torch.nn.LSTM(3, 4), tmp_path / "m.onnx")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's note on its legacy exporter
def test_onnx_model_refuses_files_it_did_not_write(tmp_path):
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("hello")
    with pytest.raises(ValueError, match="not an ONNX file"):
        OnnxModel(not_onnx)
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),), str(foreign), dynamo=False)
    with pytest.raises(ValueError, match="not one rnnlab exported"):
        OnnxModel(foreign)
    with pytest.raises(ValueError, match="no such ONNX file"):
        OnnxModel(tmp_path / "missing.onnx")
