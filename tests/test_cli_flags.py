"""`rnnlab train` and `rnnlab compare` flags are the configurations' fields; old spellings still work."""

from __future__ import annotations

from dataclasses import fields

import pytest
from typer.testing import CliRunner

from rnnlab.cli import app
from rnnlab.config_fields import FLAG, flag_name
from rnnlab.errors import RnnlabError
from rnnlab.lab import CompareConfig
from rnnlab.train import TrainConfig


class Captured(RnnlabError):
    pass


@pytest.fixture
def captured(monkeypatch):
    """The config a command would run with: the library's entry points record it and stop."""
    configs = []

    def record(kind):
        def entry(config=None, *, resume=False, progress=False, **changes):
            configs.append(config if config is not None else kind(**changes))  # train takes the fields as changes
            raise Captured("captured")

        return entry

    monkeypatch.setattr("rnnlab.train.train", record(TrainConfig))
    monkeypatch.setattr("rnnlab.lab.compare", record(CompareConfig))
    return configs


def run(configs, *args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2 and "captured" in result.output, result.output
    return configs.pop()


@pytest.mark.parametrize("command, cls", [("train", TrainConfig), ("compare", CompareConfig)])
def test_help_lists_every_field_flag_with_its_help_and_hides_old_spellings(command, cls):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for item in fields(cls):
        spec = item.metadata[FLAG]
        if spec.cli:
            assert flag_name(item.name) in text and spec.text.split(" (see")[0] in text, item.name
        for old in spec.old:
            assert f"{old} " not in text
    assert "--target-metric" not in text and "--layers " not in text


def test_train_help_names_the_registered_tasks_and_models():
    from rnnlab.data import TASKS
    from rnnlab.models import model_names

    text = " ".join(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "1000"}).output.split())
    assert all(task in text for task in TASKS) and all(model in text for model in model_names())
    assert "informer (forecast)" in text


@pytest.mark.parametrize(
    "old, new",
    [
        (["--layers", "3"], ["--num-layers", "3"]),
    ],
)
def test_train_old_spelling_gives_the_same_config(captured, tmp_path, old, new):
    before = run(captured, "train", "--out", tmp_path / "run", *old)
    after = run(captured, "train", "--out", tmp_path / "run", *new)
    assert before == after and after.num_layers == 3


def test_train_flags_reach_their_fields(captured, tmp_path):
    config = run(
        captured,
        "train",
        "-o",
        tmp_path / "run",
        "-t",
        "forecast",
        "-m",
        "gru",
        "--target",
        "load",
        "--stop-at",
        "0.25",
        "--init",
        "orthogonal",
        "--patience",
        "0",
        "--no-refit",
        "--option",
        "val_fraction=0.2",
    )
    assert (config.task, config.model, config.target, config.stop_at) == ("forecast", "gru", "load", 0.25)
    assert (config.init, config.patience, config.refit, config.out) == (
        "orthogonal",
        None,
        False,
        str(tmp_path / "run"),
    )
    assert config.data_options == {"val_fraction": 0.2}
    assert config.load_options()["target"] == "load"
    # flags not given keep the dataclass's defaults
    assert run(captured, "train", "-o", tmp_path / "run") == TrainConfig(out=str(tmp_path / "run"))


@pytest.mark.parametrize(
    "old, new",
    [
        (["--layers", "2"], ["--num-layers", "2"]),
        (["--target-metric", "0.5"], ["--stop-at", "0.5"]),
    ],
)
def test_compare_old_spelling_gives_the_same_config(captured, old, new):
    assert run(captured, "compare", *old) == run(captured, "compare", *new)


def test_compare_data_flags_become_data_options(captured, tmp_path):
    config = run(
        captured,
        "compare",
        "-t",
        "forecast",
        "--target",
        "load",
        "--time",
        "time",
        "--horizon",
        "3",
        "--option",
        "val_fraction=0.2",
        "-m",
        "rnn,lstm",
        "-b",
        "quick",
        "-w",
        "1",
        "-o",
        tmp_path / "out",
    )
    assert (config.target, config.time, config.horizon, config.models) == ("load", "time", 3, ["rnn", "lstm"])
    assert config.all_data_options() == {"target": "load", "time": "time", "horizon": 3, "val_fraction": 0.2}
    assert run(captured, "compare") == CompareConfig(data_options={})
