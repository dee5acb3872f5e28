"""A run that diverges: a late non-finite loss keeps the best finite epoch as the run's model, a
non-finite validation loss is caught before it is checkpointed, and a finite divergence is reported."""

from __future__ import annotations

import json
import math

import torch
from run_helpers import PoisonWeights, tiny_recall
from safetensors.torch import load_file

from rnnlab.train import evaluate_run, train
from rnnlab.train.metrics import divergence_warnings


def test_a_late_non_finite_loss_keeps_the_best_finite_epoch_as_the_model(tmp_path):
    result = train(tiny_recall(tmp_path / "run", task="adding", epochs=4), callbacks=[PoisonWeights(epoch=2)])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"].startswith("non-finite loss")
    assert summary["stop_reason"].endswith(f"the best finite epoch ({summary['best_epoch']}) is the model")
    assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    assert any("non-finite loss" in warning for warning in summary["warnings"])
    weights = load_file(tmp_path / "run" / "model.safetensors")
    assert all(bool(torch.isfinite(tensor).all()) for tensor in weights.values())
    assert not (tmp_path / "run" / "checkpoint").exists()  # the run is finished, nothing to resume
    assert math.isfinite(evaluate_run(tmp_path / "run")["mse"]) and result.summary == summary


def test_a_non_finite_validation_loss_is_caught_before_it_is_kept(tmp_path):
    train(
        tiny_recall(tmp_path / "run", task="adding", epochs=4), callbacks=[PoisonWeights(epoch=1, during="validation")]
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"].startswith("non-finite validation loss (nan) after epoch 2")
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1  # epoch 2 was never recorded as good
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # the header and epoch 1


def test_a_huge_learning_rate_is_reported_not_passed_as_a_success(tmp_path):
    summary = train(tiny_recall(tmp_path / "run", task="adding", lr=100.0, clip=0.0, schedule="none", epochs=3)).summary
    assert summary["warnings"], summary  # diverged: a loss grown by orders of magnitude, or non-finite


def test_divergence_warnings_by_hand():
    grown = [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 150.0}, {"epoch": 3, "train_loss": 900.0}]
    assert divergence_warnings(grown, {}, {}, "min") == [
        "the training loss grew from 2 (epoch 1) to 900 (epoch 3): the run diverged; try a lower lr or clip"
    ]
    assert divergence_warnings(grown[:2], {}, {}, "min") == []  # 75×: not yet orders of magnitude
    far = divergence_warnings([], {"mae": 5e3}, {"naive_mae": 20.0, "seasonal_naive_mae": 10.0}, "min")
    assert far == [
        "test mae 5000 is 500× the seasonal naive baseline's 10: the model is far worse than the trivial forecast"
    ]
    assert divergence_warnings([], {"mae": 500.0}, {"naive_mae": 10.0}, "min") == []  # 50×: just bad
    below = divergence_warnings([], {"accuracy": 0.2}, {"majority_accuracy": 0.5, "1nn_dtw_accuracy": 0.9}, "max")
    assert below == ["test accuracy 0.2 is below the majority class's 0.5"]
    assert divergence_warnings([], {"mae": 5e3}, {"naive_mae": None}, "min") == []  # a missing baseline
