"""The classical baselines against values worked out by hand and recursions written out here."""

import json
import math
import warnings

import numpy as np
import pytest

from rnnlab.data import baselines
from rnnlab.data.baselines import (
    dtw_reference,
    forecast_baselines,
    kpss_differences,
    nearest_neighbour_accuracy,
    nearest_neighbours,
    series_distances,
)
from rnnlab.errors import ConfigError, DataError

# ----------------------------------------------------------------------------------------------
# 1-nearest neighbour


def test_euclidean_nearest_neighbour_by_hand():
    train = [np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0]), np.array([3.0, 3.0, 3.0])]
    test = [np.array([0.4, 0.4, 0.6]), np.array([2.0, 2.0, 3.0])]
    # q0: to c0 .16+.16+.36 = .68, to c1 .36+.36+.16 = .88, to c2 6.76+6.76+5.76 → c0
    # q1: to c0 4+4+9 = 17, to c1 1+1+4 = 6, to c2 1+1+0 = 2 → c2
    assert nearest_neighbours(train, test).tolist() == [0, 2]
    assert nearest_neighbour_accuracy(train, ["a", "b", "c"], test, ["a", "b"]) == 0.5
    distances = series_distances(test, train, distance="euclidean")
    np.testing.assert_allclose(distances[0], np.sqrt([0.68, 0.88, 6.76 + 6.76 + 5.76]))


def test_euclidean_resamples_to_the_longest_training_length():
    train = [np.array([0.0, 2.0, 4.0]), np.array([4.0, 4.0, 4.0, 4.0, 4.0])]  # the longest: 5 steps
    test = [np.array([0.0, 4.0])]
    # resampled to 5 steps: c0 → [0, 1, 2, 3, 4], q → [0, 1, 2, 3, 4]; c1 stays
    distances = series_distances(test, train, distance="euclidean")
    np.testing.assert_allclose(distances, [[0.0, math.sqrt(16 + 9 + 4 + 1 + 0)]])
    assert nearest_neighbours(train, test).tolist() == [0]


def test_ties_go_to_the_first_training_series():
    above, below = np.array([[1.0], [1.0]]), np.array([[-1.0], [-1.0]])
    query = [np.zeros((2, 1))]
    for distance in ("euclidean", "dtw"):
        assert nearest_neighbours([above, below], query, distance=distance, threads=1).tolist() == [0]
        assert nearest_neighbours([below, above], query, distance=distance, threads=1).tolist() == [0]
        assert nearest_neighbours([above, below, above], [above], distance=distance, threads=1).tolist() == [0]
    # DTW 0 to both: [0, 1, 1] warps onto [0, 0, 1]; the Euclidean-nearest (index 1) must not win the tie
    warped, exact = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0])
    assert nearest_neighbours([warped, exact], [exact], distance="dtw", threads=1).tolist() == [0]


def test_dtw_matches_a_hand_filled_table_on_unequal_lengths():
    query, reference = [0.0, 2.0, 2.0, 3.0], [0.0, 2.0, 1.0]
    # cost (q_i - c_j)²        D (cumulative)
    #   i=0: 0 4 1             0  4  5
    #   i=1: 4 0 1             4  0  1
    #   i=2: 4 0 1             8  0  1
    #   i=3: 9 1 4            17  1  4      → DTW = √4 = 2
    assert dtw_reference(query, reference) == 2.0
    assert series_distances([np.array(query)], [np.array(reference)], threads=1)[0, 0] == pytest.approx(2.0)


def test_sakoe_chiba_window_by_hand():
    query, reference = [0.0, 0.0, 0.0, 3.0], [0.0, 3.0, 3.0, 3.0]
    # full: q's three zeros stay on c0, q3 takes c1..c3 → 0. radius 1 (|i-j| ≤ 1):
    #   D: i=0: 0 9 · ·   i=1: 0 9 18 ·   i=2: · 9 18 27   i=3: · · 9 9   → √9 = 3
    # radius 2 reaches (2, 0) → 0 again; radius 0 is the Euclidean distance √(0+9+9+0).
    expected = {None: 0.0, 2: 0.0, 1: 3.0, 0: math.sqrt(18)}
    for window, value in expected.items():
        assert dtw_reference(query, reference, window=window) == pytest.approx(value)
        fast = series_distances([np.array(query)], [np.array(reference)], window=window, threads=1)[0, 0]
        assert fast == pytest.approx(value), window


