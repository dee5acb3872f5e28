"""The report: one self-contained page, every figure embedded and written, every claim and number shown."""

from __future__ import annotations

import base64
import html
import io
import re

import pytest
from lab_fixtures import forecast_results, long_range_study, make_cell, make_results
from matplotlib.image import imread

from rnnlab.lab.report import render_html, write_report

FIGURES = (
    "accuracy_vs_length",
    "training_curves",
    "gradient_flow",
    "gates",
    "attention",
    "cost_vs_accuracy",
    "layer_cost",
)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The constructed study's report, written once for the tests that read the page and its files."""
    folder = tmp_path_factory.mktemp("report")
    return write_report(long_range_study(), folder).read_text(encoding="utf-8"), folder


def test_report_embeds_every_figure_and_writes_it_as_png(written):
    page, tmp_path = written
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(FIGURES)
    for name in FIGURES:
        assert (tmp_path / "figures" / f"{name}.png").is_file()
    for data in embedded:
        image = imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert image.shape[0] > 200 and image.shape[1] > 400
    files = sorted((tmp_path / "figures").glob("*.png"))
    assert [path.stem for path in files] == sorted(FIGURES)
    # the PNG files are the embedded bytes
    assert sorted(base64.b64encode(path.read_bytes()).decode() for path in files) == sorted(embedded)


def test_report_is_self_contained(written):
    page, _ = written
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page


def test_report_shows_every_claim_with_its_verdict_and_the_recommendation(study):
    page = html.unescape(render_html(study, []))
    for claim in study["claims"]:
        assert claim["claim"] in page and claim["why"] in page
    assert page.count('class="verdict holds"') >= 1
    assert "Recommendation: tcn" in page
    # the recommendation comes last
    assert page.index("The seeds' claims, measured") < page.index("Every number") < page.index("Recommendation:")


def test_report_table_holds_every_summary_number(study):
    page = html.unescape(render_html(study, []))
    for row in study["summary"]:
        assert f"{row['metric_mean']:.4f}" in page
        assert f"{row['cost']['train_ms_per_step']:.2f}" in page
        assert f"{row['num_parameters']:,}" in page


def test_partial_report_says_how_to_finish(tmp_path):
    results = make_results(
        [make_cell("rnn", 10), make_cell("lstm", 10)], models=["rnn", "lstm", "gru"], lengths=[10, 100], seeds=[0]
    )
    page = html.unescape(write_report(results, tmp_path).read_text(encoding="utf-8"))
    assert "partial: 2 of 6 cells" in page and "Re-run the same command" in page


def test_report_of_a_run_with_no_finished_cell(tmp_path):
    results = make_results([], models=["rnn"], lengths=[10], seeds=[0])
    page = write_report(results, tmp_path).read_text(encoding="utf-8")
    assert "No cell has finished yet" in page and "<img" not in page


def test_figures_have_titles_and_axis_labels(study):
    from rnnlab.lab import report

    for draw in (report._accuracy_against_length, report._gradient_flow, report._cost_against_accuracy):
        # draw again and inspect the matplotlib objects rather than pixels
        captured: list = []
        original = report._png

        def capture(figure, captured=captured):
            captured.append(figure)
            return b""

        report._png = capture
        try:
            draw(study)
        finally:
            report._png = original
        (figure,) = captured
        for axes in figure.axes:
            if axes.get_label() == "<colorbar>":
                continue
            assert axes.get_title() and axes.get_xlabel() and axes.get_ylabel()


def test_report_of_a_forecast_on_the_datas_own_length(tmp_path):
    cells = [
        make_cell(
            model,
            None,
            value=mae,
            metric="mae",
            higher=False,
            baselines={"naive_mae": 3.0},
            epochs_to_target=2,
            flow_ratio=0.01 if model != "tcn" else None,
        )
        for model, mae in (("rnn", 2.3), ("lstm", 1.8), ("gru", 1.9), ("tcn", 2.0))
    ]
    results = make_results(cells, task="forecast", data="traffic")
    page = html.unescape(write_report(results, tmp_path).read_text(encoding="utf-8"))
    assert "Test mae of each model at the data's own length" in page
    assert (tmp_path / "figures" / "accuracy_vs_length.png").is_file()
    # the seeds' traffic case is measured on forecasts
    assert "RNN 2.300, LSTM 1.800 (0.78× RNN; theirs 0.78×), GRU 1.900" in page
    assert "Recommendation: lstm" in page


def test_report_states_the_tcns_receptive_field_beside_each_length():
    cells = [make_cell("tcn", 100), make_cell("tcn", 1000), make_cell("lstm", 100)]
    cells[0]["receptive_field"], cells[1]["receptive_field"], cells[2]["receptive_field"] = 127, 1023, None
    page = html.unescape(render_html(make_results(cells), []))
    assert "Receptive field (steps one output sees): tcn at T=100: 127; tcn at T=1000: 1023." in page
    cells[1]["receptive_field"] = 511
    assert "tcn at T=1000: 511 (short of T)" in html.unescape(render_html(make_results(cells), []))


def test_a_forecast_comparison_is_framed_in_forecasting_terms_with_every_baseline_drawn():
    from rnnlab.lab.report import BASELINE_STYLES, drawn_baselines, is_forecast

    results = forecast_results([("lstm", 24, 6.1), ("gru", 24, 6.4), ("lstm", 48, 6.8), ("gru", 48, 6.6)])
    assert is_forecast(results)
    drawn = drawn_baselines(results["task"], "mae")
    assert drawn == [("naive", 16.3), ("seasonal naive", 7.77), ("ets", 7.1), ("arima", 6.9)]
    assert len(BASELINE_STYLES) >= len(drawn)
    from rnnlab.lab.report import _accuracy_against_length

    figure = _accuracy_against_length(results)
    assert figure is not None
    assert figure.alt == "mae against lookback" and "at each lookback" in figure.caption
    assert "Grey lines: the baselines on the same test split (naive, seasonal naive, ets, arima)." in figure.caption
    page = html.unescape(render_html(results, [figure]))
    assert "mae against lookback" in page
