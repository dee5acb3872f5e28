"""Attention pooling (the seeds' HybridModel) and per-step attention against written-out formulas."""

from __future__ import annotations

import math

import torch
from model_helpers import SPECS, make_inputs

from rnnlab.models import build_model
from rnnlab.models.attention import AttentionPooling, StepAttention

LENGTHS = torch.tensor([7, 3, 5])


def test_pooling_matches_the_seed_formula_on_each_sequence_alone() -> None:
    """Seed 001's HybridModel on the valid steps only: Linear → Tanh → Linear → softmax → weighted sum."""
    torch.manual_seed(0)
    pooling = AttentionPooling(6).double()
    outputs = torch.randn(3, 7, 6, dtype=torch.float64)
    context = pooling(outputs, LENGTHS)
    first, _, second = pooling.score
    for b, length in enumerate(LENGTHS.tolist()):
        o = outputs[b, :length]
        scores = torch.stack([second(torch.tanh(first(o_t))).squeeze() for o_t in o])
        alpha = torch.exp(scores) / torch.exp(scores).sum()
        torch.testing.assert_close(pooling.last_weights[b, :length], alpha)
        torch.testing.assert_close(context[b], (alpha.unsqueeze(1) * o).sum(0))


def test_pooling_weights_sum_to_one_and_are_zero_on_padding() -> None:
    model = build_model("gru+attn", SPECS["classify"], hidden_size=8)
    model(make_inputs(SPECS["classify"], 3, 7, torch.Generator().manual_seed(0)), LENGTHS)
    weights = model.attention_weights
    assert list(weights.shape) == [3, 7]
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    for b, length in enumerate(LENGTHS.tolist()):
        assert (weights[b, length:] == 0).all() and (weights[b, :length] > 0).all()


def _step_attention_reference(attention: StepAttention, outputs: torch.Tensor, length: int, causal: bool):
    """Luong 'general' attention for one sequence, one query at a time, on its valid steps only."""
    size = outputs.size(1)
    o = outputs[:length]
    weights, results = [], []
    for t in range(length):
        keys = o[: t + 1] if causal else o
        scores = torch.stack([o[t] @ attention.score.weight @ o_s / math.sqrt(size) for o_s in keys])
        alpha = torch.softmax(scores, 0)
        context = (alpha.unsqueeze(1) * keys).sum(0)
        results.append(torch.tanh(attention.combine(torch.cat([context, o[t]]))))
        weights.append(torch.nn.functional.pad(alpha, (0, length - len(alpha))))
    return torch.stack(results), torch.stack(weights)


def test_step_attention_matches_the_formula_causal_and_not() -> None:
    torch.manual_seed(1)
    outputs = torch.randn(3, 7, 5, dtype=torch.float64)
    for causal in (False, True):
        attention = StepAttention(5, causal).double()
        result = attention(outputs, LENGTHS)
        for b, length in enumerate(LENGTHS.tolist()):
            expected, expected_weights = _step_attention_reference(attention, outputs[b], length, causal)
            torch.testing.assert_close(result[b, :length], expected)
            torch.testing.assert_close(attention.last_weights[b, :length, :length], expected_weights)


def test_per_step_attention_weights_sum_to_one_and_are_zero_on_padding_and_future() -> None:
    spec = SPECS["lm"]
    model = build_model("lstm+attn", spec, hidden_size=8)
    model(make_inputs(spec, 3, 7, torch.Generator().manual_seed(0)), LENGTHS)
    weights = model.attention_weights
    assert list(weights.shape) == [3, 7, 7]
    for b, length in enumerate(LENGTHS.tolist()):
        torch.testing.assert_close(weights[b, :length].sum(1), torch.ones(length))
        assert (weights[b, :, length:] == 0).all()  # padded keys
        assert (weights[b, length:] == 0).all()  # padded queries
    assert (weights.triu(1) == 0).all()  # causal: nothing after t


def test_models_without_attention_have_no_weights() -> None:
    assert build_model("lstm", SPECS["classify"], hidden_size=4).attention_weights is None
