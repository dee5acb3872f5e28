"""rnnlab's defaults on real data nobody tuned them for, beside the classical references.

    python bench/realdata.py [--models gru,lstm,tcn] [--max-minutes 3] [--sets ArrowHead,lynx] [--out DIR]

Runs ``rnnlab train`` (the command a user types, one process per run) with defaults only over the
public suite in ``../shared/data/real/`` (its README lists the sets): classification with
``--data X_train.csv --test-data X_test.csv``, forecasts with only ``--time``, ``--target`` and
``--horizon`` (no ``--task``: the forecast flags imply it). Prints one table: data set, model, the
metric on the test split, each baseline that the run computed on the same split
(``summary.json["baselines"]``), the ratio to the best of them, optimiser steps, seconds and why the
run stopped. The runs and ``realdata.json`` go to ``--out``.

The table below is the benchmark's definition (which file, which column, which horizon), not a
source of settings: every choice a run makes comes from the data through rnnlab's rules.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
TIE = 1e-3  # relative: closer than this to a reference is a tie

CLASSIFY = ("ArrowHead", "OSULeaf", "ACSF1", "BasicMotions", "PLAID")
#: file → (time column, target column, horizon): the horizons a forecaster of each series would ask for
FORECAST = {
    "lynx": ("year", "lynx", 10),
    "nile": ("year", "volume", 10),
    "shampoo": ("month", "sales", 6),
    "seatbelts": ("month", "ksi", 12),
    "uschange": ("quarter", "consumption", 8),
    "solar": ("time", "solar_gen", 48),
}
#: the baselines compared against, by task, and whether more is better
REFERENCES = {
    "classify": ("accuracy", True, ("majority_accuracy", "1nn_euclidean_accuracy", "1nn_dtw_accuracy")),
    "forecast": ("mae", False, ("naive_mae", "seasonal_naive_mae", "ets_mae", "arima_mae")),
}


def command(name: str, model: str, out: Path, max_minutes: float) -> list[str]:
    base = [
        sys.executable,
        "-m",
        "rnnlab.cli",
        "train",
        "--model",
        model,
        "--out",
        str(out),
        "-q",
        "--max-minutes",
        str(max_minutes),
    ]
    if name in CLASSIFY:
        return [
            *base,
            "--task",
            "classify",
            "--data",
            str(REAL / f"{name}_train.csv"),
            "--test-data",
            str(REAL / f"{name}_test.csv"),
        ]
    time_column, target, horizon = FORECAST[name]
    return [  # no --task: the forecast flags say it
        *base,
        "--data",
        str(REAL / f"{name}.csv"),
        "--time",
        time_column,
        "--target",
        target,
        "--horizon",
        str(horizon),
    ]


def run(name: str, model: str, out: Path, max_minutes: float) -> dict:
    run_dir = out / f"{name}-{model.replace('+', '-')}"
    started = time.perf_counter()
    completed = subprocess.run(command(name, model, run_dir, max_minutes), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        return {
            "set": name,
            "model": model,
            "error": (completed.stderr or completed.stdout).strip()[-400:],
            "wall_seconds": round(wall, 1),
        }
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    task = "classify" if name in CLASSIFY else "forecast"
    metric, _higher, names = REFERENCES[task]
    baselines = {key: summary["baselines"].get(key) for key in names}
    return {
        "set": name,
        "model": model,
        "task": task,
        "metric": metric,
        "value": summary["test_metrics"][metric],
        "baselines": baselines,
        "baseline_notes": summary.get("baseline_notes", {}),
        "steps": summary["steps"],
        "refit": summary.get("refit"),
        "stop_reason": summary["stop_reason"],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(wall, 1),
    }


def best_reference(row: dict) -> tuple[str, float] | None:
    _, higher, _ = REFERENCES[row["task"]]
    fitted = {
        key: value for key, value in row["baselines"].items() if value is not None and not key.startswith("majority")
    }
    if not fitted:
        return None
    key = (max if higher else min)(fitted, key=fitted.get)
    return key, fitted[key]


def compare(value: float, reference: float, higher: bool) -> str:
    """ "beats" / "loses", or "ties" within TIE of the reference (a forecast that kept its naive start
    equals the seasonal naive up to float32 rounding)."""
    if abs(value - reference) <= TIE * abs(reference):
        return "ties"
    return "beats" if (value > reference) == higher else "loses"


def table(rows: list[dict]) -> str:
    lines = [
        "| set | model | metric | value | references | vs best reference | steps | seconds | stopped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['set']} | {row['model']} | error | {row['error'][:80]} | | | | {row['wall_seconds']} | |"
            )
            continue
        references = ", ".join(
            f"{key.removesuffix('_' + row['metric']).replace('_', ' ')} {'—' if value is None else f'{value:.4g}'}"
            for key, value in row["baselines"].items()
        )
        best = best_reference(row)
        _, higher, _ = REFERENCES[row["task"]]
        if best is None:
            verdict = "no reference"
        else:
            verdict = (
                f"{row['value'] / best[1]:.3f}× {best[0].removesuffix('_' + row['metric'])} "
                f"({compare(row['value'], best[1], higher)})"
            )
        lines.append(
            f"| {row['set']} | {row['model']} | {row['metric']} | {row['value']:.4g} | {references} | "
            f"{verdict} | {row['steps']} | {row['train_seconds']:.0f} | {row['stop_reason']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gru,lstm,tcn")
    parser.add_argument("--max-minutes", type=float, default=3.0)
    parser.add_argument("--sets", default=",".join((*CLASSIFY, *FORECAST)))
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    if not REAL.is_dir():
        sys.exit(f"the real-data suite is not at {REAL} (expected ../shared/data/real beside the repository)")
    out = Path(args.out or tempfile.mkdtemp(prefix="rnnlab-realdata-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.sets.split(","):
        for model in args.models.split(","):
            rows.append(run(name, model, out, args.max_minutes))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = {"date": stamp, "machine": machine, "max_minutes": args.max_minutes, "rows": rows}
    (out / "realdata.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    print(f"\n{stamp} · {machine} · --max-minutes {args.max_minutes} · runs in {out}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
