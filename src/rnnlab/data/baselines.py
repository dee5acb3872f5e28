"""Classical baselines a model is judged beside: 1-nearest-neighbour classification and the
naive / seasonal-naive / ETS / ARIMA forecasts.

**Sequence classification** (Dau et al. 2018, "The UCR Time Series Archive"). A test series ``q``
takes the label of the training series ``c_j`` at the smallest distance (ties: the first ``j``).
Series are float arrays ``[T, F]``; lengths may differ.

* Euclidean: every series is first resampled linearly to ``L`` = the longest *training* length
  (``x'[k] = x(k · (T-1)/(L-1))``, linear interpolation per channel; equal lengths are untouched),
  then ``ED(q, c) = sqrt(Σ_k Σ_f (q'[k, f] - c'[k, f])²)``.
* DTW, dependent multivariate (one warping path for all channels), native lengths ``n``, ``m``:

      cost[i, j] = Σ_f (q[i, f] - c[j, f])²
      D[i, j]    = cost[i, j] + min(D[i-1, j], D[i, j-1], D[i-1, j-1]),   D[-1, -1] = 0, D[-1, ·] = D[·, -1] = ∞
      DTW(q, c)  = sqrt(D[n-1, m-1])

  ``window`` r (Sakoe–Chiba, in steps) keeps the cells ``i - r - max(0, n-m) ≤ j ≤ i + r + max(0, m-n)``:
  the band of half-width r around both diagonals, so unequal lengths always have a path (r = 0 on
  equal lengths is the Euclidean distance). ``window=None``: the full matrix.
* ``znormalise``: each series, per channel, becomes ``(x - mean_t x) / std_t x`` before anything
  else (a constant channel only loses its mean). The UCR univariate sets come z-normalised already.

The DTW search is exact but pruned: per test series, the DTW to its Euclidean-nearest training
series is an upper bound ``ub``; a training series whose lower bound (below) exceeds ``ub`` is
skipped, the rest are computed in parallel in C with ``max_dist = ub`` (PrunedDTW / early
abandoning: a pair whose every cell of a row exceeds ``ub`` stops). Lower bounds on ``D[n-1, m-1]``:

      LB_Kim   = cost[0, 0] + cost[n-1, m-1]                                (both corners lie on every path)
      LB_env   = Σ_i Σ_f dist(q[i, f], [min_j c[j, f], max_j c[j, f]])²   (every row i is matched to some j)
                 and the same with q and c swapped
      LB       = max(LB_Kim, LB_env(q→c), LB_env(c→q))

``dtw_reference`` is the plain dynamic programme above, the ground truth of the tests.

**Forecasting** (Hyndman & Athanasopoulos, "Forecasting: Principles and Practice", 3rd ed.). One
series ``v[N]`` in original units; every origin ``t`` forecasts ``v[t : t+H]`` from ``v[:t]``
(``h = 0 … H-1`` counts the steps from the origin):

    naive:            ŷ[t+h] = v[t-1]
    seasonal naive:   ŷ[t+h] = v[t + h - m·(⌊h/m⌋ + 1)]
    ets:              additive-error ETS, trend N / A / Ad, seasonal N / A, chosen by AICc
    arima:            ARIMA(p, d, q)(P, D, Q)[m] with d by KPSS, D by seasonal strength, orders by AICc

ETS and ARIMA are fitted once on ``g(v[:fit_rows])`` and never refitted: per origin the fitted
model's filter runs over ``g(v[:t])`` with the fitted parameters and forecasts ``H`` steps. Here
``z = (g(v) - μ) / σ`` with ``g = log`` when ``log=True`` (multiplicative series) else the identity,
and ``μ``, ``σ`` the mean and standard deviation of the fit part: the optimisers converge far better
on unit-scale data, and a fixed affine map shifts every candidate's AICc by the same constant, so
the choice is unchanged. Forecasts are mapped back: ``ŷ = g⁻¹(μ + σ·ẑ)``. The additive ETS
recursion (smoothing α, β, γ, damping φ; statsmodels' ``ETSModel``):

    ŷ[t]  = l[t-1] + φ·b[t-1] + s[t-m],        e[t] = z[t] - ŷ[t]
    l[t]  = l[t-1] + φ·b[t-1] + α·e[t],        b[t] = φ·b[t-1] + β·e[t],        s[t] = s[t-m] + γ·e[t]
    ẑ[t+h] = l[t-1] + (φ + … + φ^(h+1))·b[t-1] + s[t+h - m·(⌊h/m⌋ + 1)]

A method that cannot be fitted or forecast (too short a series, no season, no converged fit,
non-finite output) is missing: ``mae[name] = None`` and ``reasons[name]`` says why.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from rnnlab.errors import ConfigError, DataError, unknown_name

DISTANCES = ("euclidean", "dtw")
METHODS = ("naive", "seasonal_naive", "ets", "arima")

# Relative slack on the DTW upper bound: the bound and the pruned pairs are summed in different
# orders (numpy vs C), so a tie with the bound must not be pruned by one rounding step.
BOUND_SLACK = 1e-9


# ----------------------------------------------------------------------------------------------
# sequence classification: 1-nearest neighbour


def nearest_neighbour_accuracy(
    train_inputs,
    train_labels,
    test_inputs,
    test_labels,
    *,
    distance: str = "euclidean",
    window: int | None = None,
    znormalise: bool = False,
    threads: int | None = None,
    progress: bool = False,
) -> float:
    """Accuracy of the 1-nearest-neighbour classifier: ``mean_i [label(nn(q_i)) == test_labels[i]]``.

    ``train_inputs``/``test_inputs``: lists of float arrays ``[T_i, F]`` (``[T_i]`` is one channel);
    ``distance``: ``"euclidean"`` or ``"dtw"`` (see the module docstring for the conventions);
    ``window``: DTW's Sakoe–Chiba radius in steps (``None``: full); ``threads``: OpenMP threads of
    the DTW search (``None``: the library's default, all cores).
    """
    if len(train_labels) != len(train_inputs):
        raise DataError(f"train_labels has {len(train_labels)} labels for {len(train_inputs)} training series")
    if len(test_labels) != len(test_inputs):
        raise DataError(f"test_labels has {len(test_labels)} labels for {len(test_inputs)} test series")
    neighbours = nearest_neighbours(
        train_inputs,
        test_inputs,
        distance=distance,
        window=window,
        znormalise=znormalise,
        threads=threads,
        progress=progress,
    )
    hits = [train_labels[j] == label for j, label in zip(neighbours, test_labels)]
    return float(np.mean(hits))


def nearest_neighbours(
    train_inputs,
    test_inputs,
    *,
    distance: str = "euclidean",
    window: int | None = None,
    znormalise: bool = False,
    threads: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Index of each test series' nearest training series, ``int64[len(test_inputs)]`` (ties: the lowest index)."""
    train, test = _check_inputs(train_inputs, test_inputs, distance, window, znormalise)
    if distance == "euclidean":
        return np.array([int(np.argmin(row)) for row in _squared_euclidean_rows(train, test)], dtype=np.int64)
    with threadpool_limits(threads, user_api="openmp"):
        return _dtw_nearest(train, test, window, progress)


def series_distances(
    queries,
    references,
    *,
    distance: str = "dtw",
    window: int | None = None,
    znormalise: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """The full distance matrix ``[len(queries), len(references)]`` (no pruning), same conventions."""
    references, queries = _check_inputs(references, queries, distance, window, znormalise)
    if distance == "euclidean":
        return np.sqrt(np.array(list(_squared_euclidean_rows(references, queries))))
    module, series = _dtw_module(references + queries)
    n_ref = len(references)
    with threadpool_limits(threads, user_api="openmp"):
        flat = module.distance_matrix_fast(
            series, block=((0, n_ref), (n_ref, len(series))), compact=True, **_dtw_settings(window)
        )
    return np.asarray(flat, dtype=np.float64).reshape(n_ref, len(queries)).T


def _squared_euclidean_rows(references: list[np.ndarray], queries: list[np.ndarray]):
    """Per query, ``ED²`` to every reference after resampling all to the longest reference length."""
    reference = resample_all(references, max(len(x) for x in references))
    for query in queries:
        # differences taken directly, one query at a time: exact, so equal distances tie exactly
        yield ((reference - resample_linear(query, reference.shape[1])) ** 2).sum(axis=(1, 2))


def dtw_reference(query, reference, *, window: int | None = None) -> float:
    """Plain dynamic programme of the module docstring's DTW (O(n·m) Python loops; for tests)."""
    q = np.asarray(query, dtype=np.float64).reshape(len(query), -1)
    c = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    n, m = len(q), len(c)
    D = np.full((n + 1, m + 1), np.inf)  # D[i + 1, j + 1] holds the docstring's D[i, j]
    D[0, 0] = 0.0
    for i in range(n):
        for j in range(m):
            if window is not None and not i - window - max(0, n - m) <= j <= i + window + max(0, m - n):
                continue
            cost = float(((q[i] - c[j]) ** 2).sum())
            D[i + 1, j + 1] = cost + min(D[i, j + 1], D[i + 1, j], D[i, j])
    return math.sqrt(D[n, m])


def znormalise_series(x: np.ndarray) -> np.ndarray:
    """``(x - mean_t x) / std_t x`` per channel of ``x[T, F]``; a constant channel is only centred."""
    centred = x - x.mean(axis=0)
    std = x.std(axis=0)
    return centred / np.where(std > 0, std, 1.0)


def resample_linear(x: np.ndarray, length: int) -> np.ndarray:
    """``x[T, F]`` linearly interpolated at ``k · (T-1)/(length-1)``, ``k < length`` (a length-1 series repeats)."""
    if len(x) == length:
        return x
    if len(x) == 1 or length == 1:
        return np.repeat(x[:1], length, axis=0)
    where = np.linspace(0.0, len(x) - 1, length)
    steps = np.arange(len(x))
    return np.stack([np.interp(where, steps, x[:, f]) for f in range(x.shape[1])], axis=1)


def resample_all(series: list[np.ndarray], length: int) -> np.ndarray:
    """Every series resampled to ``length``, stacked: ``[len(series), length, F]``."""
    return np.stack([resample_linear(x, length) for x in series])


def _check_inputs(train_inputs, test_inputs, distance, window, znormalise):
    if distance not in DISTANCES:
        raise unknown_name("distance", distance, DISTANCES)
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0):
        raise ConfigError(f"window must be a whole number of steps ≥ 0 or None, got {window!r}")
    if window is not None and distance != "dtw":
        raise ConfigError(f"window applies to distance 'dtw', not {distance!r}")
    train = _series_list(train_inputs, "train_inputs")
    test = _series_list(test_inputs, "test_inputs")
    channels = train[0].shape[1]
    for name, series in (("train_inputs", train), ("test_inputs", test)):
        for i, x in enumerate(series):
            if x.shape[1] != channels:
                raise DataError(f"{name}[{i}] has {x.shape[1]} channels; train_inputs[0] has {channels}")
    if znormalise:
        train = [znormalise_series(x) for x in train]
        test = [znormalise_series(x) for x in test]
    return train, test


def _series_list(inputs, name: str) -> list[np.ndarray]:
    series = []
    for i, x in enumerate(inputs):
        try:
            array = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DataError(
                f"{name}[{i}]: expected an array of numbers [T, F], got {type(x).__name__} ({error})"
            ) from None
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            raise DataError(f"{name}[{i}]: expected a non-empty array [T, F], got shape {array.shape}")
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):
            step, channel = bad[0]
            raise DataError(
                f"{name}[{i}] step {step} channel {channel}: expected a finite number, got {array[step, channel]}"
            )
        series.append(np.array(array, dtype=np.float64, order="C"))  # own, writeable copies: the C code needs them
    if not series:
        raise DataError(f"{name} is empty: expected at least one series")
    return series


