"""Bad input gets a clear message and leaves no partial run directory; a failure while training keeps
the last good checkpoint and names the step."""

import math
import re

import pytest
from run_helpers import Crash, PoisonWeights, tiny_recall

from rnnlab.data import SequenceDataset, TaskData
from rnnlab.errors import ConfigError, DataError, TrainingError
from rnnlab.train import TrainConfig, load_task_data, train


def write(path, text):
    path.write_text(text)
    return str(path)


def hourly_csv(values):
    lines = ["time,flow"] + [f"2024-01-{1 + i // 24:02d} {i % 24:02d}:00,{v}" for i, v in enumerate(values)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("make_config", "error", "message"),
    [
        (
            lambda d: TrainConfig(task="forecast", data=write(d / "gap.csv", hourly_csv([1, 2, "", 4] + [5] * 60))),
            DataError,
            r"gap.csv: 1 missing value\(s\): line 4 column 'flow'; .*fill",
        ),
        (
            lambda d: TrainConfig(task="forecast", data=write(d / "words.csv", hourly_csv([1, "high", 3] + [5] * 60))),
            DataError,
            r"words.csv: expected numbers, found line 3 column 'flow': 'high'",
        ),
        (
            lambda d: TrainConfig(
                task="forecast", data=write(d / "short.csv", hourly_csv(range(20))), lookback=16, horizon=8
            ),
            DataError,
            "short.csv: the series has 20 rows, too short for lookback 16 \\+ horizon 8",
        ),
        (lambda d: TrainConfig(task="charlm", data=write(d / "empty.txt", "")), DataError, "empty.txt"),
        (lambda d: TrainConfig(task="charlm", data=str(d / "latin1.txt")), DataError, r"latin1.txt.*byte"),
        (
            lambda d: TrainConfig(
                task="classify",
                data=write(d / "train.csv", "label,a,b\n" + "x,1,2\ny,2,3\n" * 10),
                test_data=write(d / "test.csv", "label,a,b\nx,1,2\nz,2,3\n"),
            ),
            DataError,
            "'z'",
        ),
        (lambda d: TrainConfig(task="recal"), ConfigError, "unknown task 'recal'; did you mean 'recall'"),
        (lambda d: TrainConfig(model="gruu"), ConfigError, "unknown model 'gruu'; did you mean 'gru'"),
        (lambda d: TrainConfig(task="recall", lookback=5), ConfigError, "lookback"),
        (lambda d: TrainConfig(task="recall", model="tcn", model_options={"kernel": 3}), ConfigError, "kernel"),
    ],
    ids=[
        "missing-value",
        "non-numeric",
        "series-too-short",
        "empty-text",
        "undecodable-text",
        "unseen-label",
        "unknown-task",
        "unknown-model",
        "option-of-another-task",
        "unknown-model-option",
    ],
)
def test_bad_input_is_refused_before_the_run_directory_exists(tmp_path, make_config, error, message):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    out = tmp_path / "run"
    with pytest.raises(error, match=message):
        train(make_config(tmp_path), out=str(out))
    assert not out.exists()


def test_fill_repairs_missing_values_as_the_row_before(tmp_path):
    # --fill ffill on a gap gives the run a file whose gap holds the value before it, filled here by hand
    series = [round(100 + 10 * math.sin(i / 4), 4) for i in range(90)]
    by_hand = list(series)
    by_hand[30] = series[29]
    series[30] = ""
    common = dict(task="forecast", lookback=8, horizon=4, epochs=1, hidden_size=8, num_layers=1)
    filled = train(
        TrainConfig(
            data=write(tmp_path / "gap.csv", hourly_csv(series)), fill="ffill", out=str(tmp_path / "filled"), **common
        )
    )
    reference = train(
        TrainConfig(
            data=write(tmp_path / "by_hand.csv", hourly_csv(by_hand)), out=str(tmp_path / "reference"), **common
        )
    )
    assert filled.summary["test_metrics"] == reference.summary["test_metrics"]
    assert (tmp_path / "filled" / "model.safetensors").read_bytes() == (
        tmp_path / "reference" / "model.safetensors"
    ).read_bytes()


