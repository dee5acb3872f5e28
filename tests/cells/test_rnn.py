"""rnnlab.cells.RNNCell: torch.nn.RNNCell's function, and the layer-norm variant from its equation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnlab.cells import RNNCell
from rnnlab.errors import ConfigError


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_matches_torch_rnn_cell_values_and_gradients(nonlinearity):
    reference = nn.RNNCell(3, 5, nonlinearity=nonlinearity)
    cell = RNNCell(3, 5, nonlinearity=nonlinearity)
    cell.load_state_dict(reference.state_dict())
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    expected, got = reference(x, h), cell(x, h)
    torch.testing.assert_close(got, expected)
    for ref_grad, our_grad in zip(
        torch.autograd.grad(expected.sum(), list(reference.parameters())),
        torch.autograd.grad(got.sum(), list(cell.parameters())),
    ):
        torch.testing.assert_close(our_grad, ref_grad)


def test_unbatched_input_and_default_state_match_torch():
    reference = nn.RNNCell(3, 5)
    cell = RNNCell(3, 5)
    cell.load_state_dict(reference.state_dict())
    x = torch.randn(3)
    torch.testing.assert_close(cell(x), reference(x))


def test_layer_norm_follows_its_equation():
    cell = RNNCell(3, 5, layer_norm=True)
    with torch.no_grad():
        cell.layer_norm_ih.uniform_(0.5, 1.5)
        cell.layer_norm_hh.uniform_(0.5, 1.5)
    x, h = torch.randn(4, 3), torch.randn(4, 5)

    def layer_norm(a, gain):
        mean = a.mean(-1, keepdim=True)
        variance = ((a - mean) ** 2).mean(-1, keepdim=True)
        return (a - mean) / torch.sqrt(variance + 1e-5) * gain

    expected = torch.tanh(
        layer_norm(x @ cell.weight_ih.T, cell.layer_norm_ih)
        + cell.bias_ih
        + layer_norm(h @ cell.weight_hh.T, cell.layer_norm_hh)
        + cell.bias_hh
    )
    torch.testing.assert_close(cell(x, h), expected)


def test_unknown_nonlinearity_is_refused():
    with pytest.raises(ConfigError, match="unknown nonlinearity 'sigmoid'"):
        RNNCell(3, 5, nonlinearity="sigmoid")


def test_wrong_state_shape_names_expected_and_got():
    with pytest.raises(ConfigError, match=r"expected a state of shape \[4, 5\], got \[4, 6\]"):
        RNNCell(3, 5)(torch.randn(4, 3), torch.randn(4, 6))