def _dtw_module(series: list[np.ndarray]):
    """dtaidistance's univariate module on 1-D arrays, or its dependent-multivariate one on ``[T, F]``."""
    # dtaidistance: a C implementation with OpenMP over pairs, PrunedDTW and native unequal lengths;
    # it computes exactly the DTW of the module docstring (squared differences summed over channels).
    from dtaidistance import dtw, dtw_ndim

    if dtw.dtw_cc is None or dtw.dtw_cc_omp is None:  # its pure-Python fallback is ~1000× slower
        raise RuntimeError(
            "dtaidistance's C library (dtw_cc, dtw_cc_omp) did not load; reinstall dtaidistance "
            "from its wheel (`python -c 'from dtaidistance import dtw; dtw.try_import_c()'` says why)"
        )
    if series[0].shape[1] == 1:
        return dtw, [np.ascontiguousarray(x[:, 0]) for x in series]
    return dtw_ndim, series


def _dtw_settings(window: int | None) -> dict[str, Any]:
    # dtaidistance's window w keeps |i - j| < w around both diagonals: radius r is w = r + 1 (w = 0 is "no window")
    return {} if window is None else {"window": window + 1}


def _dtw_nearest(train: list[np.ndarray], test: list[np.ndarray], window: int | None, progress: bool) -> np.ndarray:
    module, references = _dtw_module(train)
    _, queries = _dtw_module(test)
    settings = _dtw_settings(window)
    envelope = _Envelopes(train)
    guesses = _euclidean_guesses(train, test)
    neighbours = np.empty(len(test), dtype=np.int64)
    for i in _track(range(len(test)), progress, "1-NN DTW"):
        guess = guesses[i]
        bound_hint = {}
        if len(test[i]) == len(train[guess]):  # the diagonal is a path in any band: ED bounds DTW
            ed = math.sqrt(float(((test[i] - train[guess]) ** 2).sum()))
            bound_hint = {"max_dist": ed * (1 + BOUND_SLACK)} if ed > 0 else {}
        upper = module.distance_fast(queries[i], references[guess], use_pruning=False, **settings, **bound_hint)
        if not math.isfinite(upper):  # the hint was too tight after all: compute the bound unpruned
            upper = module.distance_fast(queries[i], references[guess], use_pruning=False, **settings)
        distances = np.full(len(train), np.inf)
        distances[guess] = upper
        limit = upper * (1 + BOUND_SLACK)
        candidates = np.flatnonzero(envelope.lower_bounds(test[i]) <= limit * limit)
        candidates = candidates[candidates < guess] if upper == 0 else candidates[candidates != guess]
        if len(candidates):  # at distance 0 only an earlier exact (warped) match can take the tie
            found = module.distance_matrix_fast(
                [queries[i], *(references[j] for j in candidates)],
                block=((0, 1), (1, len(candidates) + 1)),
                compact=True,
                max_dist=limit if limit > 0 else None,
                **settings,
            )
            distances[candidates] = np.asarray(found, dtype=np.float64)
        neighbours[i] = int(np.argmin(distances))  # the first of equal distances
    return neighbours


