"""The results document: summary statistics, the skill scale, the schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
from lab_fixtures import make_cell, make_results

from rnnlab.errors import DataError
from rnnlab.lab.results import load, schema, skill, strip_machine_dependent, summarise, validate


def test_summary_mean_and_spread_over_seeds():
    values = [0.91, 0.95, 0.99]
    cells = [make_cell("lstm", 100, seed, value=v, train_ms=10.0 + seed) for seed, v in enumerate(values)]
    (row,) = summarise(cells)
    assert row["n"] == 3 and row["seeds"] == [0, 1, 2]
    assert row["metric_mean"] == pytest.approx(sum(values) / 3)
    # sample standard deviation, by hand: sqrt(sum (v - mean)^2 / (n - 1))
    mean = sum(values) / 3
    assert row["metric_std"] == pytest.approx((sum((v - mean) ** 2 for v in values) / 2) ** 0.5)
    assert (row["metric_min"], row["metric_max"]) == (0.91, 0.99)
    assert row["cost"]["train_ms_per_step"] == pytest.approx(11.0)


def test_failed_cells_do_not_enter_the_summary():
    failed = {"key": "rnn__T10__s1", "model": "rnn", "length": 10, "seed": 1, "status": "failed", "error": "x"}
    rows = summarise([make_cell("rnn", 10, 0, value=0.5), failed])
    assert rows[0]["n"] == 1 and rows[0]["metric_std"] == 0.0


def test_skill_is_zero_at_chance_and_one_when_perfect():
    task = {"baselines": {"chance_accuracy": 0.125}, "spec": {"num_classes": 8}}
    assert skill(0.125, "accuracy", True, task) == pytest.approx(0.0)
    assert skill(1.0, "accuracy", True, task) == pytest.approx(1.0)
    assert skill(0.5625, "accuracy", True, task) == pytest.approx(0.5)
    errors = {"baselines": {"trivial_mse": 0.2}}
    assert skill(0.02, "mse", False, errors) == pytest.approx(0.9)
    assert skill(0.02, "mse", False, {"baselines": {}}) is None


def test_constructed_study_fits_the_schema(study):
    validate(study)
    assert study["status"] == "complete" and study["cells_done"] == 36


def test_schema_rejects_a_wrong_field(study):
    broken = json.loads(json.dumps(study))
    broken["cells"][0]["metric"]["value"] = "high"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = json.loads(json.dumps(study))
    broken["claims"][0]["verdict"] = "probably"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(schema())


def test_partial_results_say_so():
    results = make_results([make_cell("rnn", 10)], models=["rnn", "lstm"], lengths=[10], seeds=[0])
    validate(results)
    assert results["status"] == "partial" and results["cells_done"] == 1 and results["cells_expected"] == 2


def test_load_names_the_problem(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"schema": "rnnlab-compare-results"')
    with pytest.raises(DataError, match="not valid JSON"):
        load(path)
    path.write_text('{"schema": "rnnlab-compare-results"}')
    with pytest.raises(DataError, match="not an rnnlab results file"):
        load(path)
    with pytest.raises(DataError, match="no such results file"):
        load(tmp_path / "missing.json")


def test_machine_dependent_fields_are_stripped(study):
    stripped = strip_machine_dependent(study)
    assert "cost" not in stripped["cells"][0] and "timing" not in stripped
    assert stripped["cells"][0]["metric"] == study["cells"][0]["metric"]
    assert "cost" not in stripped["summary"][0]
    assert study["cells"][0]["cost"]  # the original is untouched
