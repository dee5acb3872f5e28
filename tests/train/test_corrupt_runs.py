"""A run directory that was truncated, replaced or edited is refused with one clear line naming the
file and what is wrong: never a traceback, a huge allocation or a path outside the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from rnnlab.errors import ConfigError
from rnnlab.train import TrainConfig, load_run, predict_run, train
from rnnlab.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("corrupt") / "run"
    config = TrainConfig(task="recall", seq_len=6, hidden_size=8, num_layers=1, batch_size=16, epochs=1, out=str(out))
    train(config, data_options={"n_train": 32, "n_val": 16, "n_test": 16})
    return out


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def edit_json(path, change):
    values = json.loads(path.read_text())
    change(values)
    path.write_text(json.dumps(values))


def test_a_truncated_weights_file_is_named(run):
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ConfigError, match=r"model\.safetensors is not a readable safetensors file"):
        load_run(run)


def test_random_bytes_as_weights_are_named(run):
    (run / "model.safetensors").write_bytes(b"\xff" * 64)  # a header length of ~1.8e19 bytes
    with pytest.raises(ConfigError, match=r"model\.safetensors is not a readable safetensors file"):
        load_run(run)


def test_sizes_in_task_json_that_do_not_match_the_weights_are_named(run):
    edit_json(run / "task.json", lambda task: task["model_options"].update(hidden_size=12))
    shapes = r"encoder\.embedding\.weight is \[17, 8\] in the file, \[17, 12\] in task\.json"
    with pytest.raises(ConfigError, match=r"does not hold the model task\.json describes: " + shapes):
        load_run(run)


def test_a_huge_hidden_size_is_refused_before_anything_is_allocated(run):
    edit_json(run / "task.json", lambda task: task["model_options"].update(hidden_size=10**7))
    with pytest.raises(ConfigError, match=r"does not hold the model task\.json describes"):
        load_run(run)  # 10^7 units would be petabytes of weights: compared as shapes only


def test_an_edited_config_json_that_disagrees_with_task_json_is_refused(run):
    edit_json(run / "config.json", lambda config: config.update(model="gru"))
    with pytest.raises(ConfigError, match=r"disagree: model 'gru' in config\.json, 'lstm' in task\.json"):
        load_run(run)


def test_truncated_json_files_are_named(run):
    (run / "task.json").write_text((run / "task.json").read_text()[:40])
    with pytest.raises(ConfigError, match=r"task\.json is not valid JSON"):
        load_run(run)


def test_a_checkpoint_naming_tensors_outside_its_folder_is_refused(run, tmp_path):
    save_checkpoint({"epoch": 0, "global_step": 2, "weights": {}}, run / "checkpoint")
    index_path = run / "checkpoint" / "last.json"
    edit_json(index_path, lambda index: index.update(tensors="../../other/model.safetensors"))
    with pytest.raises(ConfigError, match=r"names tensors '\.\./\.\./other/model\.safetensors'"):
        load_checkpoint(run / "checkpoint")
    index_path.write_text(index_path.read_text()[:30])  # truncated
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_checkpoint(run / "checkpoint")


def test_predict_out_naming_a_folder_is_refused_before_the_work(run, tmp_path):
    with pytest.raises(ConfigError, match=r"is a folder; give the name of the file to write"):
        predict_run(run, tmp_path / "missing.csv", tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "edit"])
def test_the_cli_says_it_in_one_line_and_exits_non_zero(run, damage):
    if damage == "truncate":
        (run / "model.safetensors").write_bytes(b"\x00" * 7)
    else:
        edit_json(run / "task.json", lambda task: task["model_options"].update(hidden_size=10**7))
    result = subprocess.run([sys.executable, "-m", "rnnlab.cli", "evaluate", str(run)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, on stderr
    assert result.stderr.startswith("error: ") and str(run / "model.safetensors") in result.stderr
