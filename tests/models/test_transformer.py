"""Transformer encoder: positional encoding against the formula, pooling, masks."""

from __future__ import annotations

import math

import torch

from model_helpers import SPECS, make_inputs
from rnnlab.models import build_model
from rnnlab.models.transformer import sinusoidal_positions


def test_positional_encoding_matches_the_formula() -> None:
    for size in (6, 7):
        encoding = sinusoidal_positions(11, size, torch.device("cpu"), torch.float64)
        for t in range(11):
            for j in range(size):
                angle = t / 10000 ** ((j - j % 2) / size)
                expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
                assert abs(float(encoding[t, j]) - expected) < 1e-6


def test_mean_pooling_averages_the_valid_steps_and_last_reads_the_last_valid_step() -> None:
    spec = SPECS["classify"]
    x = make_inputs(spec, 3, 7, torch.Generator().manual_seed(0))
    lengths = torch.tensor([7, 2, 5])
    for pooling in ("mean", "last"):
        torch.manual_seed(0)
        encoder = build_model("transformer", spec, hidden_size=8, pooling=pooling).encoder.eval()
        with torch.no_grad():
            encoded = encoder(x, lengths)
        for b, length in enumerate(lengths.tolist()):
            valid = encoded.steps[b, :length]
            expected = valid.mean(0) if pooling == "mean" else valid[-1]
            torch.testing.assert_close(encoded.summary[b], expected)


def test_pre_norm_layers_and_causal_mask_for_lm() -> None:
    lm = build_model("transformer", SPECS["lm"], hidden_size=8, num_layers=3)
    assert lm.encoder.causal and len(lm.encoder.layers.layers) == 3
    assert all(layer.norm_first for layer in lm.encoder.layers.layers)
    assert not build_model("transformer", SPECS["tag"], hidden_size=8).encoder.causal
