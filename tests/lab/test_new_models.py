"""The lab with the models built after it: minGRU, minLSTM and Informer as cells of a forecast
comparison (the measures that need an LSTM/GRU layer skip them cleanly), and models refused on
tasks they do not fit before any cell runs."""

from __future__ import annotations

import math

import pytest
from lab_fixtures import make_results
from typer.testing import CliRunner

from rnnlab.errors import ConfigError
from rnnlab.lab.cell import run_cell
from rnnlab.lab.grid import CompareConfig, resolve
from rnnlab.lab.results import validate


@pytest.fixture
def daily_cycle_csv(tmp_path):
    path = tmp_path / "load.csv"
    rows = ["time,load"]
    for hour in range(300):
        rows.append(f"2024-01-{1 + hour // 24:02d} {hour % 24:02d}:00,{10 + 3 * math.sin(2 * math.pi * hour / 24):.4f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_mingru_minlstm_and_informer_are_cells_of_a_forecast_comparison(daily_cycle_csv, tmp_path):
    models = ["mingru", "minlstm", "informer"]
    experiment = resolve(
        CompareConfig(
            task="forecast",
            data=str(daily_cycle_csv),
            models=models,
            lengths=[12],
            budget="quick",
            params=800,
            epochs=1,
            data_options={"horizon": 3},
        )
    )
    experiment.recipe["timing_seconds"] = 0.05  # the timings' values are not under test here
    records = []
    for cell in experiment.cells:
        record = run_cell(
            {"key": cell.key, "model": cell.model, "length": cell.length, "seed": cell.seed},
            experiment.recipe,
            str(tmp_path / cell.key),
        )
        assert record["status"] == "done", record.get("traceback")
        assert abs(record["num_parameters"] - 800) <= 0.25 * 800  # tiny budgets round coarsely
        assert math.isfinite(record["metric"]["value"]) and record["metric"]["name"] == "mae"
        # no rnnlab RNN/LSTM/GRU layer inside: no gradient-flow curve, no gate statistics, no failure
        assert record["gradient_flow"] is None and record["gates"] is None
        records.append(record)
    modes = {record["model"]: record["cost"]["stream_mode"] for record in records}
    # a finite series' forecasts are instance-normalised by default (each window scaled by its own
    # statistics, models/instance_norm.py): no carried state can stream that, so every model is
    # timed on the whole window (the carried-state modes are timed on generated data)
    assert all(mode.startswith("the whole window") for mode in modes.values()), modes
    results = make_results(records, task="forecast", data=str(daily_cycle_csv))
    validate(results)
    assert {row["model"] for row in results["summary"]} == set(models)


@pytest.mark.parametrize(
    ("task", "model", "head"), [("charlm", "informer", "forecast"), ("forecast", "transformer-xl", "lm")]
)
def test_a_model_on_a_task_it_does_not_fit_is_refused_before_any_cell_runs(task, model, head):
    with pytest.raises(ConfigError, match=rf"{model} cannot serve \({model} fits head {head}\); drop it from --models"):
        resolve(CompareConfig(task=task, models=["lstm", model], budget="quick"))


def test_transformer_xl_is_accepted_on_charlm():
    experiment = resolve(CompareConfig(task="charlm", models=["lstm", "transformer-xl"], budget="quick"))
    assert {cell.model for cell in experiment.cells} == {"lstm", "transformer-xl"}


def test_rnnlab_tasks_lists_the_tasks_each_model_fits():
    from rnnlab.cli import app

    result = CliRunner().invoke(app, ["tasks"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "forecast" in rows["informer"] and "charlm" not in rows["informer"]
    assert "charlm" in rows["transformer-xl"] and "forecast" not in rows["transformer-xl"]
    assert "charlm" in rows["mingru"] and "seq2seq" not in rows["mingru"]  # no encoder–decoder
    assert "all" in rows["lstm+attn"]
