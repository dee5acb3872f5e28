"""`rnnlab tasks / train / evaluate / predict / forecast` on tiny files, and their one-line errors."""

from __future__ import annotations

import csv
import json
import math

import pytest
from typer.testing import CliRunner

from rnnlab.cli import app

TINY_MODEL = ["--epochs", "2", "--hidden-size", "8", "--layers", "1", "--batch-size", "16", "--quiet"]

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def shapes_csv(path, labels=("up", "down", "flat"), rows=60, with_labels=True):
    lines = ["label,v1,v2,v3,v4,v5" if with_labels else "v1,v2,v3,v4,v5"]
    for i in range(rows):
        label = labels[i % len(labels)]
        slope = {"up": 1.0, "down": -1.0}.get(label, 0.0)
        values = [f"{slope * t + 0.1 * ((i * 7 + t) % 5 - 2):.2f}" for t in range(5)]
        lines.append(",".join(([label] if with_labels else []) + values))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tasks_lists_tasks_data_formats_and_models():
    result = invoke("tasks")
    assert result.exit_code == 0, result.output
    for word in (
        "recall",
        "adding",
        "copy",
        "forecast",
        "classify",
        "tag",
        "charlm",
        "traffic",
        "digits",
        "CoNLL",
        "lstm+attn",
        "transformer",
        "tcn",
    ):
        assert word in result.output


def test_unknown_task_is_one_line_with_a_suggestion_and_no_directory(tmp_path):
    result = invoke("train", "--task", "recal", "--out", tmp_path / "run")
    assert result.exit_code == 2
    message = " ".join(result.output.split())  # the console may wrap the line at its width
    assert message.startswith("error: unknown task 'recal'; did you mean 'recall'")
    assert "(choices: recall, adding, copy, forecast, classify, tag, charlm, music, seq2seq)" in message
    assert message.count("error:") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_errors_go_to_stderr_and_not_to_stdout(tmp_path):
    result = invoke("train", "--task", "recal", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()).startswith("error: unknown task 'recal'")
    assert "error" not in result.stdout and "recal" not in result.stdout


def test_unknown_model_suggests_the_nearest(tmp_path):
    result = invoke("train", "--model", "lstmm", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "did you mean 'lstm'" in result.output and "Traceback" not in result.output


def test_train_classify_then_evaluate_and_predict(tmp_path):
    data, run = shapes_csv(tmp_path / "shapes.csv"), tmp_path / "run"
    result = invoke("train", "--task", "classify", "--data", data, "--out", run, *TINY_MODEL)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "majority" in result.output  # the baseline beside the metric
    summary = json.loads((run / "summary.json").read_text())

    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    evaluations = json.loads((run / "evaluation.json").read_text())
    assert evaluations["test split"]["accuracy"] == pytest.approx(summary["test_metrics"]["accuracy"])

    # evaluate on a labelled file = the share of predict's labels that match the file's, counted here
    new = shapes_csv(tmp_path / "new.csv", rows=9)
    result = invoke("evaluate", run, "--data", new)
    assert result.exit_code == 0, result.output
    accuracy = json.loads((run / "evaluation.json").read_text())[str(new)]["accuracy"]
    unlabelled = shapes_csv(tmp_path / "unlabelled.csv", rows=9, with_labels=False)
    result = invoke("predict", run, "--data", unlabelled, "--out", tmp_path / "predictions.csv")
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "predictions.csv")
    truth = [["up", "down", "flat"][i % 3] for i in range(9)]  # shapes_csv's labels, row by row
    assert len(rows) == 9 and {row["predicted"] for row in rows} <= {"up", "down", "flat"}
    assert accuracy == pytest.approx(sum(row["predicted"] == label for row, label in zip(rows, truth)) / 9)
    # the probability given is the predicted label's, the largest of three: at least 1/3
    assert all(1 / 3 <= float(row["probability"]) <= 1.0 for row in rows)


def test_evaluate_on_a_file_with_an_unseen_label_is_refused(tmp_path):
    data, run = shapes_csv(tmp_path / "shapes.csv"), tmp_path / "run"
    assert invoke("train", "--task", "classify", "--data", data, "--out", run, *TINY_MODEL).exit_code == 0
    strange = shapes_csv(tmp_path / "strange.csv", labels=("up", "sideways"), rows=4)
    result = invoke("evaluate", run, "--data", strange)
    assert result.exit_code == 2
    assert "'sideways'" in result.output and "Traceback" not in result.output