def _euclidean_guesses(train: list[np.ndarray], test: list[np.ndarray]) -> np.ndarray:
    """Each test series' Euclidean-nearest training series after resampling (a good first DTW bound)."""
    length = max(len(x) for x in train)
    reference = resample_all(train, length).reshape(len(train), -1)
    queries = resample_all(test, length).reshape(len(test), -1)
    # ‖q‖² - 2 q·c + ‖c‖² in one product: only a heuristic order, so rounding does not matter here
    squared = (reference**2).sum(axis=1)[None, :] - 2.0 * queries @ reference.T
    return np.argmin(squared, axis=1)


class _Envelopes:
    """Lower bounds on the squared DTW between one query and every training series (module docstring).

    ``Σ_{x < a} (a - x)² = k·a² - 2a·S1[k] + S2[k]`` with ``k = #{x < a}`` and ``S1``, ``S2`` the prefix
    sums of the sorted values (and the mirror image above ``b``), so one bound costs O(log T) per
    channel instead of O(T). The formula cancels, so each bound is lowered by a rounding margin
    (1e-11 of its terms' magnitudes): a bound must never exceed the true distance.
    """

    MARGIN = 1e-11

    def __init__(self, train: list[np.ndarray]):
        count, longest, channels = len(train), max(len(x) for x in train), train[0].shape[1]
        self.lengths = np.array([len(x) for x in train])
        self.low = np.stack([x.min(axis=0) for x in train])  # [N, F]
        self.high = np.stack([x.max(axis=0) for x in train])
        self.first = np.stack([x[0] for x in train])
        self.last = np.stack([x[-1] for x in train])
        self.sorted = np.full((channels, count, longest), np.inf)  # padded with +inf: never below a threshold
        self.sum1 = np.zeros((channels, count, longest + 1))
        self.sum2 = np.zeros((channels, count, longest + 1))
        for j, x in enumerate(train):
            values = np.sort(x, axis=0).T  # [F, T]
            self.sorted[:, j, : len(x)] = values
            self.sum1[:, j, 1 : len(x) + 1] = np.cumsum(values, axis=1)
            self.sum2[:, j, 1 : len(x) + 1] = np.cumsum(values**2, axis=1)
            self.sum1[:, j, len(x) + 1 :] = self.sum1[:, j, len(x)][:, None]
            self.sum2[:, j, len(x) + 1 :] = self.sum2[:, j, len(x)][:, None]

    def lower_bounds(self, query: np.ndarray) -> np.ndarray:
        rows = np.arange(len(self.lengths))
        query_to_train = np.zeros(len(rows))
        train_to_query = np.zeros(len(rows))
        for f in range(query.shape[1]):
            values = np.sort(query[:, f])
            sum1 = np.concatenate([[0.0], np.cumsum(values)])
            sum2 = np.concatenate([[0.0], np.cumsum(values**2)])
            below = np.searchsorted(values, self.low[:, f], side="left")
            above = np.searchsorted(values, self.high[:, f], side="right")
            query_to_train += _outside_below(self.low[:, f], below, sum1[below], sum2[below])
            query_to_train += _outside_above(
                self.high[:, f], len(values) - above, sum1[-1] - sum1[above], sum2[-1] - sum2[above]
            )
            low, high = values[0], values[-1]
            below = (self.sorted[f] < low).sum(axis=1)
            above = (self.sorted[f] <= high).sum(axis=1)
            total1, total2 = self.sum1[f, rows, self.lengths], self.sum2[f, rows, self.lengths]
            train_to_query += _outside_below(low, below, self.sum1[f, rows, below], self.sum2[f, rows, below])
            train_to_query += _outside_above(
                high, self.lengths - above, total1 - self.sum1[f, rows, above], total2 - self.sum2[f, rows, above]
            )
        corners = ((query[0] - self.first) ** 2).sum(axis=1)
        single = (len(query) == 1) & (self.lengths == 1)  # one cell: both corners are the same cell
        corners = corners + np.where(single, 0.0, ((query[-1] - self.last) ** 2).sum(axis=1))
        return np.maximum(np.maximum(query_to_train, train_to_query), corners)


