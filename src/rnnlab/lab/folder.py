"""A comparison's folder: running cell tasks into it, the cells it holds, and the results document
built from them. ``compare`` (one grid) and ``suites`` (a paper's table of grids) share all of it.

A folder ``DIR`` holds ``experiment.json`` (the recipe and grid, what a re-run is checked against),
``cells/<key>.json`` (one finished cell each, written atomically as it arrives),
``cells/<key>.failed.json`` (a failed cell, retried by the next run), ``probe.json`` (the layer
cost probe), ``runs/<key>/`` (each cell's training run), ``results.json`` and ``report.html``.
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
from rnnlab.lab.advise import advise
from rnnlab.lab.claims import check_claims
from rnnlab.lab.grid import Cell, Experiment
from rnnlab.lab.results import SCHEMA_ID, SCHEMA_VERSION, chance_level, summarise, validate
from rnnlab.locks import LOCK_FILE
from rnnlab.version import __version__

EXPERIMENT_FILE = "experiment.json"
#: What a comparison writes into its folder: all that ``force`` removes.
OWNED = ("cells", "runs", "figures", "probe.json", "results.json", "report.html", EXPERIMENT_FILE)


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


def run_tasks(executor: Any, tasks: list[dict[str, Any]], display: Any, folder_of: Any) -> bool:
    """Run ``tasks`` on ``executor``, storing each outcome in ``folder_of(task)`` as it arrives;
    ``True`` when Ctrl-C or SIGTERM cut the run short (what finished is kept)."""
    try:
        with display, _sigterm_interrupts():
            for task, outcome in executor.run(tasks):
                store_outcome(folder_of(task), task, outcome)
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
    elif out.exists() and any(path.name != LOCK_FILE for path in out.iterdir()) and not experiment.force:
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


def failed_cells(out: Path) -> dict[str, dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    for path in (out / "cells").glob("*.failed.json") if (out / "cells").is_dir() else ():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            continue
        cells[record.get("key", path.name.removesuffix(".failed.json"))] = record
    return cells


def cell_task(cell: Cell, experiment: Experiment) -> dict[str, Any]:
    return {
        "kind": "cell",
        "key": cell.key,
        "cell": {"key": cell.key, "model": cell.model, "length": cell.length, "seed": cell.seed},
        "recipe": experiment.recipe,
        "run_dir": str((experiment.out / "runs" / cell.key).resolve()),
    }


def store_outcome(out: Path, task: dict[str, Any], outcome: Any) -> None:
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


def build_results(experiment: Experiment, *, machine: dict[str, Any], started: datetime) -> dict[str, Any]:
    """The results document from what ``experiment.out`` holds for this experiment's grid."""
    out = experiment.out
    done, failed = finished_cells(out), failed_cells(out)
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


def machine_facts() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_cores": os.cpu_count(),
    }


def assemble(
    experiment: dict[str, Any],
    cells: list[dict[str, Any]],
    *,
    expected: int,
    probe: dict[str, Any] | None,
    machine: dict[str, Any],
    timing: dict[str, Any],
) -> dict[str, Any]:
    """The results document from the experiment, its cells (finished and failed) and the layer probe.

    The summary, the task description, the claims and the advice are all computed here from the
    cells; ``timing`` gets ``cells_seconds`` (the finished cells' own wall times) added.
    """
    finished = [cell for cell in cells if cell["status"] == "done"]
    first = min(finished, key=lambda cell: (cell["length"] or 0, cell["seed"])) if finished else None
    task: dict[str, Any] = {
        "spec": None,
        "metric": None,
        "higher_is_better": None,
        "baselines": {},
        "chance": None,
        "target": None,
    }
    if first is not None:
        task.update(
            spec=first.get("spec"),
            metric=first["metric"]["name"],
            higher_is_better=first["metric"]["higher_is_better"],
            baselines=first.get("baselines") or {},
            target=first.get("target"),
        )
        task["chance"] = chance_level(task) if task["metric"].endswith("accuracy") else None
    results: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "rnnlab_version": __version__,
        "status": "complete" if len(finished) == expected else "partial",
        "experiment": experiment,
        "task": task,
        "machine": machine,
        "timing": {**timing, "cells_seconds": round(sum(cell["timing"]["wall_seconds"] for cell in finished), 3)},
        "cells_expected": expected,
        "cells_done": len(finished),
        "cells_failed": len(cells) - len(finished),
        # each cell keeps its task spec for the document's "task"; the published cell does not repeat it
        "cells": [{key: value for key, value in cell.items() if key != "spec"} for cell in cells],
        "summary": summarise(finished, model_order=list(experiment.get("models", []))),
        "probe": probe,
        "claims": [],
        "advice": None,
    }
    results["claims"] = [claim.to_dict() for claim in check_claims(results)]
    if results["summary"]:
        results["advice"] = advise(results).to_dict()
    return results
