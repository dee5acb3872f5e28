"""The extras torch.nn lacks, each checked against its definition."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rnnlab
from layer_helpers import KINDS, flat, weighted_sum
from rnnlab.layers import reference_path

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, BATCH, INPUT, HIDDEN = 6, 3, 4, 5


def layer_norm(a, gain, bias=0.0):
    mean = a.mean(-1, keepdim=True)
    variance = ((a - mean) ** 2).mean(-1, keepdim=True)
    return (a - mean) / torch.sqrt(variance + 1e-5) * gain + bias


def randomise_layer_norm(layer):
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("layer_norm"):
                p.uniform_(-1.5, 1.5)


def layer_norm_lstm_sequence(x, p, suffix, reverse=False):
    """A layer-norm LSTM over a sequence [T, B, I], gate by gate, in plain loops (no rnnlab code)."""
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    hidden = p[f"weight_hh{suffix}"].shape[1]
    h = c = x.new_zeros(x.shape[1], hidden)
    outputs = [None] * x.shape[0]
    for t in steps:
        pre = (
            layer_norm(x[t] @ p[f"weight_ih{suffix}"].T, p[f"layer_norm_ih{suffix}"])
            + p[f"bias_ih{suffix}"]
            + layer_norm(h @ p[f"weight_hh{suffix}"].T, p[f"layer_norm_hh{suffix}"])
            + p[f"bias_hh{suffix}"]
        )
        i, f = torch.sigmoid(pre[:, :hidden]), torch.sigmoid(pre[:, hidden : 2 * hidden])
        g, o = torch.tanh(pre[:, 2 * hidden : 3 * hidden]), torch.sigmoid(pre[:, 3 * hidden :])
        c = f * c + i * g
        h = o * torch.tanh(layer_norm(c, p[f"layer_norm_cell_weight{suffix}"], p[f"layer_norm_cell_bias{suffix}"]))
        outputs[t] = h
    return torch.stack(outputs), h, c


def test_layer_norm_lstm_matches_a_per_equation_implementation():
    lstm = rnnlab.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True, layer_norm=True)
    randomise_layer_norm(lstm)
    p = dict(lstm.named_parameters())
    x = torch.randn(STEPS, BATCH, INPUT)
    output, (h_n, c_n) = lstm(x)

    layer_input, finals = x, []
    for layer in range(2):
        forward = layer_norm_lstm_sequence(layer_input, p, f"_l{layer}")
        backward = layer_norm_lstm_sequence(layer_input, p, f"_l{layer}_reverse", reverse=True)
        layer_input = torch.cat([forward[0], backward[0]], dim=-1)
        finals += [forward[1:], backward[1:]]
    torch.testing.assert_close(output, layer_input)
    torch.testing.assert_close(h_n, torch.stack([h for h, _ in finals]))
    torch.testing.assert_close(c_n, torch.stack([c for _, c in finals]))


def test_layer_norm_gru_matches_a_per_equation_implementation():
    gru = rnnlab.GRU(INPUT, HIDDEN, layer_norm=True)
    randomise_layer_norm(gru)
    p = dict(gru.named_parameters())
    x = torch.randn(STEPS, BATCH, INPUT)
    h = torch.zeros(BATCH, HIDDEN)
    for t in range(STEPS):
        gi = layer_norm(x[t] @ p["weight_ih_l0"].T, p["layer_norm_ih_l0"]) + p["bias_ih_l0"]
        gh = layer_norm(h @ p["weight_hh_l0"].T, p["layer_norm_hh_l0"]) + p["bias_hh_l0"]
        r = torch.sigmoid(gi[:, :HIDDEN] + gh[:, :HIDDEN])
        z = torch.sigmoid(gi[:, HIDDEN : 2 * HIDDEN] + gh[:, HIDDEN : 2 * HIDDEN])
        n = torch.tanh(gi[:, 2 * HIDDEN :] + r * gh[:, 2 * HIDDEN :])
        h = (1 - z) * n + z * h
    torch.testing.assert_close(gru(x)[1][0], h)


def test_extra_parameters_have_clear_names():
    lstm = rnnlab.LSTM(INPUT, HIDDEN, bidirectional=True, layer_norm=True, weight_norm=True)
    extra = set(lstm.state_dict()) - set(nn.LSTM(INPUT, HIDDEN, bidirectional=True).state_dict())
    assert extra == {
        f"{name}{suffix}"
        for suffix in ("_l0", "_l0_reverse")
        for name in (
            "layer_norm_ih",
            "layer_norm_hh",
            "layer_norm_cell_weight",
            "layer_norm_cell_bias",
            "weight_ih_scale",
            "weight_hh_scale",
        )
    }


def test_recurrent_dropout_uses_one_mask_per_sequence():
    # With W_ih = 0, b = 0, W_hh = I and relu, h_t = relu(h_{t-1} ⊙ m_t); from h_0 = 1 a unit is
    # (1/keep)^t while every mask so far kept it and 0 from the first one that dropped it. One mask
    # per sequence: the dropped units are the same at every step.
    rnn = rnnlab.RNN(INPUT, 64, nonlinearity="relu", recurrent_dropout=0.5)
    with torch.no_grad():
        rnn.weight_ih_l0.zero_()
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
        rnn.weight_hh_l0.copy_(torch.eye(64))
    x = torch.randn(10, 8, INPUT)
    output, _ = rnn(x, torch.ones(1, 8, 64))
    kept = output[0] > 0
    assert 0.2 < kept.float().mean() < 0.8
    for t in range(10):
        assert torch.equal(output[t] > 0, kept), f"step {t} dropped other units than step 0"
        torch.testing.assert_close(output[t][kept], torch.full_like(output[t][kept], 2.0 ** (t + 1)))
    assert not all(torch.equal(kept[0], kept[b]) for b in range(1, 8)), "every sequence got the same mask"

    rnn.eval()  # no dropout at evaluation, and back on the fused kernel
    assert rnn._runs_fused()
    torch.testing.assert_close(rnn(x, torch.ones(1, 8, 64))[0], torch.ones(10, 8, 64))


def test_zoneout_in_evaluation_is_the_expectation():
    p_zone = 0.3
    lstm = rnnlab.LSTM(INPUT, HIDDEN, zoneout=p_zone).eval()
    cell = nn.LSTMCell(INPUT, HIDDEN)
    cell.load_state_dict({name[:-3]: value for name, value in lstm.state_dict().items()})
    x = torch.randn(STEPS, BATCH, INPUT)
    h = c = torch.zeros(BATCH, HIDDEN)
    expected = []
    for t in range(STEPS):
        h_new, c = cell(x[t], (h, c))
        h = p_zone * h + (1 - p_zone) * h_new
        expected.append(h)
    torch.testing.assert_close(lstm(x)[0], torch.stack(expected))


def test_zoneout_in_training_keeps_each_unit_or_updates_it():
    p_zone = 0.3
    gru = rnnlab.GRU(INPUT, 32, zoneout=p_zone)
    cell = nn.GRUCell(INPUT, 32)
    cell.load_state_dict({name[:-3]: value for name, value in gru.state_dict().items()})
    x = torch.randn(40, BATCH, INPUT)
    with torch.no_grad():
        output, _ = gru(x)
        previous = torch.cat([torch.zeros(1, BATCH, 32), output[:-1]])
        fresh = torch.stack([cell(x[t], previous[t]) for t in range(40)])
    kept = torch.isclose(output, previous, atol=1e-6)
    updated = torch.isclose(output, fresh, atol=1e-6)
    assert bool((kept | updated).all()), "a unit is neither its previous value nor the cell's update"
    kept_only = kept & ~updated
    assert 0.2 < kept_only.float().mean() < 0.4


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_chrono_biases_lie_in_the_stated_range(kind):
    max_len = 500
    layer = KINDS[kind][0](INPUT, 64, num_layers=2, init="chrono", chrono_max_len=max_len)
    for suffix in ("_l0", "_l1"):
        bias = getattr(layer, f"bias_ih{suffix}") + getattr(layer, f"bias_hh{suffix}")
        gate = bias[64:128]  # LSTM forget gate; GRU update gate (torch order r, z, n)
        assert bool((gate >= 0).all()) and bool((gate <= math.log(max_len - 1)).all())
        assert gate.std() > 0.5, "the biases should spread over the time scales, not sit at one value"
        if kind == "lstm":
            torch.testing.assert_close(bias[:64], -gate)  # b_i = −b_f


def test_chrono_on_the_cho_gru_flips_the_update_gate_sign():
    gru = rnnlab.GRU(INPUT, 64, convention="cho", init="chrono", chrono_max_len=100)
    assert bool((gru.bias_ih_l0[64:128] <= 0).all()) and bool((gru.bias_ih_l0[64:128] >= -math.log(99)).all())


@pytest.mark.parametrize("kind", list(KINDS))
def test_orthogonal_init_gives_orthogonal_recurrent_blocks(kind):
    layer = KINDS[kind][0](INPUT, HIDDEN, num_layers=2, bidirectional=True, init="orthogonal", **KINDS[kind][2])
    for name, weight in layer.named_parameters():
        if name.startswith("weight_hh"):
            for block in weight.chunk(layer.gate_count):
                torch.testing.assert_close(block @ block.T, torch.eye(HIDDEN), atol=1e-5, rtol=0)
    if kind == "lstm":
        forget = layer.bias_ih_l0[HIDDEN : 2 * HIDDEN] + layer.bias_hh_l0[HIDDEN : 2 * HIDDEN]
        torch.testing.assert_close(forget, torch.ones(HIDDEN))
    assert layer._runs_fused(), "an init is no reason to leave the fused kernel"


def test_weight_norm_starts_as_the_plain_layer_and_is_scale_free():
    torch.manual_seed(0)
    plain = rnnlab.LSTM(INPUT, HIDDEN)
    torch.manual_seed(0)
    normed = rnnlab.LSTM(INPUT, HIDDEN, weight_norm=True)
    x = torch.randn(STEPS, BATCH, INPUT)
    torch.testing.assert_close(normed(x)[0], plain(x)[0])
    with torch.no_grad():
        normed.weight_hh_l0.mul_(3.0)  # the direction's length does not matter, only the scale g
    torch.testing.assert_close(normed(x)[0], plain(x)[0])
    with torch.no_grad():
        normed.weight_hh_scale_l0.mul_(2.0)
        plain.weight_hh_l0.mul_(2.0)
    torch.testing.assert_close(normed(x)[0], plain(x)[0])


def test_weight_norm_fused_equals_reference_in_values_and_gradients():
    gru = rnnlab.GRU(INPUT, HIDDEN, num_layers=2, bidirectional=True, weight_norm=True)
    x = torch.randn(STEPS, BATCH, INPUT)
    assert gru._runs_fused()
    results = []
    for context in (torch.enable_grad, reference_path):
        with context():
            tensors = flat(gru(x))
        results.append((tensors, torch.autograd.grad(weighted_sum(tensors), list(gru.parameters()))))
    for fused, reference in zip(*[list(a) + list(b) for a, b in results]):
        torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)


def seeds_gru_sequence(x, gru):
    """The seeds' GRU over a sequence, with their concatenated matrices W_g [h, x] and single biases."""
    H = gru.hidden_size
    W = {
        g: torch.cat([gru.weight_hh_l0[k * H : (k + 1) * H], gru.weight_ih_l0[k * H : (k + 1) * H]], 1)
        for k, g in enumerate("rzh")
    }
    b = {g: gru.bias_ih_l0[k * H : (k + 1) * H] + gru.bias_hh_l0[k * H : (k + 1) * H] for k, g in enumerate("rzh")}
    h, outputs = x.new_zeros(x.shape[1], H), []
    for x_t in x:
        z = torch.sigmoid(torch.cat([h, x_t], -1) @ W["z"].T + b["z"])
        r = torch.sigmoid(torch.cat([h, x_t], -1) @ W["r"].T + b["r"])
        h_tilde = torch.tanh(torch.cat([r * h, x_t], -1) @ W["h"].T + b["h"])
        h = (1 - z) * h + z * h_tilde
        outputs.append(h)
    return torch.stack(outputs)


