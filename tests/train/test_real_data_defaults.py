"""Defaults that follow from the data: small sets get updates enough, forecasts start from a
measured naive anchor and come back in their own units, bad real data is named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.data import load_task
from rnnlab.data.timeseries import choose_anchor
from rnnlab.errors import ConfigError, DataError
from rnnlab.models import build_model
from rnnlab.models.instance_norm import instance_normalise, seasonal_naive_path, smoothed_level
from rnnlab.train import TrainConfig, train


def wide_classes(path, count, length=30, seed=0):
    """``count`` series of two shapes (a rising and a falling ramp, with noise), labelled a and b."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        label = "ab"[i % 2]
        ramp = np.linspace(-1, 1, length) * (1 if label == "a" else -1)
        rows.append([label, *(ramp + 0.3 * rng.normal(size=length))])
    pd.DataFrame(rows, columns=["label", *(f"t{k}" for k in range(length))]).to_csv(path, index=False)
    return path


def test_a_twenty_series_set_gets_small_batches_and_epochs_of_many_steps(tmp_path):
    data = wide_classes(tmp_path / "train.csv", 20)
    result = train(
        TrainConfig(
            task="classify",
            model="gru",
            data=str(data),
            test_data=str(data),
            epochs=2,
            hidden_size=8,
            num_layers=1,
            out=str(tmp_path / "run"),
        )
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    train_size = result.summary["refit"]["samples"] - len(result.task_data.val)
    assert config["batch_size"] == train_size // 4  # at most a quarter of the training set
    assert config["steps_per_epoch"] == 32 and result.summary["steps"] == 2 * 32  # not one step an epoch
    # 3 validation sequences cannot tell when to stop: the whole budget, then the refit on all 20
    assert config["refit"] is True and config["patience"] is None and config["schedule"] == "cosine"
    assert result.summary["refit"] == {
        **result.summary["refit"],
        "done": True,
        "epochs": 2,
        "samples": 20,
        "steps": 2 * 32,
    }
    assert result.summary["validation"] == "held-out split, then refit on train + validation"
    assert result.summary["stop_reason"] == "epochs done"


def test_a_long_classify_series_is_read_in_patches_by_both_directions_pooled():
    config = TrainConfig(task="classify", model="lstm").resolved(train_size=2000, val_size=200, median_length=1460)
    assert config.model_options == {"pooling": "mean+max", "patch": 15} and config.bidirectional is True
    assert config.refit is False and config.batch_size == 32 and config.steps_per_epoch is None
    short = TrainConfig(task="classify", model="tcn").resolved(train_size=500, val_size=200, median_length=1460)
    assert short.model_options == {} and short.bidirectional is None  # only the recurrent models pool
    # generated tasks keep their own defaults: nothing is sized by data the task can make more of
    assert TrainConfig(task="recall").resolved().model_options == {}


def test_patches_and_pooling_summarise_only_the_valid_steps():
    spec = {
        "task": "classify",
        "head": "classify",
        "input_size": 1,
        "vocab_size": None,
        "num_classes": 2,
        "output_shape": [],
        "seq_len": None,
        "causal": False,
    }
    model = build_model("gru", spec, hidden_size=4, num_layers=1, bidirectional=True, pooling="mean+max", patch=3)
    x = torch.randn(2, 7, 1)
    padded = torch.cat([x[:1], torch.cat([x[1:, :5], torch.full((1, 2, 1), 50.0)], dim=1)])
    both = model(padded, torch.tensor([7, 5]))
    torch.testing.assert_close(both[1], model(x[1:, :5])[0])  # what lies past a length never counts
    assert not model.streamable
    with pytest.raises(ConfigError, match="pooling and patch summarise a whole sequence"):
        build_model("gru", {**spec, "head": "tag"}, hidden_size=4, pooling="mean")


def forecast_spec(lookback=12, horizon=4, inputs=2, targets=1):
    return {
        "task": "forecast",
        "head": "forecast",
        "input_size": inputs,
        "vocab_size": None,
        "num_classes": None,
        "output_shape": [horizon, targets],
        "seq_len": lookback,
        "causal": False,
    }


def test_an_instance_normalised_forecast_comes_back_in_the_units_of_its_window():
    torch.manual_seed(0)
    model = build_model("gru", forecast_spec(), hidden_size=8, instance_norm=True).eval()
    x = torch.randn(3, 12, 2)
    with torch.no_grad():
        forecast = model(x)
        shifted = model(x + 7.0)  # every channel shifted alike: the forecast shifts with it, exactly
        scaled = model(x * 5.0)  # and scaled (up to the variance floor EPSILON, which does not scale)
    torch.testing.assert_close(shifted, forecast + 7.0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scaled, forecast * 5.0, rtol=1e-2, atol=1e-2)
    normalised, undo = instance_normalise(x, None, 1)
    torch.testing.assert_close(undo(normalised[:, :4, :1]), x[:, :4, :1], rtol=1e-5, atol=1e-5)  # a round trip


def test_an_anchored_forecast_starts_as_the_seasonal_naive_forecast():
    x = torch.arange(24.0).reshape(2, 12, 1) ** 1.5
    model = build_model("lstm", forecast_spec(inputs=1, horizon=7), hidden_size=8, instance_norm=True, anchor=5)
    expected = torch.stack([x[:, 12 + h - 5 * (h // 5 + 1), 0] for h in range(7)], dim=1)[..., None]
    torch.testing.assert_close(model(x), expected)  # the head starts at zero: the untrained model *is* it
    torch.testing.assert_close(seasonal_naive_path(x, None, 7, 5), expected)
    with pytest.raises(ConfigError, match="anchor must be a season of 1 to lookback"):
        build_model("lstm", forecast_spec(inputs=1), instance_norm=True, anchor=13)


def test_a_smoothed_start_is_the_exponential_smoothing_recursion():
    x = torch.tensor([[3.0, 1.0, 4.0, 1.0, 5.0]])[..., None]  # one window, T = 5
    level = 3.0  # l_1 = x[1], then l_t = α x[t] + (1 − α) l_{t−1} with α = 0.5, by hand:
    for value in (1.0, 4.0, 1.0, 5.0):
        level = 0.5 * value + 0.5 * level  # 2, 3, 2, 3.5
    assert level == 3.5
    torch.testing.assert_close(smoothed_level(x, None, 0.5), torch.tensor([[[3.5]]]))
    padded = torch.cat([x[:, :3], torch.full((1, 2, 1), 99.0)], dim=1)  # valid steps 3, 1, 4: l = 3
    torch.testing.assert_close(smoothed_level(padded, torch.tensor([3]), 0.5), torch.tensor([[[3.0]]]))
    window = torch.cat([x, x, x[:, :2]], dim=1)  # the model's lookback of 12 steps
    model = build_model("gru", forecast_spec(inputs=1, horizon=3), instance_norm=True, anchor=1, smoothing=0.5)
    level = smoothed_level(window, None, 0.5)
    torch.testing.assert_close(model(window), level.expand(1, 3, 1))  # the untrained model *is* that forecast
    with pytest.raises(ConfigError, match=r"smoothing .* needs anchor=1"):
        build_model("gru", forecast_spec(inputs=1), instance_norm=True, anchor=5, smoothing=0.5)
    with pytest.raises(ConfigError, match=r"smoothing must lie in \(0, 1\]"):
        build_model("gru", forecast_spec(inputs=1), instance_norm=True, anchor=1, smoothing=1.5)


def test_the_anchor_is_the_start_with_the_lowest_error_before_the_test_part():
    steps = np.arange(60.0)
    seasonal = 10 * np.tile([0.0, 3.0, 1.0, 5.0], 15)  # a pure season of 4: seasonal naive is exact
    origins = np.arange(8, 50)
    assert choose_anchor(seasonal, origins, 4, 4, 8) == (4, None)
    assert choose_anchor(5 * steps, origins, 4, 4, 8) == (1, None)  # a straight trend: the last value
    rng = np.random.default_rng(0)
    noisy_level = 100 + rng.normal(scale=10, size=400)  # noise round a constant: a long average wins
    anchor, alpha = choose_anchor(noisy_level, np.arange(30, 390), 5, None, 30)
    assert anchor == 1 and alpha is not None and alpha <= 0.2
    assert choose_anchor(noisy_level, np.arange(0), 5, None, 30) == (1, None)  # no window: the last value


def monthly(path, values, **columns):
    frame = pd.DataFrame(
        {
            "month": pd.date_range("2001-01", periods=len(values), freq="MS").strftime("%Y-%m"),
            "sales": values,
            **columns,
        }
    )
    frame.to_csv(path, index=False)
    return path


def test_a_36_month_series_trains_with_only_time_target_and_horizon(tmp_path):
    rng = np.random.default_rng(3)
    values = 200 + 8 * np.arange(36) + rng.normal(scale=20, size=36)  # a trend, like the shampoo sales
    data = monthly(tmp_path / "short.csv", values)
    result = train(
        TrainConfig(
            task="forecast",
            model="gru",
            data=str(data),
            time="month",
            target="sales",
            horizon=6,
            hidden_size=8,
            num_layers=1,
            epochs=3,
            out=str(tmp_path / "run"),
        )
    )
    meta = result.task_data.meta
    assert meta["split"]["test"]["rows"] == 6 and meta["split"]["val"]["rows"] == 6  # a horizon each
    assert meta["lookback"] == 9  # (24 training rows - horizon 6) // 2: half the rows start a window
    assert meta["anchor"] == 1  # the trend beats the season over the training windows: the last value
    assert result.summary["baselines"]["ets_mae"] is not None and result.summary["test_metrics"]["mae"] > 0
    assert result.summary["steps"] >= 32 and result.summary["stop_reason"]


def test_a_seasonal_baseline_on_too_short_a_series_is_missing_with_its_reason(tmp_path):
    data = monthly(tmp_path / "short.csv", 100 + np.sin(np.arange(30)) * 10)
    task = load_task("forecast", str(data), time="month", target="sales", horizon=3)
    notes = task.meta["baseline_notes"]
    assert task.baselines["ets_mae"] is not None  # non-seasonal forms only, and it says so
    assert "seasonal forms not tried" in notes["ets"] and "needs at least 2 seasons" in notes["ets"]


def test_log_refuses_a_non_positive_value_naming_line_and_column(tmp_path):
    values = np.linspace(10, 50, 40)
    values[17] = 0.0
    data = monthly(tmp_path / "zero.csv", values)
    with pytest.raises(DataError, match=r"zero.csv: line 19 column 'sales': value 0 is not positive; log needs"):
        load_task("forecast", str(data), time="month", target="sales", horizon=3, log=True)


def test_log_forecasts_and_metrics_stay_in_the_original_units(tmp_path):
    data = monthly(tmp_path / "growth.csv", 100 * 1.05 ** np.arange(60))
    plain = load_task("forecast", str(data), time="month", target="sales", horizon=3)
    logged = load_task("forecast", str(data), time="month", target="sales", horizon=3, log=True)
    assert logged.meta["scaler"]["log"] == ["sales"]
    assert logged.baselines["naive_mae"] == pytest.approx(plain.baselines["naive_mae"])  # same units
    _x, y = logged.test[0]
    from rnnlab.data.timeseries import inverse_scale

    truth = 100 * 1.05 ** np.arange(60)[logged.test.origins[0] :][:3]
    np.testing.assert_allclose(inverse_scale(logged.meta, y)[:, 0], truth, rtol=1e-5)


def test_a_label_column_of_one_class_is_refused_naming_it(tmp_path):
    path = tmp_path / "one.csv"
    pd.DataFrame({"label": ["x"] * 12, "t0": range(12), "t1": range(12)}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"one.csv: the label column 'label' holds one class only \('x' in all"):
        load_task("classify", str(path))


def test_a_class_only_in_the_test_file_is_refused_naming_it(tmp_path):
    train_path = wide_classes(tmp_path / "train.csv", 12)
    test_path = tmp_path / "test.csv"
    frame = pd.read_csv(train_path)
    frame.loc[3, "label"] = "c"
    frame.to_csv(test_path, index=False)
    with pytest.raises(DataError, match=r"test.csv: label\(s\) 'c' never occur in the training data \(at line 5\)"):
        load_task("classify", str(train_path), str(test_path))


def test_a_series_shorter_than_lookback_and_horizon_says_how_many_rows(tmp_path):
    data = monthly(tmp_path / "tiny.csv", np.arange(12.0))
    with pytest.raises(DataError, match=r"tiny.csv: the series has 12 rows, too short for lookback 8 \+ horizon 6"):
        load_task("forecast", str(data), time="month", target="sales", horizon=6, lookback=8)
