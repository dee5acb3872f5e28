"""Every task × registered model pair trains for one epoch at a tiny size and writes a complete run directory
(or, where the model does not fit the task's head, is refused before anything runs)."""

import json
import math

import pytest

from rnnlab.data import TASKS
from rnnlab.errors import ConfigError
from rnnlab.models import model_heads, model_names
from rnnlab.train import TrainConfig, load_task_data, train
from rnnlab.train.metrics import primary_metric

TINY = {
    "recall": {"seq_len": 6, "n_train": 32, "n_val": 16, "n_test": 16},
    "adding": {"seq_len": 6, "n_train": 32, "n_val": 16, "n_test": 16},
    "copy": {"seq_len": 4, "n_train": 32, "n_val": 16, "n_test": 16, "data_options": {"memory_length": 2}},
    "forecast": {"lookback": 8, "horizon": 4},
    "classify": {},
    "tag": {},
    "charlm": {"seq_len": 16},
    "music": {},
    "seq2seq": {"n_train": 32, "n_val": 16, "n_test": 16},
}
#: The metrics each task must report in test_metrics (besides its baselines).
EXPECTED_METRICS = {
    "recall": {"accuracy", "macro_f1"},
    "adding": {"mse", "trivial_mse"},
    "copy": {"accuracy", "cross_entropy", "memoryless_cross_entropy"},
    "forecast": {"mae", "rmse", "smape", "mase", "naive_mae", "seasonal_naive_mae"},
    "classify": {"accuracy", "macro_f1"},
    "tag": {"accuracy", "macro_f1"},
    "charlm": {"bpc", "perplexity", "unigram_bpc"},
    "music": {"nll"},
    "seq2seq": {"exact_match", "cer"},
}


def test_every_task_and_every_registered_model_is_covered():
    assert set(TINY) == set(TASKS)
    # the documented models are all registered; a new one joins this test by registering
    assert set(model_names()) >= {
        "rnn",
        "lstm",
        "gru",
        "lstm+attn",
        "gru+attn",
        "tcn",
        "transformer",
        "mingru",
        "minlstm",
        "informer",
        "transformer-xl",
    }
    heads = {TASKS[task].head for task in TINY}
    for model in model_names():  # each model trains on at least one task here
        assert model_heads(model) is None or set(model_heads(model)) & heads, model


@pytest.fixture(scope="module")
def task_data_of(tiny_files):
    """Each task's data loaded once and shared by the models (loading is not what is tested here)."""
    cache = {}

    def load(task):
        if task not in cache:
            cache[task] = load_task_data(config_for(task, "lstm", tiny_files, out=None))
        return cache[task]

    return load


def config_for(task, model, files, out):
    values = dict(TINY[task])
    if task in files:
        values["data"] = str(files[task])
    return TrainConfig(
        task=task, model=model, epochs=1, batch_size=16, hidden_size=8, num_layers=1, patience=None, out=out, **values
    )


@pytest.mark.parametrize("model", model_names())
@pytest.mark.parametrize("task", list(TINY))
def test_task_model_pair_trains_and_writes_its_run(task, model, tiny_files, task_data_of, tmp_path):
    out = tmp_path / "run"
    config = config_for(task, model, tiny_files, str(out))
    head = task_data_of(task).spec.head
    if model_heads(model) is not None and head not in model_heads(model):
        with pytest.raises(ConfigError, match=head):  # refused up front, naming the head
            train(config, task_data=task_data_of(task))
        assert not (out / "model.safetensors").exists()
        return
    result = train(config, task_data=task_data_of(task))

    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.csv",
        "model.safetensors",
        "summary.json",
        "task.json",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary
    assert EXPECTED_METRICS[task] <= set(summary["test_metrics"])
    metric, _ = primary_metric(task, result.task_data.spec.head)
    value = summary["test_metrics"][metric]
    assert value is not None and math.isfinite(value)
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1
    assert summary["num_parameters"] == sum(p.numel() for p in result.model.parameters())
    assert summary["seconds_per_step"] > 0 and summary["train_seconds"] > 0
    assert TrainConfig.load(out / "config.json").model == model
