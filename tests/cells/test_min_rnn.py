"""minGRU / minLSTM: every way of scanning time against the paper's equations and its log-space scan."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from rnnlab.errors import ConfigError
from rnnlab.kernels import build
from rnnlab.layers import MinGRU, MinLSTM, min_rnn_scan

MODES = ["parallel", "sequential"] + (["kernel"] if build.load() is not None else [])
LAYERS = {"mingru": MinGRU, "minlstm": MinLSTM}


def paper_log_space_scan(kind: str, x_projection: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Feng et al. 2024, appendix: the whole sequence in one log-space scan (``h0 > 0``), written
    from the paper's equations, independently of rnnlab.cells.min_rnn. Time on dim 0."""

    def log_g(x):
        return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))

    if kind == "gru":
        k, k_h = x_projection.chunk(2, dim=-1)
        log_coeffs, log_gate = -F.softplus(k), -F.softplus(-k)
    else:
        k_f, k_i, k_h = x_projection.chunk(3, dim=-1)
        difference = F.softplus(-k_f) - F.softplus(-k_i)
        log_coeffs, log_gate = -F.softplus(difference), -F.softplus(-difference)
    log_values = torch.cat([h0.log().unsqueeze(0), log_gate + log_g(k_h)])
    a_star = F.pad(torch.cumsum(log_coeffs, dim=0), (0, 0, 0, 0, 1, 0))
    return torch.exp(a_star + torch.logcumsumexp(log_values - a_star, dim=0))[1:]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_every_mode_equals_the_papers_log_space_scan(kind, mode):
    torch.manual_seed(0)
    gates = 2 if kind == "gru" else 3
    x_projection = torch.randn(50, 3, gates * 4, dtype=torch.float64) * 2
    h0 = torch.rand(3, 4, dtype=torch.float64) + 0.1
    output, last = min_rnn_scan(kind, x_projection, h0, mode=mode)
    expected = paper_log_space_scan(kind, x_projection, h0)
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, expected[-1], rtol=1e-10, atol=1e-12)


def build_layer(name, dtype=torch.float32, **options):
    torch.manual_seed(0)
    return LAYERS[name](3, 5, dtype=dtype, **options)


def outputs_and_gradients(layer, x, form, mode, hx=None, lengths=None):
    x = x.detach().clone().requires_grad_(True)
    hx = None if hx is None else hx.detach().clone().requires_grad_(True)
    if form == "packed":
        output, h_n = layer(pack_padded_sequence(x, lengths, enforce_sorted=False), hx, mode=mode)
        output = output.data
    else:
        output, h_n = layer(x, hx, lengths=lengths, mode=mode)
    generator = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=generator).to(t.dtype)).sum() for t in (output, h_n))
    inputs = [x, *([hx] if hx is not None else []), *layer.parameters()]
    return [output, h_n, *torch.autograd.grad(loss, inputs)]