def test_dependent_multivariate_dtw_by_hand():
    query = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    reference = np.array([[1.0, 0.0], [0.0, 1.0]])
    # cost Σ_f (q_if - c_jf)²: i=0: 2 0, i=1: 0 2, i=2: 0 2
    # D: i=0: 2 2, i=1: 2 4, i=2: 2 4 → √4 = 2 (one path for both channels)
    assert dtw_reference(query, reference) == 2.0
    assert series_distances([query], [reference], threads=1)[0, 0] == pytest.approx(2.0)


def random_series(rng, count, channels, lengths=(5, 14)):
    return [rng.normal(size=(int(rng.integers(*lengths)), channels)).cumsum(axis=0) for _ in range(count)]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("window", [None, 2])
def test_pruned_search_finds_the_reference_nearest_neighbour(channels, window):
    rng = np.random.default_rng(channels * 10 + (window or 0))
    train = random_series(rng, 14, channels)
    train += [train[3].copy(), train[7] + 1e-12]  # an exact tie (index 3 first) and a near one
    test = [*random_series(rng, 6, channels), train[3].copy(), train[7].copy()]
    reference = np.array([[dtw_reference(q, c, window=window) for c in train] for q in test])
    np.testing.assert_allclose(series_distances(test, train, window=window, threads=1), reference, rtol=1e-10)
    found = nearest_neighbours(train, test, distance="dtw", window=window, threads=1)
    assert found.tolist() == np.argmin(reference, axis=1).tolist()
    assert found[-2] == 3


def test_lower_bounds_never_exceed_the_distance():
    rng = np.random.default_rng(5)
    for offset in (0.0, 1e3):  # a large offset makes the prefix-sum formulas cancel
        train = [x + offset for x in random_series(rng, 10, 2, lengths=(1, 9))]
        envelope = baselines._Envelopes(train)
        for query in random_series(rng, 5, 2, lengths=(1, 9)):
            query = query + offset
            bounds = envelope.lower_bounds(query)
            exact = np.array([dtw_reference(query, c) ** 2 for c in train])
            assert np.all(bounds <= exact * (1 + 1e-12) + 1e-9), (bounds - exact).max()
            assert bounds.max() > 0  # the bounds do bound something


def test_znormalise_matches_a_scaled_copy():
    train = [np.array([5.0, 15.0, 5.0, 15.0]), np.array([0.0, 0.0, 1.0, 1.0])]
    test = [np.array([0.0, 1.0, 0.0, 1.0])]
    # raw: to c0 25+196+25+196, to c1 0+1+1+0 → c1; z-normalised, q and c0 are both [-1, 1, -1, 1] → c0
    for distance in ("euclidean", "dtw"):
        assert nearest_neighbours(train, test, distance=distance, threads=1).tolist() == [1]
        assert nearest_neighbours(train, test, distance=distance, znormalise=True, threads=1).tolist() == [0]


def test_classification_inputs_are_checked():
    good = [np.zeros((3, 2))]
    with pytest.raises(DataError, match=r"test_inputs\[0\] has 1 channels; train_inputs\[0\] has 2"):
        nearest_neighbours(good, [np.zeros(3)])
    bad = np.zeros((4, 2))
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match=r"train_inputs\[1\] step 2 channel 1: expected a finite number, got nan"):
        nearest_neighbours([*good, bad], good)
    with pytest.raises(ConfigError, match="did you mean 'dtw'"):
        nearest_neighbours(good, good, distance="dwt")
    with pytest.raises(ConfigError, match="window applies to distance 'dtw'"):
        nearest_neighbours(good, good, window=3)
    with pytest.raises(DataError, match="test_labels has 2 labels for 1 test series"):
        nearest_neighbour_accuracy(good, ["a"], good, ["a", "b"])


