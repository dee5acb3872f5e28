"""Suites: a published table re-run with rnnlab, row by row. ``bai2018`` is Bai, Kolter & Koltun 2018.

A suite is a set of experiments, each an ordinary comparison (``grid.Experiment``) written into its
own folder under the suite's folder, all run by one executor (local processes or Ray) so the
workers stay busy across experiments. The suite folder ``DIR`` holds

    suite.json          the suite, its budget and data (what a re-run is checked against)
    <experiment>/       one comparison folder per experiment (adding/, copy/, music/): cells/,
                        runs/, results.json and report.html as ``rnnlab compare`` writes them
    results.json        the suite's rows, validated against ``rnnlab/schemas/suite.schema.json``
    report.html         our number beside the paper's, row by row, with the training choices used
    table.md            the same rows as a Markdown table (``render_markdown``; also
                        ``python -m rnnlab.lab.suites DIR`` re-renders it from results.json)

Finished cells are kept: re-running the same command runs only what is missing, as ``compare`` does.

Bai et al. ran each model at the sizes of their Table 1 (about 70K parameters on the adding
problem with T = 600, 16K on copy memory with T = 1000, 300K on JSB Chorales) and reported one
number per row: the test MSE (adding), the test cross-entropy per step over all T + 20 steps
(copy memory; a model without memory scores 10·ln 8 / (T + 20) at best), and the test frame
negative log-likelihood in nats (music). The paper's LSTM and GRU sit at those memoryless levels on
the two long-range tasks; the rows here show what the same families reach with the training
practice of the seeds (chrono initialisation sized to T, the forget-gate bias it implies, gradient
clipping, a constant learning rate on the synthetic tasks) — the defaults of ``TASK_DEFAULTS``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from rnnlab.errors import ConfigError, DataError, unknown_name
from rnnlab.io import atomic_write_json, atomic_write_text
from rnnlab.lab import results as results_document
from rnnlab.lab.folder import (
    CompareOutcome,
    build_results,
    cell_task,
    failed_cells,
    finished_cells,
    machine_facts,
    prepare_out,
    run_tasks,
    write_outputs,
)
from rnnlab.lab.published import (
    BAI2018_EXPERIMENTS,
    BAI2018_MODELS,
    BAI2018_SOURCE,
    BAI2018_TABLE,
    KNOWN_MUSIC_FILES,
    MUSIC_ROWS,
    PAPER_ROW_TITLES,
    SuiteExperiment,
)

SUITE_FILE = "suite.json"
SCHEMA_ID = "rnnlab-suite-results"
SCHEMA_VERSION = 1
#: A suite folder holds these (and the experiment folders); ``force`` removes only them.
OWNED = ("results.json", "report.html", "table.md", SUITE_FILE)

SUITES = ("bai2018",)
#: Gated models held to the issue's acceptance bar on the long-range rows (the paper's failed there).
GATED = ("lstm", "gru")


def paper_row(
    experiment: SuiteExperiment, length: int | None, music_data: str | None, suite_row: str | None = None
) -> str | None:
    """The Table 1 row an experiment is compared with (``None``: no published row for it).

    The synthetic rows are the paper's only at the paper's T. The music row is ``suite_row`` when
    the user names it, else the row of a known file recognised by its sha256 (``KNOWN_MUSIC_FILES``);
    a file's name decides nothing.
    """
    if experiment.task == "adding":
        return "adding600" if length == 600 else None
    if experiment.task == "copy":
        return "copy1000" if length == 1000 else None
    if experiment.task == "music" and music_data:
        if suite_row is not None:
            return suite_row
        return KNOWN_MUSIC_FILES.get(file_sha256(music_data)) if os.path.isfile(music_data) else None
    return None


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: A row meets only if it also beats its trivial baseline by this fraction: ours ≤ (1 − margin) ·
#: baseline. The paper's own figure can be no better than trivial (its adding T=600 RNN, 0.177, is
#: worse than predicting 1); a model that learned nothing must not meet such a bar. 5% is above the
#: run-to-run spread of a run that stays on the plateau (``ON_BASELINE``: within 2% of the baseline).
BASELINE_MARGIN = 0.05


def criterion(
    row: str | None, model: str, paper: float | None, baseline: float | None, full_run: bool
) -> tuple[float | None, str]:
    """The bound our number must reach for the verdict "meets", and the sentence that states it.

    On the long-range rows the gated models must solve the task, which the paper's did not: MSE
    below 0.001 on adding, a cross-entropy at most a tenth of the memoryless baseline on copy. The
    TCN must land within 2× of the paper's figure (within 0.2 nats on music); every other row must
    reach the paper's figure. A shortened run (the quick budget: shorter sequences, a few steps) is
    held to its trivial baseline only. Every row with a bound must in addition beat its trivial
    baseline by ``BASELINE_MARGIN`` (5%): the bound is the lower of the two.
    """
    bound, sentence = _published_bound(row, model, paper, baseline, full_run)
    if bound is None or baseline is None:
        return bound, sentence
    required = (1 - BASELINE_MARGIN) * baseline
    margin = f"≤ {1 - BASELINE_MARGIN:g}× the trivial baseline ({required:.4g})"
    if not full_run:
        return required, f"shortened run (quick budget): {margin}"
    if required < bound:
        return required, f"{sentence} and {margin}"
    return bound, sentence


def _published_bound(
    row: str | None, model: str, paper: float | None, baseline: float | None, full_run: bool
) -> tuple[float | None, str]:
    if not full_run:
        if baseline is None:
            return None, "shortened run (quick budget): no bound"
        return baseline, "shortened run (quick budget): below the trivial baseline"
    if row == "adding600" and model in GATED:
        return 1e-3, "MSE < 0.001 (solved; the paper's LSTM stayed at the trivial 0.167)"
    if row == "copy1000" and model in GATED and baseline is not None:
        return 0.1 * baseline, f"≤ a tenth of the memoryless baseline ({0.1 * baseline:.5f})"
    if paper is None:
        return None, "no published row"
    if model == "tcn":
        if row in ("jsb", "nottingham"):
            return paper + 0.2, f"≤ the paper's {paper:g} + 0.2"
        return 2 * paper, f"≤ 2× the paper's {paper:g}"
    return paper, f"≤ the paper's {paper:g}"


# --------------------------------------------------------------------------- running
def resolve_suite(config: Any) -> tuple[list[tuple[SuiteExperiment, Any]], list[dict[str, Any]]]:
    """The suite's experiments as resolved comparisons, and the experiments left out (with why).

    ``config`` is a ``CompareConfig`` with ``suite`` set. Its ``params``, ``epochs``,
    ``batch_size``, ``train_samples`` and ``max_minutes`` override every experiment's (for tests
    and tiny runs); ``models`` (default rnn, lstm, gru, tcn), ``seeds``, ``workers``, ``executor``
    apply as in ``compare``.
    """
    from rnnlab.lab.grid import BUDGETS, CompareConfig, resolve

    if config.suite not in SUITES:
        raise unknown_name("suite", str(config.suite), SUITES)
    if config.budget not in BUDGETS:
        raise unknown_name("budget", str(config.budget), BUDGETS)
    if config.data is not None:
        raise ConfigError(
            f"--suite {config.suite} sets its own tasks and data; got --data {config.data!r} "
            "(give music data with --music-data)"
        )
    if config.lengths is not None:
        raise ConfigError(
            f"--suite {config.suite} uses the paper's lengths (quick: shortened ones); got --lengths {config.lengths}"
        )
    if config.music_data is not None and not os.path.exists(config.music_data):
        raise DataError(
            f"--music-data {config.music_data}: no such file or folder (expected a .mat with traindata, "
            "validdata and testdata, or a folder of .npy piano rolls)"
        )
    if config.suite_row is not None:
        if config.suite_row not in MUSIC_ROWS:
            raise unknown_name("suite row", str(config.suite_row), MUSIC_ROWS)
        if config.music_data is None:
            raise ConfigError(
                f"--suite-row {config.suite_row} names the published row of the music data; "
                "give the data with --music-data"
            )
    models = suite_models(config)
    out = suite_out(config)
    resolved, missing = [], []
    for experiment in BAI2018_EXPERIMENTS:
        if experiment.needs_data and config.music_data is None:
            missing.append(
                {
                    "name": experiment.name,
                    "task": experiment.task,
                    "title": experiment.title,
                    "reason": "no music data given: add --music-data FILE (a .mat such as JSB_Chorales.mat, "
                    "or a folder of .npy piano rolls) to run this row",
                }
            )
            continue
        size = experiment.sizes[config.budget]
        overrides = {
            name: getattr(config, name)
            for name in ("params", "epochs", "batch_size", "max_minutes")
            if getattr(config, name) is not None
        }
        train_samples = config.train_samples if config.train_samples is not None else size.train_samples
        compare_config = CompareConfig(
            task=experiment.task,
            data=config.music_data if experiment.needs_data else None,
            models=models,
            lengths=None if size.length is None else [size.length],
            seeds=list(config.seeds) if config.seeds is not None else [0],
            budget=config.budget,
            params=overrides.get("params", size.params),
            epochs=overrides.get("epochs", size.epochs),
            # steps, not minutes, bound a suite cell: the cap is a safety net far beyond the budget
            max_minutes=overrides.get("max_minutes", SUITE_MAX_MINUTES[config.budget]),
            batch_size=overrides.get("batch_size", size.batch_size),
            train_samples=train_samples if experiment.task != "music" else None,
            lr=config.lr,
            clip=config.clip,
            init=config.init,
            out=str(out / experiment.name),
            force=config.force,
            executor=config.executor,
            address=config.address,
            workers=config.workers,
        )
        resolved_experiment = resolve(compare_config)
        resolved_experiment.recipe["suite"] = config.suite
        resolved_experiment.recipe["model_settings"] = {
            model: settings for model, settings in experiment.model_settings.items() if model in models
        }
        resolved.append((experiment, resolved_experiment))
    return resolved, missing


def suite_out(config: Any) -> Path:
    """Where a suite is written: ``config.out``, else ``runs/suite-<suite>-<budget>``."""
    return Path(config.out or os.path.join("runs", f"suite-{config.suite}-{config.budget}"))


def suite_models(config: Any) -> list[str]:
    """The models a suite runs: ``config.models`` if the user chose them, else rnn, lstm, gru and tcn."""
    from rnnlab.lab.grid import DEFAULT_MODELS

    chosen = list(config.models or [])
    return chosen if chosen and chosen != list(DEFAULT_MODELS) else list(BAI2018_MODELS)


#: The training-time cap per suite cell, minutes: far above what the step budgets take on 2 cores,
#: so the steps decide (a loaded machine slows a cell down; it does not change its result).
SUITE_MAX_MINUTES = {"quick": 30.0, "standard": 240.0, "full": 480.0}


def run_suite(config: Any, *, progress: bool = True, console: Any = None, execute: bool = True) -> CompareOutcome:
    """Run (or finish) the suite ``config.suite`` into ``config.out``; write results.json, report.html, table.md.

    ``execute=False`` runs nothing: the documents are written from the cells finished so far (a
    snapshot of a suite still running elsewhere, or a rewrite after an upgrade).
    """
    from rnnlab.lab.executors import check_executor, make_executor

    experiments, missing = resolve_suite(config)
    out = suite_out(config)
    check_executor(config.executor, config.address)
    prepare_suite_out(out, config)
    for _, experiment in experiments:
        prepare_out(experiment)
    tasks, total = [], 0
    for suite_experiment, experiment in experiments:
        done = finished_cells(experiment.out)
        total += len(experiment.cells)
        for cell in experiment.cells:
            if cell.key not in done:
                task = cell_task(cell, experiment)
                task["experiment"] = suite_experiment.name
                task["cost"] = _cost_estimate(suite_experiment, experiment, cell.model)
                tasks.append(task)
    # Longest cells first: the last cell to finish is then a short one, and no worker idles long.
    tasks.sort(key=lambda task: -task["cost"])
    pending = len(tasks)
    if not execute:
        tasks = []
    workers = experiments[0][1].workers if experiments else 1
    executor = make_executor(config.executor, workers=workers, address=config.address)

    machine = {**machine_facts(), **executor.describe()}
    started = datetime.now(timezone.utc)
    folders = {suite_experiment.name: experiment.out for suite_experiment, experiment in experiments}
    display = _Display(progress, console, total, len(tasks))
    interrupted = run_tasks(executor, tasks, display, lambda task: folders[task["experiment"]])
    per_experiment = {}
    for suite_experiment, experiment in experiments:
        results = _up_to_date_results(experiment.out)
        if results is None:
            results = build_results(experiment, machine=machine, started=started)
            write_outputs(results, experiment.out)
        per_experiment[suite_experiment.name] = results
    results = assemble_suite(config, experiments, per_experiment, missing, machine=machine, started=started, out=out)
    write_suite_outputs(results, out)
    return CompareOutcome(results, out, interrupted, ran=len(tasks), skipped=total - pending)


def _up_to_date_results(folder: Path) -> dict[str, Any] | None:
    """The experiment's results.json when it already holds every finished cell (a resumed suite then
    skips redrawing that experiment's report), else ``None``."""

    try:
        results = results_document.load(folder)
    except DataError:
        return None
    if results["cells_done"] != len(finished_cells(folder)) or results["cells_failed"] != len(failed_cells(folder)):
        return None
    return results


