"""Transformer encoder: positional encoding against the formula, pooling, masks."""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import SPECS, make_inputs
from torch import nn

from rnnlab.models import build_model
from rnnlab.models.transformer import PreNormLayer, sinusoidal_positions


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


@pytest.mark.parametrize("causal", [False, True])
def test_layer_equals_torch_pre_norm_transformer_layer(causal: bool) -> None:
    """Our layer against nn.TransformerEncoderLayer(norm_first=True, gelu) holding the same weights."""
    torch.manual_seed(0)
    d_model, heads, feedforward = 12, 3, 20
    ours = PreNormLayer(d_model, heads, feedforward, dropout=0.0).double().eval()
    reference = (
        nn.TransformerEncoderLayer(
            d_model, heads, feedforward, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        reference.self_attn.in_proj_weight.copy_(ours.attention.qkv.weight)
        reference.self_attn.in_proj_bias.copy_(ours.attention.qkv.bias)
        reference.self_attn.out_proj.weight.copy_(ours.attention.out.weight)
        reference.self_attn.out_proj.bias.copy_(ours.attention.out.bias)
        reference.linear1.load_state_dict(ours.feedforward[0].state_dict())
        reference.linear2.load_state_dict(ours.feedforward[3].state_dict())
        reference.norm1.load_state_dict(ours.attention_norm.state_dict())
        reference.norm2.load_state_dict(ours.feedforward_norm.state_dict())
    z = torch.randn(3, 7, d_model, dtype=torch.float64)
    lengths = torch.tensor([7, 2, 5])
    padding = torch.arange(7).unsqueeze(0) >= lengths.unsqueeze(1)  # torch: True = ignore
    future = torch.ones(7, 7, dtype=torch.bool).triu(1) if causal else None
    allowed = (~padding)[:, None, None, :]
    if causal:
        allowed = allowed & ~future[None, None]
    with torch.no_grad():
        got = ours(z, allowed)
        expected = reference(z, src_mask=future, src_key_padding_mask=padding)
    for b, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(got[b, :length], expected[b, :length])


def test_encoder_layers_and_causal_mask_follow_the_task() -> None:
    lm = build_model("transformer", SPECS["lm"], hidden_size=8, num_layers=3, num_heads=2)
    assert lm.encoder.causal and len(lm.encoder.layers) == 3 and lm.encoder.layers[0].attention.num_heads == 2
    assert not build_model("transformer", SPECS["tag"], hidden_size=8).encoder.causal


def test_attention_weights_equal_torch_multihead_attention_of_the_last_layer() -> None:
    spec = SPECS["lm"]  # causal: later keys masked, and padding masked
    torch.manual_seed(0)
    model = build_model("transformer", spec, hidden_size=8, num_heads=2).eval()
    x = make_inputs(spec, 3, 6, torch.Generator().manual_seed(1))
    lengths = torch.tensor([6, 4, 2])
    captured = {}
    last = model.encoder.layers[-1]
    handle = last.attention.register_forward_pre_hook(lambda module, args: captured.update(y=args[0]))
    with torch.no_grad():
        model(x, lengths)
    handle.remove()
    weights = model.attention_weights
    reference = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(last.attention.qkv.weight)
        reference.in_proj_bias.copy_(last.attention.qkv.bias)
        later = torch.ones(6, 6, dtype=torch.bool).triu(1)
        padding = torch.arange(6).unsqueeze(0) >= lengths.unsqueeze(1)
        y = captured["y"]
        _, expected = reference(y, y, y, attn_mask=later, key_padding_mask=padding, average_attn_weights=True)
    assert weights.shape == (3, 6, 6)
    for b, length in enumerate(lengths.tolist()):  # rows of padded queries are not defined by either
        torch.testing.assert_close(weights[b, :length], expected[b, :length])
    assert build_model("transformer", spec, hidden_size=8).attention_weights is None  # before any call
