"""``compare``: run the grid, keep every finished cell, write results.json and the report.

An output folder ``DIR`` holds

    experiment.json        the recipe and grid of the experiment (what a re-run is checked against)
    cells/<key>.json       one finished cell each, written atomically the moment it arrives
    cells/<key>.failed.json  a cell that failed (retried by the next run)
    probe.json             the one-layer cost probe (RNN / LSTM / GRU at the same sizes)
    runs/<key>/            each cell's training run directory (weights, metrics.csv, summary.json)
    results.json           everything, validated against ``rnnlab/schemas/results.schema.json``
    report.html            the report; figures/*.png the figures it embeds

Re-running the same command skips the cells already in ``cells/``; Ctrl-C (or SIGTERM) ends the
workers and still writes results.json and report.html from the cells finished so far (status
``partial``).
A folder whose experiment.json holds a different recipe (task, data, sizes, epochs, ...) is
refused unless ``force``, which clears what an earlier comparison wrote there (nothing else).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.io import atomic_write_json
from rnnlab.lab.grid import Cell, CompareConfig, Experiment, config_from_dict, resolve
from rnnlab.lab.results import assemble, format_length, validate

EXPERIMENT_FILE = "experiment.json"
#: What a comparison writes into its folder: all that ``force`` removes.
OWNED = ("cells", "runs", "figures", "probe.json", "results.json", "report.html", EXPERIMENT_FILE)
PROBE_OPTIONS = {"input_size": 32, "hidden_size": 128, "seq_len": 100, "batch_size": 32, "repeats": 15}
RECURRENT = ("rnn", "lstm", "gru")


@dataclass
class CompareOutcome:
    """What ``compare`` returns: the results document, where it was written, and whether it was cut short."""

    results: dict[str, Any]
    out: Path
    interrupted: bool
    ran: int
    skipped: int

    @property
    def report(self) -> Path:
        return self.out / "report.html"


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
    prepare_out(experiment)
    out = experiment.out
    done = finished_cells(out)
    cells = experiment.cells
    pending = [cell for cell in cells if cell.key not in done]
    tasks = [_cell_task(cell, experiment) for cell in pending]
    if any(model in RECURRENT for model in experiment.models) and not (out / "probe.json").is_file():
        tasks.insert(0, {"kind": "probe", "key": "probe", "options": PROBE_OPTIONS})
    executor = make_executor(experiment.executor, workers=experiment.workers, address=experiment.address)
    machine = {**_machine(), **executor.describe()}
    started = datetime.now(timezone.utc)
    display = _Display(progress, console, cells, pending, experiment)
    interrupted = run_tasks(executor, tasks, display, lambda task: out)
    results = build_results(experiment, machine=machine, started=started)
    write_outputs(results, out)
    return CompareOutcome(results, out, interrupted, ran=len(pending), skipped=len(cells) - len(pending))


def run_tasks(executor: Any, tasks: list[dict[str, Any]], display: Any, folder_of: Any) -> bool:
    """Run ``tasks`` on ``executor``, storing each outcome in ``folder_of(task)`` as it arrives;
    ``True`` when Ctrl-C or SIGTERM cut the run short (what finished is kept)."""
    try:
        with display, _sigterm_interrupts():
            for task, outcome in executor.run(tasks):
                _store(folder_of(task), task, outcome)
                display.finished(task, outcome)
    except KeyboardInterrupt:
        executor.abort()
        return True
    finally:
        executor.close()
    return False


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Inside the block, SIGTERM (``kill PID``) stops the comparison as Ctrl-C does: workers are
    ended and the partial report is written. Only the main thread may set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- the folder
def prepare_out(experiment: Experiment) -> None:
    """Refuse a folder that holds something else; clear it under ``force``; record the experiment."""
    out = experiment.out
    stored_path = out / EXPERIMENT_FILE
    if stored_path.is_file():
        try:
            stored = json.loads(stored_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            stored = {"recipe": None}
        differences = _differences(stored.get("recipe"), experiment.recipe)
        if differences:
            if not experiment.force:
                raise ConfigError(
                    f"{out} holds a different experiment ({'; '.join(differences)}). Choose another --out, "
                    "or add --force to replace it"
                )
            _clear(out)
    elif out.exists() and any(out.iterdir()) and not experiment.force:
        raise ConfigError(
            f"{out} exists, is not empty and holds no {EXPERIMENT_FILE} (it is not an rnnlab comparison); "
            "choose another --out, or add --force to write into it"
        )
    out.mkdir(parents=True, exist_ok=True)
    created = None
    if stored_path.is_file():
        created = json.loads(stored_path.read_text(encoding="utf-8")).get("created")
    atomic_write_json(
        stored_path,
        {
            "recipe": experiment.recipe,
            "grid": {"models": experiment.models, "lengths": experiment.lengths, "seeds": experiment.seeds},
            "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _differences(stored: Any, current: dict[str, Any]) -> list[str]:
    if not isinstance(stored, dict):
        return ["its experiment.json is unreadable"]
    keys = sorted(set(stored) | set(current))
    return [
        f"{key}: {stored.get(key)!r} there, {current.get(key)!r} now"
        for key in keys
        if stored.get(key) != current.get(key)
    ]


def _clear(out: Path) -> None:
    for name in OWNED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def finished_cells(out: Path) -> dict[str, dict[str, Any]]:
    """The finished cells stored in ``out/cells`` (key → record); unreadable files are ignored (re-run)."""
    cells: dict[str, dict[str, Any]] = {}
    folder = out / "cells"
    if not folder.is_dir():
        return cells
    for path in folder.glob("*.json"):
        if path.name.endswith(".failed.json"):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            continue
        if record.get("status") == "done" and record.get("key") == path.stem:
            cells[path.stem] = record
    return cells


def _failed_cells(out: Path) -> dict[str, dict[str, Any]]:
    cells = {}
    for path in (out / "cells").glob("*.failed.json") if (out / "cells").is_dir() else ():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            continue
        cells[record.get("key", path.name.removesuffix(".failed.json"))] = record
    return cells


def _cell_task(cell: Cell, experiment: Experiment) -> dict[str, Any]:
    return {
        "kind": "cell",
        "key": cell.key,
        "cell": {"key": cell.key, "model": cell.model, "length": cell.length, "seed": cell.seed},
        "recipe": experiment.recipe,
        "run_dir": str((experiment.out / "runs" / cell.key).resolve()),
    }


def _store(out: Path, task: dict[str, Any], outcome: Any) -> None:
    """Write one arrived result atomically (an exception becomes a failed record)."""
    if task["kind"] == "probe":
        if isinstance(outcome, dict):
            atomic_write_json(out / "probe.json", outcome)
        return
    key = task["key"]
    if not isinstance(outcome, dict):
        outcome = {
            **{k: task["cell"][k] for k in ("key", "model", "length", "seed")},
            "status": "failed",
            "error": f"{type(outcome).__name__}: {outcome}".splitlines()[0][:500],
        }
    failed_path = out / "cells" / f"{key}.failed.json"
    if outcome.get("status") == "done":
        atomic_write_json(out / "cells" / f"{key}.json", outcome)
        if failed_path.exists():
            failed_path.unlink()
    else:
        atomic_write_json(failed_path, outcome)


# --------------------------------------------------------------------------- results
def build_results(experiment: Experiment, *, machine: dict[str, Any], started: datetime) -> dict[str, Any]:
    """The results document from what ``experiment.out`` holds for this experiment's grid."""
    out = experiment.out
    done, failed = finished_cells(out), _failed_cells(out)
    cells = [done.get(cell.key) or failed.get(cell.key) for cell in experiment.cells]
    probe = None
    if (out / "probe.json").is_file():
        probe = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    stored = json.loads((out / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    now = datetime.now(timezone.utc)
    timing = {
        "started": stored.get("created") or started.isoformat(timespec="seconds"),
        "finished": now.isoformat(timespec="seconds"),
        "wall_seconds": round((now - started).total_seconds(), 3),
    }
    return assemble(
        experiment.describe(),
        [cell for cell in cells if cell is not None],
        expected=len(experiment.cells),
        probe=probe,
        machine=machine,
        timing=timing,
    )


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """Validate ``results`` and write results.json, the figures and report.html."""
    from rnnlab.lab.report import write_report

    validate(results)
    atomic_write_json(out / "results.json", results)
    write_report(results, out)


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
    machine = previous or {**_machine(), "executor": "local", "workers": 1}
    results = build_results(experiment, machine=machine, started=datetime.now(timezone.utc))
    write_outputs(results, out)
    return results


def _machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_cores": os.cpu_count(),
    }


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