def prepare_suite_out(out: Path, config: Any) -> None:
    """Refuse a folder that holds something else (unless ``force``); record the suite in ``suite.json``."""
    import shutil

    recipe = {
        "suite": config.suite,
        "budget": config.budget,
        "music_data": None if config.music_data is None else os.path.abspath(config.music_data),
    }
    stored_path = out / SUITE_FILE
    created = None
    if stored_path.is_file():
        try:
            stored = json.loads(stored_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            stored = {}
        differences = [
            f"{key}: {stored.get(key)!r} there, {value!r} now"
            for key, value in recipe.items()
            if stored.get(key) != value
        ]
        if differences and not config.force:
            raise ConfigError(
                f"{out} holds a different suite run ({'; '.join(differences)}). Choose another --out, "
                "or add --force to replace it"
            )
        created = None if differences else stored.get("created")
    elif out.exists() and any(out.iterdir()) and not config.force:
        raise ConfigError(
            f"{out} exists, is not empty and holds no {SUITE_FILE} (it is not an rnnlab suite "
            "folder); choose another --out, or add --force to write into it"
        )
    if config.force and stored_path.is_file() and created is None:
        for experiment in BAI2018_EXPERIMENTS:
            if (out / experiment.name).is_dir():
                shutil.rmtree(out / experiment.name)
        for name in OWNED:
            if (out / name).exists():
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stored_path, {**recipe, "created": created or _now()})