def _outside_below(a, count, sum1, sum2):
    """``Σ (a - x)²`` over the ``count`` values ``x < a`` whose sum is ``sum1`` and sum of squares ``sum2``."""
    value = count * a * a - 2.0 * a * sum1 + sum2
    margin = _Envelopes.MARGIN * (count * a * a + 2.0 * np.abs(a * sum1) + sum2)
    return np.maximum(value - margin, 0.0)


def _outside_above(b, count, sum1, sum2):
    """``Σ (x - b)²`` over the ``count`` values ``x > b``."""
    return _outside_below(b, count, sum1, sum2)


def _track(items, progress: bool, description: str):
    if not progress:
        return items
    from rich.progress import track

    return track(items, description=description)


# ----------------------------------------------------------------------------------------------
# forecasting: naive, seasonal naive, ETS, ARIMA


@dataclass
class ForecastBaselines:
    """Per method: ``mae`` (None when missing), ``forecasts[len(origins), horizon]`` in original units,
    ``reasons`` (why a method is missing), ``chosen`` (the form or order picked), ``parameters``
    (fitted values on the standardised scale, with ``scale_mean``/``scale_std``), ``seconds``."""

    mae: dict[str, float | None]
    forecasts: dict[str, np.ndarray | None]
    reasons: dict[str, str] = field(default_factory=dict)
    chosen: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        forecasts = {name: None if f is None else f.tolist() for name, f in self.forecasts.items()}
        return {
            "mae": dict(self.mae),
            "forecasts": forecasts,
            "reasons": dict(self.reasons),
            "chosen": dict(self.chosen),
            "parameters": {k: dict(v) for k, v in self.parameters.items()},
            "seconds": dict(self.seconds),
        }


