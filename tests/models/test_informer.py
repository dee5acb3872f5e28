"""Informer (models/informer.py): ProbSparse attention against full softmax attention written out,
the distilling halving, the generative decoder's shapes, sizing and the errors a user meets."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlab.errors import ConfigError
from rnnlab.models import build_model, count_parameters
from rnnlab.models.informer import DistillingLayer, active_query_count, prob_sparse_attention

FORECAST = dict(task="forecast", head="forecast", input_size=3, output_shape=[6, 2], seq_len=40)


def reference_attention(q, k, v, causal):
    """softmax(q kᵀ/√d + mask) v, per equation."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))
    if causal:
        later = torch.ones(q.size(2), k.size(2), dtype=torch.bool).triu(1)
        scores = scores.masked_fill(later, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def qkv(length, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, length, 8, generator=generator, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("causal", [False, True])
def test_prob_sparse_equals_full_attention_when_every_query_is_active(causal):
    q, k, v = qkv(20)
    assert active_query_count(20, factor=10) >= 20  # u = c·⌈ln L⌉ covers every query
    out = prob_sparse_attention(q, k, v, factor=10, causal=causal)
    torch.testing.assert_close(out, reference_attention(q, k, v, causal))


@pytest.mark.parametrize("causal", [False, True])
def test_prob_sparse_computes_u_queries_exactly_and_gives_the_rest_the_mean_of_values(causal):
    length, factor = 60, 2
    active = active_query_count(length, factor)
    assert active == 2 * math.ceil(math.log(60)) == 10
    q, k, v = qkv(length, seed=1)
    out = prob_sparse_attention(q, k, v, factor=factor, causal=causal, generator=torch.Generator().manual_seed(3))
    full = reference_attention(q, k, v, causal)
    if causal:  # uniform attention over the keys a query may see: the prefix mean
        lazy = v.cumsum(2) / torch.arange(1, length + 1, dtype=v.dtype).view(1, 1, -1, 1)
    else:
        lazy = v.mean(2, keepdim=True).expand_as(v)
    exact = torch.isclose(out, full, atol=1e-9).all(-1)
    is_lazy = torch.isclose(out, lazy, atol=1e-9).all(-1)
    assert bool((exact | is_lazy).all())  # each row is one of the two
    assert (exact & ~is_lazy).sum(-1).max() <= active
    assert (exact & ~is_lazy).sum(-1).min() >= active - 1  # (a chosen first row in the causal case is both)


def test_prob_sparse_picks_the_peaked_queries():
    # queries 5 and 17 point straight at one key each: their attention is far from uniform
    q, k, v = qkv(40, seed=2)
    q = q * 0.01
    q[:, :, 5] = 20 * k[:, :, 30]
    q[:, :, 17] = 20 * k[:, :, 2]
    out = prob_sparse_attention(q, k, v, factor=1, causal=False, generator=torch.Generator().manual_seed(0))
    full = reference_attention(q, k, v, False)
    for index in (5, 17):
        torch.testing.assert_close(out[:, :, index], full[:, :, index])


@pytest.mark.parametrize("length", [96, 97, 1])
def test_distilling_halves_the_length(length):
    layer = DistillingLayer(8)
    assert layer(torch.randn(2, length, 8)).shape == (2, math.ceil(length / 2), 8)


def test_the_encoder_halves_its_length_between_layers_and_the_decoder_emits_the_horizon():
    model = build_model("informer", FORECAST, hidden_size=16, num_layers=3)
    encoded = model.encoder(torch.randn(5, 40, 3))
    assert encoded.steps.shape == (5, 10, 16)  # 40 → 20 → 10
    assert encoded.summary.shape == (5, 6, 16)  # one decoder output per horizon step
    assert model(torch.randn(5, 40, 3)).shape == (5, 6, 2)


def test_the_forecast_reads_the_lookback_and_the_start_token():
    torch.manual_seed(0)
    model = build_model("informer", FORECAST, hidden_size=16, label_len=8).eval()
    x = torch.randn(2, 40, 3)
    changed_early, changed_late = x.clone(), x.clone()
    changed_early[:, 0] += 1.0  # only the encoder reads step 0
    changed_late[:, -1] += 1.0  # the encoder and the decoder's start token read the last step
    with torch.no_grad():
        base = model(x)
        assert not torch.allclose(model(changed_early), base)
        assert not torch.allclose(model(changed_late), base)
        torch.testing.assert_close(model(x), base)  # evaluation samples keys reproducibly


@pytest.mark.parametrize("budget", [120_000])
def test_params_sizes_the_model_within_ten_percent(budget):
    model = build_model("informer", FORECAST, params=budget)
    assert abs(count_parameters(model) - budget) <= 0.1 * budget
    rebuilt = build_model("informer", FORECAST, **model.options)
    assert count_parameters(rebuilt) == count_parameters(model)


def test_full_attention_in_the_same_skeleton_has_the_same_parameters():
    sparse = build_model("informer", FORECAST, hidden_size=16)
    full = build_model("informer", FORECAST, hidden_size=16, attention="full")
    assert count_parameters(sparse) == count_parameters(full)


def test_informer_on_a_task_it_does_not_fit_says_which_head_it_needs():
    lm = dict(task="charlm", head="lm", vocab_size=20, num_classes=20, seq_len=10)
    with pytest.raises(ConfigError, match=r"head forecast.*task 'charlm' has head 'lm'"):
        build_model("informer", lm)


def test_bad_informer_options_are_refused_with_the_value():
    with pytest.raises(ConfigError, match=r"label_len.*lookback 40; got 41"):
        build_model("informer", FORECAST, label_len=41)
    with pytest.raises(ValueError, match="attention"):
        build_model("informer", FORECAST, attention="sparse")
    with pytest.raises(ConfigError, match="bidirectional"):
        build_model("informer", FORECAST, bidirectional=False)


def test_padded_lookbacks_are_refused():
    model = build_model("informer", FORECAST, hidden_size=8)
    with pytest.raises(ConfigError, match=r"whole lookback windows of 40 steps.*from 30 to 40"):
        model(torch.randn(2, 40, 3), torch.tensor([40, 30]))


def test_onnx_export_is_refused_saying_why(tmp_path):
    from rnnlab.export import export_onnx

    model = build_model("informer", FORECAST, hidden_size=8)
    with pytest.raises(ConfigError, match=r"cannot be exported to ONNX: ProbSparse attention.*random"):
        export_onnx(model, tmp_path / "informer.onnx")
    assert not (tmp_path / "informer.onnx").exists()


@pytest.mark.parametrize("causal", [False, True])
def test_the_sparsity_measure_in_blocks_of_queries_picks_the_same_queries(monkeypatch, causal):
    from rnnlab.models import informer

    q, k, v = qkv(50, seed=4)
    whole = prob_sparse_attention(q, k, v, factor=2, causal=causal, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(informer, "MEASURE_BLOCK", 7)
    blocked = prob_sparse_attention(q, k, v, factor=2, causal=causal, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(blocked, whole)


def test_full_attention_in_the_skeleton_is_the_canonical_softmax():
    from rnnlab.models.informer import canonical_attention

    q, k, v = qkv(12, seed=6)
    for causal in (False, True):
        torch.testing.assert_close(canonical_attention(q, k, v, causal=causal), reference_attention(q, k, v, causal))