@pytest.mark.parametrize("form", ["padded", "lengths", "packed"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_modes_agree_on_a_stacked_bidirectional_layer_with_lengths(name, form):
    layer = build_layer(name, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(11, 4, 3, dtype=torch.float64)
    hx = torch.randn(4, 4, 5, dtype=torch.float64)
    lengths = None if form == "padded" else torch.tensor([11, 5, 1, 8])
    results = {mode: outputs_and_gradients(layer, x, form, mode, hx, lengths) for mode in MODES}
    for mode in MODES[1:]:
        for ours, expected in zip(results[mode], results["sequential"]):
            torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_float32_stays_within_1e_5_of_float64(name, mode):
    layer = build_layer(name, num_layers=2)
    exact = build_layer(name, num_layers=2, dtype=torch.float64)
    exact.load_state_dict({key: value.double() for key, value in layer.state_dict().items()})
    x = torch.randn(300, 2, 3)
    ours = outputs_and_gradients(layer, x, "lengths", mode, lengths=torch.tensor([300, 120]))
    expected = outputs_and_gradients(exact, x.double(), "lengths", "sequential", lengths=torch.tensor([300, 120]))
    for a, b in zip(ours, expected):
        assert float((a.double() - b).detach().abs().max()) <= 1e-5 * max(1.0, float(b.detach().abs().max()))


@pytest.mark.parametrize("mode", [m for m in MODES if m != "sequential"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradcheck_in_float64(name, mode):
    layer = build_layer(name, bidirectional=True, dtype=torch.float64)
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    hx = torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True)

    def forward(x, hx, *weights):
        return torch.func.functional_call(
            layer, dict(zip(names, weights)), (x, hx), {"lengths": torch.tensor([6, 3]), "mode": mode}
        )

    assert torch.autograd.gradcheck(forward, (x, hx, *layer.parameters()))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_streaming_one_step_at_a_time_equals_the_whole_sequence(name):
    layer = build_layer(name, num_layers=2, batch_first=True)
    x = torch.randn(2, 40, 3)
    with torch.no_grad():
        whole, whole_state = layer(x)
        state, outputs = None, []
        for t in range(x.shape[1]):
            output, state = layer(x[:, t : t + 1], state)
            outputs.append(output)
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(state, whole_state, rtol=1e-6, atol=1e-6)


def test_unbatched_input_equals_a_batch_of_one():
    layer = build_layer("mingru")
    x = torch.randn(7, 3)
    output, h_n = layer(x)
    batched, batched_h = layer(x.unsqueeze(1))
    torch.testing.assert_close(output, batched.squeeze(1))
    torch.testing.assert_close(h_n, batched_h.squeeze(1))


def test_bad_input_is_refused_with_what_was_expected():
    layer = build_layer("minlstm")
    with pytest.raises(ConfigError, match="Expected 3, got 4"):
        layer(torch.randn(5, 2, 4))
    with pytest.raises(ConfigError, match=r"lengths must be 2 integers in 1..5"):
        layer(torch.randn(5, 2, 3), lengths=torch.tensor([5, 0]))
    with pytest.raises(ConfigError, match=r"expected h_0 of shape \[1, 2, 5\]"):
        layer(torch.randn(5, 2, 3), torch.zeros(1, 3, 5))
    with pytest.raises(ConfigError, match="mode must be one of"):
        layer(torch.randn(5, 2, 3), mode="fast")
    with pytest.raises(ConfigError, match="hidden_size must be a positive integer"):
        MinGRU(3, 0)


def test_exported_from_the_package():
    assert rnnlab.MinGRU is MinGRU and rnnlab.MinLSTM is MinLSTM


@pytest.mark.skipif("kernel" not in MODES, reason="the compiled kernels are not available")
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_fused_layer_kernel_over_many_tiles_and_threads_equals_the_step_functions(name):
    # hidden 64 in float64 makes the kernel's tiles 128 (minGRU) or 85 (minLSTM) pairs: the forward
    # direction (batch-first, read in place, one row per tile) crosses two or three tile boundaries
    # per row, one tile partial and some past a row's length; the backward direction (time-major
    # after the reversal) runs tiles of a few steps of several rows, gathered; two threads split the rows.
    torch.manual_seed(0)
    layer = LAYERS[name](6, 64, batch_first=True, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 300, 6, dtype=torch.float64)
    hx = torch.randn(2, 5, 64, dtype=torch.float64)
    lengths = torch.tensor([300, 137, 264, 1, 299])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ours = outputs_and_gradients(layer, x, "lengths", "kernel", hx, lengths)
    finally:
        torch.set_num_threads(threads)
    expected = outputs_and_gradients(layer, x, "lengths", "sequential", hx, lengths)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif("kernel" not in MODES, reason="the compiled kernels are not available")
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_fused_layer_kernel_in_float32_with_saturated_gates_stays_within_1e_5_of_float64(name, batch_first):
    # float32 tiles of 128 (minGRU) / 85 (minLSTM) pairs at hidden 128; weights scaled so that some
    # pre-activations pass ±40, where the kernel clamps its exponentials, and many are negative,
    # where g is σ.
    torch.manual_seed(0)
    layer = LAYERS[name](8, 128, batch_first=batch_first)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.mul_(30.0)
    exact = LAYERS[name](8, 128, batch_first=batch_first, dtype=torch.float64)
    exact.load_state_dict({key: value.double() for key, value in layer.state_dict().items()})
    x = torch.randn(3, 200, 8) if batch_first else torch.randn(200, 3, 8)
    lengths = torch.tensor([200, 150, 9])
    ours = outputs_and_gradients(layer, x, "lengths", "kernel", lengths=lengths)
    expected = outputs_and_gradients(exact, x.double(), "lengths", "sequential", lengths=lengths)
    for a, b in zip(ours, expected):
        assert float((a.double() - b).detach().abs().max()) <= 1e-5 * max(1.0, float(b.detach().abs().max()))