class _Missing(Exception):
    """A method cannot give forecasts; the message is the reason reported."""


def forecast_baselines(
    values,
    *,
    fit_rows: int,
    origins,
    horizon: int,
    season: int | None = None,
    log: bool = False,
    methods: Sequence[str] = METHODS,
) -> ForecastBaselines:
    """Forecasts of ``values[t : t+horizon]`` from ``values[:t]`` for every ``t`` in ``origins``, and their MAE.

    ``MAE = mean_{t, h} |ŷ[t+h] - v[t+h]|`` over all origins and steps. ETS and ARIMA are fitted on
    ``values[:fit_rows]`` only. ``season``: steps per season m (``None`` or 1: none). ``log``: fit
    and filter ``log v`` and forecast ``exp`` of it (multiplicative series; ETS and ARIMA only, the
    naive forecasts are the same in both scales).
    """
    values, origins = _check_forecast_inputs(values, fit_rows, origins, horizon, season, log, methods)
    truth = values[origins[:, None] + np.arange(horizon)[None, :]]
    result = ForecastBaselines(mae={}, forecasts={})
    for name in methods:
        started = time.perf_counter()
        try:
            forecasts, chosen, parameters = _FORECASTERS[name](values, fit_rows, origins, horizon, season, log)
            if not np.all(np.isfinite(forecasts)):
                where = np.argwhere(~np.isfinite(forecasts))[0]
                raise _Missing(
                    f"non-finite forecast {forecasts[tuple(where)]} at origin {origins[where[0]]} step {where[1]}"
                )
            result.forecasts[name] = forecasts
            result.mae[name] = float(np.abs(forecasts - truth).mean())
            if chosen:
                result.chosen[name] = chosen
            if parameters:
                result.parameters[name] = parameters
        except (_Missing, ValueError, np.linalg.LinAlgError, RuntimeError, OverflowError) as missing:
            # statsmodels raises these from deep inside a fit or filter; a baseline that fails is
            # reported, never allowed to stop the run it sits beside
            result.forecasts[name] = None
            result.mae[name] = None
            result.reasons[name] = (
                str(missing) if isinstance(missing, _Missing) else f"{type(missing).__name__}: {missing}"
            )
        result.seconds[name] = time.perf_counter() - started
    return result


def _check_forecast_inputs(values, fit_rows, origins, horizon, season, log, methods):
    for name in methods:
        if name not in METHODS:
            raise unknown_name("forecast baseline", name, METHODS)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise DataError(f"values: expected one series values[N] with N ≥ 2, got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(f"values row {bad[0]}: expected a finite number, got {values[bad[0]]}")
    n_rows = len(values)
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ConfigError(f"horizon must be a whole number ≥ 1, got {horizon!r}")
    if not isinstance(fit_rows, (int, np.integer)) or not 2 <= fit_rows <= n_rows:
        raise ConfigError(
            f"fit_rows must be a whole number in [2, {n_rows}] (the series has {n_rows} rows), got {fit_rows!r}"
        )
    if season is not None and (not isinstance(season, (int, np.integer)) or season < 1):
        raise ConfigError(f"season must be a whole number ≥ 1 or None, got {season!r}")
    origins = np.asarray(origins)
    if origins.ndim != 1 or len(origins) == 0 or not np.issubdtype(origins.dtype, np.integer):
        raise ConfigError(f"origins: expected a non-empty list of whole numbers, got {origins.tolist()!r}")
    wrong = np.flatnonzero((origins < 1) | (origins + horizon > n_rows))
    if len(wrong):
        raise ConfigError(
            f"origins[{wrong[0]}] = {origins[wrong[0]]}: an origin t forecasts values[t : t+{horizon}] "
            f"from values[:t], so it must lie in [1, {n_rows - horizon}] for {n_rows} rows"
        )
    return values, origins.astype(np.int64)


def _naive(values, fit_rows, origins, horizon, season, log):
    return np.repeat(values[origins - 1][:, None], horizon, axis=1), "", {}


def _seasonal_naive(values, fit_rows, origins, horizon, season, log):
    if season is None:
        raise _Missing("no season given")
    steps = np.arange(horizon)
    sources = origins[:, None] + steps[None, :] - season * (steps[None, :] // season + 1)
    if sources.min() < 0:
        first = int(origins.min())
        raise _Missing(
            f"origin {first} has {first} rows of history; seasonal naive with season {season} needs {season}"
        )
    return values[sources], "", {}


@dataclass
class _Scale:
    """``z = (g(v) - mean) / std`` with ``g`` = log or identity; fitted on the fit part."""

    log: bool
    mean: float
    std: float

    @classmethod
    def fit(cls, values: np.ndarray, fit_rows: int, needed_rows: int, log: bool) -> _Scale:
        if log:
            bad = np.flatnonzero(values[: max(fit_rows, needed_rows)] <= 0)
            if len(bad):
                raise _Missing(f"log transform needs positive values; row {bad[0]} is {values[bad[0]]}")
        g = np.log(values[:fit_rows]) if log else values[:fit_rows]
        std = float(g.std())
        return cls(log, float(g.mean()), std if std > 0 else 1.0)

    def forward(self, values: np.ndarray) -> np.ndarray:
        return ((np.log(values) if self.log else values) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        g = self.mean + self.std * z
        with np.errstate(over="ignore"):
            return np.exp(g) if self.log else g

    def describe(self) -> dict[str, float]:
        return {"scale_mean": self.mean, "scale_std": self.std, "log": float(self.log)}


def _standardised(values, fit_rows, origins, log) -> tuple[_Scale, np.ndarray]:
    """The scale fitted on the fit part and ``z`` up to the last origin; a constant fit part is missing."""
    scale = _Scale.fit(values, fit_rows, int(origins.max()), log)
    if np.ptp(values[:fit_rows]) == 0:
        raise _Missing(
            f"the fit part is constant ({values[0]} in all {fit_rows} rows): the likelihood is degenerate "
            f"(σ = 0); the naive forecast is exact there"
        )
    return scale, scale.forward(values[: max(fit_rows, int(origins.max()))])


def _fit_candidates(candidates, fit):
    """Fit each candidate under recorded warnings; keep converged fits with a finite AICc, best first.

    ``fit(candidate)`` returns statsmodels results. Returns ``(fits, failures)``: ``[(aicc, candidate,
    results)]`` sorted, and ``{label: reason}`` for the fits that were dropped.
    """
    fits, failures = [], {}
    for label, candidate in candidates:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                results = fit(candidate)
            except (ValueError, np.linalg.LinAlgError, RuntimeError) as error:
                failures[label] = f"{type(error).__name__}: {error}"
                continue
        converged = (getattr(results, "mle_retvals", None) or {}).get("converged", True)
        aicc = float(results.aicc)
        if not converged or not math.isfinite(aicc):
            said = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught})) or "no warning"
            failures[label] = ("the optimiser did not converge" if not converged else f"AICc is {aicc}") + f" ({said})"
            continue
        fits.append((aicc, label, candidate, results))
    fits.sort(key=lambda item: item[0])
    return fits, failures


