"""Magnitude pruning: the right share of the smallest weights goes, the rest stays, fine-tuning keeps the zeros."""

from __future__ import annotations

import pytest
import torch
from export_helpers import tiny

from rnnlab.export import finetune, prune_model
from rnnlab.export.prune import compressed_bytes, prunable_parameters


def test_global_pruning_zeroes_the_smallest_weights_across_all_matrices():
    model = tiny("lstm", "forecast", {"num_layers": 2}, hidden_size=16)
    result = prune_model(model, 0.6, scope="global")
    before = prunable_parameters(model)
    after = prunable_parameters(result.model)
    assert set(before) == {
        "encoder.rnn.weight_ih_l0",
        "encoder.rnn.weight_hh_l0",
        "encoder.rnn.weight_ih_l1",
        "encoder.rnn.weight_hh_l1",
        "head.linear.weight",
    }
    magnitudes = torch.cat([p.detach().abs().flatten() for p in before.values()])
    # Independent reference: sort every magnitude; the 60% smallest are the ones to go.
    cut = magnitudes.sort().values[int(0.6 * magnitudes.numel()) - 1]
    for name, parameter in before.items():
        expected = torch.where(parameter.abs() > cut, parameter, torch.zeros_like(parameter))
        torch.testing.assert_close(after[name], expected, rtol=0, atol=0)
    assert result.overall_sparsity == pytest.approx(0.6, abs=1 / magnitudes.numel())
    # Biases are never pruned, and the original model is untouched.
    for (name, kept), (_, original) in zip(result.model.named_parameters(), model.named_parameters()):
        if "bias" in name:
            assert torch.equal(kept, original)
    assert all(bool((p != 0).all()) for p in before.values())


def test_layer_pruning_takes_the_same_share_from_each_matrix():
    model = tiny("gru", "classify", {"num_layers": 2}, hidden_size=16)
    result = prune_model(model, 0.3, scope="layer")
    for name, share in result.sparsity.items():
        assert share == pytest.approx(0.3, abs=0.01), name
    assert "encoder.embedding.weight" not in result.masks  # an embedding row is all a token has


def test_tcn_prunes_the_weight_norm_direction():
    model = tiny("tcn", "forecast", {})
    result = prune_model(model, 0.5)
    names = list(result.masks)
    assert names and all(name.endswith(("parametrizations.weight.original1", "weight")) for name in names)
    conv = result.model.encoder.blocks[0].conv1.conv
    # W = g · v / ‖v‖: a zero in v is a zero in the weight the convolution uses.
    zeros = result.masks["encoder.blocks.0.conv1.conv.parametrizations.weight.original1"] == 0
    assert bool((conv.weight[zeros] == 0).all())


def test_zero_fraction_changes_nothing_and_compressed_size_falls_with_pruning():
    model = tiny("lstm", "forecast", {"num_layers": 2}, hidden_size=32)
    untouched = prune_model(model, 0.0)
    for a, b in zip(untouched.model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    assert compressed_bytes(prune_model(model, 0.8).model) < 0.6 * compressed_bytes(model)


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5, "half", True])
def test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match=r"prune fraction must lie in \[0, 1\)"):
        prune_model(tiny("gru", "forecast", {"num_layers": 1}), fraction)


def test_unknown_scope_is_named():
    with pytest.raises(ValueError, match="unknown prune scope 'globl'; did you mean 'global'"):
        prune_model(tiny("gru", "forecast", {"num_layers": 1}), 0.5, scope="globl")


def test_finetuning_trains_and_keeps_the_pruned_weights_at_zero(recall_run, tmp_path):
    from rnnlab.train import load_run

    loaded = load_run(recall_run)
    result = prune_model(loaded.model, 0.7)
    tuned = finetune(result, loaded.config, epochs=1, out=tmp_path / "tuned")
    for name, parameter in prunable_parameters(tuned.model).items():
        assert bool((parameter[~result.masks[name]] == 0).all()), f"{name}: a pruned weight came back"
    moved = [not torch.equal(a, b) for a, b in zip(tuned.model.parameters(), result.model.parameters())]
    assert any(moved), "fine-tuning changed no weight"
    assert (tmp_path / "tuned" / "summary.json").is_file()
    with pytest.raises(ValueError, match="finetune epochs must be a positive integer"):
        finetune(result, loaded.config, epochs=0)
