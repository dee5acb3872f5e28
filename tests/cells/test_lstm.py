"""rnnlab.cells.LSTMCell: torch.nn.LSTMCell's function; the layer-norm LSTM from its equations."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.cells import LSTMCell
from rnnlab.errors import ConfigError


def test_matches_torch_lstm_cell_values_and_gradients():
    reference = nn.LSTMCell(3, 5)
    cell = LSTMCell(3, 5)
    cell.load_state_dict(reference.state_dict())
    x, state = torch.randn(4, 3), (torch.randn(4, 5), torch.randn(4, 5))
    expected, got = reference(x, state), cell(x, state)
    for ref, out in zip(expected, got):
        torch.testing.assert_close(out, ref)
    loss_ref = expected[0].sum() + 2 * expected[1].sum()
    loss_ours = got[0].sum() + 2 * got[1].sum()
    for ref_grad, our_grad in zip(
        torch.autograd.grad(loss_ref, list(reference.parameters())),
        torch.autograd.grad(loss_ours, list(cell.parameters())),
    ):
        torch.testing.assert_close(our_grad, ref_grad)


def test_same_seed_gives_torch_initial_weights():
    torch.manual_seed(5)
    reference = nn.LSTMCell(3, 5)
    torch.manual_seed(5)
    cell = LSTMCell(3, 5)
    for ref, ours in zip(reference.parameters(), cell.parameters()):
        assert torch.equal(ref, ours)


def test_unbatched_input_matches_torch():
    reference = nn.LSTMCell(3, 5)
    cell = LSTMCell(3, 5)
    cell.load_state_dict(reference.state_dict())
    x = torch.randn(3)
    for ref, out in zip(reference(x), cell(x)):
        torch.testing.assert_close(out, ref)


def layer_norm_lstm_by_hand(x, h_prev, c_prev, p):
    """Ba et al. 2016 / haste LayerNormLSTM, written gate by gate from the equations."""

    def layer_norm(a, gain, bias=0.0):
        mean = a.mean(-1, keepdim=True)
        variance = ((a - mean) ** 2).mean(-1, keepdim=True)
        return (a - mean) / torch.sqrt(variance + 1e-5) * gain + bias

    pre = (
        layer_norm(x @ p["weight_ih"].T, p["layer_norm_ih"])
        + p["bias_ih"]
        + layer_norm(h_prev @ p["weight_hh"].T, p["layer_norm_hh"])
        + p["bias_hh"]
    )
    hidden = h_prev.shape[-1]
    i = torch.sigmoid(pre[:, :hidden])
    f = torch.sigmoid(pre[:, hidden : 2 * hidden])
    g = torch.tanh(pre[:, 2 * hidden : 3 * hidden])
    o = torch.sigmoid(pre[:, 3 * hidden :])
    c = f * c_prev + i * g
    h = o * torch.tanh(layer_norm(c, p["layer_norm_cell_weight"], p["layer_norm_cell_bias"]))
    return h, c


def test_layer_norm_lstm_cell_matches_its_equations():
    cell = LSTMCell(3, 5, layer_norm=True)
    with torch.no_grad():  # move the gains off their initial 1 / 0 so a dropped term would show
        for name, p in cell.named_parameters():
            if name.startswith("layer_norm"):
                p.uniform_(-1.5, 1.5)
    x, state = torch.randn(4, 3), (torch.randn(4, 5), torch.randn(4, 5))
    expected = layer_norm_lstm_by_hand(x, *state, dict(cell.named_parameters()))
    for ref, out in zip(expected, cell(x, state)):
        torch.testing.assert_close(out, ref)


def test_layer_norm_parameters_start_as_identity():
    cell = LSTMCell(3, 5, layer_norm=True)
    assert torch.equal(cell.layer_norm_ih, torch.ones(20)) and torch.equal(cell.layer_norm_cell_bias, torch.zeros(5))
    assert {"weight_ih", "weight_hh", "bias_ih", "bias_hh"} < set(cell.state_dict())


def test_wrong_input_size_names_expected_and_got():
    try:
        LSTMCell(3, 5)(torch.randn(4, 7))
    except ConfigError as error:
        assert "Expected 3, got 7" in str(error)
    else:
        raise AssertionError("no error for a wrong input size")