def _no_fit(method: str, failures: dict[str, str]) -> _Missing:
    grouped: dict[str, list[str]] = {}
    for label, reason in failures.items():
        grouped.setdefault(reason, []).append(label)
    return _Missing(
        f"no {method} form could be fitted: "
        + "; ".join(f"{', '.join(labels)}: {reason}" for reason, labels in grouped.items())
    )


# Above this season, the seasonal ETS forms start from the heuristic initial states (FPP3 §8.6,
# Hyndman et al. 2008 §2.6.1) instead of estimating m + 2 of them: R's ets refuses m > 24, and on
# the solar series (m = 48) the estimated start took 1-3 s per form and ended at a worse AICc.
ETS_ESTIMATED_MAX_SEASON = 24
# Rows of the fit part beyond two full seasons that a seasonal form needs ("two seasons + a few").
SEASONAL_EXTRA_ROWS = 3


def _ets(values, fit_rows, origins, horizon, season, log):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    scale, z = _standardised(values, fit_rows, origins, log)
    seasonal = season is not None and season >= 2
    if seasonal and fit_rows < 2 * season + SEASONAL_EXTRA_ROWS:
        seasonal_note = (
            f"the fit part has {fit_rows} rows, a seasonal ETS with season {season} needs at least 2 "
            f"seasons + {SEASONAL_EXTRA_ROWS} rows ({2 * season + SEASONAL_EXTRA_ROWS})"
        )
        seasonal = False
    else:
        seasonal_note = ""
    initialization = "heuristic" if seasonal and season > ETS_ESTIMATED_MAX_SEASON else "estimated"
    forms = []
    for trend_name, trend, damped in (("N", None, False), ("A", "add", False), ("Ad", "add", True)):
        for season_name in ("N", "A") if seasonal else ("N",):
            spec = {
                "error": "add",
                "trend": trend,
                "damped_trend": damped,
                "seasonal": "add" if season_name == "A" else None,
                "seasonal_periods": season if season_name == "A" else None,
            }
            forms.append((f"ETS(A,{trend_name},{season_name})", spec))
    # AICc needs n > k + 1 (k: smoothing parameters, initial states, σ²)
    usable, failures = [], {}
    for label, spec in forms:
        k = _ets_parameter_count(spec, initialization)
        if fit_rows <= k + 1:
            failures[label] = f"{k} parameters need more than {k + 1} rows, the fit part has {fit_rows}"
        else:
            usable.append((label, spec))
    if initialization == "heuristic" and fit_rows < 10:
        raise _Missing(f"the heuristic initial states need 10 rows, the fit part has {fit_rows}")
    with threadpool_limits(1, user_api="blas"):
        fits, fit_failures = _fit_candidates(
            usable, lambda spec: ETSModel(z[:fit_rows], initialization_method=initialization, **spec).fit(disp=False)
        )
        failures.update(fit_failures)
        if not fits:
            if seasonal_note:
                failures["seasonal forms"] = seasonal_note
            raise _no_fit("ETS", failures)
        aicc, label, spec, results = fits[0]
        filtering = dict(spec, initialization_method=initialization)
        params = np.asarray(results.params, dtype=np.float64)
        if initialization == "heuristic":  # keep the fit part's initial states, not ones recomputed from z[:t]
            model = results.model
            filtering.update(
                initialization_method="known",
                initial_level=model.initial_level,
                initial_trend=model.initial_trend,
                initial_seasonal=model.initial_seasonal,
            )
        # One filter pass over z (to the last origin or the fit cut) with the fitted parameters, then per
        # origin a simulation without errors from the states after z[:t]: statsmodels' anchor t - 1 (not
        # t, as its docstring reads; a test pins this against a model per origin). A model per origin
        # computes a Hessian each time: 20× slower for the same numbers.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            filtered = ETSModel(z, **filtering).smooth(params)
            no_errors = np.zeros((horizon, 1))
            forecasts = np.stack(
                [
                    np.asarray(
                        filtered.simulate(horizon, anchor=int(t) - 1, repetitions=1, random_errors=no_errors)
                    ).reshape(horizon)
                    for t in origins
                ]
            )
    parameters = dict(zip(results.model.param_names, map(float, params)))
    if initialization == "heuristic":
        parameters["initial_level"] = float(results.model.initial_level)
        if spec["trend"]:
            parameters["initial_trend"] = float(results.model.initial_trend)
        for i, s in enumerate(np.asarray(results.model.initial_seasonal)):
            parameters[f"initial_seasonal.{i}"] = float(s)
    parameters.update(scale.describe(), aicc=aicc)
    chosen = label + (f", season {season}" if spec["seasonal"] else "")
    chosen += ", heuristic initial states" if initialization == "heuristic" else ""
    if seasonal_note:
        chosen += f" (seasonal forms not tried: {seasonal_note})"
    return scale.inverse(forecasts), chosen, parameters