# ----------------------------------------------------------------------------------------------
# forecasting


SEASONAL = np.array([10.0, 20.0, 30.0, 11.0, 21.0, 31.0, 12.0, 22.0])


def test_naive_and_seasonal_naive_by_hand():
    result = forecast_baselines(
        SEASONAL, fit_rows=6, origins=[4, 5], horizon=3, season=3, methods=("naive", "seasonal_naive")
    )
    # naive: origin 4 → v[3] = 11 against [21, 31, 12]; origin 5 → v[4] = 21 against [31, 12, 22]
    np.testing.assert_array_equal(result.forecasts["naive"], [[11, 11, 11], [21, 21, 21]])
    assert result.mae["naive"] == pytest.approx((10 + 20 + 1 + 10 + 9 + 1) / 6)
    # seasonal naive, m = 3: ŷ[t+h] = v[t+h-3] → [20, 30, 11] and [30, 11, 21], each 1 below the truth
    np.testing.assert_array_equal(result.forecasts["seasonal_naive"], [[20, 30, 11], [30, 11, 21]])
    assert result.mae["seasonal_naive"] == pytest.approx(1.0)
    # m = 2, three steps: ŷ[4] = v[2], ŷ[5] = v[3], ŷ[6] = v[6 - 2·2] = v[2]
    two = forecast_baselines(SEASONAL, fit_rows=6, origins=[4], horizon=3, season=2, methods=("seasonal_naive",))
    np.testing.assert_array_equal(two.forecasts["seasonal_naive"], [[30, 11, 30]])


def test_seasonal_naive_is_missing_with_a_reason():
    none = forecast_baselines(SEASONAL, fit_rows=6, origins=[4], horizon=2, methods=("seasonal_naive",))
    assert none.mae == {"seasonal_naive": None} and none.reasons["seasonal_naive"] == "no season given"
    early = forecast_baselines(SEASONAL, fit_rows=6, origins=[2, 4], horizon=2, season=3, methods=("seasonal_naive",))
    assert early.reasons["seasonal_naive"] == "origin 2 has 2 rows of history; seasonal naive with season 3 needs 3"


def noisy_level(seed=0, rows=60):
    rng = np.random.default_rng(seed)
    return 10 + np.cumsum(rng.normal(scale=0.5, size=rows)) + rng.normal(scale=1.0, size=rows)


@pytest.mark.parametrize("log", [False, True])
def test_ets_simple_exponential_smoothing_follows_its_recursion(log):
    level = noisy_level()
    values = np.exp(level / 5) if log else level
    origins = np.arange(30, 57)  # in-sample origins too: the filter runs from the start every time
    result = forecast_baselines(values, fit_rows=50, origins=origins, horizon=4, log=log, methods=("ets",))
    assert result.chosen["ets"] == "ETS(A,N,N)"
    p = result.parameters["ets"]
    g = np.log(values) if log else values
    z = (g - p["scale_mean"]) / p["scale_std"]
    alpha, level_now = p["smoothing_level"], p["initial_level"]
    expected = {}
    for t in range(int(origins.max())):  # l[t] = l[t-1] + α (z[t] - l[t-1]); ẑ[t+1+h] = l[t]
        level_now = level_now + alpha * (z[t] - level_now)
        expected[t + 1] = level_now
    forecast = np.array([[expected[t]] * 4 for t in origins]) * p["scale_std"] + p["scale_mean"]
    forecast = np.exp(forecast) if log else forecast
    np.testing.assert_allclose(result.forecasts["ets"], forecast, rtol=1e-9)
    truth = values[origins[:, None] + np.arange(4)]
    assert result.mae["ets"] == pytest.approx(np.abs(forecast - truth).mean())


