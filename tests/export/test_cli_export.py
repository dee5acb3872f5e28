"""``rnnlab export``: over a real (tiny) run directory, with its report and its refusals."""

from __future__ import annotations

import re
import shutil

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from rnnlab.cli import app
from rnnlab.export import OnnxModel

runner = CliRunner()


@pytest.fixture
def run_dir(recall_run):
    return recall_run


def export(*args: str):
    result = runner.invoke(app, ["export", *map(str, args)])
    return result.exit_code, result.output


def test_export_reports_the_check_and_the_metric(run_dir, tmp_path):
    code, output = export(run_dir, "--out", tmp_path / "model.onnx")
    assert code == 0, output
    difference = float(re.search(r"max \|onnxruntime − PyTorch\| = (\S+)", output).group(1))
    assert difference <= 1e-4
    assert "accuracy" in output and "PyTorch" in output and "onnxruntime" in output
    assert "test split" in output and "points" in output  # the onnxruntime row's change beside the metric
    model = OnnxModel(tmp_path / "model.onnx")
    assert model.mode == "sequence" and model.spec["task"] == "recall"
    assert model.run_sequence(np.zeros((2, 10), dtype=np.int64)).shape == (2, 8)


def test_step_int8_and_pruned_variants_side_by_side(run_dir, tmp_path):
    code, output = export(
        run_dir, "--out", tmp_path / "step.onnx", "--step", "--quantize", "int8", "--prune", "0.3", "--no-evaluate"
    )
    assert code == 0, output
    assert "step mode" in output and "pruned 30%" in output and "int8" in output
    ops = {node.op_type for node in onnx.load(str(tmp_path / "step.onnx")).graph.node}
    assert "MatMulInteger" in ops
    assert OnnxModel(tmp_path / "step.onnx").metadata["quantized"] == "int8"


def test_existing_output_is_refused_unless_forced(run_dir, tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("precious")
    code, output = export(run_dir, "--out", target, "--no-evaluate")
    assert code == 2 and "exists" in output and "--force" in output
    assert target.read_text() == "precious"
    code, output = export(run_dir, "--out", target, "--no-evaluate", "--force")
    assert code == 0, output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "tflite"], "unknown export format 'tflite'"),
        (["--prune", "1.0"], r"prune fraction must lie in \[0, 1\)"),
        (["--prune", "-0.2"], r"prune fraction must lie in \[0, 1\)"),
        (["--finetune-epochs", "2"], "give a prune fraction too"),
        (["--quantize", "int4"], "unknown quantisation 'int4'"),
        (["--prune-scope", "layers", "--prune", "0.5"], "unknown prune scope 'layers'; did you mean 'layer'"),
    ],
)
def test_bad_options_are_named_and_write_nothing(run_dir, tmp_path, args, message):
    code, output = export(run_dir, "--out", tmp_path / "model.onnx", "--no-evaluate", *args)
    assert code == 2
    assert re.search(message, " ".join(output.split())), output
    assert not (tmp_path / "model.onnx").exists()


def test_a_directory_that_is_not_a_run_is_refused(run_dir, tmp_path):
    code, output = export(tmp_path / "nowhere", "--out", tmp_path / "m.onnx")
    assert code == 2 and "no such run directory" in " ".join(output.split())
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "model.safetensors").unlink()
    code, output = export(broken, "--out", tmp_path / "m.onnx")
    assert code == 2 and "model.safetensors is missing" in " ".join(output.split())
    assert not (tmp_path / "m.onnx").exists()


def test_step_mode_of_a_model_that_cannot_stream_says_why(tmp_path):
    from rnnlab.train import TrainConfig, train

    run = tmp_path / "tcn"
    train(
        TrainConfig(
            task="recall",
            model="tcn",
            seq_len=8,
            n_train=64,
            n_val=32,
            n_test=32,
            epochs=1,
            hidden_size=8,
            out=str(run),
        )
    )
    code, output = export(run, "--out", tmp_path / "step.onnx", "--step")
    text = " ".join(output.split())
    assert code == 2 and "tcn model" in text and "cannot be exported with --step" in text
    assert "no recurrent state" in text and "without --step" in text
    assert not (tmp_path / "step.onnx").exists()