def _ets_parameter_count(spec: dict[str, Any], initialization: str) -> int:
    smoothing = 1 + (spec["trend"] is not None) + spec["damped_trend"] + (spec["seasonal"] is not None)
    states = 0 if initialization == "heuristic" else 1 + (spec["trend"] is not None) + (spec["seasonal_periods"] or 0)
    return smoothing + states + 1  # + σ²


# Seasonal ARIMA terms only up to this season: a seasonal AR or MA term puts m lags in the state,
# and each fit's cost grows with it (about 0.5 s for one (P, Q) = (0, 1) fit at m = 12 on 150 rows).
ARIMA_MAX_SEASON = 12
# forecast::nsdiffs: seasonal differencing when the STL seasonal strength exceeds 0.64.
SEASONAL_STRENGTH_THRESHOLD = 0.64
KPSS_ALPHA = 0.05


def _arima(values, fit_rows, origins, horizon, season, log):
    """ARIMA(p,d,q)(P,D,Q)[m] in the style of auto.arima, with a grid instead of its stepwise search.

    D ∈ {0, 1} by seasonal strength (for m ≥ 2 and a fit part of ≥ 3 seasons + a few rows), then
    d ∈ {0, 1, 2} by KPSS on the seasonally differenced series; (p, q) ∈ {0,1,2}² with (P, Q) = (0, 0)
    by AICc; then, for the best (p, q), the same without its mean/drift, and, for m ≤
    ``ARIMA_MAX_SEASON``, (P, Q) = (1, 0) and (0, 1). The seasonal difference ``w[s] = z[s] - z[s-m]``
    is taken here, not in the state space (statsmodels' full form puts m more states in every fit
    and was 3-5× slower), and undone on the forecasts: ``ẑ[t+h] = ŵ[t+h] + z[t+h-m]`` (``ẑ`` where
    ``t+h-m ≥ t``). The model is fitted on ``w / fit_scale``, ``fit_scale`` the spread of the fully
    differenced fit part.
    """
    from statsmodels.tsa.arima.model import ARIMA

    scale, z = _standardised(values, fit_rows, origins, log)
    differencing = season is not None and season >= 2 and fit_rows >= 3 * season + SEASONAL_EXTRA_ROWS
    seasonal = differencing and season <= ARIMA_MAX_SEASON  # seasonal AR/MA terms too
    notes = []
    if season is not None and season >= 2 and not differencing:
        notes.append(
            f"no seasonal part: the fit part has {fit_rows} rows, seasonal ARIMA with season {season} needs "
            f"{3 * season + SEASONAL_EXTRA_ROWS}"
        )
    elif differencing and not seasonal:
        notes.append(f"no seasonal AR/MA terms: season {season} > {ARIMA_MAX_SEASON}")
    seasonal_d = int(differencing and seasonal_strength(z[:fit_rows], season) > SEASONAL_STRENGTH_THRESHOLD)
    lag = season if seasonal_d else 0
    if seasonal_d and origins.min() <= lag:
        raise _Missing(
            f"origin {origins.min()} has {origins.min()} rows of history; the seasonal difference at "
            f"lag {lag} needs more than {lag}"
        )
    w = z[lag:] - z[:-lag] if lag else z
    d = kpss_differences(w[: fit_rows - lag])
    # fitted on w / fit_scale, the differenced series at unit spread: after a seasonal difference a
    # regular pattern leaves a tiny remainder on which the optimiser stops before converging
    spread = float(np.std(np.diff(w[: fit_rows - lag], n=d)))
    fit_scale = spread if spread > 0 else 1.0
    w = w / fit_scale
    fit_part = w[: fit_rows - lag]
    trend = {0: "c", 1: "t"}.get(d + seasonal_d, "n")  # a mean, or a drift once differenced, as auto.arima
    period = season if seasonal else 0
    shown_period = season if differencing else 0

    def fit(candidate):
        order, (sp, sq), trend_term = candidate
        return ARIMA(fit_part, order=order, seasonal_order=(sp, 0, sq, period), trend=trend_term).fit()

    def label(order, seasonal_terms, trend_term):
        text = f"ARIMA({order[0]},{order[1]},{order[2]})"
        if shown_period and (seasonal_d or any(seasonal_terms)):
            text += f"({seasonal_terms[0]},{seasonal_d},{seasonal_terms[1]})[{shown_period}]"
        return text + {"c": " with drift" if seasonal_d else " with mean", "t": " with drift", "n": ""}[trend_term]

    failures: dict[str, str] = {}

    def fittable(candidates):
        """The candidates whose AICc is defined: n > k + 1 (k: ARMA terms, mean/drift, σ²)."""
        kept = []
        for candidate in candidates:
            (p, _, q), (sp, sq), trend_term = candidate
            k = p + q + sp + sq + (trend_term != "n") + 1
            rows = len(fit_part) - d
            if rows <= k + 1:
                failures[label(*candidate)] = f"{k} parameters need more than {k + 1} rows, {rows} remain"
            else:
                kept.append((label(*candidate), candidate))
        return kept

    with threadpool_limits(1, user_api="blas"):  # tiny matrices: BLAS threads only spin-wait on a busy machine
        grid = [((p, d, q), (0, 0), trend) for p in range(3) for q in range(3)]
        fits, grid_failures = _fit_candidates(fittable(grid), fit)
        failures.update(grid_failures)
        if fits:
            best_order, _, best_trend = fits[0][2]
            extra = [(best_order, (0, 0), "n")] if trend != "n" else []
            if seasonal:
                extra += [(best_order, terms, best_trend) for terms in ((1, 0), (0, 1))]
            more, more_failures = _fit_candidates(fittable(extra), fit)
            fits = sorted(fits + more, key=lambda item: item[0])
            failures.update(more_failures)
        if not fits:
            raise _no_fit("ARIMA", failures)
        aicc, chosen, _candidate, results = fits[0]
        forecasts = np.empty((len(origins), horizon))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for row, t in enumerate(origins):
                forecasts[row] = np.asarray(results.apply(w[: t - lag]).forecast(horizon))
    forecasts *= fit_scale
    if lag:
        for h in range(horizon):  # undo w[s] = z[s] - z[s-m], step by step
            source = origins + h - lag
            forecasts[:, h] += np.where(
                source < origins, z[np.minimum(source, len(z) - 1)], forecasts[:, max(h - lag, 0)]
            )
    parameters = dict(zip(results.model.param_names, map(float, np.asarray(results.params))))
    parameters.update(scale.describe(), aicc=aicc, seasonal_difference=float(lag), fit_scale=fit_scale)
    if notes:
        chosen += " (" + "; ".join(notes) + ")"
    return scale.inverse(forecasts), chosen, parameters