def test_train_tagger_and_predict_tags_per_token(tmp_path):
    sentences = ["ana O\nwent O\nto O\nrome LOC\n", "bob PER\nsaw O\noslo LOC\n"] * 20
    data = tmp_path / "ner.conll"
    data.write_text("\n".join(sentences))
    run = tmp_path / "run"
    result = invoke("train", "--task", "tag", "--data", data, "--out", run, *TINY_MODEL)
    assert result.exit_code == 0, result.output
    new = tmp_path / "new.conll"
    new.write_text("ana\nsaw\noslo\n\nbob\nwent\n")
    result = invoke("predict", run, "--data", new, "--out", tmp_path / "tags.csv")
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "tags.csv")
    assert [row["token"] for row in rows] == ["ana", "saw", "oslo", "bob", "went"]
    assert [row["position"] for row in rows] == ["0", "1", "2", "0", "1"]
    assert {row["predicted"] for row in rows} <= {"O", "PER", "LOC"}


def test_train_forecast_then_forecast_after_the_last_row(tmp_path):
    lines = ["time,flow"] + [
        f"2024-01-{1 + h // 24:02d} {h % 24:02d}:00,{100 + 20 * math.sin(h / 3.8):.2f}" for h in range(120)
    ]
    data = tmp_path / "flow.csv"
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    result = invoke(
        "train", "--task", "forecast", "--data", data, "--lookback", "12", "--horizon", "6", "--out", run, *TINY_MODEL
    )
    assert result.exit_code == 0, result.output
    assert "seasonal naive" in result.output
    result = invoke("forecast", run, "--data", data, "--out", tmp_path / "forecast.csv")
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "forecast.csv")
    assert [row["step"] for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[0]["origin"].startswith("2024-01-05 23:00") and rows[0]["time"].startswith("2024-01-06 00:00")
    # original units: the model's output on the last 12 rows, scaled and unscaled here with the run's scaler
    import torch

    from rnnlab.train import load_run

    _, model, task = load_run(run)
    mean, std = task["meta"]["scaler"]["mean"][0], task["meta"]["scaler"]["std"][0]
    last = [100 + 20 * math.sin(h / 3.8) for h in range(108, 120)]
    x = torch.tensor([[[(round(value, 2) - mean) / std] for value in last]], dtype=torch.float32)
    with torch.no_grad():
        expected = (model(x)[0, :, 0] * std + mean).tolist()
    assert [float(row["forecast"]) for row in rows] == pytest.approx(expected, abs=1e-4)
    result = invoke("predict", run, "--data", data, "--out", tmp_path / "p.csv")
    assert result.exit_code == 2 and "use `rnnlab forecast`" in result.output


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "--task",
        "recall",
        "--seq-len",
        "5",
        "--option",
        "n_train=32",
        "--option",
        "n_val=16",
        "--option",
        "n_test=16",
        "--out",
        run,
        *TINY_MODEL,
    ]
    assert invoke(*args).exit_code == 0
    result = invoke("train", "--out", run, "--resume")
    assert result.exit_code == 2 and "has finished" in result.output


def test_bad_key_value_option_is_refused(tmp_path):
    result = invoke("train", "--option", "n_train", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--option expects KEY=VALUE, got 'n_train'" in result.output


def test_a_run_whose_config_json_has_the_names_before_17_still_evaluates_and_resumes(tmp_path):
    data, run = shapes_csv(tmp_path / "shapes.csv"), tmp_path / "run"
    assert invoke("train", "--task", "classify", "--data", data, "--out", run, *TINY_MODEL).exit_code == 0
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    config["target_column"], config["target"] = config.pop("target"), config.pop("stop_at")
    (run / "config.json").write_text(json.dumps(config))
    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    evaluations = json.loads((run / "evaluation.json").read_text())
    assert evaluations["test split"]["accuracy"] == pytest.approx(summary["test_metrics"]["accuracy"])
    result = invoke("train", "--out", run, "--resume")
    assert result.exit_code == 2 and "has finished" in result.output


def test_forecast_flags_without_a_task_train_a_forecast(tmp_path):
    import numpy as np
    import pandas as pd

    values = 200 + 8 * np.arange(36) + np.random.default_rng(0).normal(scale=20, size=36)
    months = pd.date_range("2001-01", periods=36, freq="MS").strftime("%Y-%m")
    pd.DataFrame({"month": months, "sales": values}).to_csv(tmp_path / "sales.csv", index=False)
    out = tmp_path / "run"
    arguments = ["train", "--data", str(tmp_path / "sales.csv"), "--time", "month", "--target", "sales"]
    result = CliRunner().invoke(app, [*arguments, "--horizon", "6", "--epochs", "2", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["task"] == "forecast"
