"""TCN: the receptive field formula against a measurement, and levels chosen to cover the task."""

from __future__ import annotations

import warnings

import pytest
import torch
from model_helpers import SPECS

from rnnlab.errors import ConfigError
from rnnlab.models import build_model, receptive_field
from rnnlab.models.tcn import TCNEncoder, choose_levels


def measured_receptive_field(encoder: TCNEncoder, input_size: int, seq_len: int) -> int:
    """How many input steps the last output depends on: the span of nonzero ∂y_T/∂x_t."""
    x = torch.randn(8, seq_len, input_size, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="is shorter than the sequence length"):  # T > field, by design
        encoder(x).steps[:, -1].sum().backward()
    reached = (x.grad.abs().sum(dim=(0, 2)) > 0).nonzero().flatten()
    assert reached.max() == seq_len - 1
    return seq_len - int(reached.min())


@pytest.mark.parametrize(("kernel_size", "levels"), [(2, 1), (3, 2), (2, 3), (4, 2), (3, 4)])
def test_receptive_field_formula_matches_measurement(kernel_size: int, levels: int) -> None:
    torch.manual_seed(0)
    spec = SPECS["forecast"]
    encoder = TCNEncoder(spec, 16, levels=levels, kernel_size=kernel_size).double()
    expected = 1 + 2 * (kernel_size - 1) * (2**levels - 1)  # Bai et al. 2018, two convolutions per block
    assert encoder.receptive_field == receptive_field(kernel_size, levels) == expected
    assert measured_receptive_field(encoder, spec.input_size, expected + 10) == expected


@pytest.mark.parametrize(
    ("seq_len", "kernel_size", "levels"),
    [(1, 3, 1), (5, 3, 1), (6, 3, 2), (13, 3, 2), (14, 3, 3), (1000, 3, 8), (1000, 7, 7)],
)
def test_levels_are_the_fewest_that_cover_the_sequence(seq_len: int, kernel_size: int, levels: int) -> None:
    spec = type("Spec", (), {"seq_len": seq_len})()
    assert choose_levels(spec, kernel_size, None) == levels
    assert receptive_field(kernel_size, levels) >= seq_len
    assert levels == 1 or receptive_field(kernel_size, levels - 1) < seq_len


def test_model_reports_its_receptive_field_covering_the_task() -> None:
    model = build_model("tcn", SPECS["classify"], hidden_size=8)  # seq_len 12, kernel 3 → 2 levels
    assert model.receptive_field == 13 and model.encoder.levels == 2


def test_forced_levels_too_shallow_for_the_task_are_refused() -> None:
    with pytest.raises(
        ConfigError, match="receptive field 5, shorter than the task's sequence length 12; use levels ≥ 2"
    ):
        build_model("tcn", SPECS["classify"], hidden_size=8, levels=1)


def test_sequence_longer_than_the_receptive_field_warns() -> None:
    model = build_model("tcn", SPECS["lm"], hidden_size=4, levels=1, kernel_size=2)  # no seq_len: not refused
    assert model.receptive_field == 3
    with pytest.warns(UserWarning, match="receptive field 3 .* shorter than the sequence length 5"):
        model(torch.zeros(1, 5, dtype=torch.long))
    with warnings.catch_warnings():  # once per model: sequences of many lengths (music pieces) say it once
        warnings.simplefilter("error")
        model(torch.zeros(1, 7, dtype=torch.long))


def test_blocks_follow_bai_et_al() -> None:
    model = build_model("tcn", SPECS["forecast"], hidden_size=8, dropout=0.2)  # 3 input features → 8 channels
    first, second = model.encoder.blocks[0], model.encoder.blocks[1]
    assert first.downsample is not None and second.downsample is None  # 1×1 only when widths differ
    assert [block.conv1.conv.dilation[0] for block in model.encoder.blocks] == [1, 2]
    assert hasattr(first.conv1.conv.parametrizations, "weight")  # weight normalisation
    assert first.dropout.p == 0.2
