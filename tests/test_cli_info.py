"""`rnnlab info` prints versions and kernel paths; with --params, the family's parameter counts."""

from __future__ import annotations

from typer.testing import CliRunner

from rnnlab.cli import app
from rnnlab.layers import parameter_table


def test_info_lists_versions_and_kernel_paths():
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "kernel: lstm" in result.output and "_VF.lstm" in result.output


def test_info_params_prints_the_counts_side_by_side():
    result = CliRunner().invoke(app, ["info", "--params", "--input-size", "32", "--hidden-size", "128"])
    assert result.exit_code == 0, result.output
    # by hand: RNN 128·32 + 128·128 + 2·128 = 20,736; LSTM 4×; GRU 3×
    for count in ("20,736", "82,944", "62,208"):
        assert count in result.output
    assert "4.00" in result.output and "3.00" in result.output


def test_parameter_table_matches_the_formula_by_hand():
    rows = {row["layer"]: row for row in parameter_table(10, 20, num_layers=3)}
    per_gate_first = 20 * 10 + 20 * 20 + 2 * 20
    per_gate_next = 20 * 20 + 20 * 20 + 2 * 20
    assert rows["RNN"]["parameters"] == per_gate_first + 2 * per_gate_next
    assert rows["LSTM"]["parameters"] == 4 * rows["RNN"]["parameters"]
    assert rows["GRU"]["ratio_to_rnn"] == 3.0
    assert rows["LSTM"]["formula"] == "4·(H·I + H·H + 2H) + 2·4·(2·H·H + 2H)"
    assert rows["RNN"]["formula"] == "H·I + H·H + 2H + 2·(2·H·H + 2H)"
