"""Which learning-rate schedule should training use by default? Measured in one run on this machine.

    python bench/train_schedules.py [--seeds 3] [--out DIR]

Trains the same models with ``schedule`` = ``plateau`` (halve the rate when the validation metric
stalls), ``cosine`` (decay to lr/100 after one epoch of warm-up) and ``none`` (constant), for the
same number of epochs and without early stopping, on two small tasks that train in seconds:

* GRU on scikit-learn's digits (classification, test accuracy; 20 epochs);
* LSTM on the adding problem at T = 50 (regression, test MSE; 4000 samples, 6 epochs).

Prints a Markdown table: mean and spread over seeds of the test metric and of the best epoch.
The default (``TrainConfig.schedule``) is the schedule that is best or tied on both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rnnlab.train import TrainConfig, train

SCHEDULES = {
    "plateau": {"schedule": "plateau"},
    "cosine": {"schedule": "cosine", "warmup_epochs": 1.0},
    "none": {"schedule": "none"},
}
TASKS = {
    "digits · gru · accuracy": (dict(task="classify", data="digits", model="gru", epochs=20), "accuracy"),
    "adding T=50 · lstm · mse": (
        dict(task="adding", model="lstm", seq_len=50, n_train=4000, n_val=500, n_test=1000, epochs=6),
        "mse",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="rnnlab-schedules-"))
    rows = []
    for task_name, (fields, metric) in TASKS.items():
        for schedule_name, schedule in SCHEDULES.items():
            values, best_epochs, seconds = [], [], []
            for seed in range(args.seeds):
                out = root / f"{fields['task']}-{schedule_name}-{seed}"
                summary = train(TrainConfig(**fields, **schedule, patience=None, seed=seed, out=str(out))).summary
                values.append(summary["test_metrics"][metric])
                best_epochs.append(summary["best_epoch"])
                seconds.append(summary["train_seconds"])
                print(f"{task_name} {schedule_name} seed {seed}: {metric} {values[-1]:.4g}", flush=True)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(
                (
                    task_name,
                    schedule_name,
                    statistics.mean(values),
                    spread,
                    statistics.mean(best_epochs),
                    statistics.mean(seconds),
                )
            )
    print(f"\n| task | schedule | test metric (mean ± sd over {args.seeds} seeds) | best epoch | train s |")
    print("|---|---|---|---|---|")
    for task_name, schedule_name, mean, spread, best, secs in rows:
        print(f"| {task_name} | {schedule_name} | {mean:.4g} ± {spread:.2g} | {best:.1f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
