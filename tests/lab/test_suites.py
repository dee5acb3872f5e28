"""The Bai et al. 2018 suite: the published rows, the bounds behind each verdict, and a real run end to end."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from rnnlab.errors import ConfigError, DataError
from rnnlab.lab import CompareConfig, compare, suites
from shared_files import shared_data

#: A suite small enough for the default test run: one LSTM of ~20K parameters, one epoch of single
#: sequences at the quick lengths (64 steps on adding and copy, 229 on JSB Chorales' pieces).
TINY_SUITE = {
    "suite": "bai2018",
    "budget": "quick",
    "models": ["lstm"],
    "params": 20_000,
    "epochs": 1,
    "train_samples": 64,
    "batch_size": 1,
    "workers": 2,
}


def test_the_table_holds_bai_et_al_2018_table_1():
    # the figures as printed in Table 1 of arXiv:1803.01271 (and quoted in issue 10)
    printed = {
        ("adding600", "lstm"): 0.164,
        ("adding600", "rnn"): 0.177,
        ("adding600", "gru"): 5.3e-5,
        ("adding600", "tcn"): 5.8e-5,
        ("copy1000", "lstm"): 0.0204,
        ("copy1000", "gru"): 0.0197,
        ("copy1000", "rnn"): 0.0202,
        ("copy1000", "tcn"): 3.5e-5,
        ("jsb", "lstm"): 8.45,
        ("jsb", "gru"): 8.43,
        ("jsb", "rnn"): 8.91,
        ("jsb", "tcn"): 8.10,
        ("nottingham", "lstm"): 3.29,
        ("nottingham", "gru"): 3.46,
        ("nottingham", "rnn"): 4.05,
        ("nottingham", "tcn"): 3.07,
    }
    assert printed == suites.BAI2018_TABLE
    assert "1803.01271" in suites.BAI2018_SOURCE["url"]


def test_the_papers_sizes_are_the_full_budgets_sizes():
    sizes = {experiment.name: experiment.sizes["full"] for experiment in suites.BAI2018_EXPERIMENTS}
    assert (sizes["adding"].length, sizes["adding"].params) == (600, 70_000)
    assert (sizes["copy"].length, sizes["copy"].params) == (1000, 16_000)
    assert sizes["music"].params == 300_000


def test_gated_models_must_solve_the_long_range_rows():
    memoryless = 10 * math.log(8) / (1000 + 20)  # ≈ 0.0204, the paper's LSTM/GRU/RNN level
    bound, sentence = suites.criterion("copy1000", "lstm", 0.0204, memoryless, True)
    assert bound == pytest.approx(0.0020387, rel=1e-4)
    assert "tenth" in sentence
    assert suites.criterion("adding600", "gru", 5.3e-5, 0.167, True)[0] == 1e-3


def test_the_tcn_is_held_within_twice_the_paper_and_music_within_a_fifth_of_a_nat():
    assert suites.criterion("adding600", "tcn", 5.8e-5, 0.167, True)[0] == pytest.approx(1.16e-4)
    assert suites.criterion("jsb", "tcn", 8.10, 11.0, True)[0] == pytest.approx(8.30)
    assert suites.criterion("jsb", "lstm", 8.45, 11.0, True)[0] == 8.45


def test_a_paper_figure_no_better_than_trivial_is_replaced_by_5_percent_below_the_baseline():
    # the paper's adding RNN (0.177) is worse than predicting 1 (0.1565 on our test split): the bar is
    # 0.95 × 0.1565 = 0.148675; the paper's copy RNN (0.0202) is 1% below the memoryless 0.0204: 0.01938
    bound, sentence = suites.criterion("adding600", "rnn", 0.177, 0.1565, True)
    assert bound == pytest.approx(0.148675)
    assert sentence == "≤ the paper's 0.177 and ≤ 0.95× the trivial baseline (0.1487)"
    assert suites.criterion("copy1000", "rnn", 0.0202, 0.0204, True)[0] == pytest.approx(0.01938)


def test_a_shortened_run_is_held_only_to_its_trivial_baseline_with_the_margin():
    bound, sentence = suites.criterion(None, "lstm", None, 0.16, False)
    assert bound == pytest.approx(0.152) and "shortened" in sentence and "0.95×" in sentence
    assert suites.criterion("jsb", "lstm", 8.45, 11.09, False)[0] == pytest.approx(10.5355)  # not the paper's bar
    assert suites.criterion(None, "lstm", None, None, False)[0] is None


def judged_rows(folder, budget, models, measured):
    """The rows ``assemble_suite`` writes for hand-made cells: ``measured[(experiment, model)]`` is
    (our test metric, its trivial baseline). Nothing is trained."""
    config = CompareConfig(suite="bai2018", budget=budget, models=models, out=str(folder))
    experiments, missing = suites.resolve_suite(config)
    suites.prepare_suite_out(folder, config)
    per_experiment = {}
    for suite_experiment, _ in experiments:
        cells = [
            {
                "model": model,
                "status": "done",
                "test_metrics": {suite_experiment.metric: ours},
                "baselines": {suite_experiment.baseline: baseline},
                "num_parameters": 1_000,
                "train_seconds": 1.0,
                "epochs": 1,
                "stopped": "epochs",
                "run_dir": str(folder / "no-run"),
            }
            for (name, model), (ours, baseline) in measured.items()
            if name == suite_experiment.name
        ]
        per_experiment[suite_experiment.name] = {
            "cells": cells,
            "cells_expected": len(cells),
            "cells_done": len(cells),
            "timing": {"cells_seconds": 1.0},
        }
    results = suites.assemble_suite(
        config,
        experiments,
        per_experiment,
        missing,
        machine={"platform": "test", "cpu_cores": 2, "executor": "local", "workers": 1},
        started=datetime.now(timezone.utc),
        out=folder,
    )
    suites.validate(results)
    return {(row["experiment"], row["model"]): row["verdict"] for row in results["rows"] if row["ours"] is not None}


def test_a_full_row_at_the_trivial_baseline_misses_even_below_the_papers_figure(tmp_path):
    verdicts = judged_rows(
        tmp_path,
        "full",
        ["rnn", "lstm"],
        {
            ("adding", "rnn"): (0.1565, 0.1565),  # docs/bai2018.md's RNN: the trivial baseline exactly (paper 0.177)
            ("adding", "lstm"): (5.4e-4, 0.1565),  # solved
            ("copy", "rnn"): (0.0201, 0.02039),  # below the paper's 0.0202, 1.4% below memoryless
            ("copy", "lstm"): (1.5e-4, 0.02039),  # solved: below a tenth of memoryless
        },
    )
    assert verdicts == {
        ("adding", "rnn"): "misses",
        ("adding", "lstm"): "meets",
        ("copy", "rnn"): "misses",
        ("copy", "lstm"): "meets",
    }


def test_a_quick_row_meets_only_5_percent_below_its_trivial_baseline(tmp_path):
    verdicts = judged_rows(
        tmp_path,
        "quick",
        ["lstm"],
        {
            ("adding", "lstm"): (0.160, 0.1667),  # 4% below predicting 1: not learned
            ("copy", "lstm"): (0.150, 0.2079),  # 28% below memoryless
        },
    )
    assert verdicts == {("adding", "lstm"): "misses", ("copy", "lstm"): "meets"}


def test_a_miss_on_the_trivial_baseline_says_the_plateau_was_not_left():
    memoryless = 10 * math.log(8) / 1020
    text = suites.diagnose_miss(0.02053, 0.1 * memoryless, memoryless, [0.0262, 0.0206, 0.02053], 2_000, 250)
    assert "0.02053" in text and "2,000 steps" in text and "not left the plateau" in text


def test_a_miss_still_falling_says_how_many_steps_the_last_epochs_rate_needs():
    # the copy GRU's last two validation values: a fall of 0.000185 per epoch of 250 steps; from
    # 0.0195533 down to the bound 0.00204 takes ceil(0.0175133 / 0.000185) = 95 epochs = 23,750 steps
    text = suites.diagnose_miss(0.01954, 0.00204, 0.02039, [0.0197383, 0.0195533], 2_000, 250)
    assert "still falling" in text and "23,750 more steps" in text


def test_a_miss_that_left_the_plateau_in_its_last_epoch_says_the_budget_ended_there():
    # the adding LSTM at 2,000 steps: validation 0.1636 (trivial 0.1565) for three epochs, then 0.00295
    text = suites.diagnose_miss(0.00322, 1e-3, 0.1565, [0.1635, 0.1647, 0.1636, 0.00295], 2_000, 500)
    assert "only in its last epoch" in text and "0.1636 → 0.00295" in text


def test_a_miss_no_longer_falling_names_the_best_epoch():
    text = suites.diagnose_miss(8.61, 8.45, 11.09, [9.0, 8.6, 8.7, 8.9], 916, 229)
    assert "no longer improving" in text and "epoch 2 of 4" in text
    # a last epoch a little below the one before, but above the best, is noise after early stopping
    text = suites.diagnose_miss(8.47, 8.43, 11.09, [9.0, 8.42, 8.47, 8.46], 916, 229)
    assert "no longer improving" in text and "epoch 2 of 4" in text


def test_the_closing_note_lists_each_missed_row_with_its_diagnosis():
    rows = [
        {
            "title": "Copy memory",
            "length": 1000,
            "model": "lstm",
            "verdict": "misses",
            "criterion": "bound b",
            "reason": "bound b. Reached 0.0205, the trivial baseline",
            "diagnosis": "Reached 0.0205, the trivial baseline",
        },
        {
            "title": "Adding problem",
            "length": 600,
            "model": "tcn",
            "verdict": "meets",
            "criterion": "c",
            "reason": "c",
            "diagnosis": None,
        },
    ]
    note = suites.closing_note({"rows": rows})
    assert note == "Rows that miss their bound: Copy memory T=1000, lstm: Reached 0.0205, the trivial baseline."
    assert suites.closing_note({"rows": rows[1:]}) == ""
    # a results file written before the diagnosis field: the whole reason
    old_row = {key: value for key, value in rows[0].items() if key != "diagnosis"}
    assert suites.closing_note({"rows": [old_row]}).endswith("lstm: bound b. Reached 0.0205, the trivial baseline.")


def test_the_suites_music_lstm_trains_with_what_rnnlab_train_gives_by_default(tmp_path, jsb_chorales):
    from rnnlab.lab.cell import train_config
    from rnnlab.train import TrainConfig

    config = CompareConfig(suite="bai2018", budget="full", music_data=str(jsb_chorales), out=str(tmp_path))
    experiments, _ = suites.resolve_suite(config)
    music = next(experiment for suite_experiment, experiment in experiments if suite_experiment.task == "music")
    cell = {"model": "lstm", "length": None, "seed": 0}
    in_suite = train_config(cell, music.recipe, str(tmp_path / "run")).resolved()
    by_default = TrainConfig(task="music", model="lstm", data=str(jsb_chorales), params=300_000).resolved()
    for name in ("lr", "dropout", "num_layers", "batch_size", "schedule", "init", "clip"):
        assert getattr(in_suite, name) == getattr(by_default, name), name
    assert music.recipe["model_settings"]["rnn"] == {"lr": 1e-3}  # the one recurrent exception measured


def test_paper_rows_match_only_the_papers_lengths():
    adding, copy, _ = suites.BAI2018_EXPERIMENTS
    assert suites.paper_row(adding, 600, None) == "adding600"
    assert suites.paper_row(adding, 50, None) is None
    assert suites.paper_row(copy, 1000, None) == "copy1000"


def test_the_music_row_comes_from_the_files_content_or_the_users_choice_never_its_name(tmp_path, jsb_chorales):
    import shutil

    music = suites.BAI2018_EXPERIMENTS[2]
    renamed = tmp_path / "chorales_copy.mat"
    shutil.copyfile(jsb_chorales, renamed)
    assert suites.paper_row(music, None, str(renamed)) == "jsb"  # JSB's bytes under any name
    variant = tiny_music_file(tmp_path, "my_jsb_variant.mat")
    assert suites.paper_row(music, None, str(variant)) is None  # other pieces under JSB's name
    assert suites.paper_row(music, None, str(tmp_path / "Nottingham.mat")) is None
    assert suites.paper_row(music, None, str(variant), "nottingham") == "nottingham"  # --suite-row
    assert suites.paper_row(music, None, str(tmp_path)) is None  # a folder of rolls: no row unless named


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"suite": "bai2019"}, ConfigError, "did you mean 'bai2018'"),
        ({"suite": "bai2018", "data": "x.csv"}, ConfigError, "--music-data"),
        ({"suite": "bai2018", "lengths": [10]}, ConfigError, "paper's lengths"),
        ({"suite": "bai2018", "music_data": "/nonexistent/JSB.mat"}, DataError, "/nonexistent/JSB.mat"),
        ({"music_data": "JSB.mat"}, ConfigError, "add --suite"),
        ({"suite_row": "jsb"}, ConfigError, "add --suite"),
        ({"suite": "bai2018", "suite_row": "jsbb"}, ConfigError, "did you mean 'jsb'"),
        ({"suite": "bai2018", "suite_row": "jsb"}, ConfigError, "--music-data"),
    ],
)
def test_bad_suite_input_is_refused_before_anything_runs(tmp_path, changes, error, message):
    out = tmp_path / "suite"
    with pytest.raises(error, match=message.replace("(", r"\(")):
        compare(CompareConfig(out=str(out), **changes), progress=False)
    assert not out.exists()


def test_a_folder_that_is_not_a_suite_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an rnnlab suite folder"):
        compare(CompareConfig(out=str(tmp_path), **TINY_SUITE), progress=False)


def tiny_music_file(folder: Path, name: str = "my_jsb_variant.mat") -> Path:
    """A .mat in the standard layout: 4 / 2 / 2 random 10-frame rolls (not a paper's data set, whatever
    its name says)."""
    import scipy.io

    rng = np.random.default_rng(0)

    def pieces(count):
        cell = np.empty(count, dtype=object)
        for index in range(count):
            cell[index] = (rng.random((10, 88)) < 0.1).astype(np.float64)
        return cell

    path = folder / name
    scipy.io.savemat(path, {"traindata": pieces(4), "validdata": pieces(2), "testdata": pieces(2)})
    return path


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    """The suite run for real (local worker processes): adding and copy at the quick lengths and the
    JSB Chorales file of ../shared (its row found by checksum), one small LSTM each."""
    folder = tmp_path_factory.mktemp("suite")
    music = shared_data("data/JSB_Chorales.mat")
    return compare(CompareConfig(out=str(folder / "bai"), music_data=str(music), **TINY_SUITE), progress=False)


def rerun(outcome):
    return compare(
        CompareConfig(out=str(outcome.out), music_data=outcome.results["experiments"][2]["data"], **TINY_SUITE),
        progress=False,
    )


def test_a_tiny_suite_writes_valid_results_and_every_row(tiny_suite):
    results = json.loads((tiny_suite.out / "results.json").read_text())
    suites.validate(results)
    assert [(row["experiment"], row["model"]) for row in results["rows"]] == [
        ("adding", "lstm"),
        ("copy", "lstm"),
        ("music", "lstm"),
    ]
    assert results["status"] == "complete"
    for experiment in ("adding", "copy", "music"):
        assert (tiny_suite.out / experiment / "report.html").is_file()
        assert (tiny_suite.out / experiment / "results.json").is_file()
    assert "Against a published table" in (tiny_suite.out / "report.html").read_text()


def test_our_number_is_the_runs_own_test_metric(tiny_suite):
    results = json.loads((tiny_suite.out / "results.json").read_text())
    for row, metric in zip(results["rows"], ("mse", "cross_entropy", "nll")):
        run = next((tiny_suite.out / row["experiment"] / "runs").iterdir())
        summary = json.loads((run / "summary.json").read_text())  # written by the trainer, not the suite
        assert row["ours"] == pytest.approx(summary["test_metrics"][metric])
        assert row["num_parameters"] == summary["num_parameters"]
        config = json.loads((run / "config.json").read_text())
        assert row["training"]["lr"] == config["lr"] and row["training"]["batch_size"] == config["batch_size"]
    adding, copy, music = results["rows"]
    assert adding["training"]["init"] == copy["training"]["init"] == "chrono"
    assert copy["training"]["chrono_max_len"] == 20 + 20  # T + 2·10 steps: the copy sequence
    assert adding["steps"] == 64  # 1 epoch of 64 samples at batch 1
    assert music["steps"] == 229  # JSB's 229 training pieces, one per step


def test_shortened_rows_are_judged_against_the_trivial_baseline(tiny_suite):
    adding, copy, music = tiny_suite.results["rows"]
    assert adding["paper_row"] is None and adding["length"] == 50
    assert adding["baseline"] == pytest.approx(2 / 12, abs=0.03)  # predicting 1: Var(y) = 1/6
    assert copy["baseline"] == pytest.approx(10 * math.log(8) / (20 + 20))
    assert music["paper_row"] == "jsb" and music["paper"] == 8.45  # JSB's row, but the quick budget's bar
    for row in (adding, copy, music):
        assert row["bound"] == pytest.approx(0.95 * row["baseline"])


def test_the_tiny_suites_music_row_learns(tiny_suite):
    """The fast version of the slow quick suite below: one epoch of JSB's pieces (229 steps) took the
    LSTM to 9.97 nats when measured; the bar, 0.95 × the marginal 11.09 = 10.54, is one a model that
    learned nothing (its head starts at the keys' rates: the marginal) cannot meet."""
    music = tiny_suite.results["rows"][2]
    assert music["baseline"] == pytest.approx(11.09, abs=0.01)
    assert music["ours"] <= 0.95 * 11.09 and music["verdict"] == "meets", music


def test_missing_music_rows_say_why(tmp_path):
    config = CompareConfig(out=str(tmp_path), **TINY_SUITE)
    experiments, missing = suites.resolve_suite(config)
    assert [experiment.name for experiment, _ in experiments] == ["adding", "copy"]
    suites.prepare_suite_out(tmp_path, config)
    results = suites.assemble_suite(
        config,
        [],
        {},
        missing,
        machine={"platform": "test", "cpu_cores": 2, "executor": "local", "workers": 1},
        started=datetime.now(timezone.utc),
        out=tmp_path,
    )
    suites.validate(results)
    (music,) = results["rows"]
    assert music["verdict"] == "missing" and music["ours"] is None and music["paper"] == 8.45
    assert "--music-data" in music["reason"]
    assert results["status"] == "partial"
    assert "missing: no music data given" in suites.render_markdown(results)


def test_the_markdown_table_is_rendered_from_results_json(tiny_suite, capsys):
    assert suites.main([str(tiny_suite.out)]) == 0
    printed = capsys.readouterr().out
    assert printed == (tiny_suite.out / "table.md").read_text()
    table_rows = [line for line in printed.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(table_rows) == 3
    assert suites.format_metric(tiny_suite.results["rows"][0]["ours"]) in table_rows[0]


def test_a_rerun_skips_the_finished_cells(tiny_suite):
    again = rerun(tiny_suite)
    assert (again.ran, again.skipped) == (0, 3)
    assert [row["ours"] for row in again.results["rows"]] == [row["ours"] for row in tiny_suite.results["rows"]]


def test_a_snapshot_runs_nothing_and_reports_what_is_finished(tiny_suite):
    config = CompareConfig(
        out=str(tiny_suite.out),
        music_data=tiny_suite.results["experiments"][2]["data"],
        **{**TINY_SUITE, "epochs": None},
    )  # a snapshot of the suite's own recipe
    with pytest.raises(ConfigError, match="different experiment"):
        suites.run_suite(config, progress=False, execute=False)  # epochs differ: another experiment
    snapshot = suites.run_suite(
        CompareConfig(out=str(tiny_suite.out), music_data=config.music_data, **TINY_SUITE),
        progress=False,
        execute=False,
    )
    assert (snapshot.ran, snapshot.skipped) == (0, 3)
    assert [row["ours"] for row in snapshot.results["rows"]] == [row["ours"] for row in tiny_suite.results["rows"]]


def test_a_suite_folder_with_another_budget_is_refused(tiny_suite):
    with pytest.raises(ConfigError, match="budget: 'quick' there, 'standard' now"):
        compare(CompareConfig(out=str(tiny_suite.out), **{**TINY_SUITE, "budget": "standard"}), progress=False)


def test_the_schema_refuses_an_unknown_verdict(tiny_suite):
    results = json.loads((tiny_suite.out / "results.json").read_text())
    results["rows"][0]["verdict"] = "close enough"
    with pytest.raises(jsonschema.ValidationError):
        suites.validate(results)
    (tiny_suite.out / "broken.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match="rows/0/verdict"):
        suites.load(tiny_suite.out / "broken.json")


@pytest.mark.slow
def test_the_quick_suite_runs_with_jsb_chorales(tmp_path, jsb_chorales):
    """docs/bai2018.md: the quick budget runs every row at shortened lengths (T = 50 and 20) and holds each to
    0.95 × its trivial baseline; the music rows are JSB's (by checksum)."""
    outcome = compare(
        CompareConfig(
            suite="bai2018",
            budget="quick",
            music_data=str(jsb_chorales),
            out=str(tmp_path / "quick"),
            workers=min(2, os.cpu_count() or 1),
        ),
        progress=False,
    )
    results = outcome.results
    assert results["status"] == "complete"
    assert [(row["experiment"], row["model"]) for row in results["rows"]] == [
        (experiment, model) for experiment in ("adding", "copy", "music") for model in ("rnn", "lstm", "gru", "tcn")
    ]
    assert [row["length"] for row in results["rows"]] == [50] * 4 + [20] * 4 + [None] * 4
    music = [row for row in results["rows"] if row["experiment"] == "music"]
    assert [row["paper"] for row in music] == [8.91, 8.45, 8.43, 8.10]
    for row in results["rows"]:  # a quick run is held to its trivial baseline with the margin, not to the paper
        assert math.isfinite(row["ours"]) and row["bound"] == pytest.approx(0.95 * row["baseline"])
        assert row["verdict"] in ("meets", "misses")


def test_the_command_line_refuses_a_bad_suite_naming_the_nearest(tmp_path):
    from typer.testing import CliRunner

    from rnnlab.cli import app

    result = CliRunner().invoke(app, ["compare", "--suite", "bai2019", "--out", str(tmp_path / "suite")])
    assert result.exit_code != 0
    assert "did you mean 'bai2018'" in " ".join(result.output.split())
    assert not (tmp_path / "suite").exists()
