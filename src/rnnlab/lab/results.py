"""The results document (``results.json``): built from finished cells, validated against its schema.

``src/rnnlab/schemas/results.schema.json`` documents every field. The cells are the measurements;
everything else (the per-model summary, the claims, the advice) is computed from them here, in
``claims.py`` and in ``advise.py``, so a results file can always be rebuilt from ``DIR/cells``.

The *skill* of a metric puts tasks on one scale for verdicts:

    accuracy:       skill = (accuracy − chance) / (1 − chance)      1 = perfect, 0 = chance level
    an error (mae): skill = 1 − error / baseline_error              1 = perfect, 0 = the baseline

where ``chance`` is the accuracy of always answering the most common class and the baseline
error is the task's trivial predictor (``trivial_mse``, ``naive_mae``, ...).
"""

from __future__ import annotations

import json
import math
import statistics
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_ID = "rnnlab-compare-results"
SCHEMA_VERSION = 1

#: Fields that depend on the machine and the moment (timings, memory of the process), not on the
#: seeds: two executors running the same cells agree on everything else.
MACHINE_DEPENDENT_FIELDS = (
    "cells[].cost",
    "cells[].train_seconds",
    "cells[].seconds_to_target",
    "cells[].history[].seconds",
    "cells[].timing",
    "cells[].run_dir",
    "summary[].cost",
    "summary[].seconds_to_target",
    "summary[].train_seconds",
    "summary[].timing_contended",
    "timing",
    "machine",
    "probe",
    "claims",
    "advice",
)

#: Baseline entries that serve as the reference error of a metric.
_BASELINE_FOR_METRIC = {
    "mse": ("trivial_mse", "mean_mse", "naive_mse"),
    "rmse": ("trivial_rmse", "naive_rmse"),
    "mae": ("naive_mae", "seasonal_naive_mae", "trivial_mae", "mean_mae"),
    "bpc": ("unigram_bpc",),
    "loss": ("trivial_loss",),
}
_CHANCE_KEYS = ("majority_accuracy", "chance_accuracy", "chance")


#: The documents this package writes and validates: schema file and what a user calls it.
DOCUMENTS = {
    "results": ("schemas/results.schema.json", "an rnnlab results file", "`rnnlab compare`"),
    "suite": ("schemas/suite.schema.json", "an rnnlab suite results file", "`rnnlab compare --suite bai2018`"),
}


def schema(document: str = "results") -> dict[str, Any]:
    """The JSON Schema of a ``results.json`` (``document="suite"``: a suite's), from the package data."""
    text = resources.files("rnnlab").joinpath(DOCUMENTS[document][0]).read_text(encoding="utf-8")
    return json.loads(text)


def validate(results: dict[str, Any], document: str = "results") -> None:
    """Raise ``jsonschema.ValidationError`` (naming the path of the bad field) unless ``results`` fits the schema."""
    import jsonschema

    jsonschema.validate(results, schema(document), cls=jsonschema.Draft202012Validator)


