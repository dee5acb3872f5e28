"""Forecasting data: CSV validation, windows, split by time, scaling, baselines (rnnlab/data/timeseries.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.data import load_task
from rnnlab.data.timeseries import (
    forecast_windows,
    infer_season,
    infer_step,
    inverse_scale,
    read_series,
    traffic_series,
)
from rnnlab.errors import ConfigError, DataError


def hourly_frame(rows=100, start="2024-03-04 00:00"):
    steps = np.arange(rows)
    return pd.DataFrame(
        {
            "time": pd.date_range(start, periods=rows, freq="h").strftime("%Y-%m-%d %H:%M"),
            "load": np.round(10 + 3 * np.sin(steps * 2 * np.pi / 24) + 0.05 * steps + (steps * 7919 % 13) / 10, 3),
            "temp": np.round(15 + (steps % 11) * 0.7, 2),
        }
    )


def write(tmp_path, frame, name="series.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def write_text(tmp_path, text, name="series.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_windows_are_the_lookback_and_the_next_horizon_scaled_with_training_statistics(tmp_path):
    frame = hourly_frame(100)
    task = load_task("forecast", write(tmp_path, frame), target="load", covariates="temp", lookback=6, horizon=3)
    assert task.spec.input_size == 2 and task.spec.output_shape == [3, 1] and task.spec.seq_len == 6
    # 100 rows: 15 test, 15 validation, 70 training rows
    train = frame.iloc[:70][["load", "temp"]]
    mean, std = train.mean().to_numpy(), train.std(ddof=0).to_numpy()
    assert task.meta["scaler"]["mean"] == pytest.approx(mean.tolist())
    assert task.meta["scaler"]["std"] == pytest.approx(std.tolist())
    assert task.test.origins[0] == 85 and task.test.origins[-1] == 97 and len(task.test) == 13
    x, y = task.test[0]
    expected_x = (frame[["load", "temp"]].iloc[79:85].to_numpy() - mean) / std
    expected_y = (frame[["load"]].iloc[85:88].to_numpy() - mean[0]) / std[0]
    assert torch.allclose(x, torch.tensor(expected_x, dtype=torch.float32), atol=1e-5)
    assert torch.allclose(y, torch.tensor(expected_y, dtype=torch.float32), atol=1e-5)
    assert inverse_scale(task.meta, y) == pytest.approx(frame[["load"]].iloc[85:88].to_numpy(), abs=1e-4)


def test_no_window_has_a_target_in_a_later_part(tmp_path):
    task = load_task("forecast", write(tmp_path, hourly_frame(200)), lookback=10, horizon=5)
    n_train, n_val = task.meta["split"]["train"]["rows"], task.meta["split"]["val"]["rows"]
    parts = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, 200)}
    for name, (start, stop) in parts.items():
        origins = getattr(task, name).origins
        assert origins.min() >= max(start, 10) and origins.max() + 5 <= stop
        assert len(origins) == stop - max(start, 10) - 5 + 1  # every window of the part, stride 1


def test_naive_baselines_and_mase_scale_match_a_hand_computation(tmp_path):
    frame = hourly_frame(120)
    task = load_task("forecast", write(tmp_path, frame), target="load", lookback=8, horizon=7, season=5)
    v = frame["load"].to_numpy()
    naive, seasonal = [], []
    for t in task.test.origins:
        for h in range(7):
            naive.append(abs(v[t + h] - v[t - 1]))
            seasonal.append(abs(v[t + h] - v[t + h - 5 * (h // 5 + 1)]))
    assert task.baselines["naive_mae"] == pytest.approx(np.mean(naive))
    assert task.baselines["seasonal_naive_mae"] == pytest.approx(np.mean(seasonal))
    train = v[:84]
    assert task.meta["mase_scale"] == pytest.approx([np.mean([abs(train[s] - train[s - 5]) for s in range(5, 84)])])


@pytest.mark.parametrize(
    "freq, season",
    [("h", 24), ("D", 7), ("W-SUN", 52), ("MS", 12), ("ME", 12), ("QS", 4), ("YS", None), ("15min", 96), ("7h", None)],
)
def test_season_is_inferred_from_the_time_step(freq, season):
    times = pd.date_range("2001-01-31", periods=40, freq=freq)
    assert infer_season(infer_step(times, "datetime")) == season


def test_without_a_season_seasonal_naive_equals_naive(tmp_path):
    walk = np.cumsum(np.random.default_rng(0).normal(size=90))  # no cycle for the autocorrelation to find
    frame = pd.DataFrame({"step": np.arange(90), "y": walk})
    task = load_task("forecast", write(tmp_path, frame), time="step", lookback=5, horizon=2)
    assert task.meta["season"] is None and task.meta["time_kind"] == "numeric"
    assert task.baselines["seasonal_naive_mae"] == task.baselines["naive_mae"]


def test_a_cycle_the_step_does_not_name_is_found_in_the_autocorrelation(tmp_path):
    # numbered steps imply no season; sin(2πt/9) repeats every 9 steps (noise added)
    t = np.arange(120)
    y = np.sin(2 * np.pi * t / 9) + 0.1 * np.random.default_rng(1).normal(size=120)
    task = load_task("forecast", write(tmp_path, pd.DataFrame({"step": t, "y": y})), time="step", horizon=3)
    assert task.meta["season"] == 9
    assert any("season 9 steps" in note for note in task.meta["notes"])
    assert task.meta["lookback"] == 18  # two seasons (longer than two horizons), below the cap (84 - 3) // 2


def test_missing_values_name_line_and_column_and_fill_repairs_them(tmp_path):
    frame = hourly_frame(60).astype(object)
    frame.loc[4, "load"] = ""
    frame.loc[9, "temp"] = "NA"
    path = write(tmp_path, frame)
    with pytest.raises(DataError, match=r"2 missing value\(s\): line 6 column 'load', line 11 column 'temp'.*fill="):
        read_series(path, time=None, target="load", covariates="temp", fill="none")
    before, after = float(frame.loc[3, "load"]), float(frame.loc[5, "load"])
    for fill, expected in [("ffill", before), ("interpolate", (before + after) / 2), ("zero", 0.0)]:
        series = read_series(path, time=None, target="load", covariates="temp", fill=fill)
        assert series.values[4, 0] == pytest.approx(expected)
        assert series.filled == {"load": 1, "temp": 1}


def test_a_non_number_is_named_with_line_column_and_value(tmp_path):
    frame = hourly_frame(60).astype(object)
    frame.loc[2, "temp"] = "warm"
    with pytest.raises(DataError, match=r"series.csv: expected numbers, found line 4 column 'temp': 'warm'"):
        load_task("forecast", write(tmp_path, frame), lookback=4, horizon=2)


def test_a_text_column_among_default_targets_says_how_to_choose_targets(tmp_path):
    frame = hourly_frame(60)
    frame["station"] = "north"
    with pytest.raises(DataError, match=r"column 'station': 'north'.*choose them with target="):
        load_task("forecast", write(tmp_path, frame), lookback=4, horizon=2)
    task = load_task("forecast", write(tmp_path, frame), target="load", lookback=4, horizon=2)
    assert task.meta["columns"] == ["load"]


def test_unsorted_and_duplicate_times_are_refused_with_their_lines(tmp_path):
    frame = hourly_frame(60)
    swapped = frame.iloc[[0, 1, 3, 2, *list(range(4, 60))]]
    with pytest.raises(DataError, match=r"times are not sorted: line 5 \('2024-03-04 02:00'\) comes after line 4"):
        load_task("forecast", write(tmp_path, swapped), lookback=4, horizon=2)
    doubled = pd.concat([frame.iloc[:3], frame.iloc[2:]])
    with pytest.raises(DataError, match=r"duplicate time '2024-03-04 02:00' at lines 4 and 5"):
        load_task("forecast", write(tmp_path, doubled), lookback=4, horizon=2)


def test_a_bad_time_is_named(tmp_path):
    frame = hourly_frame(30).astype(object)
    frame.loc[6, "time"] = "yesterday"
    with pytest.raises(DataError, match=r"line 8 column 'time': 'yesterday' is neither a number nor a date"):
        load_task("forecast", write(tmp_path, frame), lookback=4, horizon=2)


def test_a_short_series_says_how_many_rows_it_has_and_needs(tmp_path):
    with pytest.raises(
        DataError, match=r"has 20 rows, too short for lookback 24 \+ horizon 6.*at least (\d+) rows"
    ) as error:
        load_task("forecast", write(tmp_path, hourly_frame(20)), lookback=24, horizon=6)
    needed = int(error.value.args[0].split("at least ")[-1].split(" rows")[0])
    load_task("forecast", write(tmp_path, hourly_frame(needed)), lookback=24, horizon=6)  # enough
    with pytest.raises(DataError, match="too short"):
        load_task("forecast", write(tmp_path, hourly_frame(needed - 1)), lookback=24, horizon=6)


def test_an_unknown_column_lists_the_columns_present(tmp_path):
    path = write(tmp_path, hourly_frame(60))
    with pytest.raises(
        DataError,
        match=r"no column 'lod' \(option target\); did you mean 'load'\? \(columns present: time, load, temp\)",
    ):
        load_task("forecast", path, target="lod")
    with pytest.raises(DataError, match=r"no column 'rain' \(option covariates\)"):
        load_task("forecast", path, covariates="rain")


def test_missing_time_steps_are_named_or_inserted_and_filled(tmp_path):
    frame = hourly_frame(80).drop(index=[30, 31])
    path = write(tmp_path, frame)
    with pytest.raises(
        DataError, match=r"2 time step\(s\) missing, first between line 31 \(2024-03-05 05:00:00\) and line 32"
    ):
        load_task("forecast", path, lookback=4, horizon=2)
    series = read_series(path, time=None, target="load", covariates=None, fill="interpolate")
    assert len(series) == 80 and series.times[30] == pd.Timestamp("2024-03-05 06:00")
    assert series.values[31, 0] == pytest.approx(
        frame.loc[29, "load"] + 2 * (frame.loc[32, "load"] - frame.loc[29, "load"]) / 3
    )
    assert "2 missing time step(s) inserted" in " ".join(series.notes)


def test_forecast_windows_rebuild_the_latest_input_and_the_future_times(tmp_path):
    frame = hourly_frame(100)
    task = load_task("forecast", write(tmp_path, frame), target="load", covariates="temp", lookback=6, horizon=3)
    new = hourly_frame(130)
    windows = forecast_windows(task.meta, write(tmp_path, new, "new.csv"), count=2)
    mean, std = np.array(task.meta["scaler"]["mean"]), np.array(task.meta["scaler"]["std"])
    expected_last = (new[["load", "temp"]].iloc[-6:].to_numpy() - mean) / std
    assert windows.x.shape == (2, 6, 2)
    assert torch.allclose(windows.x[-1], torch.tensor(expected_last, dtype=torch.float32), atol=1e-5)
    assert windows.origins[-1] == "2024-03-09 09:00:00"
    assert windows.future_times[-1] == ["2024-03-09 10:00:00", "2024-03-09 11:00:00", "2024-03-09 12:00:00"]
    with pytest.raises(DataError, match=r"has 4 rows; 1 window\(s\) of lookback 6 need at least 6"):
        forecast_windows(task.meta, write(tmp_path, new.iloc[:4], "tiny.csv"))
    daily = new.assign(time=pd.date_range("2024-01-01", periods=130, freq="D").strftime("%Y-%m-%d"))
    with pytest.raises(
        DataError, match=r"daily.csv: its time step is 1 day, the model was trained on a step of 1 hour"
    ):
        forecast_windows(task.meta, write(tmp_path, daily, "daily.csv"))


def test_month_end_series_forecast_month_ends(tmp_path):
    frame = pd.DataFrame(
        {"date": pd.date_range("2010-01-31", periods=60, freq="ME").strftime("%Y-%m-%d"), "sales": np.arange(60.0) % 12}
    )
    task = load_task("forecast", write(tmp_path, frame), lookback=12, horizon=2)
    assert task.meta["season"] == 12 and task.meta["step"]["anchor"] == "end"
    windows = forecast_windows(task.meta, write(tmp_path, frame, "again.csv"))
    assert windows.future_times == [["2015-01-31", "2015-02-28"]]


def test_a_test_file_that_continues_the_series_looks_back_into_it(tmp_path):
    frame = hourly_frame(140)
    train_path = write(tmp_path, frame.iloc[:100], "train.csv")
    test_path = write(tmp_path, frame.iloc[100:], "test.csv")
    task = load_task("forecast", train_path, test_path, target="load", lookback=6, horizon=3)
    assert len(task.test) == 40 - 3 + 1  # the first window forecasts the test file's first row
    mean, std = task.meta["scaler"]["mean"][0], task.meta["scaler"]["std"][0]
    x, y = task.test[0]
    assert torch.allclose(
        x[:, 0], torch.tensor((frame["load"].iloc[94:100].to_numpy() - mean) / std, dtype=torch.float32), atol=1e-5
    )
    assert torch.allclose(
        y[:, 0], torch.tensor((frame["load"].iloc[100:103].to_numpy() - mean) / std, dtype=torch.float32), atol=1e-5
    )
    assert task.meta["split"]["val"]["rows"] == 15 and task.meta["split"]["train"]["rows"] == 85


def test_a_separate_test_file_needs_the_training_columns(tmp_path):
    train_path = write(tmp_path, hourly_frame(100), "train.csv")
    test_path = write(tmp_path, hourly_frame(40).drop(columns="temp"), "test.csv")
    with pytest.raises(DataError, match=r"test.csv: no column 'temp'"):
        load_task("forecast", train_path, test_path, lookback=6, horizon=3)


def test_traffic_is_deterministic_with_daily_and_weekly_cycles():
    flow = traffic_series(seed=0).values[:, 0]
    assert np.array_equal(flow, traffic_series(seed=0).values[:, 0])
    assert not np.array_equal(flow, traffic_series(seed=1).values[:, 0])
    assert len(flow) == 364 * 24 and (flow >= 0).all()

    def autocorrelation(lag):
        return np.corrcoef(flow[:-lag], flow[lag:])[0, 1]

    assert autocorrelation(24 * 7) > autocorrelation(24) > 0.6 > autocorrelation(12)
    by_hour = flow[: 5 * 24].reshape(5, 24).mean(axis=0)  # Monday to Friday
    assert by_hour.argmax() in (8, 17, 18) and by_hour[3] < 0.3 * by_hour.max()


def test_builtin_traffic_task_has_seasonal_naive_beside_naive():
    task = load_task("forecast")
    assert task.meta["data"] == "builtin:traffic" and task.meta["season"] == 24
    assert task.baselines["seasonal_naive_mae"] < task.baselines["naive_mae"]
    with pytest.raises(ConfigError, match="fixed columns"):
        load_task("forecast", "traffic", target="flow")


def test_co2_gaps_are_interpolated_and_said_so():
    task = load_task("forecast", "co2")
    assert task.meta["filled"] == {"co2": 59} and "interpolation" in task.meta["notes"][0]
    assert task.meta["season"] == 52


def test_bad_options_are_refused(tmp_path):
    path = write(tmp_path, hourly_frame(60))
    with pytest.raises(ConfigError, match=r"unknown fill method 'linear'"):
        load_task("forecast", path, fill="linear")
    with pytest.raises(ConfigError, match="sum below 1"):
        load_task("forecast", path, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ConfigError, match="both a target and a covariate"):
        load_task("forecast", path, target="load", covariates="load")


@pytest.mark.parametrize(
    "edit, options, message",
    [
        (lambda f: f.assign(time=f["time"].where(f.index != 5, "")), {}, r"line 7: the time column 'time' is empty"),
        (
            lambda f: f.assign(time=f["time"].where(f.index != 10, "2024-03-04 09:30")),
            {},
            r"line 12: time 2024-03-04 09:30:00 is off the series' step \(1 hour",
        ),
        (lambda f: f.assign(temp=""), {"covariates": "temp"}, r"column\(s\) 'temp' have no values at all"),
        (lambda f: f, {"seq_len": 8, "lookback": 6}, r"seq_len and lookback both given and different \(8 vs 6\)"),
        (lambda f: f, {"lookback": 0}, r"lookback and horizon must be at least 1"),
        (lambda f: f, {"season": 0}, r"season must be at least 1"),
        (lambda f: f, {"test_fraction": 0.0}, r"test_fraction 0 needs a separate test file"),
    ],
)
def test_more_bad_series_are_refused_with_the_reason(tmp_path, edit, options, message):
    frame = edit(hourly_frame(80).astype(object))
    with pytest.raises((DataError, ConfigError), match=message):
        load_task("forecast", write(tmp_path, frame), **{"lookback": 4, "horizon": 2, "fill": "interpolate", **options})


def test_a_standalone_test_file_must_hold_a_window_and_match_the_time_kind(tmp_path):
    train_path = write(tmp_path, hourly_frame(100), "train.csv")
    later = hourly_frame(5, start="2025-01-01")
    with pytest.raises(
        DataError, match=r"test.csv: the test series has 5 rows; lookback 6 \+ horizon 3 needs at least 9"
    ):
        load_task("forecast", train_path, write(tmp_path, later, "test.csv"), lookback=6, horizon=3)
    numbered = pd.DataFrame({"time": np.arange(30), "load": np.ones(30), "temp": np.ones(30)})
    with pytest.raises(DataError, match=r"numbers.csv: its times are numeric, the training data's are datetime"):
        load_task("forecast", train_path, write(tmp_path, numbered, "numbers.csv"), lookback=6, horizon=3)


def test_a_csv_with_only_a_header_or_a_nameless_column_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"the CSV file has a header but no data rows"):
        load_task("forecast", write_text(tmp_path, "time,load\n\n"))
    with pytest.raises(DataError, match=r"line 1: column 2 of the header has no name"):
        load_task("forecast", write_text(tmp_path, "time,,load\n1,2,3\n", "nameless.csv"))
    with pytest.raises(DataError, match=r"is a folder, expected a CSV file"):
        load_task("forecast", str(tmp_path))


def test_mase_scale_is_none_when_a_season_is_longer_than_training(tmp_path):
    frame = pd.DataFrame({"step": np.arange(60), "y": np.arange(60) % 7 * 1.0})
    task = load_task("forecast", write(tmp_path, frame), time="step", lookback=5, horizon=2, season=50)
    assert task.meta["mase_scale"] is None and "MASE undefined" in task.meta["notes"][-1]
    constant_weekly = load_task(
        "forecast", write(tmp_path, frame, "weekly.csv"), time="step", lookback=5, horizon=2, season=7
    )
    assert constant_weekly.meta["mase_scale"] is None
