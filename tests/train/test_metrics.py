"""Metrics against values computed by hand (and scikit-learn where it has the same metric)."""

import math

import pytest
import torch
from sklearn.metrics import f1_score

from rnnlab.train.metrics import (
    ClassificationMetrics,
    ForecastMetrics,
    LanguageModelMetrics,
    MultilabelMetrics,
    RegressionMetrics,
    loss_function,
    metrics_for,
    primary_metric,
)


def logits_for(probabilities):
    """Logits whose softmax is ``probabilities`` (log p, which softmax normalises back)."""
    return torch.tensor(probabilities, dtype=torch.float32).log()


def test_classification_accuracy_f1_and_cross_entropy_by_hand():
    # truth 0 1 2 2, predicted 0 1 1 2 (the argmax of each row)
    probabilities = [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]]
    truth = torch.tensor([0, 1, 2, 2])
    metrics = ClassificationMetrics(3)
    metrics.update(logits_for(probabilities), truth)
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(3 / 4)
    # F1 per class: class 0: 2·1/(2·1+0+0) = 1; class 1: TP 1, FP 1 → 2/3; class 2: TP 1, FN 1 → 2/3
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # −ln p(true): 0.5, 0.5, 0.2, 0.8
    expected = -(math.log(0.5) + math.log(0.5) + math.log(0.2) + math.log(0.8)) / 4
    assert result["cross_entropy"] == pytest.approx(expected, rel=1e-6)


def test_macro_f1_matches_scikit_learn_and_ignores_absent_classes():
    generator = torch.Generator().manual_seed(3)
    truth = torch.randint(0, 4, (200,), generator=generator)  # class 4 of 5 never occurs
    logits = torch.randn(200, 5, generator=generator)
    logits[:, 4] = -10  # ... nor is it ever predicted
    metrics = ClassificationMetrics(5)
    metrics.update(logits, truth)
    predicted = logits.argmax(-1)
    assert metrics.compute()["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_sums_over_batches_equal_one_pass():
    generator = torch.Generator().manual_seed(0)
    logits, truth = torch.randn(50, 4, generator=generator), torch.randint(0, 4, (50,), generator=generator)
    whole, parts = ClassificationMetrics(4), ClassificationMetrics(4)
    whole.update(logits, truth)
    for start in range(0, 50, 7):
        parts.update(logits[start : start + 7], truth[start : start + 7])
    for name, value in whole.compute().items():
        assert parts.compute()[name] == pytest.approx(value)


def test_tagging_ignores_unscored_steps():
    # 2 sentences of 3 steps; the last step of the second is padding (-100) and predicted wrong
    probabilities = torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [[0.3, 0.7], [0.7, 0.3], [0.1, 0.9]]])
    truth = torch.tensor([[0, 1, 1], [1, 0, -100]])
    metrics = ClassificationMetrics(2)
    metrics.update(probabilities.log(), truth)
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(4 / 5)  # the 3rd step of sentence 1 is wrong
    nll = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.7) + math.log(0.7)) / 5
    assert result["cross_entropy"] == pytest.approx(nll, rel=1e-6)


def test_copy_scores_accuracy_on_answer_steps_and_cross_entropy_on_all():
    # 4 steps, answers at [2, 4): steps 0-1 blank (class 0), predicted right; answers: one right, one wrong
    probabilities = torch.tensor([[[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.2, 0.7, 0.1]]])
    truth = torch.tensor([[0, 0, 1, 2]])
    metrics = ClassificationMetrics(3, answer_positions=(2, 4))
    metrics.update(probabilities.log(), truth)
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(1 / 2)
    assert result["cross_entropy"] == pytest.approx(-(2 * math.log(0.8) + math.log(0.7) + math.log(0.1)) / 4, rel=1e-6)


