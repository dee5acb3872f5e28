"""The streaming predictor: many streams, one step at a time, equal to running each sequence whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import inputs, tiny

from rnnlab.export import StreamingPredictor, export_onnx

# Every recurrent family that can stream, under a per-step head and a sequence head.
FAMILIES = [
    ("rnn", "lm", {"num_layers": 2}),
    ("lstm", "lm", {"num_layers": 2}),
    ("gru", "lm", {"num_layers": 2}),
    ("rnn", "forecast", {"num_layers": 1}),
    ("lstm", "classify", {"num_layers": 2, "layer_norm": True}),
    ("gru", "regress", {"num_layers": 2, "convention": "cho"}),
]
LENGTHS = {"a": 9, "b": 4, "c": 7}  # three streams of different lengths, interleaved


def whole_sequence_outputs(model, x: torch.Tensor) -> np.ndarray:
    """What the model gives at every step of ``x`` ``[1, T, ...]`` run whole: per-step heads in one
    call; sequence heads once per prefix (the output as if the sequence ended at that step)."""
    with torch.inference_mode():
        if model.per_step:
            return model(x)[0].numpy()
        return np.stack([model(x[:, : t + 1])[0].numpy() for t in range(x.shape[1])])


@pytest.mark.parametrize("name,task,options", FAMILIES, ids=[f"{n}-{t}-{'-'.join(o)}" for n, t, o in FAMILIES])
def test_interleaved_streams_equal_their_whole_sequences(name, task, options):
    model = tiny(name, task, options)
    generator = torch.Generator().manual_seed(1)
    sequences = {sid: inputs(model.spec, 1, length, generator) for sid, length in LENGTHS.items()}
    predictor = StreamingPredictor(model)
    got = {sid: [] for sid in LENGTHS}
    for t in range(max(LENGTHS.values())):
        # Streams with a sample at step t, in a changing order: batching must not mix their states.
        due = [sid for sid in LENGTHS if t < LENGTHS[sid]]
        due = due if t % 2 else list(reversed(due))
        outputs = predictor.step({sid: sequences[sid][0, t] for sid in due})
        for sid in due:
            got[sid].append(outputs[sid])
    for sid, x in sequences.items():
        np.testing.assert_allclose(np.stack(got[sid]), whole_sequence_outputs(model, x), atol=1e-5, rtol=0)
    assert sorted(predictor.streams) == ["a", "b", "c"]


def test_chunks_and_steps_agree_and_reset_starts_over():
    model = tiny("gru", "lm", {"num_layers": 2})
    x = inputs(model.spec, 1, 10, torch.Generator().manual_seed(2))
    expected = whole_sequence_outputs(model, x)
    predictor = StreamingPredictor(model)
    first = predictor.feed("s", x[0, :6])
    rest = predictor.feed("s", x[0, 6:])
    np.testing.assert_allclose(np.concatenate([first, rest]), expected, atol=1e-5, rtol=0)
    predictor.reset("s")
    assert predictor.streams == []
    again = predictor.step({"s": x[0, 0]})["s"]  # a fresh start equals the first step
    np.testing.assert_allclose(again, expected[0], atol=1e-6, rtol=0)


def test_onnx_step_file_streams_like_pytorch(tmp_path):
    model = tiny("lstm", "forecast", {"num_layers": 2})
    path = tmp_path / "step.onnx"
    export_onnx(model, path, mode="step")
    generator = torch.Generator().manual_seed(4)
    sequences = {sid: inputs(model.spec, 1, length, generator) for sid, length in LENGTHS.items()}
    on_onnx, on_torch = StreamingPredictor(path), StreamingPredictor(model)
    for t in range(max(LENGTHS.values())):
        due = {sid: sequences[sid][0, t].numpy() for sid in LENGTHS if t < LENGTHS[sid]}
        onnx_outputs, torch_outputs = on_onnx.step(due), on_torch.step(due)
        for sid in due:
            np.testing.assert_allclose(onnx_outputs[sid], torch_outputs[sid], atol=1e-5, rtol=0)
    for sid, x in sequences.items():  # and the last answer is the whole sequence's
        with torch.inference_mode():
            np.testing.assert_allclose(on_onnx.feed(sid + "-again", x[0])[-1], model(x)[0].numpy(), atol=1e-5)
    window = sequences["a"][0]
    np.testing.assert_allclose(on_onnx.predict(window), on_torch.predict(window), atol=1e-5, rtol=0)


def test_predict_runs_a_window_without_touching_streams():
    model = tiny("rnn", "forecast", {"num_layers": 1})
    predictor = StreamingPredictor(model)
    predictor.step({"kept": np.zeros(3, dtype=np.float32)})
    windows = inputs(model.spec, 5, 8, torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = model(windows).numpy()
    np.testing.assert_allclose(predictor.predict(windows), expected, atol=1e-6)
    np.testing.assert_allclose(predictor.predict(windows[2]), expected[2], atol=1e-6)
    assert predictor.streams == ["kept"]


def test_models_and_files_that_cannot_stream_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"cannot stream.*bidirectional"):
        StreamingPredictor(tiny("lstm", "tag", {"bidirectional": True}))
    with pytest.raises(ValueError, match=r"cannot stream.*attention"):
        StreamingPredictor(tiny("gru+attn", "classify", {}))
    with pytest.raises(ValueError, match=r"cannot stream.*no recurrent state"):
        StreamingPredictor(tiny("tcn", "forecast", {}))
    sequence_file = tmp_path / "whole.onnx"
    export_onnx(tiny("gru", "forecast", {"num_layers": 1}), sequence_file)
    with pytest.raises(ValueError, match="sequence-mode export; streaming needs the single-step model"):
        StreamingPredictor(sequence_file)
    with pytest.raises(ValueError, match="TaskModel or the path"):
        StreamingPredictor(42)


def test_bad_samples_name_the_stream_and_the_shape():
    features = StreamingPredictor(tiny("gru", "forecast", {"num_layers": 1}))
    with pytest.raises(ValueError, match=r"stream 'pump-3': expected numbers of shape \[3\].*shape \[4\]"):
        features.step({"pump-3": np.zeros(4)})
    with pytest.raises(ValueError, match="NaN"):
        features.step({"pump-3": np.array([0.0, np.nan, 1.0])})
    with pytest.raises(ValueError, match=r"expected numbers of shape \[T, 3\]"):
        features.feed("pump-3", np.zeros(3))
    with pytest.raises(ValueError, match="no stream 'pump-9' to reset"):
        features.reset("pump-9")
    with pytest.raises(ValueError, match="mapping stream id"):
        features.step([np.zeros(3)])
    tokens = StreamingPredictor(tiny("lstm", "lm", {"num_layers": 1}))
    with pytest.raises(ValueError, match=r"stream 7: token ids must lie in \[0, 11\]; got values from 12 to 12"):
        tokens.step({7: 12})
    with pytest.raises(ValueError, match="expected token ids"):
        tokens.step({7: 1.5})
    assert features.streams == [] and tokens.streams == []  # a refused sample leaves no state behind