def seasonal_series(season, rows, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(rows)
    return 50 + 0.05 * steps + 5 * np.sin(2 * np.pi * steps / season) + rng.normal(scale=0.5, size=rows)


@pytest.mark.parametrize("season, rows, fit_rows", [(4, 40, 30), (26, 84, 57)])  # 26 > 24: heuristic states
def test_ets_one_filter_pass_equals_a_model_per_origin(season, rows, fit_rows):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    values = seasonal_series(season, rows=rows)
    horizon = 3
    origins = np.arange(2 * season, len(values) - horizon + 1, 3)  # statsmodels needs 2 seasons per model
    result = forecast_baselines(
        values, fit_rows=fit_rows, origins=origins, horizon=horizon, season=season, methods=("ets",)
    )
    p = result.parameters["ets"]
    assert "season" in result.chosen["ets"] and "initial_seasonal.0" in p, result.chosen
    spec = {
        "error": "add",
        "trend": "add" if "initial_trend" in p else None,
        "damped_trend": "damping_trend" in p,
        "seasonal": "add",
        "seasonal_periods": season,
    }
    initial = {
        "initialization_method": "known",
        "initial_level": p["initial_level"],
        "initial_trend": p.get("initial_trend"),
        "initial_seasonal": np.array([p[f"initial_seasonal.{i}"] for i in range(season)]),
    }
    smoothing = [
        p[name] for name in ("smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend") if name in p
    ]
    z = (values - p["scale_mean"]) / p["scale_std"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if season <= baselines.ETS_ESTIMATED_MAX_SEASON:  # estimated states: statsmodels' own order of them
            fitted = ETSModel(z[:fit_rows], initialization_method="estimated", **spec).fit(disp=False)
            per_origin = [
                ETSModel(z[:t], initialization_method="estimated", **spec).smooth(fitted.params) for t in origins
            ]
        else:
            per_origin = [ETSModel(z[:t], **initial, **spec).smooth(smoothing) for t in origins]
        expected = np.stack([np.asarray(r.forecast(horizon)) for r in per_origin])
    np.testing.assert_allclose(result.forecasts["ets"], expected * p["scale_std"] + p["scale_mean"], rtol=1e-10)


def ar1_series(seed=0, rows=200, mean=50.0, phi=0.7):
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=rows)
    values = np.empty(rows)
    values[0] = mean + noise[0]
    for t in range(1, rows):
        values[t] = mean + phi * (values[t - 1] - mean) + noise[t]
    return values


def test_arima_picks_ar1_and_forecasts_by_its_recursion():
    values = ar1_series()
    origins = np.arange(170, 196)
    result = forecast_baselines(values, fit_rows=170, origins=origins, horizon=5, methods=("arima",))
    assert result.chosen["arima"].startswith("ARIMA(1,0,0)"), result.chosen
    p = result.parameters["arima"]
    assert p["ar.L1"] == pytest.approx(0.7, abs=0.1)
    z = (values - p["scale_mean"]) / p["scale_std"]
    mean = p.get("const", 0.0) * p["fit_scale"]  # fitted on z / fit_scale
    steps = np.arange(1, 6)[None, :]  # ẑ[t+h] = μ + φ^(h+1) (z[t-1] - μ)
    expected = mean + p["ar.L1"] ** steps * (z[origins - 1][:, None] - mean)
    np.testing.assert_allclose(result.forecasts["arima"], expected * p["scale_std"] + p["scale_mean"], rtol=1e-8)


def test_seasonal_difference_is_undone_on_the_forecasts():
    # a pure seasonal pattern: w = z[s] - z[s-4] is white noise-free zero plus noise, so the
    # forecasts must repeat the last season (D = 1, ARIMA(0,0,0)(0,1,0)[4]: ẑ[t+h] = z[t+h-4·(⌊h/4⌋+1)])
    rng = np.random.default_rng(2)
    values = np.tile([10.0, 30.0, 20.0, 40.0], 15) + rng.normal(scale=0.01, size=60)
    origins = np.array([50, 53])
    result = forecast_baselines(
        values, fit_rows=48, origins=origins, horizon=6, season=4, methods=("seasonal_naive", "arima")
    )
    assert result.parameters["arima"]["seasonal_difference"] == 4
    np.testing.assert_allclose(result.forecasts["arima"], result.forecasts["seasonal_naive"], atol=0.05)


def test_kpss_counts_the_differences():
    rng = np.random.default_rng(1)
    assert kpss_differences(rng.normal(size=150)) == 0
    assert kpss_differences(np.cumsum(rng.normal(size=150))) == 1
    assert kpss_differences(np.cumsum(np.cumsum(rng.normal(size=150)))) == 2


def test_too_short_for_the_season_falls_back_and_says_so():
    values = noisy_level(rows=30)
    result = forecast_baselines(values, fit_rows=20, origins=[20, 24], horizon=3, season=12)
    assert result.chosen["ets"].endswith(
        "(seasonal forms not tried: the fit part has 20 rows, a seasonal ETS with "
        "season 12 needs at least 2 seasons + 3 rows (27))"
    )
    assert result.chosen["arima"].endswith(
        "(no seasonal part: the fit part has 20 rows, seasonal ARIMA with season 12 needs 39)"
    )
    assert result.mae["ets"] is not None and result.mae["arima"] is not None
    assert json.loads(json.dumps(result.to_json()))["mae"] == result.mae


def test_unfittable_methods_are_missing_with_reasons():
    short = forecast_baselines(noisy_level(rows=6), fit_rows=4, origins=[4], horizon=2, season=12)
    assert short.mae["ets"] is None and short.forecasts["ets"] is None
    assert short.reasons["ets"].startswith(
        "no ETS form could be fitted: ETS(A,N,N): 3 parameters need more than 4 rows, the fit part has 4"
    )
    assert short.reasons["seasonal_naive"] == "origin 4 has 4 rows of history; seasonal naive with season 12 needs 12"
    constant = forecast_baselines(np.full(30, 5.0), fit_rows=25, origins=[25, 26], horizon=3)
    assert constant.mae["naive"] == 0.0
    for name in ("ets", "arima"):
        assert constant.mae[name] is None
        assert constant.reasons[name].startswith("the fit part is constant (5.0 in all 25 rows)")
    with_zero = noisy_level(rows=30)
    with_zero[3] = 0.0
    logged = forecast_baselines(with_zero, fit_rows=25, origins=[25], horizon=3, log=True, methods=("naive", "ets"))
    assert logged.mae["naive"] is not None
    assert logged.reasons["ets"] == "log transform needs positive values; row 3 is 0.0"


def test_a_fit_that_does_not_converge_is_missing_with_its_warning(monkeypatch):
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    original = ETSModel.fit

    def failing_fit(self, *args, **kwargs):
        results = original(self, *args, **kwargs)
        warnings.warn("the optimiser gave up here", ConvergenceWarning, stacklevel=2)
        results.mle_retvals["converged"] = False
        return results

    monkeypatch.setattr(ETSModel, "fit", failing_fit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak out of the scoped recording
        result = forecast_baselines(noisy_level(rows=30), fit_rows=25, origins=[25], horizon=3, methods=("ets",))
    assert result.mae["ets"] is None
    assert result.reasons["ets"] == (
        "no ETS form could be fitted: ETS(A,N,N), ETS(A,A,N), ETS(A,Ad,N): the "
        "optimiser did not converge (the optimiser gave up here)"
    )


def test_forecast_inputs_are_checked():
    values = noisy_level(rows=20)
    with pytest.raises(ConfigError, match=r"origins\[1\] = 18: an origin t forecasts values\[t : t\+3\] .* \[1, 17\]"):
        forecast_baselines(values, fit_rows=10, origins=[12, 18], horizon=3)
    broken = values.copy()
    broken[7] = np.inf
    with pytest.raises(DataError, match="values row 7: expected a finite number, got inf"):
        forecast_baselines(broken, fit_rows=10, origins=[12], horizon=3)
    with pytest.raises(ConfigError, match="did you mean 'arima'"):
        forecast_baselines(values, fit_rows=10, origins=[12], horizon=3, methods=("arma",))
    with pytest.raises(ConfigError, match="fit_rows must be a whole number in"):
        forecast_baselines(values, fit_rows=30, origins=[12], horizon=3)