def test_an_existing_run_is_not_overwritten(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds a run; continue it with --resume, or choose another --out"):
        train(TrainConfig(out=str(tmp_path)))


def test_non_finite_loss_in_the_first_epoch_names_the_step_and_keeps_no_directory(tmp_path):
    config = tiny_recall(tmp_path / "run", task="adding")
    clean = load_task_data(config)
    xs, ys = zip(*(clean.train[i] for i in range(len(clean.train))))
    xs = [x.clone() for x in xs]
    xs[21][3, 0] = float("nan")  # sample 21: in the second batch of the (seeded) first epoch or later
    poisoned = TaskData(clean.spec, SequenceDataset(xs, ys), clean.val, clean.test, clean.baselines, clean.meta)
    with pytest.raises(
        TrainingError,
        match=r"non-finite loss \(nan\) at epoch 0, batch \d+ \(global step \d+\).*"
        "No epoch had finished, so no run directory was kept",
    ):
        train(config, task_data=poisoned)
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_later_ends_the_run_on_its_best_finite_epoch(tmp_path):
    out = tmp_path / "run"
    summary = train(tiny_recall(out), callbacks=[PoisonWeights(epoch=2)]).summary
    assert re.match(r"non-finite loss \(nan\) at epoch 2, batch 0 \(global step 8\)", summary["stop_reason"])
    assert summary["stop_reason"].endswith(f"the best finite epoch ({summary['best_epoch']}) is the model")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.csv",
        "model.safetensors",
        "summary.json",
        "task.json",
    ]
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2  # header + 2 good epochs
    assert summary["refit"] == {"done": False, "reason": "training ended on a non-finite loss: no refit"}
    # the model is the best of the two good epochs: what a run of two epochs (without refit) keeps
    two = train(tiny_recall(tmp_path / "two", epochs=2, refit=False)).summary
    assert summary["best_epoch"] == two["best_epoch"] and summary["test_metrics"] == two["test_metrics"]
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "two" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="has finished"):  # nothing left to resume: it would diverge again
        train(TrainConfig(out=str(out)), resume=True)


def test_resume_refuses_to_change_the_configuration(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crashed"):
        train(tiny_recall(out, clip=0.5), callbacks=[Crash(epoch=1)])
    with pytest.raises(ConfigError, match=r"a resumed run keeps its configuration; lr was 0.002, got 0.1"):
        train(TrainConfig(out=str(out), lr=0.1), resume=True)
    # a flag given with its default value is a change too when the run had another (refused alike)
    with pytest.raises(ConfigError, match=r"a resumed run keeps its configuration; clip was 0.5, got 1.0"):
        train(out=str(out), clip=1.0, resume=True)
    assert train(out=str(out), clip=0.5, resume=True).summary["epochs"] == 3  # the saved value: no change
    with pytest.raises(ConfigError, match=r"nothing to resume in .*nowhere"):
        train(TrainConfig(out=str(tmp_path / "nowhere")), resume=True)


def test_a_charlm_text_too_short_for_its_streams_is_refused_before_training(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("abcdefghij" * 300)  # 3,000 characters: 2,700 to train, 13 windows of 200
    config = TrainConfig(task="charlm", data=str(text), seq_len=200, batch_size=32, out=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"holds 13 window\(s\) of seq_len 200, fewer than the 32 parallel streams"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_a_finished_run_is_not_offered_a_resume(tmp_path):
    out = tmp_path / "run"
    train(tiny_recall(out, epochs=1))
    with pytest.raises(ConfigError, match=r"holds a finished run; choose another --out$"):
        train(tiny_recall(out, epochs=1))  # nothing left to resume: the message does not suggest it
