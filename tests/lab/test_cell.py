"""One cell in this process: a user's CSV forecast (the grid's length is the lookback), and its defaults."""

from __future__ import annotations

import math

import pytest
from lab_fixtures import make_results

from rnnlab.lab.cell import default_target, first_reaching, run_cell, train_config
from rnnlab.lab.grid import CompareConfig, resolve
from rnnlab.lab.results import validate


@pytest.fixture
def series_csv(tmp_path):
    path = tmp_path / "load.csv"
    rows = ["time,load"]
    for hour in range(360):
        rows.append(f"2024-01-{1 + hour // 24:02d} {hour % 24:02d}:00,{10 + 3 * math.sin(2 * math.pi * hour / 24):.4f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_cell_forecasts_a_users_csv_with_the_length_as_lookback(series_csv, tmp_path):
    experiment = resolve(
        CompareConfig(
            task="forecast",
            data=str(series_csv),
            models=["gru"],
            lengths=[12],
            budget="quick",
            params=800,
            epochs=2,
            data_options={"horizon": 3},
        )
    )
    cell = experiment.cells[0]
    record = run_cell(
        {"key": cell.key, "model": cell.model, "length": cell.length, "seed": cell.seed},
        experiment.recipe,
        str(tmp_path / "run"),
    )
    assert record["status"] == "done", record.get("traceback")
    assert record["metric"]["name"] == "mae" and record["metric"]["higher_is_better"] is False
    assert record["spec"]["output_shape"] == [3, 1] and record["spec"]["seq_len"] == 12  # lookback 12, horizon 3
    # forecasts are judged against the naive forecast: the default target is to beat it
    assert record["target"]["value"] == pytest.approx(record["baselines"]["naive_mae"], rel=1e-5)
    assert record["gradient_flow"]["steps"][-1] == 12 and record["gates"]["retention_gate"].startswith("z")
    results = make_results([record], task="forecast", data=str(series_csv))
    validate(results)
    assert results["task"]["metric"] == "mae" and results["advice"]["pick"] == "gru"


def test_generated_tasks_stop_at_perfect_accuracy_and_keep_learning_rate_constant():
    recipe = resolve(CompareConfig(budget="quick")).recipe
    config = train_config({"model": "lstm", "length": 50, "seed": 0}, recipe, "unused")
    assert (config.stop_at, config.schedule, config.patience) == (1.0, "none", None)
    assert config.init == "chrono" and config.n_train == 2000 and config.seq_len == 50
    # the challengers get no recurrent initialisation
    assert train_config({"model": "tcn", "length": 50, "seed": 0}, recipe, "unused").init is None
    forecast = resolve(CompareConfig(task="forecast", budget="quick")).recipe
    config = train_config({"model": "lstm", "length": None, "seed": 1}, forecast, "unused")
    assert config.stop_at is None and config.patience == 4 and config.init == "auto"
    assert config.resolved().schedule == "plateau"  # the schedule is the task's default (forecast: plateau)


def test_default_target_is_skill_nine_tenths():
    class Spec:
        task, num_classes = "recall", 8

    target = default_target({}, Spec, "accuracy", True, {"chance_accuracy": 0.125})
    assert target["value"] == pytest.approx(0.125 + 0.9 * 0.875)
    Spec.task = "adding"
    assert default_target({}, Spec, "mse", False, {"trivial_mse": 0.16})["value"] == pytest.approx(0.016)
    assert default_target({"target_metric": 0.5}, Spec, "mse", False, {})["value"] == 0.5


def test_first_epoch_reaching_the_target():
    history = [
        {"epoch": 1, "seconds": 2.0, "val_metric": 0.3},
        {"epoch": 2, "seconds": 4.1, "val_metric": None},
        {"epoch": 3, "seconds": 6.0, "val_metric": 0.95},
        {"epoch": 4, "seconds": 8.0, "val_metric": 0.99},
    ]
    assert first_reaching(history, {"value": 0.9, "higher_is_better": True}) == (3, 6.0)
    assert first_reaching(history, {"value": 0.999, "higher_is_better": True}) == (None, None)
    assert first_reaching(history, {"value": 0.5, "higher_is_better": False}) == (1, 2.0)
    assert first_reaching(history, None) == (None, None)
