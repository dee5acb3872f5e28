"""The seeds' claims: each verdict follows from the numbers, and "not measured" says why."""

from __future__ import annotations

import pytest
from lab_fixtures import long_range_study, make_cell, make_probe, make_results

from rnnlab.lab.claims import check_claims


def verdicts(results: dict) -> dict[str, dict]:
    return {claim["id"]: claim for claim in results["claims"]}


def test_every_claim_of_the_spec_is_checked(study):
    ids = set(verdicts(study))
    assert ids == {
        "rnn-short-memory",
        "long-sequence-1000",
        "vanishing-gradient",
        "parameter-count",
        "lstm-step-cost",
        "gru-train-speed",
        "gru-inference-speed",
        "lstm-converges-faster",
        "traffic-forecast",
        "challengers-train-faster",
        "challengers-long-sequences",
        "small-data-small-machines",
    }


def test_collapse_at_1000_holds_when_lstm_keeps_its_accuracy(study):
    claim = verdicts(study)["long-sequence-1000"]
    assert claim["verdict"] == "holds"
    # LSTM 0.999 → 0.969 on seeds' means (0.999, 0.997 at T=10): a 3.0% loss, under 5%
    assert claim["figures"]["lstm_drop"] == pytest.approx((0.999 - 0.969) / 0.999, abs=1e-3)
    assert "3.0%" in claim["why"]


def test_collapse_claim_fails_when_the_lstm_loses_more_than_five_percent():
    claim = verdicts(long_range_study(lstm_long=0.90))["long-sequence-1000"]
    assert claim["verdict"] == "does not hold"
    assert "0.900" in claim["why"] or "0.899" in claim["why"]


def test_collapse_claim_fails_when_the_rnn_does_not_collapse():
    claim = verdicts(long_range_study(rnn_long=0.6))["long-sequence-1000"]
    assert claim["verdict"] == "does not hold" and "did not collapse" in claim["why"]


def test_collapse_claim_is_not_measured_below_1000_and_says_how_to_measure_it():
    cells = [
        make_cell(m, t, value=v)
        for m, t, v in [("rnn", 10, 1.0), ("rnn", 100, 0.2), ("lstm", 10, 1.0), ("lstm", 100, 0.99)]
    ]
    claim = verdicts(make_results(cells))["long-sequence-1000"]
    assert claim["verdict"] == "not measured"
    assert "longest length measured for both is 100" in claim["why"] and "standard" in claim["why"]
    assert "0.200" in claim["measured"]  # what was measured is still shown


def test_rnn_short_memory_fails_when_the_rnn_bridges_fifty_steps():
    cells = [make_cell("rnn", 10, value=1.0), make_cell("rnn", 50, value=0.95)]
    claim = verdicts(make_results(cells))["rnn-short-memory"]
    assert claim["verdict"] == "does not hold" and "bridges 50 steps" in claim["why"]


def test_claims_about_other_tasks_are_not_measured_with_the_command_that_would():
    claim = verdicts(long_range_study())["traffic-forecast"]
    assert claim["verdict"] == "not measured" and "--task forecast --data traffic" in claim["why"]


def test_traffic_case_checks_the_ordering_of_the_maes():
    def forecast(rnn, lstm, gru):
        cells = [
            make_cell(m, None, value=v, metric="mae", higher=False, baselines={"naive_mae": 3.0}, epochs_to_target=None)
            for m, v in (("rnn", rnn), ("lstm", lstm), ("gru", gru))
        ]
        return verdicts(make_results(cells, task="forecast", data="traffic"))["traffic-forecast"]

    assert forecast(2.3, 1.8, 1.9)["verdict"] == "holds"
    failing = forecast(1.7, 1.8, 1.9)
    assert failing["verdict"] == "does not hold" and "RNN 1.700" in failing["measured"]


