"""Time-series forecasting from a CSV: validated series, lookback/horizon windows, a split by time.

A series is a table with a time column, target columns (forecast) and past-covariate columns (read
as inputs only). Sample ``i`` is a window with origin ``t`` (the first forecast step):

    x = scaled[t - lookback : t, targets + covariates]      FloatTensor[lookback, F]
    y = scaled[t : t + horizon, targets]                    FloatTensor[horizon, n_targets]

The rows are split by time into train / validation / test parts (default 70/15/15). A window
belongs to the part that holds its *targets*; its lookback may reach back into the previous part
(the past is known at forecast time), but no target ever lies in a later part. Standard scaling
``(v - mean) / std`` is fitted on the training rows only.

Baselines on the test windows, in original units (Hyndman & Koehler 2006):

    naive:            ŷ[t + h] = v[t - 1]
    seasonal naive:   ŷ[t + h] = v[t + h - m·(⌊h / m⌋ + 1)]      (season m; no season → naive)
    mase_scale[j]   = mean_{s in train, s ≥ m} |v[s, j] - v[s - m, j]|   (m = 1 without a season)

so a model's ``mase = mean_j MAE_j / mase_scale[j]`` (below 1: better than in-sample seasonal naive).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from rnnlab.data.files import (
    describe_cells,
    parse_times,
    read_table,
    require_columns,
    resolve_source,
    split_names,
    to_numbers,
)
from rnnlab.data.tasks import TaskData, TaskSpec
from rnnlab.errors import ConfigError, DataError, unknown_name

TIME_COLUMN_NAMES = ("time", "date", "datetime", "timestamp", "ds")
FILL_METHODS = ("none", "ffill", "interpolate", "zero")
DEFAULT_HORIZON = 24
STATISTICAL_FIT_ROWS, STATISTICAL_ORIGINS = 1000, 100
BUILTIN_DEFAULTS: dict[str, dict[str, int]] = {
    "traffic": {"lookback": 72, "horizon": 24},
    "sunspots": {"lookback": 30, "horizon": 10, "season": 11},  # the ~11-year solar cycle
    "co2": {"lookback": 104, "horizon": 26},
}
BUILTINS = tuple(BUILTIN_DEFAULTS)
SECONDS_PER = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


@dataclass
class Series:
    """A validated series: ``values[N, F]`` (targets then covariates, float64, no gaps, no NaN)."""

    source: str
    time_column: str | None
    time_kind: str  # "datetime" | "numeric" | "index"
    times: pd.DatetimeIndex | np.ndarray  # N datetimes, N numbers, or 0..N-1
    step: dict[str, Any]
    targets: list[str]
    covariates: list[str]
    values: np.ndarray
    lines: np.ndarray | None  # file line of each row (0 for rows inserted into time gaps)
    filled: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return self.targets + self.covariates

    def __len__(self) -> int:
        return len(self.values)

    def time_text(self, row: int) -> str:
        return _time_text(self.times[row], self.time_kind, self.step)


class WindowDataset(Dataset):
    """Windows ``(x[lookback, F], y[horizon, n_targets])`` at the given origins of a scaled series."""

    def __init__(self, values: torch.Tensor, origins: np.ndarray, lookback: int, horizon: int, n_targets: int):
        self.values = values
        self.origins = np.asarray(origins, dtype=np.int64)
        self.lookback, self.horizon, self.n_targets = lookback, horizon, n_targets
        self.lengths = np.full(len(self.origins), lookback, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = int(self.origins[index])
        return self.values[t - self.lookback : t], self.values[t : t + self.horizon, : self.n_targets]


# ----------------------------------------------------------------------------------------------
# loading


def load_forecast(
    data,
    test_data,
    *,
    seq_len,
    seed,
    time,
    target,
    covariates,
    lookback,
    horizon,
    season,
    fill,
    val_fraction,
    test_fraction,
    log=False,
):
    if fill not in FILL_METHODS:
        raise unknown_name("fill method", fill, FILL_METHODS)
    builtin, path = resolve_source(data, BUILTINS, "traffic", "forecast")
    defaults = BUILTIN_DEFAULTS.get(builtin, {})
    if seq_len is not None and lookback is not None and seq_len != lookback:
        raise ConfigError(f"seq_len and lookback both given and different ({seq_len} vs {lookback}); give one")
    if lookback is None:
        lookback = seq_len if seq_len is not None else defaults.get("lookback")  # None: from the series, below
    if horizon is None:
        horizon = defaults.get("horizon", DEFAULT_HORIZON)
    season = season if season is not None else defaults.get("season")
    if (lookback is not None and lookback < 1) or horizon < 1:
        raise ConfigError(f"lookback and horizon must be at least 1, got lookback {lookback}, horizon {horizon}")
    if season is not None and season < 1:
        raise ConfigError(f"season must be at least 1, got {season}")
    _check_fractions(val_fraction, test_fraction, test_data is not None)

    if builtin:
        if any(option is not None for option in (time, target, covariates)):
            raise ConfigError(
                f"the built-in series {builtin!r} has fixed columns; time/target/covariates apply to CSV files"
            )
        series = builtin_series(builtin, seed=seed)
    else:
        series = read_series(path, time=time, target=target, covariates=covariates, fill=fill)
    test_series = None
    if test_data is not None:
        test_series = read_series(
            test_data,
            time=series.time_column,
            target=",".join(series.targets),
            covariates=",".join(series.covariates) or None,
            fill=fill,
        )
        if test_series.time_kind != series.time_kind:
            raise DataError(
                f"{test_data}: its times are {test_series.time_kind}, the training data's are {series.time_kind}"
            )

    notes = list(series.notes)
    n_rows = len(series)
    # each part holds at least one horizon of targets, so a short series still has a window in each
    n_test = 0 if test_series is not None else max(round(n_rows * test_fraction), horizon)
    n_val = max(round(n_rows * val_fraction), horizon)
    n_train = n_rows - n_val - n_test
    if season is None:
        season = infer_season(series.step)
        if season is None and n_train > 6:
            season = detect_season(series.values[:n_train, 0])
            if season is not None:
                notes.append(f"season {season} steps: the autocorrelation peak of the training part's differences")
    if lookback is None:
        lookback = default_lookback(n_train, horizon, season)
    _check_length(
        series,
        lookback,
        horizon,
        val_fraction,
        0.0 if test_series is not None else test_fraction,
        n_train,
        n_val,
        n_test,
    )
    logged = split_names(log) if isinstance(log, str) else (list(series.targets) if log else [])
    for name in logged:
        if name not in series.targets:
            raise ConfigError(f"log applies to target columns; {name!r} is not one of {', '.join(series.targets)}")
    for part in (series, test_series):
        if part is not None:
            take_logs(part, logged)

    mean = series.values[:n_train].mean(axis=0)
    std = series.values[:n_train].std(axis=0)
    constant = [name for name, s in zip(series.columns, std) if s == 0]
    std = np.where(std == 0, 1.0, std)  # a constant column is only shifted
    if constant:
        notes.append(f"constant in the training part (only centred): {', '.join(constant)}")
    n_targets = len(series.targets)

    def scaled(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((values - mean) / std).astype(np.float32))

    values = scaled(series.values)
    origins = {
        "train": np.arange(lookback, n_train - horizon + 1),
        "val": np.arange(n_train, n_train + n_val - horizon + 1),
    }
    datasets = {name: WindowDataset(values, o, lookback, horizon, n_targets) for name, o in origins.items()}
    if test_series is None:
        test_raw = series.values
        origins["test"] = np.arange(n_train + n_val, n_rows - horizon + 1)
        test_values = values
    else:
        test_raw, origins["test"], notes_test = _join_test(series, test_series, lookback, horizon)
        notes += notes_test
        test_values = scaled(test_raw)
    datasets["test"] = WindowDataset(test_values, origins["test"], lookback, horizon, n_targets)

    before_test = np.arange(lookback, n_train + n_val - horizon + 1)
    anchor, smoothing = choose_anchor(series.values[: n_train + n_val, 0], before_test, horizon, season, lookback)
    raw_targets = undo_logs(test_raw[:, :n_targets], [name in logged for name in series.targets])
    baselines = naive_baselines(raw_targets, origins["test"], horizon, season)
    if test_series is None:
        statistical, baseline_notes = statistical_baselines(
            raw_targets,
            n_train + n_val,
            origins["test"],
            horizon,
            season,
            logged=[name in logged for name in series.targets],
        )
    else:
        statistical = {"ets_mae": None, "arima_mae": None}
        reason = "fitted only when the test part is cut from --data (a separate test file has no history to filter)"
        baseline_notes = {"ets": reason, "arima": reason}
    baselines.update(statistical)
    train_targets = undo_logs(series.values[:n_train, :n_targets], [name in logged for name in series.targets])
    mase_scale = [_seasonal_mae(train_targets[:, j], season or 1) for j in range(n_targets)]
    if not all(math.isfinite(scale) and scale > 0 for scale in mase_scale):
        notes.append(
            f"MASE undefined: the training part ({n_train} rows) is no longer than a season ({season}) or a "
            f"target repeats itself exactly one season earlier"
        )
        mase_scale = None

    spec = TaskSpec(
        task="forecast",
        head="forecast",
        input_size=len(series.columns),
        vocab_size=None,
        num_classes=None,
        output_shape=[horizon, n_targets],
        seq_len=lookback,
        causal=False,
    )

    def part(rows: slice, s: Series) -> dict[str, Any]:
        start, stop = rows.start, rows.stop
        return {"rows": stop - start, "first_time": s.time_text(start), "last_time": s.time_text(stop - 1)}

    split = {"train": part(slice(0, n_train), series), "val": part(slice(n_train, n_train + n_val), series)}
    split["test"] = (
        part(slice(n_train + n_val, n_rows), series)
        if test_series is None
        else {**part(slice(0, len(test_series)), test_series), "file": test_data}
    )
    meta = {
        "task": "forecast",
        "data": f"builtin:{builtin}" if builtin else path,
        "seed": seed,
        "generated": builtin == "traffic",  # the built-in traffic is simulated, of any length
        "time_column": series.time_column,
        "time_kind": series.time_kind,
        "step": series.step,
        "targets": series.targets,
        "covariates": series.covariates,
        "columns": series.columns,
        "lookback": lookback,
        "horizon": horizon,
        "season": season,
        "anchor": anchor,
        "smoothing": smoothing,
        "scaler": {"columns": series.columns, "mean": mean.tolist(), "std": std.tolist(), "log": logged},
        "fill": fill,
        "filled": series.filled,
        "split": split,
        "mase_scale": mase_scale,
        "last_time": series.time_text(n_rows - 1),
        "notes": notes,
        "baseline_notes": baseline_notes,
    }
    return TaskData(spec, datasets["train"], datasets["val"], datasets["test"], baselines=baselines, meta=meta)


def statistical_baselines(
    raw_targets: np.ndarray, fit_rows: int, origins: np.ndarray, horizon: int, season: int | None, *, logged: list[bool]
) -> tuple[dict[str, float | None], dict[str, str]]:
    """``ets_mae`` and ``arima_mae`` on the test windows (original units, mean over the targets), each
    fitted on the training and validation rows (``baselines.forecast_baselines``); a method that
    cannot be fitted on some target is ``None``, and the notes say why and which model was chosen."""
    maes: dict[str, list[float]] = {"ets": [], "arima": []}
    notes: dict[str, str] = {}
    # cost bounds for long series (per-origin filtering is ~10 ms an origin): the fit sees the most
    # recent STATISTICAL_FIT_ROWS rows (at least ten seasons), and the MAE is taken over at most
    # STATISTICAL_ORIGINS test windows spread evenly over the test part
    start = max(0, fit_rows - max(STATISTICAL_FIT_ROWS, 10 * (season or 1)))
    chosen = origins
    if len(origins) > STATISTICAL_ORIGINS:
        chosen = origins[np.linspace(0, len(origins) - 1, STATISTICAL_ORIGINS).round().astype(int)]
    subset = "" if len(chosen) == len(origins) else f"; over {len(chosen)} of the {len(origins)} test windows"
    for j in range(raw_targets.shape[1]):
        result = _cached_forecast_baselines(
            np.ascontiguousarray(raw_targets[start:, j]).tobytes(),
            fit_rows - start,
            tuple(chosen - start),
            horizon,
            season,
            logged[j],
        )
        for name in maes:
            if result.mae[name] is None:
                notes[name] = result.reasons[name]
            else:
                maes[name].append(result.mae[name])
                notes.setdefault(
                    name,
                    result.chosen.get(name, "")
                    + (f", fitted on the last {fit_rows - start} rows" if start else "")
                    + subset,
                )
    values = {
        f"{name}_mae": float(np.mean(found)) if len(found) == raw_targets.shape[1] else None
        for name, found in maes.items()
    }
    return values, notes


@functools.lru_cache(maxsize=32)
def _cached_forecast_baselines(
    values: bytes, fit_rows: int, origins: tuple[int, ...], horizon: int, season: int | None, log: bool
):
    """``forecast_baselines`` once per series and split in a process (a comparison loads its data once
    per cell; the fits are the same each time)."""
    from rnnlab.data.baselines import forecast_baselines

    return forecast_baselines(
        np.frombuffer(values, dtype=np.float64),
        fit_rows=fit_rows,
        origins=np.asarray(origins),
        horizon=horizon,
        season=season,
        log=log,
        methods=("ets", "arima"),
    )


def default_lookback(n_train: int, horizon: int, season: int | None) -> int:
    """The input window when none is given: two horizons or two seasons, whichever is longer, but
    no more than half of what the training part leaves beside a horizon, so that at least half of
    its rows start a window (a 36-month series with horizon 6 gets 9 steps, not 48)."""
    wanted = max(2 * horizon, 2 * (season or 0))
    return max(1, min(wanted, (n_train - horizon) // 2))


#: The smoothing constants tried for the level a forecast starts from (``choose_anchor``).
SMOOTHING_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


def choose_anchor(
    values: np.ndarray, origins: np.ndarray, horizon: int, season: int | None, lookback: int
) -> tuple[int, float | None]:
    """Where a forecast should start (``anchor`` and ``smoothing`` of ``models/instance_norm.py``):
    whichever of the naive forecast (the window's last value), the seasonal-naive path (season ``m``)
    and the window's exponentially smoothed level (``α`` in ``SMOOTHING_GRID``) has the lowest MAE
    over the windows at ``origins`` (first target; the windows before the test part). Measured, not
    assumed: a monthly series whose trend outweighs its season gets the last value, a noisy level
    (the Nile) a smoothed one. Returns ``(m, None)``, ``(1, None)`` or ``(1, α)``."""
    if len(origins) == 0:
        return 1, None
    steps = np.arange(horizon)
    truth = values[origins[:, None] + steps[None, :]]
    windows = values[origins[:, None] - lookback + np.arange(lookback)[None, :]]  # [n, lookback]
    errors: dict[tuple[int, float | None], float] = {(1, None): float(np.abs(truth - windows[:, -1:]).mean())}
    if season and 2 <= season <= lookback:
        seasonal = values[origins[:, None] + steps[None, :] - season * (steps[None, :] // season + 1)]
        errors[(season, None)] = float(np.abs(truth - seasonal).mean())
    age = lookback - 1 - np.arange(lookback)
    for alpha in SMOOTHING_GRID:
        weights = alpha * (1 - alpha) ** age
        weights[0] = (1 - alpha) ** (lookback - 1)
        errors[(1, alpha)] = float(np.abs(truth - (windows @ weights)[:, None]).mean())
    return min(errors, key=errors.__getitem__)  # ties: the first, simplest candidate


def detect_season(values: np.ndarray) -> int | None:
    """A season for a series whose step implies none (yearly, numbered rows): the lag of the highest
    local peak of the autocorrelation of the first differences, lags 2..n/3, if it exceeds
    3/√n (well above the ±2/√n band of white noise). The lynx trappings' 10-year cycle is found;
    the Nile's level shift has no peak."""
    from statsmodels.tsa.stattools import acf

    differences = np.diff(np.asarray(values, dtype=np.float64))
    n = len(differences)
    if n < 8 or np.std(differences) == 0:
        return None
    correlation = acf(differences, nlags=max(2, n // 3), fft=True)
    peaks = [
        lag
        for lag in range(2, len(correlation) - 1)
        if correlation[lag] > correlation[lag - 1] and correlation[lag] >= correlation[lag + 1]
    ]
    if not peaks:
        return None
    best = max(peaks, key=lambda lag: correlation[lag])
    return int(best) if correlation[best] > 3 / math.sqrt(n) else None


def take_logs(series: Series, columns: list[str]) -> None:
    """``log v`` in place for the named columns (multiplicative series: the model sees log units)."""
    for name in columns:
        j = series.columns.index(name)
        bad = series.values[:, j] <= 0
        if bad.any():
            row = int(np.argmax(bad))
            line = series.lines[row] if series.lines is not None else row + 1
            raise DataError(
                f"{series.source}: line {line} column {name!r}: value {series.values[row, j]:g} is not "
                f"positive; log needs a positive series (drop log, or shift the column)"
            )
        series.values[:, j] = np.log(series.values[:, j])


def undo_logs(values: np.ndarray, logged: list[bool]) -> np.ndarray:
    """``exp`` of the logged target columns (the last axis); the others as they are."""
    if not any(logged):
        return values
    values = np.array(values, dtype=np.float64, copy=True)
    values[..., np.asarray(logged)] = np.exp(values[..., np.asarray(logged)])
    return values


def _join_test(series: Series, test: Series, lookback: int, horizon: int):
    """Test rows (with the training file's tail as context when the test file continues it) and origins."""
    continues = False
    if series.time_kind != "index":
        expected_next = future_times(series.step, series.times[-1], 1, series.time_kind)[0]
        continues = test.times[0] == expected_next
    if continues:
        raw = np.concatenate([series.values[-lookback:], test.values])
        origins = np.arange(lookback, len(raw) - horizon + 1)
        return raw, origins, [f"test file continues the series: its first windows look back into {series.source}"]
    if len(test) < lookback + horizon:
        raise DataError(
            f"{test.source}: the test series has {len(test)} rows; lookback {lookback} + horizon {horizon} "
            f"needs at least {lookback + horizon} (or a test file that continues the training series in time)"
        )
    return test.values, np.arange(lookback, len(test) - horizon + 1), []


def read_series(path: str, *, time: str | None, target: str | None, covariates: str | None, fill: str) -> Series:
    """Read and validate a CSV series: columns, numbers, time order, gaps and missing values."""
    table = read_table(path)
    time_column: str | None
    if time is not None:
        require_columns(table, [time], "time")
        time_column = time
    else:
        time_column = next((c for c in table.columns if c.lower() in TIME_COLUMN_NAMES), None)
    covariate_names = split_names(covariates)
    require_columns(table, covariate_names, "covariates")
    if target is not None:
        target_names = split_names(target)
        require_columns(table, target_names, "target")
    else:
        target_names = [c for c in table.columns if c != time_column and c not in covariate_names]
    if not target_names:
        raise DataError(f"{path}: no target column (columns present: {', '.join(table.columns)})")
    for name in target_names:
        if name == time_column or name in covariate_names:
            role = "the time column" if name == time_column else "a covariate"
            raise ConfigError(f"column {name!r} is both a target and {role}")
    if time_column in covariate_names:
        raise ConfigError(f"column {time_column!r} is both the time column and a covariate")

    columns = target_names + covariate_names
    try:
        values = to_numbers(table, columns)
    except DataError as error:
        if target is not None:
            raise
        raise DataError(
            f"{error} (the targets default to every column but time and covariates; "
            f"choose them with target=COLUMN[,COLUMN])"
        ) from None
    lines = table.lines.copy()
    if time_column is None:
        kind, times, step = "index", np.arange(len(table)), {"unit": "row", "n": 1}
    else:
        kind, times = parse_times(table, time_column)
        _check_order(table, time_column, times)
        step = infer_step(times, kind, table, time_column)
    series = Series(path, time_column, kind, times, step, target_names, covariate_names, values, lines)
    _fill_time_gaps(series, fill)
    _fill_missing(series, fill)
    return series


def _check_order(table, column: str, times) -> None:
    order = np.asarray(times.asi8 if isinstance(times, pd.DatetimeIndex) else times)
    diffs = np.diff(order)
    if (diffs == 0).any():
        row = int(np.argmax(diffs == 0))
        raise DataError(
            f"{table.path}: duplicate time {table.frame[column].iat[row]!r} at lines {table.lines[row]} and "
            f"{table.lines[row + 1]} (column {column!r}); one row per time step is expected"
        )
    if (diffs < 0).any():
        row = int(np.argmax(diffs < 0))
        raise DataError(
            f"{table.path}: times are not sorted: line {table.lines[row + 1]} ({table.frame[column].iat[row + 1]!r}) "
            f"comes after line {table.lines[row]} ({table.frame[column].iat[row]!r}) in column {column!r}; "
            f"sort the file by time"
        )


def infer_step(times, kind: str, table=None, column: str | None = None) -> dict[str, Any]:
    """The series' step: ``{"unit": "months", "n": 1, "anchor": "start"}``, ``{"unit": "seconds", "n": 3600}``,
    or ``{"unit": "number", "n": 1.0}``; the most common gap between times."""
    if len(times) < 2:
        return {"unit": "row", "n": 1} if kind == "index" else {"unit": "number", "n": 1.0}
    if kind == "numeric":
        diffs = np.diff(times)
        return {"unit": "number", "n": float(pd.Series(diffs).mode().iloc[0])}
    seconds = np.diff(times.asi8) / _ticks_per_second(times)
    typical_days = float(np.median(seconds)) / 86400
    for low, high, months in ((27, 32, 1), (88, 93, 3), (364, 367, 12)):
        if low <= typical_days <= high:
            if times.is_month_end.all():
                anchor = "end"
            elif (times.day == 1).all():
                anchor = "start"
            else:
                anchor = "day"
            return {"unit": "months", "n": months, "anchor": anchor}
    return {"unit": "seconds", "n": float(pd.Series(seconds).mode().iloc[0])}


def _ticks_per_second(times: pd.DatetimeIndex) -> int:
    return {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[times.unit]


def _positions(series: Series) -> np.ndarray:
    """Each row's position in steps from the first row (0, 1, 2, ... when there are no gaps)."""
    times, step = series.times, series.step
    if step["unit"] == "months":
        assert isinstance(times, pd.DatetimeIndex)  # a calendar step: the times are dates
        ordinal = times.year.to_numpy() * 12 + times.month.to_numpy()
        return (ordinal - ordinal[0]) / step["n"]
    if step["unit"] == "seconds":
        assert isinstance(times, pd.DatetimeIndex)  # a clock step: the times are dates
        return (times.asi8 - times.asi8[0]) / _ticks_per_second(times) / step["n"]
    if step["unit"] == "number":
        return (times - times[0]) / step["n"]
    return np.arange(len(times), dtype=np.float64)


def _fill_time_gaps(series: Series, fill: str) -> None:
    """Missing time steps: an error naming the gap, or (with a fill method) rows inserted as missing values."""
    if series.time_kind == "index" or len(series) < 2:
        return
    assert series.lines is not None  # read from a file: each row has its line
    positions = _positions(series)
    rounded = np.round(positions)
    off_grid = np.abs(positions - rounded) > 1e-6
    if off_grid.any():
        row = int(off_grid.argmax())
        raise DataError(
            f"{series.source}: line {series.lines[row]}: time {series.time_text(row)} is off the series' step "
            f"({describe_step(series.step)}, from {series.time_text(0)}); the time step must be regular"
        )
    jumps = np.diff(rounded)
    if (jumps == 1).all():
        return
    row = int(np.argmax(jumps != 1))
    if fill == "none":
        missing_steps = int((jumps - 1).sum())
        raise DataError(
            f"{series.source}: {missing_steps} time step(s) missing, first between line {series.lines[row]} "
            f"({series.time_text(row)}) and line {series.lines[row + 1]} ({series.time_text(row + 1)}), step "
            f"{describe_step(series.step)}; add the rows or pass fill=ffill|interpolate|zero to insert and fill them"
        )
    full = np.arange(int(rounded[-1]) + 1)
    values = np.full((len(full), series.values.shape[1]), np.nan)
    values[rounded.astype(np.int64)] = series.values
    lines = np.zeros(len(full), dtype=np.int64)
    lines[rounded.astype(np.int64)] = series.lines
    inserted = len(full) - len(series)
    if series.time_kind == "numeric":
        times = series.times[0] + full * series.step["n"]
    else:
        later = future_times(series.step, series.times[0], len(full) - 1, "datetime")
        times = pd.DatetimeIndex([series.times[0], *later])
    series.values, series.lines, series.times = values, lines, times
    series.notes.append(f"{inserted} missing time step(s) inserted and filled by {fill}")


def _fill_missing(series: Series, fill: str) -> None:
    missing = np.isnan(series.values)
    if not missing.any():
        return
    assert series.lines is not None  # read from a file: each row has its line
    inserted_rows = series.lines == 0
    empty_columns = [name for name, m in zip(series.columns, missing.all(axis=0)) if m]
    if empty_columns:
        raise DataError(f"{series.source}: column(s) {', '.join(map(repr, empty_columns))} have no values at all")
    if fill == "none":
        count = int(missing.sum())
        raise DataError(
            f"{series.source}: {count} missing value(s): {describe_cells(series.lines, series.columns, missing)}; "
            f"fill them in the file or pass fill=ffill|interpolate|zero"
        )
    frame = pd.DataFrame(series.values)
    if fill == "ffill":
        frame = frame.ffill().bfill()  # a leading gap has no past: take the first value
    elif fill == "interpolate":
        frame = frame.interpolate(method="linear", limit_direction="both")
    else:
        frame = frame.fillna(0.0)
    series.values = frame.to_numpy(dtype=np.float64)
    in_file = missing & ~inserted_rows[:, None]
    series.filled = {name: int(count) for name, count in zip(series.columns, in_file.sum(axis=0)) if count}
    if in_file.any():
        series.notes.append(f"{int(in_file.sum())} missing value(s) filled by {fill}")


def _check_fractions(val_fraction: float, test_fraction: float, has_test_file: bool) -> None:
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"val_fraction and test_fraction must lie in (0, 1) and sum below 1, got {val_fraction} and {test_fraction}"
        )
    if not has_test_file and test_fraction == 0:
        raise ConfigError("test_fraction 0 needs a separate test file (test_data)")


def _check_length(series: Series, lookback, horizon, val_fraction, test_fraction, n_train, n_val, n_test) -> None:
    """Enough rows for one window in each part: ``n_train ≥ lookback + horizon``, ``n_val, n_test ≥ horizon``."""
    has_test = test_fraction > 0
    if n_train >= lookback + horizon and n_val >= horizon and (n_test >= horizon or not has_test):
        return
    needed = lookback + horizon
    while True:
        test_rows = round(needed * test_fraction)
        val_rows = round(needed * val_fraction)
        if (
            needed - val_rows - test_rows >= lookback + horizon
            and val_rows >= horizon
            and (test_rows >= horizon or not has_test)
        ):
            break
        needed += 1
    parts = f"{n_train}/{n_val}" + (f"/{n_test}" if has_test else "")
    raise DataError(
        f"{series.source}: the series has {len(series)} rows, too short for lookback {lookback} + horizon {horizon}: "
        f"the training part needs {lookback + horizon} rows and the validation"
        f"{' and test parts' if has_test else ' part'} {horizon} each, so with val_fraction {val_fraction}"
        + (f" and test_fraction {test_fraction}" if has_test else "")
        + f" at least {needed} rows are needed (split now {parts}); shorten lookback/horizon or give more data"
    )


# ----------------------------------------------------------------------------------------------
# baselines and seasons


def infer_season(step: dict[str, Any]) -> int | None:
    """Steps per season from the time step: hourly 24, daily 7, weekly 52, monthly 12, quarterly 4;
    a sub-hourly step that divides a day gives the steps per day; anything else None."""
    if step["unit"] == "months":
        return {1: 12, 3: 4}.get(step["n"])
    if step["unit"] != "seconds":
        return None
    seconds = step["n"]
    known = {SECONDS_PER["hour"]: 24, SECONDS_PER["day"]: 7, SECONDS_PER["week"]: 52}
    if seconds in known:
        return known[seconds]
    if 0 < seconds < SECONDS_PER["hour"] and SECONDS_PER["day"] % seconds == 0:
        return int(SECONDS_PER["day"] // seconds)
    return None


def naive_baselines(raw_targets: np.ndarray, origins: np.ndarray, horizon: int, season: int | None) -> dict[str, float]:
    """``naive_mae`` and ``seasonal_naive_mae`` over the windows at ``origins`` (original units)."""
    steps = np.arange(horizon)
    target_rows = origins[:, None] + steps[None, :]  # [windows, horizon]
    truth = raw_targets[target_rows]  # [windows, horizon, n_targets]
    naive = raw_targets[origins - 1][:, None, :]
    naive_mae = float(np.abs(truth - naive).mean())
    if season is None:
        return {"naive_mae": naive_mae, "seasonal_naive_mae": naive_mae}
    source_rows = target_rows - season * (steps[None, :] // season + 1)
    # a window too close to the start of its file for a full season of history falls back to naive
    source_rows = np.where(source_rows >= 0, source_rows, origins[:, None] - 1)
    seasonal = raw_targets[source_rows]
    return {"naive_mae": naive_mae, "seasonal_naive_mae": float(np.abs(truth - seasonal).mean())}


def _seasonal_mae(values: np.ndarray, season: int) -> float:
    if len(values) <= season:
        return float("nan")
    return float(np.abs(values[season:] - values[:-season]).mean())


# ----------------------------------------------------------------------------------------------
# time arithmetic


def describe_step(step: dict[str, Any]) -> str:
    if step["unit"] == "months":
        return {1: "1 month", 3: "1 quarter", 12: "1 year"}.get(step["n"], f"{step['n']} months")
    if step["unit"] == "seconds":
        for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if step["n"] % size == 0:
                count = step["n"] / size
                return f"{count:g} {unit}" + ("s" if count != 1 else "")
        return f"{step['n']:g} seconds"
    return f"{step['n']:g}" if step["unit"] == "number" else "1 row"


def future_times(step: dict[str, Any], last, count: int, kind: str) -> list:
    """The ``count`` times after ``last``, one step apart."""
    ahead = range(1, count + 1)
    if kind == "index" or step["unit"] == "row":
        return [int(last) + k for k in ahead]
    if step["unit"] == "number":
        return [last + k * step["n"] for k in ahead]
    last = pd.Timestamp(last)
    if step["unit"] == "months":
        if step.get("anchor") == "end":
            return [last + pd.offsets.MonthEnd(k * step["n"]) for k in ahead]
        return [last + pd.DateOffset(months=k * step["n"]) for k in ahead]
    return [last + pd.Timedelta(seconds=k * step["n"]) for k in ahead]


def _time_text(value, kind: str, step: dict[str, Any]) -> str:
    if kind == "datetime":
        stamp = pd.Timestamp(value)
        whole_days = step["unit"] == "months" or (step["unit"] == "seconds" and step["n"] % 86400 == 0)
        return stamp.strftime("%Y-%m-%d") if whole_days and stamp == stamp.normalize() else stamp.isoformat(sep=" ")
    if kind == "numeric":
        return f"{float(value):g}"
    return str(int(value))


# ----------------------------------------------------------------------------------------------
# forecasting new data with a trained run's meta


@dataclass
class ForecastWindows:
    """The latest lookback windows of a new series, scaled like training, and what they forecast."""

    x: torch.Tensor  # [count, lookback, F]
    origins: list[str]  # time of the last observed row of each window
    future_times: list[list[str]]  # [count][horizon] times the forecasts are for


def forecast_windows(meta: dict[str, Any], path: str, *, count: int = 1, fill: str | None = None) -> ForecastWindows:
    """Build the last ``count`` windows of the CSV at ``path`` with the run's columns, scaler and step."""
    if meta.get("task") != "forecast":
        raise ConfigError(f"forecast windows need a forecast run; this run's task is {meta.get('task')!r}")
    lookback, horizon = meta["lookback"], meta["horizon"]
    series = read_series(
        path,
        time=meta["time_column"],
        target=",".join(meta["targets"]),
        covariates=",".join(meta["covariates"]) or None,
        fill=fill or meta["fill"],
    )
    if series.time_kind != meta["time_kind"]:
        raise DataError(f"{path}: its times are {series.time_kind}, the training data's were {meta['time_kind']}")
    if len(series) > 1 and series.step != meta["step"]:
        raise DataError(
            f"{path}: its time step is {describe_step(series.step)}, the model was trained on a step of "
            f"{describe_step(meta['step'])}"
        )
    if len(series) < lookback + count - 1:
        raise DataError(
            f"{path}: the series has {len(series)} rows; {count} window(s) of lookback {lookback} need at least "
            f"{lookback + count - 1}"
        )
    take_logs(series, meta["scaler"].get("log", []))
    mean = np.asarray(meta["scaler"]["mean"])
    std = np.asarray(meta["scaler"]["std"])
    scaled = ((series.values - mean) / std).astype(np.float32)
    ends = range(len(series) - count + 1, len(series) + 1)  # each window covers rows [end - lookback, end)
    x = torch.from_numpy(np.stack([scaled[end - lookback : end] for end in ends]))
    origins = [series.time_text(end - 1) for end in ends]
    futures = [
        [
            _time_text(t, series.time_kind, series.step)
            for t in future_times(series.step, series.times[end - 1], horizon, series.time_kind)
        ]
        for end in ends
    ]
    return ForecastWindows(x, origins, futures)


def inverse_scale(meta: dict[str, Any], predictions) -> np.ndarray:
    """Scaled forecasts ``[..., n_targets]`` back to original units: ``p · std + mean`` per target."""
    n_targets = len(meta["targets"])
    values = predictions.detach().cpu().numpy() if isinstance(predictions, torch.Tensor) else np.asarray(predictions)
    if values.shape[-1] != n_targets:
        raise ValueError(
            f"expected predictions with {n_targets} targets in the last dimension, got shape {values.shape}"
        )
    mean = np.asarray(meta["scaler"]["mean"][:n_targets])
    std = np.asarray(meta["scaler"]["std"][:n_targets])
    logged = meta["scaler"].get("log", [])
    return undo_logs(values * std + mean, [name in logged for name in meta["targets"]])


# ----------------------------------------------------------------------------------------------
# built-in series


def builtin_series(name: str, *, seed: int = 0) -> Series:
    if name == "traffic":
        return traffic_series(seed=seed)
    if name == "sunspots":
        from statsmodels.datasets import sunspots

        frame = sunspots.load_pandas().data
        years = frame["YEAR"].to_numpy(dtype=np.float64)
        return Series(
            "builtin:sunspots",
            "YEAR",
            "numeric",
            years,
            {"unit": "number", "n": 1.0},
            ["SUNACTIVITY"],
            [],
            frame[["SUNACTIVITY"]].to_numpy(dtype=np.float64),
            None,
            notes=["yearly mean sunspot numbers, 1700-2008 (statsmodels.datasets.sunspots)"],
        )
    if name == "co2":
        from statsmodels.datasets import co2

        frame = co2.load_pandas().data
        values = frame[["co2"]].to_numpy(dtype=np.float64)
        gaps = int(np.isnan(values).sum())
        values = pd.DataFrame(values).interpolate(method="linear", limit_direction="both").to_numpy()
        times = pd.DatetimeIndex(frame.index)
        return Series(
            "builtin:co2",
            "date",
            "datetime",
            times,
            {"unit": "seconds", "n": float(SECONDS_PER["week"])},
            ["co2"],
            [],
            values,
            None,
            filled={"co2": gaps},
            notes=[
                f"weekly Mauna Loa CO2 in ppm, 1958-2001 (statsmodels.datasets.co2); "
                f"{gaps} missing weeks filled by linear interpolation"
            ],
        )
    raise unknown_name("built-in series", name, BUILTINS)


def traffic_series(*, seed: int = 0, days: int = 364, start: str = "2023-01-02") -> Series:
    """Hourly road traffic flow (vehicles per minute over all lanes), deterministic from ``seed``.

    ``flow = level(t) · profile(hour, weekday) · (1 - incident(t)) + noise``: a weekday profile with
    morning (8:00) and evening (17:30) rush hours, a flatter weekend profile peaking after noon, a
    slow upward trend (+10% over the year), noise growing with the flow, and about one incident a
    week that cuts the flow by 30-80% for 1-5 hours.
    """
    rng = np.random.default_rng([seed, 2023])
    hours = np.arange(days * 24)
    hour_of_day = hours % 24
    weekend = (hours // 24) % 7 >= 5  # the series starts on a Monday

    def bump(center, width):
        return np.exp(-0.5 * ((hour_of_day - center) / width) ** 2)

    weekday_profile = 0.15 + 0.9 * bump(8, 1.3) + 0.75 * bump(17.5, 1.6) + 0.45 * bump(12.5, 3.5)
    weekend_profile = 0.12 + 0.6 * bump(13.5, 3.5) + 0.15 * bump(19, 2.0)
    profile = np.where(weekend, weekend_profile, weekday_profile)
    level = 40.0 * (1 + 0.10 * hours / len(hours))
    flow = level * profile
    incident = np.zeros(len(hours))
    for begin in np.flatnonzero(rng.random(len(hours)) < 1 / (7 * 24)):
        incident[begin : begin + rng.integers(1, 6)] = rng.uniform(0.3, 0.8)
    flow = flow * (1 - incident) + rng.normal(0, 1, len(hours)) * (0.8 + 0.05 * flow)
    flow = np.clip(flow, 0, None).round(2)
    times = pd.date_range(start, periods=len(hours), freq="h")
    return Series(
        "builtin:traffic",
        "time",
        "datetime",
        times,
        {"unit": "seconds", "n": float(SECONDS_PER["hour"])},
        ["flow"],
        [],
        flow[:, None],
        None,
        notes=[f"generated hourly traffic flow, {days} days from {start} (seed {seed})"],
    )