def kpss_differences(z: np.ndarray, *, max_d: int = 2) -> int:
    """Number of first differences d ≤ ``max_d`` after which the KPSS test (level-stationary null,
    5%, ``⌊3·√n / 13⌋`` lags as forecast::ndiffs) no longer rejects stationarity."""
    from statsmodels.tsa.stattools import kpss

    d = 0
    x = np.asarray(z, dtype=np.float64)
    while d < max_d and len(x) > 3 and np.ptp(x) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # InterpolationWarning: the p-value lies beyond the table
            p_value = kpss(x, regression="c", nlags=max(1, int(3 * math.sqrt(len(x)) / 13)))[1]
        if p_value >= KPSS_ALPHA:
            break
        x = np.diff(x)
        d += 1
    return d


def seasonal_strength(z: np.ndarray, season: int) -> float:
    """``F_s = max(0, 1 - Var(R) / Var(S + R))`` of an STL decomposition (Wang, Smith & Hyndman 2006)."""
    from statsmodels.tsa.seasonal import STL

    parts = STL(np.asarray(z, dtype=np.float64), period=season, robust=True).fit()
    total = float(np.var(parts.seasonal + parts.resid))
    return 0.0 if total == 0 else max(0.0, 1.0 - float(np.var(parts.resid)) / total)


_FORECASTERS = {"naive": _naive, "seasonal_naive": _seasonal_naive, "ets": _ets, "arima": _arima}