def _cost_estimate(suite_experiment: SuiteExperiment, experiment: Any, model: str) -> float:
    """A rough guess of a cell's seconds, used only to order the cells (longest first).

    Per step: a fixed cost, a per-time-step cost (the recurrent loop), and the arithmetic
    ``batch · T · sqrt(params)``; the constants are rounded from single-thread timings on this machine.
    """
    recipe = experiment.recipe
    if recipe.get("train_samples"):
        length = (experiment.lengths[0] or 1) + (20 if suite_experiment.task == "copy" else 0)
        steps = recipe["epochs"] * math.ceil(recipe["train_samples"] / recipe["batch_size"])
    else:  # JSB Chorales: 229 training pieces of about 60 frames
        length = 60
        steps = recipe["epochs"] * math.ceil(229 / recipe["batch_size"])
    per_step = 0.01 + 1e-3 * length + 1e-7 * recipe["batch_size"] * length * math.sqrt(recipe["params"])
    return steps * per_step


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- the results document
def assemble_suite(
    config: Any,
    experiments: list[tuple[SuiteExperiment, Any]],
    per_experiment: dict[str, Any],
    missing: list[dict[str, Any]],
    *,
    machine: dict[str, Any],
    started: datetime,
    out: Path,
) -> dict[str, Any]:
    """The suite's results document: one row per (experiment, model), our number beside the paper's."""
    from rnnlab.version import __version__

    stored = json.loads((out / SUITE_FILE).read_text(encoding="utf-8"))
    rows, entries = [], []
    models = suite_models(config)
    for suite_experiment, experiment in experiments:
        results = per_experiment[suite_experiment.name]
        length = experiment.lengths[0]
        paper_key = paper_row(suite_experiment, length, config.music_data, config.suite_row)
        full_run = config.budget != "quick" and (suite_experiment.task == "music" or paper_key is not None)
        entries.append(
            {
                "name": suite_experiment.name,
                "task": suite_experiment.task,
                "title": suite_experiment.title,
                "status": "run",
                "reason": None,
                "folder": suite_experiment.name,
                "paper_row": paper_key,
                "length": length,
                "params": experiment.recipe["params"],
                "epochs": experiment.recipe["epochs"],
                "batch_size": experiment.recipe["batch_size"],
                "train_samples": experiment.recipe["train_samples"],
                "data": experiment.recipe["data"],
                "metric": suite_experiment.metric,
                "cells_expected": results["cells_expected"],
                "cells_done": results["cells_done"],
            }
        )
        for model in experiment.models:
            rows.append(_row(suite_experiment, experiment, results, model, paper_key, full_run))
    for absent in missing:
        entries.append(
            {
                **absent,
                "status": "missing",
                "folder": None,
                "paper_row": None,
                "length": None,
                "params": None,
                "epochs": None,
                "batch_size": None,
                "train_samples": None,
                "data": None,
                "metric": next(e.metric for e in BAI2018_EXPERIMENTS if e.name == absent["name"]),
                "cells_expected": 0,
                "cells_done": 0,
            }
        )
        for model in models:
            paper = BAI2018_TABLE.get(("jsb", model))
            rows.append(
                {
                    "experiment": absent["name"],
                    "task": absent["task"],
                    "title": absent["title"],
                    "model": model,
                    "length": None,
                    "paper_row": "jsb",
                    "paper": paper,
                    "metric": entries[-1]["metric"],
                    "ours": None,
                    "ours_per_seed": [],
                    "baseline": None,
                    "baseline_name": None,
                    "num_parameters": None,
                    "train_seconds": None,
                    "steps": None,
                    "epochs": None,
                    "stopped": [],
                    "bound": None,
                    "criterion": None,
                    "verdict": "missing",
                    "reason": absent["reason"],
                    "training": None,
                }
            )
    now = datetime.now(timezone.utc)
    cells_seconds = sum((per_experiment[e.name]["timing"]["cells_seconds"] for e, _ in experiments), 0.0)
    done = sum(entry["cells_done"] for entry in entries)
    expected = sum(entry["cells_expected"] for entry in entries)
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "rnnlab_version": __version__,
        "suite": config.suite,
        "source": BAI2018_SOURCE,
        "budget": config.budget,
        "status": "complete" if done == expected and not missing else "partial",
        "machine": {**machine, "cpu": _cpu_model()},
        "timing": {
            "started": stored.get("created") or started.isoformat(timespec="seconds"),
            "finished": now.isoformat(timespec="seconds"),
            "wall_seconds": round((now - started).total_seconds(), 3),
            "cells_seconds": round(cells_seconds, 3),
        },
        "experiments": entries,
        "rows": rows,
    }