def load(path: str | Path, document: str = "results") -> dict[str, Any]:
    """Read and validate a ``results.json``; a folder means the ``results.json`` inside it."""
    import jsonschema

    from rnnlab.errors import DataError

    _, what, writer = DOCUMENTS[document]
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise DataError(f"{path}: no such results file (expected the results.json that {writer} writes)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    try:
        validate(results, document)
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise DataError(f"{path}: not {what}: at {where}: {error.message}") from None
    return results


# --------------------------------------------------------------------------- the document


# --------------------------------------------------------------------------- summary
def summarise(cells: list[dict[str, Any]], model_order: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (model, length): the metric's mean and spread over seeds, and the costs' means.

    Only finished cells count; ``n`` says how many seeds a row averages. Rows follow
    ``model_order`` (default: the order models first appear in ``cells``), then length.
    """
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    for cell in cells:
        if cell.get("status") == "done":
            groups.setdefault((cell["model"], cell["length"]), []).append(cell)
    rows = []
    for (model, length), group in groups.items():
        values = [cell["metric"]["value"] for cell in group]
        reached = [cell for cell in group if cell.get("epochs_to_target") is not None]
        cost_keys = sorted({key for cell in group for key, value in cell["cost"].items() if _is_number(value)})
        rows.append(
            {
                "model": model,
                "length": length,
                "n": len(group),
                "seeds": sorted(cell["seed"] for cell in group),
                "metric": group[0]["metric"]["name"],
                "higher_is_better": group[0]["metric"]["higher_is_better"],
                "metric_mean": statistics.fmean(values),
                "metric_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "metric_min": min(values),
                "metric_max": max(values),
                "num_parameters": group[0]["num_parameters"],
                "hidden_size": group[0].get("hidden_size"),
                "epochs": statistics.fmean(cell["epochs"] for cell in group),
                "reached_target": len(reached),
                "epochs_to_target": statistics.fmean(c["epochs_to_target"] for c in reached) if reached else None,
                "seconds_to_target": statistics.fmean(c["seconds_to_target"] for c in reached) if reached else None,
                "train_seconds": statistics.fmean(cell["train_seconds"] for cell in group),
                # a seed's timings were taken while other processes held the CPU: re-time before trusting
                "timing_contended": any((cell["cost"].get("timing_load") or {}).get("contended") for cell in group),
                "cost": {
                    key: statistics.fmean(cell["cost"][key] for cell in group if _is_number(cell["cost"].get(key)))
                    for key in cost_keys
                },
            }
        )
    order: dict[str, int] = {}
    for model in list(model_order or []) + [cell["model"] for cell in cells]:
        order.setdefault(model, len(order))
    rows.sort(key=lambda row: (order.get(row["model"], len(order)), row["model"], _length_key(row["length"])))
    return rows


def row(results: dict[str, Any], model: str, length: int | None) -> dict[str, Any] | None:
    """The summary row of ``model`` at ``length``, or ``None`` when that cell did not finish."""
    for entry in results.get("summary", []):
        if entry["model"] == model and entry["length"] == length:
            return entry
    return None


def lengths_of(results: dict[str, Any]) -> list[int | None]:
    """The lengths with at least one finished cell, shortest first."""
    return sorted({entry["length"] for entry in results.get("summary", [])}, key=_length_key)


def models_of(results: dict[str, Any]) -> list[str]:
    """The models with at least one finished cell, in the experiment's order."""
    seen = []
    for entry in results.get("summary", []):
        if entry["model"] not in seen:
            seen.append(entry["model"])
    return seen


# --------------------------------------------------------------------------- skill
def chance_level(task: dict[str, Any]) -> float | None:
    """Accuracy of the trivial classifier: a baseline the task reports, else 1 / number of classes."""
    baselines = task.get("baselines") or {}
    for key in _CHANCE_KEYS:
        if _is_number(baselines.get(key)):
            return float(baselines[key])
    classes = (task.get("spec") or {}).get("num_classes")
    return 1.0 / classes if classes else None


def reference_error(task: dict[str, Any], metric: str) -> float | None:
    """The baseline error a lower-is-better ``metric`` is judged against, if the task reports one."""
    baselines = task.get("baselines") or {}
    for key in (*_BASELINE_FOR_METRIC.get(metric, ()), f"baseline_{metric}"):
        if _is_number(baselines.get(key)) and baselines[key] > 0:
            return float(baselines[key])
    return None


def skill(value: float, metric: str, higher_is_better: bool, task: dict[str, Any]) -> float | None:
    """The metric on the common 0 (trivial) … 1 (perfect) scale of the module docstring; ``None`` if unknown."""
    if higher_is_better:
        if metric != "accuracy" and not metric.endswith("accuracy"):
            return None
        chance = chance_level(task)
        if chance is None or chance >= 1:
            return None
        return (value - chance) / (1 - chance)
    reference = reference_error(task, metric)
    if reference is None:
        return None
    return 1.0 - value / reference


def row_skill(results: dict[str, Any], entry: dict[str, Any] | None) -> float | None:
    if entry is None:
        return None
    return skill(entry["metric_mean"], entry["metric"], entry["higher_is_better"], results.get("task") or {})


# --------------------------------------------------------------------------- helpers
def strip_machine_dependent(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``results`` without ``MACHINE_DEPENDENT_FIELDS`` (for comparing two runs of the same cells)."""
    results = json.loads(json.dumps(results))
    for path in MACHINE_DEPENDENT_FIELDS:
        _drop(results, path.split("."))
    return results


def _drop(node: Any, parts: list[str]) -> None:
    if not parts or node is None:
        return
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        items = node.get(head[:-2]) if isinstance(node, dict) else None
        for item in items or []:
            if rest:
                _drop(item, rest)
        return
    if isinstance(node, dict):
        if rest:
            _drop(node.get(head), rest)
        else:
            node.pop(head, None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _length_key(length: int | None) -> float:
    return math.inf if length is None else float(length)


def format_length(length: int | None) -> str:
    return "native" if length is None else f"T={length}"