def test_cho_gru_layer_matches_the_seeds_equations():
    gru = rnnlab.GRU(INPUT, HIDDEN, convention="cho")
    x = torch.randn(STEPS, BATCH, INPUT)
    torch.testing.assert_close(gru(x)[0], seeds_gru_sequence(x, gru))


def test_cho_gru_layer_passes_gradcheck_in_float64():
    gru = rnnlab.GRU(2, 3, num_layers=2, bidirectional=True, convention="cho", dtype=torch.float64)
    names = [name for name, _ in gru.named_parameters()]
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)

    def run(x, *weights):
        return torch.func.functional_call(gru, dict(zip(names, weights)), (x,))[0]

    assert torch.autograd.gradcheck(run, (x, *gru.parameters()))


CHECKPOINT_CASES = [
    ("lstm", {}, "padded"),
    ("gru", {}, "packed"),
    ("rnn_tanh", {}, "lengths"),
    ("lstm", {"proj_size": 2}, "lengths"),
    ("lstm", {"layer_norm": True}, "padded"),
    ("gru", {"convention": "cho"}, "lengths"),
    ("lstm", {"weight_norm": True}, "packed"),
    ("gru", {"layer_norm": True}, "packed"),
]


@pytest.mark.parametrize(("kind", "extras", "form"), CHECKPOINT_CASES)
def test_gradient_checkpointing_gives_identical_outputs_and_gradients(kind, extras, form):
    # float64, so that what is compared is the computation and not the rounding of matmuls of
    # another shape (a chunk's input projection is a smaller GEMM than the whole sequence's)
    layer_class, _, base = KINDS[kind]
    torch.manual_seed(0)
    plain = layer_class(INPUT, HIDDEN, 2, bidirectional=True, batch_first=True, **base, **extras, dtype=torch.float64)
    checkpointed = layer_class(
        INPUT,
        HIDDEN,
        2,
        bidirectional=True,
        batch_first=True,
        **base,
        **extras,
        gradient_checkpointing=True,
        checkpoint_steps=3,
        dtype=torch.float64,
    )
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(BATCH, 11, INPUT, dtype=torch.float64)
    lengths = torch.tensor([11, 4, 7])
    results = []
    for layer in (plain, checkpointed):
        x_leaf = x.clone().requires_grad_(True)
        if form == "packed":
            inputs = (torch.nn.utils.rnn.pack_padded_sequence(x_leaf, lengths, True, enforce_sorted=False),)
            tensors = flat(layer(*inputs))
        else:
            tensors = flat(layer(x_leaf, lengths=lengths if form == "lengths" else None))
        grads = torch.autograd.grad(weighted_sum(tensors), [x_leaf, *layer.parameters()])
        results.append(tensors + list(grads))
    for ours, reference in zip(results[1], results[0]):
        torch.testing.assert_close(ours, reference, atol=1e-12, rtol=1e-12)


def test_gradient_checkpointing_stays_on_the_fused_kernel_without_loop_extras():
    lstm = rnnlab.LSTM(INPUT, HIDDEN, gradient_checkpointing=True)
    assert lstm._runs_fused()
    assert not rnnlab.LSTM(INPUT, HIDDEN, gradient_checkpointing=True, layer_norm=True)._runs_fused()