def _row(
    suite_experiment: SuiteExperiment,
    experiment: Any,
    results: dict[str, Any],
    model: str,
    paper_key: str | None,
    full_run: bool,
) -> dict[str, Any]:
    cells = [cell for cell in results["cells"] if cell["model"] == model and cell["status"] == "done"]
    failed = [cell for cell in results["cells"] if cell["model"] == model and cell["status"] != "done"]
    paper = BAI2018_TABLE.get((paper_key, model)) if paper_key else None
    metric = suite_experiment.metric
    values = [cell["test_metrics"].get(metric) for cell in cells]
    values = [value for value in values if value is not None]
    baselines = [cell["baselines"].get(suite_experiment.baseline) for cell in cells if cell.get("baselines")]
    baseline = baselines[0] if baselines else _baseline_from_any(results, suite_experiment.baseline)
    ours = sum(values) / len(values) if values else None
    bound, sentence = criterion(paper_key, model, paper, baseline, full_run)
    if ours is None:
        verdict = "failed" if failed else "not run yet"
        reason = failed[0].get("error") if failed else "the cell has not finished; re-run the same command"
    elif bound is None:
        verdict, reason = "no bound", sentence
    else:
        verdict = "meets" if ours <= bound else "misses"
        reason = sentence
    steps_per_epoch = _steps_per_epoch(experiment, cells)
    diagnosis = None
    if verdict == "misses":
        assert ours is not None and bound is not None  # a miss compares the two
        curve = _validation_curve(cells[0], metric)
        mean_epochs = cast(float, _mean([c["epochs"] for c in cells]))  # finished cells count their epochs
        steps = None if steps_per_epoch is None else round(mean_epochs * steps_per_epoch)
        diagnosis = diagnose_miss(ours, bound, baseline, curve, steps, steps_per_epoch)
        reason = f"{sentence}. {diagnosis}"
    return {
        "experiment": suite_experiment.name,
        "task": suite_experiment.task,
        "title": suite_experiment.title,
        "model": model,
        "length": experiment.lengths[0],
        "paper_row": paper_key,
        "paper": paper,
        "metric": metric,
        "ours": ours,
        "ours_per_seed": values,
        "baseline": baseline,
        "baseline_name": suite_experiment.baseline,
        "num_parameters": cells[0]["num_parameters"] if cells else None,
        "train_seconds": _mean([cell["train_seconds"] for cell in cells]),
        "epochs": _mean([cell["epochs"] for cell in cells]),
        "steps": None
        if steps_per_epoch is None or not cells
        else round(cast(float, _mean([cell["epochs"] for cell in cells])) * steps_per_epoch),
        "stopped": sorted({str(cell.get("stopped")) for cell in cells}),
        "bound": bound,
        "criterion": sentence,
        "verdict": verdict,
        "reason": reason,
        "diagnosis": diagnosis,
        "training": _training_choices(cells[0]) if cells else None,
    }


