"""Builders of results documents from constructed cells, for the lab's unit tests.

The numbers here are test inputs chosen to exercise a verdict or a rule; the product never writes
a number it did not measure (the end-to-end tests in ``test_compare.py`` check that path).
"""

from __future__ import annotations

import math
from typing import Any

from rnnlab.lab.folder import assemble


def make_cell(
    model: str,
    length: int | None,
    seed: int = 0,
    *,
    value: float = 0.9,
    metric: str = "accuracy",
    higher: bool = True,
    epochs_to_target: int | None = 3,
    epochs: int = 10,
    train_ms: float = 10.0,
    latency_ms: float = 1.0,
    step_ms: float | None = 0.1,
    params: int = 1000,
    memory_mb: float = 5.0,
    flow_ratio: float | None = None,
    cell_ratio: float | None = None,
    retention: float | None = None,
    attention: bool = False,
    baselines: dict[str, float] | None = None,
    num_classes: int | None = 8,
) -> dict[str, Any]:
    """One finished cell; ``flow_ratio`` (and ``cell_ratio``) make ‖∂L/∂h_1‖/‖∂L/∂h_T‖ equal to it."""
    t = length or 20
    steps = list(range(1, t + 1)) if t <= 128 else [1, t // 2, t]
    gradient_flow = None
    if flow_ratio is not None:

        def curve(ratio: float) -> list[float]:
            # geometric from ratio·g_T at t=1 up to g_T = 0.01 at t=T
            return [0.01 * ratio ** ((t - step) / max(1, t - 1)) for step in steps]

        measured = {"h": curve(flow_ratio)}
        if cell_ratio is not None:
            measured["c"] = curve(cell_ratio)
        gradient_flow = {"layer": 0, "steps": steps, "samples": 32, "init": measured, "trained": measured}
    gates = None
    if retention is not None:
        stat = {"mean": retention, "saturated_low": 0.05, "saturated_high": 0.3}
        gates = {
            "gates": {"f": stat},
            "retention_gate": "f (LSTM forget gate)",
            "retention": stat,
            "over_time": {"steps": steps, "mean": [retention] * len(steps)},
        }
    attention_record = None
    if attention:
        weights = [[1.0 / len(steps)] * len(steps) for _ in range(4)]
        attention_record = {
            "kind": "attention pooling α_t",
            "steps": steps,
            "weights": weights,
            "targets": [0, 1, 2, 3],
        }
    reached = epochs_to_target is not None
    return {
        "key": f"{model.replace('+', '-')}__T{'native' if length is None else length}__s{seed}",
        "model": model,
        "length": length,
        "seed": seed,
        "status": "done",
        "run_dir": None,
        "init": "chrono",
        "hidden_size": 16,
        "num_parameters": params,
        "metric": {"name": metric, "value": value, "higher_is_better": higher},
        "test_metrics": {metric: value},
        "baselines": baselines if baselines is not None else {"chance_accuracy": 0.125},
        "spec": {"task": "recall", "head": "classify", "num_classes": num_classes, "seq_len": length},
        "target": {"metric": metric, "value": 0.9125, "higher_is_better": higher},
        "epochs": epochs,
        "best_epoch": epochs,
        "stopped": "epochs done",
        "epochs_to_target": epochs_to_target,
        "seconds_to_target": 2.0 * epochs_to_target if reached else None,
        "train_seconds": 20.0,
        "history": [
            {"epoch": e, "seconds": 2.0 * e, "val_metric": min(value, value * e / 3), "train_loss": 1.0 / e}
            for e in range(1, epochs + 1)
        ],
        "cost": {
            "train_ms_per_step": train_ms,
            "latency_ms_sequence": latency_ms,
            "latency_ms_step": step_ms,
            "stream_mode": "one step with the carried recurrent state",
            "loop_ms_per_step": train_ms * 1.5,
            "train_memory_mb": memory_mb,
            "peak_rss_mb": 400.0,
            "batch_size": 64,
            "threads": 1,
        },
        "gradient_flow": gradient_flow,
        "gates": gates,
        "attention": attention_record,
        "timing": {
            "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:00:20+00:00",
            "wall_seconds": 20.0,
        },
    }


def make_probe(
    rnn_ms: float = 10.0,
    lstm_ms: float = 14.0,
    gru_ms: float = 11.0,
    rnn_infer: float = 3.0,
    lstm_infer: float = 4.0,
    gru_infer: float = 3.3,
) -> dict[str, Any]:
    return {
        "input_size": 32,
        "hidden_size": 128,
        "seq_len": 100,
        "batch_size": 32,
        "repeats": 15,
        "threads": 1,
        "parameters": {"rnn": 20736, "lstm": 82944, "gru": 62208},
        "layers": {
            "rnn": {"train_ms": rnn_ms, "infer_ms": rnn_infer},
            "lstm": {"train_ms": lstm_ms, "infer_ms": lstm_infer},
            "gru": {"train_ms": gru_ms, "infer_ms": gru_infer},
        },
    }


def make_results(
    cells: list[dict[str, Any]],
    *,
    task: str = "recall",
    probe: dict[str, Any] | None = None,
    models: list[str] | None = None,
    lengths: list[int | None] | None = None,
    seeds: list[int] | None = None,
    expected: int | None = None,
    data: str | None = None,
) -> dict:
    """A results document assembled (by the product's own ``assemble``) from constructed cells."""
    models = models or list(dict.fromkeys(cell["model"] for cell in cells))
    lengths = lengths or sorted({cell["length"] for cell in cells}, key=lambda v: math.inf if v is None else v)
    seeds = seeds or sorted({cell["seed"] for cell in cells})
    experiment = {
        "task": task,
        "data": data,
        "data_sha256": None,
        "data_options": {},
        "budget": "quick",
        "params": 1000,
        "epochs": 10,
        "max_minutes": 1.0,
        "batch_size": 64,
        "train_samples": 2000,
        "patience": None,
        "schedule": "none",
        "stop_at_perfect": True,
        "timing_seconds": 0.5,
        "target_metric": None,
        "num_layers": None,
        "lr": None,
        "clip": 1.0,
        "init": "auto",
        "models": models,
        "lengths": lengths,
        "seeds": seeds,
    }
    return assemble(
        experiment,
        cells,
        expected=expected if expected is not None else len(models) * len(lengths) * len(seeds),
        probe=probe,
        machine={
            "executor": "local",
            "workers": 2,
            "threads_per_worker": 1,
            "platform": "test",
            "cpu_cores": 2,
            "torch": "test",
        },
        timing={"started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:10:00+00:00", "wall_seconds": 600.0},
    )


def long_range_study(*, rnn_long: float = 0.13, lstm_long: float = 0.97, with_probe: bool = True) -> dict:
    """Six models at T = 10, 100, 1000, two seeds; ``rnn_long``/``lstm_long`` their accuracy at T=1000."""
    cells = []
    accuracy = {
        "rnn": {10: 1.0, 100: 0.14, 1000: rnn_long},
        "lstm": {10: 1.0, 100: 0.99, 1000: lstm_long},
        "gru": {10: 1.0, 100: 0.98, 1000: 0.9},
        "lstm+attn": {10: 1.0, 100: 1.0, 1000: 0.99},
        "tcn": {10: 1.0, 100: 1.0, 1000: 1.0},
        "transformer": {10: 1.0, 100: 1.0, 1000: 0.99},
    }
    speed = {"rnn": 5.0, "lstm": 8.0, "gru": 7.0, "lstm+attn": 9.0, "tcn": 2.0, "transformer": 3.0}
    for model, by_length in accuracy.items():
        for length, value in by_length.items():
            for seed in (0, 1):
                recurrent = model in ("rnn", "lstm", "gru", "lstm+attn")
                cells.append(
                    make_cell(
                        model,
                        length,
                        seed,
                        value=value - 0.002 * seed,
                        epochs_to_target=None if value < 0.91 else (2 if model != "rnn" else 6),
                        train_ms=speed[model] * length / 10,
                        latency_ms=speed[model] * length / 100,
                        flow_ratio=(1e-12 if model == "rnn" else 0.05) if recurrent else None,
                        cell_ratio=0.3 if model in ("lstm", "lstm+attn") else None,
                        retention=0.9 if model in ("lstm", "gru", "lstm+attn") else None,
                        attention=model in ("lstm+attn", "transformer"),
                    )
                )
    return make_results(cells, probe=make_probe() if with_probe else None)


def forecast_results(rows):
    """A forecast comparison: (model, lookback, MAE) per cell, with its baselines."""
    baselines = {"naive_mae": 16.3, "seasonal_naive_mae": 7.77, "ets_mae": 7.1, "arima_mae": 6.9}
    cells = [
        make_cell(model, lookback, value=mae, metric="mae", higher=False, baselines=baselines, num_classes=None)
        for model, lookback, mae in rows
    ]
    for cell in cells:
        cell["spec"] = {"task": "forecast", "head": "forecast", "seq_len": cell["length"], "num_classes": None}
    return make_results(cells, task="forecast")