def test_vanishing_gradient_verdict_follows_the_ratios():
    def flow(rnn_ratio, cell_ratio):
        cells = [
            make_cell("rnn", 100, flow_ratio=rnn_ratio),
            make_cell("lstm", 100, flow_ratio=0.1, cell_ratio=cell_ratio),
        ]
        return verdicts(make_results(cells))["vanishing-gradient"]

    assert flow(1e-9, 0.2)["verdict"] == "holds"
    assert flow(1e-9, 0.2)["figures"]["rnn"]["init"]["h"] == pytest.approx(1e-9, rel=1e-6)
    assert flow(1e-9, 1e-6)["verdict"] == "does not hold"  # the cell state's gradient vanished too
    assert flow(0.5, 0.2)["verdict"] == "does not hold"  # the RNN's did not
    assert "exploded" in flow(1e6, 0.2)["why"]


def test_cost_claims_read_the_layer_probe():
    def cost(**probe):
        return verdicts(make_results([make_cell("rnn", 10)], probe=make_probe(**probe)))

    assert cost(rnn_ms=10, lstm_ms=14)["lstm-step-cost"]["verdict"] == "holds"
    assert cost(rnn_ms=10, lstm_ms=20)["lstm-step-cost"]["verdict"] == "does not hold"
    slower = cost(lstm_ms=10, gru_ms=14)["gru-train-speed"]
    assert slower["verdict"] == "does not hold" and "less time" in slower["measured"]
    assert cost(lstm_infer=4.0, gru_infer=3.3)["gru-inference-speed"]["verdict"] == "holds"
    assert verdicts(make_results([make_cell("rnn", 10)]))["lstm-step-cost"]["verdict"] == "not measured"


def test_convergence_compares_epochs_to_target_per_length():
    cells = [
        make_cell("rnn", 10, epochs_to_target=2),
        make_cell("lstm", 10, epochs_to_target=5),
        make_cell("rnn", 50, epochs_to_target=None, value=0.3),
        make_cell("lstm", 50, epochs_to_target=4),
        make_cell("rnn", 100, epochs_to_target=9),
        make_cell("lstm", 100, epochs_to_target=12),
    ]
    claim = verdicts(make_results(cells))["lstm-converges-faster"]
    assert claim["verdict"] == "does not hold"  # fewer epochs at 1 of 3 lengths
    assert claim["figures"] == {"compared_lengths": 3, "lstm_fewer": 1}


def test_challengers_must_both_match_the_lstm():
    cells = [
        make_cell("lstm", 300, value=0.95),
        make_cell("tcn", 300, value=0.96),
        make_cell("transformer", 300, value=0.5),
    ]
    claim = verdicts(make_results(cells))["challengers-long-sequences"]
    assert claim["verdict"] == "does not hold" and claim["why"].startswith("tcn within")


def test_check_claims_runs_on_an_empty_run():
    results = make_results([], models=["rnn"], lengths=[10], seeds=[0])
    assert all(claim.verdict == "not measured" for claim in check_claims(results))


def test_collapse_claim_says_when_the_time_cap_cut_a_rising_lstm_short():
    cells = [
        make_cell("rnn", 10, value=1.0),
        make_cell("lstm", 10, value=1.0),
        make_cell("rnn", 1000, value=0.12),
        make_cell("lstm", 1000, value=0.6, epochs=2),
    ]
    cells[-1]["stopped"] = "time budget"  # its history rises 0.2 → 0.4 over the two epochs
    claim = verdicts(make_results(cells))["long-sequence-1000"]
    assert claim["verdict"] == "does not hold"
    assert "stopped 1 of the LSTM's T=1000 runs while validation accuracy was still rising" in claim["why"]
    assert "seed 0: 0.200 → 0.400" in claim["why"]


def test_every_claim_cites_its_article_by_title(study):
    from rnnlab.lab.claims import ARTICLES

    for claim in check_claims(study):
        assert any(f"“{title}”" in claim.source for title in ARTICLES.values()), claim.source
        assert "seed 0" not in claim.source and "SPEC" not in claim.source