#: A result within this fraction of the trivial baseline has not left it (copy memory's memoryless
#: level is approached from above, so "at the baseline" includes a little below it; the copy GRU at
#: 4% below it, its answer accuracy rising from chance, has left it).
ON_BASELINE = 0.02


def diagnose_miss(
    ours: float,
    bound: float,
    baseline: float | None,
    curve: list[float],
    steps: int | None,
    steps_per_epoch: int | None,
) -> str:
    """What a row that misses its bound reached, and why, read from its validation curve.

    ``curve`` is the validation metric per epoch (lower is better). Four cases:

    * on the trivial baseline (``|ours − baseline| ≤ ON_BASELINE · baseline``): the run never left
      the plateau in the steps it was given;
    * left the plateau only in the last epoch (``curve[-2] ≥ 0.9 · baseline``, ``curve[-1] ≤ curve[-2] / 2``):
      the budget ended as learning began;
    * still falling at the end (the last epoch is the best): the last epoch's fall ``Δ = curve[-2] −
    curve[-1]`` extrapolated
      linearly gives the epochs still needed, ``(curve[-1] − bound) / Δ`` — a lower bound, since
      curves flatten — turned into steps with ``steps_per_epoch``;
    * no longer falling: the run had converged (or overfitted) above the bound.
    """
    given = f"{steps:,} steps" if steps is not None else f"{len(curve)} epochs"
    if baseline is not None and abs(ours - baseline) <= ON_BASELINE * baseline:
        return (
            f"Reached {ours:.4g}, the trivial baseline ({baseline:.4g}): after {given} the run had not left "
            "the plateau of the trivial baseline, which needs no memory of the input; learning the dependency "
            "needs more steps than this budget gives"
        )
    # on the plateau one epoch (within 10% of the trivial level: the validation split's own trivial
    # level differs from the test split's by a few percent), less than half of it the next
    if len(curve) >= 2 and baseline is not None and curve[-2] >= 0.9 * baseline and curve[-1] <= 0.5 * curve[-2]:
        return (
            f"Reached {ours:.4g} after {given}: the run left the plateau of the trivial baseline only in its "
            f"last epoch (validation {curve[-2]:.4g} → {curve[-1]:.4g}), so the budget ended as it began to "
            "learn the dependency"
        )
    if len(curve) >= 2 and curve[-1] < curve[-2] and curve[-1] <= min(curve):
        fall = curve[-2] - curve[-1]
        epochs_needed = math.ceil((curve[-1] - bound) / fall)
        needed = (
            f"{epochs_needed * steps_per_epoch:,} more steps" if steps_per_epoch else f"{epochs_needed} more epochs"
        )
        return (
            f"Reached {ours:.4g} after {given}, still falling (validation {curve[-2]:.4g} → {curve[-1]:.4g} in "
            f"the last epoch); at that rate the bound {bound:.4g} is at least {needed} away"
        )
    best = min(range(len(curve)), key=curve.__getitem__) + 1 if curve else None
    where = f" (best validation at epoch {best} of {len(curve)})" if best else ""
    return f"Reached {ours:.4g} after {given}; no longer improving{where}: converged above the bound"