def test_language_model_bits_per_character_and_perplexity():
    # uniform over 4 characters: ln 4 nats = 2 bits per character, perplexity 4
    metrics = LanguageModelMetrics()
    metrics.update(torch.zeros(2, 5, 4), torch.tensor([[0, 1, 2, 3, 0], [1, 1, -100, -100, -100]]))
    result = metrics.compute()
    assert result["bpc"] == pytest.approx(2.0)
    assert result["perplexity"] == pytest.approx(4.0)
    assert result["cross_entropy"] == pytest.approx(math.log(4))


def test_forecast_metrics_in_original_units():
    # one target scaled with mean 10, std 2; truth (original) 12, 8, 10, 14; forecast 11, 8, 13, 14
    mean, std = 10.0, 2.0
    truth = torch.tensor([[[12.0], [8.0]], [[10.0], [14.0]]])  # [windows 2, horizon 2, targets 1]
    forecast = torch.tensor([[[11.0], [8.0]], [[13.0], [14.0]]])
    metrics = ForecastMetrics([mean], [std], mase_scale=[2.0])
    metrics.update((forecast - mean) / std, (truth - mean) / std)
    result = metrics.compute()
    errors = [1.0, 0.0, 3.0, 0.0]
    assert result["mae"] == pytest.approx(sum(errors) / 4)
    assert result["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 4))
    smape = [2 * 1 / (12 + 11), 0.0, 2 * 3 / (10 + 13), 0.0]
    assert result["smape"] == pytest.approx(100 * sum(smape) / 4)
    assert result["mase"] == pytest.approx((sum(errors) / 4) / 2.0)


def test_forecast_mase_averages_per_target_scales():
    # two targets, identity scaling; target a errs by 1 (scale 1), target b by 4 (scale 2) → (1 + 2) / 2
    truth = torch.zeros(1, 1, 2)
    forecast = torch.tensor([[[1.0, 4.0]]])
    metrics = ForecastMetrics([0.0, 0.0], [1.0, 1.0], mase_scale=[1.0, 2.0])
    metrics.update(forecast, truth)
    result = metrics.compute()
    assert result["mase"] == pytest.approx(1.5)
    assert result["mae"] == pytest.approx(2.5)
    assert result["smape"] == pytest.approx(200.0)  # 2|e| / (|0| + |ŷ|) = 2 for both


def test_regression_mean_squared_error():
    metrics = RegressionMetrics()
    metrics.update(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 0.0]))
    metrics.update(torch.tensor([0.0]), torch.tensor([1.0]))
    result = metrics.compute()
    assert result["mse"] == pytest.approx((0.25 + 4 + 1) / 3)
    assert result["mae"] == pytest.approx((0.5 + 2 + 1) / 3)


def test_multilabel_nll_sums_keys_and_averages_frames():
    # logits 0 give p = 0.5 for every key: ln 2 per key, 3 keys per frame; the padded frame is not counted
    targets = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-100.0, -100.0, -100.0]]])
    metrics = MultilabelMetrics()
    metrics.update(torch.zeros(1, 3, 3), targets)
    assert metrics.compute()["nll"] == pytest.approx(3 * math.log(2))
    assert float(loss_function("multilabel")(torch.zeros(1, 3, 3), targets)) == pytest.approx(3 * math.log(2))


def test_metrics_for_reads_the_forecast_scaler_of_the_targets_only():
    meta = {
        "targets": ["flow"],
        "scaler": {"columns": ["flow", "rain"], "mean": [100.0, 3.0], "std": [10.0, 1.0]},
        "mase_scale": [5.0],
    }
    spec = {"task": "forecast", "head": "forecast"}
    metrics = metrics_for(spec, meta)
    metrics.update(torch.tensor([[[0.5]]]), torch.tensor([[[0.0]]]))
    assert metrics.compute()["mae"] == pytest.approx(5.0)
    assert metrics.compute()["mase"] == pytest.approx(1.0)


def test_primary_metric_by_task():
    assert primary_metric("recall", "classify") == ("accuracy", "max")
    assert primary_metric("adding", "regress") == ("mse", "min")
    assert primary_metric("charlm", "lm") == ("bpc", "min")
    assert primary_metric("my-task", "forecast") == ("mae", "min")
