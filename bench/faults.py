"""Fault injection: kill ``rnnlab train`` and ``rnnlab compare`` at random moments, then check the folder.

    python bench/faults.py [--kills 20] [--seed 0] [--only train,compare] [--out DIR]

For each command a reference runs uninterrupted first and its duration is measured. Then, ``--kills``
times, the same command starts into a fresh folder and gets SIGKILL after a delay drawn (from
``--seed``) between 0 and 1.2× that duration, so kills land in start-up, in every epoch, inside
checkpoint and result writes, and after the end. After each kill the folder is carried on the way a
user would: ``train --resume`` (or the same ``train`` again where the kill left no run behind), the
same ``compare`` command again. Each kill then counts as one of

    same      the carried-on run ends with the reference's weights (train: model.safetensors bit for
              bit) or results (compare: results.json without its machine-dependent fields)
    refused   rnnlab declined with one ``error:`` line that says what to do (exit code 2)
    DIFFERENT it finished but differs from the reference, or failed without a clear message

and the script exits non-zero if any kill is DIFFERENT. Training runs on one thread, as the resume
tests do, so that floating-point sums are the same from run to run. ``rnnlab tune`` does not exist
yet; when it does it belongs here too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RNNLAB = [sys.executable, "-m", "rnnlab.cli"]
TRAIN = ["train", "--task", "adding", "--seq-len", "50", "--hidden-size", "32", "--num-layers", "2", "--dropout", "0.3"]
TRAIN += ["--batch-size", "32", "--epochs", "10", "--patience", "0", "--option", "n_train=1024", "-q"]
COMPARE = ["compare", "--models", "rnn,lstm", "--lengths", "6,8", "--seeds", "1", "--budget", "quick"]
COMPARE += ["--params", "1500", "--epochs", "3", "--train-samples", "256", "--workers", "2", "-q"]
VERDICTS = ("same", "refused", "DIFFERENT")
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}


def run(arguments: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([*RNNLAB, *arguments], capture_output=True, text=True, env=ENVIRONMENT, timeout=timeout)


def killed_after(arguments: list[str], delay: float) -> None:
    """Start ``rnnlab ARGUMENTS`` and SIGKILL it (the process alone, as ``kill -9 PID`` does) after ``delay`` s."""
    process = subprocess.Popen(
        [*RNNLAB, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENVIRONMENT
    )
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def clear_refusal(result: subprocess.CompletedProcess) -> bool:
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")


# --------------------------------------------------------------------------------------------- train
def train_outcome(out: Path, reference: Path) -> tuple[str, str]:
    """Carry a killed training on, and say how it ended against the reference."""
    if (out / "summary.json").is_file():
        how, result = "finished before the kill", None
    elif (out / "config.json").is_file():
        how, result = "resumed", run(["train", "--out", str(out), "--resume", "-q"])
    else:  # nothing of the run (or an empty folder) is left: the user runs the command again
        how, result = "started again", run([*TRAIN, "--out", str(out)])
    if result is not None and result.returncode != 0:
        if clear_refusal(result):
            return "refused", f"{how}: {result.stderr.strip()}"
        return "DIFFERENT", f"{how}: exit {result.returncode}: {(result.stderr or result.stdout).strip()[-400:]}"
    same = (out / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    return ("same", how) if same else ("DIFFERENT", f"{how}: model.safetensors differs from the reference")


# --------------------------------------------------------------------------------------------- compare
def machine_free_results(folder: Path) -> dict:
    from rnnlab.lab.results import strip_machine_dependent

    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    return strip_machine_dependent(results)


def compare_outcome(out: Path, reference: Path) -> tuple[str, str]:
    result = run([*COMPARE, "--out", str(out)])
    if result.returncode != 0:
        if clear_refusal(result):
            return "refused", result.stderr.strip()
        return "DIFFERENT", f"exit {result.returncode}: {(result.stderr or result.stdout).strip()[-400:]}"
    if machine_free_results(out) != machine_free_results(reference):
        return "DIFFERENT", "results.json differs from the reference"
    return "same", "rerun completed"


# --------------------------------------------------------------------------------------------- main
def inject(name: str, arguments: list[str], outcome, kills: int, rng: random.Random, root: Path) -> list[dict]:
    reference = root / f"{name}-reference"
    started = time.perf_counter()
    result = run([*arguments, "--out", str(reference)])
    duration = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the reference {name} failed: {result.stderr[-2000:]}")
    print(f"{name}: reference {duration:.1f} s", flush=True)
    rows = []
    for kill in range(kills):
        out = root / f"{name}-{kill:02d}"
        delay = rng.uniform(0.0, 1.2 * duration)
        killed_after([*arguments, "--out", str(out)], delay)
        verdict, detail = outcome(out, reference)
        rows.append(
            {"command": name, "kill": kill, "after_seconds": round(delay, 2), "verdict": verdict, "detail": detail}
        )
        print(f"  kill {kill:2d} after {delay:5.1f} s: {verdict:9s} {detail}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="train,compare")
    parser.add_argument("--out", default=None, help="where the folders go (default: a temporary folder)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="rnnlab-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    commands = {"train": (TRAIN, train_outcome), "compare": (COMPARE, compare_outcome)}
    rows = []
    for name in args.only.split(","):
        arguments, outcome = commands[name]
        rows += inject(name, arguments, outcome, args.kills, rng, root)
    (root / "faults.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print("\n| command | kills | same | refused | different |\n|---|---|---|---|---|")
    for name in args.only.split(","):
        mine = [row for row in rows if row["command"] == name]
        counts = {
            verdict: sum(row["verdict"] == verdict for row in mine) for verdict in ("same", "refused", "DIFFERENT")
        }
        print(f"| {name} | {len(mine)} | {counts['same']} | {counts['refused']} | {counts['DIFFERENT']} |")
    print(f"(seed {args.seed}; every kill in {root / 'faults.json'})")
    sys.exit(1 if any(row["verdict"] == "DIFFERENT" for row in rows) else 0)


if __name__ == "__main__":
    main()