def _validation_curve(cell: dict[str, Any], metric: str) -> list[float]:
    """The validation ``metric`` per epoch, from the run's own metrics.csv (empty when unreadable)."""
    import csv

    path = Path(cell["run_dir"]) / "metrics.csv"
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return [float(row[f"val_{metric}"]) for row in csv.DictReader(handle) if row.get(f"val_{metric}")]
    except (OSError, KeyError, ValueError):
        return []


def _baseline_from_any(results: dict[str, Any], name: str) -> float | None:
    value = ((results.get("task") or {}).get("baselines") or {}).get(name)
    return None if value is None else float(value)


def _steps_per_epoch(experiment: Any, cells: list[dict[str, Any]]) -> int | None:
    recipe = experiment.recipe
    if recipe.get("train_samples"):
        return math.ceil(recipe["train_samples"] / recipe["batch_size"])
    if cells:  # real data: the run's own training set size
        task_file = Path(cells[0]["run_dir"]) / "task.json"
        try:
            sequences = json.loads(task_file.read_text(encoding="utf-8"))["meta"]["sequences"]["train"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError):
            return None
        return math.ceil(sequences / recipe["batch_size"])
    return None


#: The training choices a row reports, read from the cell's own config.json (what was really used).
TRAINING_FIELDS = (
    "hidden_size",
    "num_layers",
    "init",
    "lr",
    "batch_size",
    "clip",
    "schedule",
    "patience",
    "dropout",
    "epochs",
    "optimizer",
    "model_options",
)


def _training_choices(cell: dict[str, Any]) -> dict[str, Any] | None:
    path = Path(cell["run_dir"]) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    choices = {name: config.get(name) for name in TRAINING_FIELDS}
    choices["hidden_size"] = cell.get("hidden_size")
    if choices["init"] == "chrono":
        # the model sizes chrono's T_max to the task's sequence length (models.build_model)
        try:
            task = json.loads((Path(cell["run_dir"]) / "task.json").read_text(encoding="utf-8"))
            choices["chrono_max_len"] = task["spec"]["seq_len"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError):
            pass
    return choices


def _mean(values: list[float]) -> float | None:
    values = [value for value in values if value is not None]
    return sum(values) / len(values) if values else None


def _cpu_model() -> str:
    try:
        from rnnlab.system import cpu_model

        return cpu_model()
    except Exception:
        return "unknown"


def validate(results: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``results`` fits the suite schema."""
    results_document.validate(results, "suite")


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a suite's ``results.json``; a folder means the ``results.json`` inside it."""
    return results_document.load(path, "suite")


def write_suite_outputs(results: dict[str, Any], out: Path) -> None:
    """Validate ``results`` and write results.json, report.html and table.md into ``out``."""
    validate(results)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.html", render_html(results))
    atomic_write_text(out / "table.md", render_markdown(results))


# --------------------------------------------------------------------------- tables
def format_metric(value: float | None) -> str:
    """A metric for a table: 4 significant digits, tiny values in scientific form."""
    if value is None:
        return "—"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4g}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _count(number: Any, noun: str) -> str:
    """``1 worker``, ``2 workers``, ``? workers`` (unknown)."""
    return f"{number} {noun}" if number == 1 else f"{'?' if number is None else number} {noun}s"


def _thousands(count: int | None) -> str:
    return "—" if count is None else f"{count:,}"


def _row_label(row: dict[str, Any]) -> str:
    if row["paper_row"]:
        return PAPER_ROW_TITLES[row["paper_row"]]
    length = f" T={row['length']}" if row["length"] is not None else ""
    return f"{row['title']}{length} ({row['metric']})"


