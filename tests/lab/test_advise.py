"""The selection guide as rules, and the pick from the measured Pareto front."""

from __future__ import annotations

import itertools

import pytest
from lab_fixtures import forecast_results, make_cell, make_results
from typer.testing import CliRunner

from rnnlab.cli import app
from rnnlab.errors import ConfigError
from rnnlab.io import atomic_write_json
from rnnlab.lab.advise import Limits, advise, guide_rules


def results_at(length: int, rows: list[tuple[str, float, float, int]], **kwargs) -> dict:
    """Cells (model, accuracy, latency ms, parameters) at one length."""
    return make_results(
        [
            make_cell(model, length, value=value, latency_ms=latency, params=params, **kwargs)
            for model, value, latency, params in rows
        ]
    )


ROWS = [
    ("rnn", 0.60, 0.5, 900),
    ("lstm", 0.95, 2.0, 1000),
    ("gru", 0.94, 1.5, 1000),
    ("lstm+attn", 0.99, 3.0, 1100),
    ("tcn", 0.97, 4.0, 1000),
    ("transformer", 0.96, 5.0, 1200),
]


def brute_force_front(rows):
    """Pareto front by definition: no other row at least as good everywhere and better somewhere."""
    front = set()
    for model, value, latency, params in rows:
        dominated = any(
            v >= value and lat <= latency and p <= params and (v, lat, p) != (value, latency, params)
            for m, v, lat, p in rows
            if m != model
        )
        if not dominated:
            front.add(model)
    return front


def test_front_matches_its_definition():
    advice = advise(results_at(100, ROWS))
    # transformer is dominated by tcn (more accurate, faster, smaller); every other row trades something
    assert set(advice.front) == brute_force_front(ROWS) == {"rnn", "lstm", "gru", "lstm+attn", "tcn"}
    assert advice.pick == "lstm+attn"


@pytest.mark.parametrize("seed", range(5))
def test_front_matches_its_definition_on_random_rows(seed):
    import random

    rng = random.Random(seed)
    rows = [
        (m, round(rng.random(), 2), round(rng.uniform(0.1, 5), 1), rng.choice([900, 1000, 1100]))
        for m in ("rnn", "lstm", "gru", "lstm+attn", "tcn", "transformer")
    ]
    assert set(advise(results_at(100, rows)).front) == brute_force_front(rows)


def test_limits_exclude_and_say_why():
    advice = advise(results_at(100, ROWS), Limits(max_latency_ms=2.5))
    assert advice.pick == "lstm"  # lstm+attn (3.0 ms) is out; lstm is the most accurate left
    assert any("lstm+attn is ruled out by your limits: latency 3.00 ms > 2.5 ms" in r for r in advice.reasons)
    advice = advise(results_at(100, ROWS), Limits(max_params=950))
    assert advice.pick == "rnn"
    advice = advise(results_at(100, ROWS), Limits(min_accuracy=0.999))
    assert advice.pick is None and any("No measured model meets every limit" in r for r in advice.reasons)


def test_equally_accurate_models_go_to_the_faster():
    rows = [("lstm", 0.950, 2.0, 1000), ("gru", 0.946, 1.5, 1000)]  # within 1% of each other
    advice = advise(results_at(100, rows))
    assert advice.pick == "gru"
    assert any("within noise" in r for r in advice.reasons)


@pytest.mark.parametrize(
    "seq_len, applies",
    [
        (19, {"short"}),
        (20, {"medium"}),
        (100, {"medium"}),
        (101, {"long"}),
        (1000, {"long"}),
    ],
)
def test_length_rules_follow_the_guide(seq_len, applies):
    rules = guide_rules(seq_len, Limits())
    assert {rule.id for rule in rules if rule.applies} == applies


def test_resource_rules():
    rules = {rule.id: rule for rule in guide_rules(50, Limits(max_latency_ms=1, memory_gb=2), task="recall")}
    assert rules["tight"].applies and rules["tight"].models == ["gru"]
    assert rules["memory"].applies and rules["long-range"].applies
    assert not {r.id for r in guide_rules(50, Limits(memory_gb=8)) if r.applies} & {"memory", "tight"}


