"""rnnlab.cells.GRUCell in both conventions: torch.nn's, and the seeds' (Cho et al. 2014)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnlab.cells import GRUCell, convert_gru_convention
from rnnlab.errors import ConfigError


def seeds_gru_step(x, h_prev, W_z, b_z, W_r, b_r, W_h, b_h):
    """SPEC §1 word for word: z = σ(W_z [h, x] + b_z), r = σ(W_r [h, x] + b_r),
    h~ = tanh(W_h [r ⊙ h, x] + b_h), h_t = (1 − z) ⊙ h + z ⊙ h~."""
    hx = torch.cat([h_prev, x], dim=-1)
    z = torch.sigmoid(hx @ W_z.T + b_z)
    r = torch.sigmoid(hx @ W_r.T + b_r)
    h_tilde = torch.tanh(torch.cat([r * h_prev, x], dim=-1) @ W_h.T + b_h)
    return (1 - z) * h_prev + z * h_tilde


def seeds_matrices(cell: GRUCell):
    """The seeds' concatenated matrices W_g = [W_hg | W_ig] and single biases b_g = b_ig + b_hg."""
    hidden = cell.hidden_size
    blocks = {}
    for index, gate in enumerate(("r", "z", "h")):
        rows = slice(index * hidden, (index + 1) * hidden)
        blocks[f"W_{gate}"] = torch.cat([cell.weight_hh[rows], cell.weight_ih[rows]], dim=1)
        blocks[f"b_{gate}"] = cell.bias_ih[rows] + cell.bias_hh[rows]
    return blocks


def test_torch_convention_matches_torch_gru_cell_values_and_gradients():
    reference = nn.GRUCell(3, 5)
    cell = GRUCell(3, 5)
    cell.load_state_dict(reference.state_dict())
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    expected, got = reference(x, h), cell(x, h)
    torch.testing.assert_close(got, expected)
    for ref_grad, our_grad in zip(
        torch.autograd.grad(expected.sum(), list(reference.parameters())),
        torch.autograd.grad(got.sum(), list(cell.parameters())),
    ):
        torch.testing.assert_close(our_grad, ref_grad)


def test_cho_convention_matches_the_seeds_equations():
    cell = GRUCell(3, 5, convention="cho")
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    torch.testing.assert_close(cell(x, h), seeds_gru_step(x, h, **seeds_matrices(cell)))


def test_cho_convention_passes_gradcheck_in_float64():
    cell = GRUCell(3, 4, convention="cho", dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    params = list(cell.parameters())

    def step(x, h, *weights):
        return torch.func.functional_call(cell, dict(zip(dict(cell.named_parameters()), weights)), (x, h))

    assert torch.autograd.gradcheck(step, (x, h, *params))


def test_the_two_conventions_are_different_functions_in_general():
    cell_torch, cell_cho = GRUCell(3, 5), GRUCell(3, 5, convention="cho")
    cell_cho.load_state_dict(convert_gru_convention(cell_torch.state_dict(), exact=False))
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    assert not torch.allclose(cell_torch(x, h), cell_cho(x, h), atol=1e-3)


def test_conversion_is_exact_when_w_hn_is_diagonal_and_b_hn_zero():
    cell_torch = GRUCell(3, 5)
    with torch.no_grad():
        cell_torch.weight_hh[10:] = torch.diag(torch.randn(5))
        cell_torch.bias_hh[10:] = 0.0
    cell_cho = GRUCell(3, 5, convention="cho")
    cell_cho.load_state_dict(convert_gru_convention(cell_torch.state_dict()))
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    torch.testing.assert_close(cell_cho(x, h), cell_torch(x, h))
    # and the map is its own inverse
    back = convert_gru_convention(cell_cho.state_dict())
    for name, tensor in cell_torch.state_dict().items():
        assert torch.equal(back[name], tensor), name


def test_inexact_conversion_is_refused_and_names_the_tensor():
    with pytest.raises(ConfigError, match=r"weight_hh: the candidate block W_hn is not diagonal"):
        convert_gru_convention(GRUCell(3, 5).state_dict())
    cell = GRUCell(3, 5)
    with torch.no_grad():
        cell.weight_hh[10:] = torch.eye(5)
    with pytest.raises(ConfigError, match=r"bias_hh: b_hn is not zero"):
        convert_gru_convention(cell.state_dict())