def _training_text(training: dict[str, Any] | None) -> str:
    if not training:
        return "—"
    parts = []
    if training.get("init") and training.get("num_layers") and training.get("hidden_size"):  # recurrent
        parts.append(f"{training['num_layers']}×{training['hidden_size']}")
    elif training.get("hidden_size"):  # a TCN's channels: its depth follows from T and the kernel
        parts.append(f"width {training['hidden_size']}")
    if training.get("init"):
        chrono = (
            f" (T_max {training['chrono_max_len']})"
            if training["init"] == "chrono" and training.get("chrono_max_len")
            else ""
        )
        parts.append(f"init {training['init']}{chrono}")
    options = training.get("model_options") or {}
    parts += [f"{name} {value}" for name, value in sorted(options.items())]
    parts.append(f"lr {training.get('lr'):g}" if training.get("lr") is not None else "lr —")
    parts.append(f"batch {training.get('batch_size')}")
    parts.append(f"clip {training.get('clip'):g}" if training.get("clip") else "no clipping")
    parts.append(f"schedule {training.get('schedule')}")
    if training.get("dropout"):
        parts.append(f"dropout {training['dropout']:g}")
    return ", ".join(parts)


def render_markdown(results: dict[str, Any]) -> str:
    """The suite's rows as a Markdown table, with the date, machine and budget above it."""
    machine = results.get("machine") or {}
    timing = results.get("timing") or {}
    lines = [
        f"Suite `{results['suite']}` (budget `{results['budget']}`, {results['status']}), finished "
        f"{timing.get('finished', '?')[:16].replace('T', ' ')} UTC on {machine.get('cpu', '?')} "
        f"({machine.get('cpu_cores', '?')} cores, {_count(machine.get('workers'), 'worker')} × "
        f"{_count(machine.get('threads_per_worker'), 'thread')}); "
        f"cell time {format_seconds(timing.get('cells_seconds'))}. "
        f"Paper: {results['source'].get('short', results['source']['citation'])}, {results['source']['table']}. "
        f"A row meets when ours reaches its bound and is at most {1 - BASELINE_MARGIN:g}× its trivial baseline "
        "(lower is better in every row).",
        "",
        "| task | model | paper | ours | baseline | training time | steps | parameters | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["rows"]:
        verdict = (
            row["verdict"] if row["verdict"] not in ("meets", "misses") else f"{row['verdict']} ({row['criterion']})"
        )
        if row["verdict"] == "missing":
            verdict = f"missing: {row['reason'].split(':')[0]}"
        lines.append(
            f"| {_row_label(row)} | {row['model']} | {format_metric(row['paper'])} | {format_metric(row['ours'])} | "
            f"{format_metric(row['baseline'])} | {format_seconds(row['train_seconds'])} | "
            f"{_thousands(row['steps'])} | {_thousands(row['num_parameters'])} | {verdict} |"
        )
    closing = closing_note(results)
    if closing:
        lines += ["", closing]
    return "\n".join(lines) + "\n"


def closing_note(results: dict[str, Any]) -> str:
    """One sentence per row that missed its bound: what it reached and why (empty when none missed)."""
    sentences = []
    for row in results["rows"]:
        if row["verdict"] == "misses":
            length = "" if row["length"] is None else f" T={row['length']}"
            # a results file from before the diagnosis field has only the whole reason
            sentences.append(f"{row['title']}{length}, {row['model']}: {row.get('diagnosis') or row['reason']}.")
    return ("Rows that miss their bound: " + " ".join(sentences)) if sentences else ""


_VERDICT_STYLE = {"meets": "holds", "misses": "fails"}


def render_html(results: dict[str, Any]) -> str:
    """The suite's page: what was run, the row-by-row table, the training choices, links to each experiment."""
    from rnnlab.lab.report import PAGE_CSS, escape

    machine = results.get("machine") or {}
    timing = results.get("timing") or {}
    rows_html = []
    for row in results["rows"]:
        verdict_class = _VERDICT_STYLE.get(row["verdict"], "unmeasured")
        rows_html.append(
            f"<tr><td>{escape(_row_label(row))}</td><td>{escape(row['model'])}</td>"
            f'<td class="n">{escape(format_metric(row["paper"]))}</td>'
            f'<td class="n">{escape(format_metric(row["ours"]))}</td>'
            f'<td class="n">{escape(format_metric(row["baseline"]))}</td>'
            f'<td class="n">{escape(format_seconds(row["train_seconds"]))}</td>'
            f'<td class="n">{escape(_thousands(row["steps"]))}</td>'
            f'<td class="n">{escape(_thousands(row["num_parameters"]))}</td>'
            f'<td><span class="verdict {verdict_class}">{escape(row["verdict"])}</span>'
            f'<div class="small">{escape(row["reason"] or "")}</div></td>'
            f'<td class="small">{escape(_training_text(row["training"]))}</td></tr>'
        )
    experiments = []
    for entry in results["experiments"]:
        if entry["status"] == "missing":
            experiments.append(f"<li><b>{escape(entry['title'])}</b>: not run — {escape(entry['reason'])}</li>")
            continue
        length = "the data's own lengths" if entry["length"] is None else f"T = {entry['length']}"
        samples = f", {entry['train_samples']:,} training samples per epoch" if entry["train_samples"] else ""
        experiments.append(
            f"<li><b>{escape(entry['title'])}</b> ({escape(length)}): about {entry['params']:,} parameters per model, "
            f"{entry['epochs']} epoch{'' if entry['epochs'] == 1 else 's'}, "
            f"batch {entry['batch_size']}{escape(samples)}; "
            f"{entry['cells_done']} of {entry['cells_expected']} cells done — "
            f'<a href="{escape(entry["folder"])}/report.html">its full report</a> (curves, gradients, gates, cost)</li>'
        )
    status = results["status"]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>rnnlab suite {escape(results['suite'])}</title>",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<style>{PAGE_CSS}</style></head><body><main>",
            f"<h1>Against a published table: {escape(results['source']['table'])} of Bai, Kolter &amp; Koltun "
            "2018</h1>",
            f'<p class="sub">budget {escape(results["budget"])} '
            f'<span class="status {"complete" if status == "complete" else "partial"}">{escape(status)}</span></p>',
            f'<p class="small">{escape(results["source"]["citation"])} — <a href="{escape(results["source"]["url"])}">'
            f"{escape(results['source']['url'])}</a>; {escape(results['source']['note'])}. "
            "Lower is better in every row.</p>",
            "<h2>Row by row</h2>",
            '<div style="overflow-x:auto"><table><thead><tr><th>task</th><th>model</th><th>paper</th><th>ours</th>'
            "<th>trivial baseline</th><th>our training time</th><th>steps</th><th>parameters</th><th>verdict</th>"
            "<th>training choices used</th></tr></thead><tbody>" + "".join(rows_html) + "</tbody></table></div>",
            '<p class="small">Training time: the cell\'s own training seconds on this machine (under whatever load it '
            "shared). Steps bound every cell (a time cap far above them is only a safety net), so the numbers do not "
            "depend on that load. Baselines: adding, predicting 1 (MSE); copy memory, 10·ln 8/(T+20), the best a "
            "model without memory can do; music, each key on with its training frequency. A row meets when ours "
            f"reaches its bound and is at most {1 - BASELINE_MARGIN:g}× its trivial baseline: a model that learned "
            "nothing cannot meet, even where the paper's own figure is no better than trivial.</p>",
            *(
                [f"<h2>What missed, and why</h2><p>{escape(closing_note(results))}</p>"]
                if closing_note(results)
                else []
            ),
            "<h2>The experiments</h2><ul>" + "".join(experiments) + "</ul>",
            "<h2>Where and when</h2>",
            f"<p>{escape(machine.get('cpu', '?'))}, {escape(machine.get('cpu_cores', '?'))} cores; torch "
            f"{escape(machine.get('torch', '?'))}; {escape(machine.get('executor', '?'))} executor with "
            f"{escape(machine.get('workers', '?'))} workers × "
            f"{escape(machine.get('threads_per_worker', '?'))} threads. "
            "Started "
            f"{escape(timing.get('started'))}, finished {escape(timing.get('finished'))}; "
            f"{escape(format_seconds(timing.get('cells_seconds')))} of cell time, "
            f"{escape(format_seconds(timing.get('wall_seconds')))} of wall time in the last invocation.</p>",
            "</main></body></html>",
        ]
    )


