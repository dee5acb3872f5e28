"""The task registry and the sample contract of ARCHITECTURE.md, for every task (rnnlab/data/__init__.py)."""

import json
import math

import pytest
import torch

from rnnlab.data import TASKS, TaskSpec, collate, load_task
from rnnlab.errors import ConfigError, DataError


def tiny_inputs(task, tmp_path, tiny_music_mat):
    """A small instance of each task: its data argument and options."""
    if task in ("recall", "adding", "copy"):
        return None, {"seq_len": 12, "n_train": 8, "n_val": 4, "n_test": 4}
    if task == "forecast":
        return "sunspots", {"lookback": 12, "horizon": 3}
    if task == "classify":
        return "digits", {}
    if task == "tag":
        return "entities", {"n_train": 20, "n_val": 5, "n_test": 5}
    if task == "charlm":
        text = tmp_path / "text.txt"
        text.write_text("the quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
        return str(text), {"seq_len": 16}
    if task == "music":
        return tiny_music_mat(), {}
    if task == "seq2seq":
        return "dates", {"n_train": 8, "n_val": 4, "n_test": 4}
    raise AssertionError(task)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_keeps_the_sample_contract(task, tmp_path, tiny_music_mat):
    data, options = tiny_inputs(task, tmp_path, tiny_music_mat)
    task_data = load_task(task, data, **options)
    spec = task_data.spec
    assert spec.head == TASKS[task].head
    assert TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    json.dumps(task_data.meta, allow_nan=False)  # JSON-able, no NaN
    assert task_data.meta["task"] == task
    assert task_data.baselines and all(math.isfinite(v) for v in task_data.baselines.values())
    for split in (task_data.train, task_data.val, task_data.test):
        assert len(split) > 0
        x, y = split[0]
        if spec.vocab_size:
            assert x.dtype == torch.long and x.dim() == 1 and int(x.max()) < spec.vocab_size
        else:
            assert x.dtype == torch.float32 and x.dim() == 2 and x.shape[1] == spec.input_size
        if spec.seq_len is not None:
            assert x.shape[0] == spec.seq_len
        expected = {
            "classify": ((), torch.long),
            "regress": ((), torch.float32),
            "tag": ((x.shape[0],), torch.long),
            "lm": ((x.shape[0],), torch.long),
            "forecast": (tuple(spec.output_shape), torch.float32),
            "multilabel": ((x.shape[0], spec.num_classes), torch.float32),
            "seq2seq": ((len(y),) if y.dim() == 1 else None, torch.long),  # the target then <eos>
        }[spec.head]
        assert (tuple(y.shape), y.dtype) == expected
        if spec.head in ("classify", "tag", "lm", "seq2seq"):
            assert int(y.min()) >= 0 and int(y.max()) < spec.num_classes
        batch = collate([split[i] for i in range(min(3, len(split)))])
        assert batch.x.shape[0] == batch.y.shape[0] == batch.lengths.shape[0]


def test_unknown_task_suggests_the_nearest_name():
    with pytest.raises(ConfigError, match=r"unknown task 'recal'; did you mean 'recall'"):
        load_task("recal")


def test_unknown_option_names_the_task_and_its_options():
    with pytest.raises(
        ConfigError, match=r"unknown option for task 'forecast' 'lookbak'; did you mean 'lookback'.*horizon"
    ):
        load_task("forecast", lookbak=12)


def test_options_left_none_are_not_given_and_text_values_are_coerced():
    task = load_task("recall", seq_len="9", n_train="4", n_val=2, n_test=2, num_classes=None, label=None)
    assert task.spec.seq_len == 9 and len(task.train) == 4 and task.spec.num_classes == 8
    with pytest.raises(ConfigError, match=r"option 'n_train' expects an integer, got 2.5"):
        load_task("recall", n_train=2.5)
    with pytest.raises(ConfigError, match="expects true or false"):
        load_task("classify", lowercase="maybe")


def test_target_column_is_the_trainers_name_for_target(tmp_path):
    csv = tmp_path / "series.csv"
    csv.write_text("t,a,b\n" + "".join(f"{i},{i % 5},{i % 3}\n" for i in range(80)))
    task = load_task("forecast", str(csv), target_column="b", lookback=5, horizon=2)
    assert task.meta["targets"] == ["b"]
    with pytest.raises(ConfigError, match="given twice"):
        load_task("forecast", str(csv), target_column="b", target="a")


def test_a_missing_file_that_is_no_builtin_says_both():
    with pytest.raises(
        DataError, match=r"digts: no such file or folder, and not a built-in data set; did you mean 'digits'"
    ):
        load_task("classify", "digts")


def test_the_registry_describes_every_task():
    for info in TASKS.values():
        assert info.description and info.formats and info.seq_len
        if info.default_data is not None:
            assert info.default_data in info.builtins
        for option in info.options.values():
            assert option.help
