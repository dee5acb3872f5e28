"""The issue's acceptance figures with the task defaults (the `standard` budget): minutes each, so slow.

Run with ``python -m pytest -m slow tests/train/test_acceptance.py``; the README's "Training" section
lists the figures and wall times these runs gave on 2 cores.
"""

import pytest

from rnnlab.train import TrainConfig, train

pytestmark = pytest.mark.slow


def test_lstm_recalls_a_symbol_across_100_steps(tmp_path):
    summary = train(TrainConfig(task="recall", model="lstm", seq_len=100, out=str(tmp_path / "run"))).summary
    assert summary["test_metrics"]["accuracy"] >= 0.99


def test_lstm_solves_the_adding_problem_at_200_steps(tmp_path):
    summary = train(TrainConfig(task="adding", model="lstm", seq_len=200, out=str(tmp_path / "run"))).summary
    assert summary["test_metrics"]["mse"] < 0.01
    assert summary["test_metrics"]["trivial_mse"] == pytest.approx(1 / 6, abs=0.02)


def test_gru_classifies_the_digits(tmp_path):
    summary = train(TrainConfig(task="classify", model="gru", data="digits", out=str(tmp_path / "run"))).summary
    assert summary["test_metrics"]["accuracy"] >= 0.95


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_lstm_and_gru_beat_the_seasonal_naive_forecast_of_traffic(tmp_path, model):
    summary = train(TrainConfig(task="forecast", model=model, data="traffic", out=str(tmp_path / "run"))).summary
    metrics = summary["test_metrics"]
    assert metrics["mae"] < metrics["seasonal_naive_mae"]