# --------------------------------------------------------------------------- progress
class _Display:
    """One line per finished cell and a rich bar over the suite's cells."""

    def __init__(self, enabled: bool, console: Any, total: int, pending: int) -> None:
        self.enabled, self.console, self.total, self.done = enabled, console, total, total - pending
        self.progress: Any = None  # a rich Progress while shown
        self.task_id: Any = None

    def __enter__(self) -> _Display:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = self.console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]suite"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console
        )
        self.progress.__enter__()
        if self.done:
            self.console.print(f"{self.done} of {self.total} cells already done: skipped")
        self.task_id = self.progress.add_task("suite", total=self.total, completed=self.done)
        return self

    def finished(self, task: dict[str, Any], outcome: Any) -> None:
        if not self.enabled or self.progress is None:
            return
        from rich.markup import escape

        cell = task["cell"]
        where = escape(f"{task['experiment']} {cell['model']} seed {cell['seed']}")
        if isinstance(outcome, dict) and outcome.get("status") == "done":
            line = (
                f"  [green]✓[/] {where}: {outcome['metric']['name']} {outcome['metric']['value']:.4g} "
                f"({outcome['epochs']} epochs, {outcome['timing']['wall_seconds']:.0f} s)"
            )
        else:
            error = outcome.get("error") if isinstance(outcome, dict) else f"{type(outcome).__name__}: {outcome}"
            line = f"  [red]✗[/] {where}: {escape(str(error))}"
        self.console.print(line, highlight=False)
        self.progress.update(self.task_id, advance=1)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnlab.lab.suites DIR``: print the Markdown table of a suite's results.json."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m rnnlab.lab.suites DIR   (DIR: a suite folder or its results.json)", file=sys.stderr)
        return 2
    try:
        print(render_markdown(load(argv[0])), end="")
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
