"""``compare``: run the grid, keep every finished cell, write results.json and the report.

The output folder (``folder.py`` lists what it holds) keeps every finished cell as it arrives.
Re-running the same command skips the cells already in ``cells/``; Ctrl-C (or SIGTERM) ends the
workers and still writes results.json and report.html from the cells finished so far (status
``partial``).
A folder whose experiment.json holds a different recipe (task, data, sizes, epochs, ...) is
refused unless ``force``, which clears what an earlier comparison wrote there (nothing else).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.lab.folder import (
    EXPERIMENT_FILE,
    CompareOutcome,
    build_results,
    cell_task,
    finished_cells,
    machine_facts,
    prepare_out,
    run_tasks,
    write_outputs,
)
from rnnlab.lab.grid import Cell, CompareConfig, Experiment, config_from_dict, resolve
from rnnlab.lab.results import format_length
from rnnlab.locks import ensure_free, folder_lock
from rnnlab.models import family

PROBE_OPTIONS = {"input_size": 32, "hidden_size": 128, "seq_len": 100, "batch_size": 32, "repeats": 15}


def compare(
    config: CompareConfig | dict[str, Any] | None = None, *, progress: bool = True, console: Any = None, **changes: Any
) -> CompareOutcome:
    """Run the comparison ``config`` describes (``changes`` override its fields) and write its report.

    >>> from rnnlab.lab import compare, CompareConfig
    >>> outcome = compare(CompareConfig(budget="quick", out="runs/quick"))          # doctest: +SKIP
    >>> outcome.results["advice"]["pick"]                                          # doctest: +SKIP
    """
    if config is None:
        config = CompareConfig(**changes)
    else:
        config = config_from_dict(config) if isinstance(config, dict) else config
        if changes:
            config = config_from_dict({**config.__dict__, **changes})
    if config.suite is not None:
        from rnnlab.lab.suites import run_suite

        return run_suite(config, progress=progress, console=console)
    if config.music_data is not None:
        raise ConfigError(f"music_data feeds the music row of a suite; add --suite (got {config.music_data!r})")
    if config.suite_row is not None:
        raise ConfigError(f"suite_row names a suite's published music row; add --suite (got {config.suite_row!r})")
    experiment = resolve(config)
    from rnnlab.lab.executors import check_executor, make_executor

    check_executor(experiment.executor, experiment.address)  # fail fast, before the folder is touched
    out = experiment.out
    ensure_free(out, "comparison folder")
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "comparison folder"):  # one comparison writes a folder at a time
        prepare_out(experiment)
        done = finished_cells(out)
        cells = experiment.cells
        pending = [cell for cell in cells if cell.key not in done]
        tasks = [cell_task(cell, experiment) for cell in pending]
        if any(family(model).stacked_cell for model in experiment.models) and not (out / "probe.json").is_file():
            tasks.insert(0, {"kind": "probe", "key": "probe", "options": PROBE_OPTIONS})
        executor = make_executor(experiment.executor, workers=experiment.workers, address=experiment.address)
        machine = {**machine_facts(), **executor.describe()}
        started = datetime.now(timezone.utc)
        display = _Display(progress, console, cells, pending, experiment)
        interrupted = run_tasks(executor, tasks, display, lambda task: out)
        results = build_results(experiment, machine=machine, started=started)
        write_outputs(results, out)
    return CompareOutcome(results, out, interrupted, ran=len(pending), skipped=len(cells) - len(pending))


# --------------------------------------------------------------------------- the folder


# --------------------------------------------------------------------------- results


def rebuild(out: str | Path) -> dict[str, Any]:
    """Rewrite results.json and report.html of ``out`` from its stored cells (e.g. after an upgrade)."""
    out = Path(out)
    stored_path = out / EXPERIMENT_FILE
    if not stored_path.is_file():
        raise ConfigError(f"{out} holds no {EXPERIMENT_FILE}: not an rnnlab comparison folder")
    stored = json.loads(stored_path.read_text(encoding="utf-8"))
    recipe, grid = stored["recipe"], stored["grid"]
    experiment = Experiment(
        recipe=recipe,
        models=grid["models"],
        lengths=grid["lengths"],
        seeds=grid["seeds"],
        out=out,
        executor="local",
        address=None,
        workers=1,
        force=False,
    )
    previous = {}
    if (out / "results.json").is_file():
        previous = json.loads((out / "results.json").read_text(encoding="utf-8")).get("machine", {})
    machine = previous or {**machine_facts(), "executor": "local", "workers": 1}
    results = build_results(experiment, machine=machine, started=datetime.now(timezone.utc))
    write_outputs(results, out)
    return results


# --------------------------------------------------------------------------- progress
class _Display:
    """A rich progress bar over the grid with an ETA, and one line per finished cell.

    Cells differ in cost (a T=1000 cell runs far longer than a T=10 one), so the bar advances by a
    weight ``1 + T/100`` per cell; rich's ETA then extrapolates work, not cell counts.
    """

    def __init__(
        self, enabled: bool, console: Any, cells: list[Cell], pending: list[Cell], experiment: Experiment
    ) -> None:
        self.enabled = enabled
        self.console = console
        self.total_cells = len(cells)
        self.done_cells = len(cells) - len(pending)
        self.weights = {cell.key: self._weight(cell) for cell in pending}
        self.experiment = experiment
        self.progress: Any = None  # a rich Progress while shown
        self.task_id = None

    @staticmethod
    def _weight(cell: Cell) -> float:
        return 1.0 + (cell.length or 100) / 100.0

    def __enter__(self) -> _Display:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = self.console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[cells]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.__enter__()
        skipped = self.done_cells
        if skipped:
            self.console.print(f"{skipped} of {self.total_cells} cells already done in {self.experiment.out}: skipped")
        self.task_id = self.progress.add_task(
            "compare", total=sum(self.weights.values()) or 1, cells=self._cells_text()
        )
        return self

    def _cells_text(self) -> str:
        return f"{self.done_cells}/{self.total_cells} cells"

    def finished(self, task: dict[str, Any], outcome: Any) -> None:
        if task["kind"] == "cell":
            self.done_cells += 1
        if not self.enabled or self.progress is None:
            return
        if task["kind"] == "probe":
            if isinstance(outcome, dict):
                layers = outcome["layers"]
                self.console.print(
                    "  layer probe: "
                    + ", ".join(f"{name} {values['train_ms']:.1f} ms" for name, values in layers.items())
                    + " per training step"
                )
            return
        from rich.markup import escape

        cell = task["cell"]
        where = escape(f"{cell['model']} {format_length(cell['length'])} seed {cell['seed']}")
        if isinstance(outcome, dict) and outcome.get("status") == "done":
            metric = outcome["metric"]
            line = (
                f"  [green]✓[/] {where}: {metric['name']} {metric['value']:.3f} "
                f"({outcome['epochs']} epochs, {outcome['timing']['wall_seconds']:.0f} s)"
            )
        else:
            error = outcome.get("error") if isinstance(outcome, dict) else f"{type(outcome).__name__}: {outcome}"
            line = f"  [red]✗[/] {where}: {escape(str(error))}"
        self.console.print(line, highlight=False)
        self.progress.update(self.task_id, advance=self.weights.get(task["key"], 1.0), cells=self._cells_text())

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