def test_rule_verdicts_use_the_measurement():
    advice = advise(results_at(1000, ROWS), Limits(seq_len=1000))
    long_rule = next(rule for rule in advice.rules if rule.id == "long")
    assert long_rule.verdict == "disagrees" and "0.950" in long_rule.because and "0.990" in long_rule.because

    def medium(gru_accuracy):
        rows = [("rnn", 0.60, 0.5, 900), ("lstm", 0.95, 2.0, 1000), ("gru", gru_accuracy, 1.5, 1000)]
        advice = advise(results_at(50, rows), Limits(seq_len=50))
        return advice.pick, next(rule for rule in advice.rules if rule.id == "medium")

    pick, rule = medium(0.946)  # within 1% of the LSTM's 0.95, and faster: the GRU is picked
    assert pick == "gru" and rule.verdict == "agrees" and "measured pick" in rule.because
    pick, rule = medium(0.90)  # clearly less accurate: the guide's "GRU first" is contradicted
    assert pick == "lstm" and rule.verdict == "disagrees" and "0.900 vs lstm's 0.950" in rule.because


def test_nearest_measured_length_is_used():
    cells = [make_cell(m, t, value=v) for (m, v), t in itertools.product([("rnn", 0.5), ("lstm", 0.9)], (10, 100))]
    advice = advise(make_results(cells), Limits(seq_len=60))
    assert advice.length_measured == 100
    assert any("nearest measured length is 100" in r for r in advice.reasons)


def test_accuracy_limit_on_an_error_metric_is_refused():
    results = make_results(
        [make_cell("lstm", None, value=1.8, metric="mae", higher=False, baselines={"naive_mae": 3.0})], task="forecast"
    )
    with pytest.raises(ConfigError, match="use --max-error"):
        advise(results, Limits(min_accuracy=0.9))
    assert advise(results, Limits(max_error=2.0)).pick == "lstm"


def test_advise_command(tmp_path):
    path = atomic_write_json(tmp_path / "results.json", results_at(100, ROWS))
    runner = CliRunner()
    result = runner.invoke(app, ["advise", str(path), "--max-latency-ms", "2.5", "--seq-len", "100"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert "[medium]" in text and "Recommendation: lstm —" in text
    result = runner.invoke(app, ["advise", str(tmp_path / "nothing.json")])
    assert result.exit_code == 2 and "no such results file" in " ".join(result.output.split())
    result = runner.invoke(app, ["advise", str(path), "--json"])
    assert '"pick": "lstm+attn"' in result.output


def test_a_latency_timed_on_a_busy_machine_does_not_rule_a_model_out():
    results = results_at(100, ROWS)
    for cell in results["cells"]:
        if cell["model"] == "lstm+attn":  # 3.0 ms, but timed while other processes held the CPU
            cell["cost"]["timing_load"] = {"cpu_share": 0.3, "loadavg_per_core": 2.5, "contended": True}
    from rnnlab.lab.results import summarise

    results["summary"] = summarise(results["cells"])
    advice = advise(results, Limits(max_latency_ms=2.5))
    assert advice.pick == "lstm+attn"  # not ruled out on a flagged figure
    assert any(
        "lstm+attn's latency 3.00 ms > 2.5 ms was timed while other processes held the CPU" in r for r in advice.reasons
    )
    assert not any("lstm+attn is ruled out" in r for r in advice.reasons)


def test_a_forecasts_pick_is_over_every_lookback_not_the_longest():
    rows = [("lstm", 24, 6.1), ("gru", 24, 6.4), ("lstm", 48, 6.8), ("gru", 48, 6.6)]
    advice = advise(forecast_results(rows))
    assert advice.pick == "lstm" and advice.length_measured == 24  # the shorter lookback scored better
    assert advise(forecast_results(rows), Limits(seq_len=48)).pick == "gru"  # a lookback asked for is kept
    tied = [("lstm", 24, 6.1), ("lstm", 48, 6.1)]
    assert advise(forecast_results(tied)).length_measured == 24  # a tie goes to the cheaper lookback
