"""The compiled kernels against the reference loop over cells (rnnlab.cells, step by step).

Each case builds one rnnlab layer and runs it twice on the same weights and input: on its kernel
path and under ``reference_path()`` (the plain loop over the cells' equations). Outputs, final
states and every gradient must agree: to 1e-5 in float32, and through ``gradcheck`` in float64.
"""

from __future__ import annotations

import copy as copy_module
import subprocess
import sys

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
import rnnlab.layers
from rnnlab.kernels import build
from rnnlab.kernels.streaming import LayerStepper
from rnnlab.layers import reference_path

pytestmark = pytest.mark.skipif(build.load() is None, reason=f"compiled kernels unavailable: {build.status()}")

INPUT, HIDDEN, BATCH, STEPS = 4, 6, 5, 9
LENGTHS = torch.tensor([9, 3, 1, 6, 9])

# (layer class, options): every configuration the kernels serve
CASES = {
    "gru": (rnnlab.GRU, {}),
    "gru_cho": (rnnlab.GRU, {"convention": "cho"}),
    "gru_layer_norm": (rnnlab.GRU, {"layer_norm": True}),
    "gru_cho_layer_norm": (rnnlab.GRU, {"convention": "cho", "layer_norm": True}),
    "rnn_tanh": (rnnlab.RNN, {}),
    "rnn_relu": (rnnlab.RNN, {"nonlinearity": "relu"}),
    "rnn_layer_norm": (rnnlab.RNN, {"layer_norm": True}),
    "lstm_layer_norm": (rnnlab.LSTM, {"layer_norm": True}),
    "lstm_recurrent_dropout": (rnnlab.LSTM, {"recurrent_dropout": 0.3}),
    "gru_recurrent_dropout": (rnnlab.GRU, {"recurrent_dropout": 0.3, "layer_norm": True}),
    "rnn_recurrent_dropout": (rnnlab.RNN, {"recurrent_dropout": 0.3}),
    "gru_cho_recurrent_dropout": (rnnlab.GRU, {"convention": "cho", "recurrent_dropout": 0.3}),
}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# a plain LSTM runs torch.nn's kernel, not ours, so only the stepper is tested on it
STEPPER_ONLY = {"lstm": (rnnlab.LSTM, {})}


def build_layer(case: str, dtype=torch.float32, **extra):
    layer_class, options = CASES[case] if case in CASES else STEPPER_ONLY[case]
    torch.manual_seed(0)
    layer = layer_class(INPUT, HIDDEN, dtype=dtype, **options, **extra)
    with torch.no_grad():  # layer-norm gains and biases away from 1 and 0, so they matter
        for name, parameter in layer.named_parameters():
            if name.startswith("layer_norm"):
                parameter.uniform_(0.5, 1.5)
            elif name.startswith("bias"):
                parameter.uniform_(-0.5, 0.5)
    return layer


def run(layer, x, form: str, hx=None):
    """Output, final state and every gradient of a loss that weighs each element differently."""
    x = x.detach().clone().requires_grad_(True)
    hx = None if hx is None else tuple(s.detach().clone().requires_grad_(True) for s in hx)
    layer_hx = None if hx is None else (hx if isinstance(layer, rnnlab.LSTM) else hx[0])
    torch.manual_seed(7)  # the same recurrent-dropout masks on both paths
    if form == "packed":
        output, state = layer(
            pack_padded_sequence(x, LENGTHS, batch_first=layer.batch_first, enforce_sorted=False), layer_hx
        )
        output = output.data
    else:
        output, state = layer(x, layer_hx, lengths=LENGTHS if form == "lengths" else None)
    tensors = [output, *(state if isinstance(state, tuple) else (state,))]
    generator = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=generator).to(t.dtype)).sum() for t in tensors)
    inputs = [x, *(hx or ()), *layer.parameters()]
    return tensors + list(torch.autograd.grad(loss, inputs))


def spy_on_kernel(monkeypatch) -> list[str]:
    calls = []
    real = rnnlab.layers.run_recurrence

    def counting(cell_kind, *args, **kwargs):
        calls.append(cell_kind)
        return real(cell_kind, *args, **kwargs)

    monkeypatch.setattr(rnnlab.layers, "run_recurrence", counting)
    return calls


def run_nudged(layer, x, form, hx, generator):
    """``run`` with every float32 element of the weights, ``x`` and ``hx`` moved one unit in the last
    place, up or down at random: the same computation rounded otherwise."""

    def nudge(tensor):
        up = torch.rand(tensor.shape, generator=generator) < 0.5
        return torch.nextafter(tensor, torch.where(up, torch.inf, -torch.inf).to(tensor.dtype))

    copy = copy_module.deepcopy(layer)
    with torch.no_grad():
        for parameter in copy.parameters():
            parameter.copy_(nudge(parameter))
    return run(copy, nudge(x), form, tuple(nudge(h) for h in hx))


@pytest.mark.parametrize("form", ["padded", "lengths", "packed"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_equals_reference_loop(case, form, monkeypatch):
    """Two layers, both directions, given initial states: float64 kernel = float64 loop to 1e-9, and
    the float32 kernel as close to that exact result as float32 allows.

    How close float32 can get depends on the problem's conditioning (layer norm over a nearly
    constant row divides rounding by a tiny standard deviation) and on the order of the roundings,
    which differs with the CPU's vector width, FMA and the BLAS code path: no fixed multiple of one
    float32 run's error holds on every x86-64 CPU. The bound is measured instead: the reference
    loop's own float32 error, and that of the loop on weights, inputs and states each moved by one
    unit in the last place (the same sums rounded otherwise), four samples. The kernel's error is one
    more such sample; it may not exceed 1e-5 of the tensor's scale or four times the largest (over
    8 seeds, native and baseline ISA, MKL's AVX2 and SSE4.2 paths: at most 2.2 times)."""
    layer = build_layer(case, num_layers=2, bidirectional=True, batch_first=True)
    exact = build_layer(case, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
    exact.load_state_dict({name: tensor.double() for name, tensor in layer.state_dict().items()})
    layer.train(), exact.train()  # recurrent dropout draws its masks only in training
    x = torch.randn(BATCH, STEPS, INPUT)
    hx = tuple(torch.randn(4, BATCH, HIDDEN) for _ in range(2 if isinstance(layer, rnnlab.LSTM) else 1))
    calls = spy_on_kernel(monkeypatch)
    fast32 = run(layer, x, form, hx)
    fast64 = run(exact, x.double(), form, tuple(h.double() for h in hx))
    assert len(calls) == 8, "every layer and direction should have run on the kernel"
    generator = torch.Generator().manual_seed(11)
    with reference_path():
        reference64 = run(exact, x.double(), form, tuple(h.double() for h in hx))
        float32_runs = [run(layer, x, form, hx)] + [run_nudged(layer, x, form, hx, generator) for _ in range(4)]
    assert len(calls) == 8
    for i, (ours32, ours64, expected) in enumerate(zip(fast32, fast64, reference64)):
        scale = max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(ours64, expected, rtol=1e-9, atol=1e-9 * scale)
        float32_error = max(float((sample[i].double() - expected).abs().max()) for sample in float32_runs)
        assert float((ours32.double() - expected).abs().max()) <= max(1e-5 * scale, 4 * float32_error)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rows_split_over_threads_equal_the_reference_loop(case, monkeypatch):
    """Each thread carries its own block of batch rows through the sequence: with three threads the
    five rows split unevenly (2, 2, 1), and padded rows fall in different blocks."""
    layer = build_layer(case, bidirectional=True, batch_first=True, dtype=torch.float64).train()
    x = torch.randn(BATCH, STEPS, INPUT, dtype=torch.float64)
    calls = spy_on_kernel(monkeypatch)
    torch.set_num_threads(3)
    ours = run(layer, x, "lengths")
    assert len(calls) == 2
    with reference_path():
        expected = run(layer, x, "lengths")
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_passes_gradcheck_in_float64(case):
    layer_class, options = CASES[case]
    torch.manual_seed(0)
    layer = layer_class(2, 3, dtype=torch.float64, bidirectional=True, **options).train()
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)

    def forward(x, *weights):
        torch.manual_seed(3)  # gradcheck calls forward many times: the same dropout mask each time
        output, state = torch.func.functional_call(
            layer, dict(zip(names, weights)), (x,), {"lengths": torch.tensor([4, 2, 1])}
        )
        return output, *(state if isinstance(state, tuple) else (state,))

    assert torch.autograd.gradcheck(forward, (x, *layer.parameters()))


def test_plain_gru_and_rnn_run_on_the_kernel_and_plain_lstm_on_torch_nn(monkeypatch):
    calls = spy_on_kernel(monkeypatch)
    x = torch.randn(STEPS, BATCH, INPUT)
    for layer in (rnnlab.GRU(INPUT, HIDDEN), rnnlab.RNN(INPUT, HIDDEN), rnnlab.LSTM(INPUT, HIDDEN)):
        layer(x)
    assert calls == ["gru", "rnn"]
    # at any size: a wide layer's per-step GEMM dominates, and the kernel runs it as fast as torch.nn
    for layer in (rnnlab.RNN(INPUT, 1024), rnnlab.GRU(INPUT, 1024), rnnlab.LSTM(INPUT, 1024)):
        layer(torch.randn(2, 64, INPUT))
    assert calls == ["gru", "rnn", "rnn", "gru"]


def test_zoneout_and_gate_recording_keep_the_loop(monkeypatch):
    calls = spy_on_kernel(monkeypatch)
    x = torch.randn(STEPS, BATCH, INPUT)
    rnnlab.GRU(INPUT, HIDDEN, zoneout=0.1)(x)
    gru = rnnlab.GRU(INPUT, HIDDEN, layer_norm=True)
    with rnnlab.record_gates(gru) as record:
        gru(x)
    assert calls == [] and record["", 0, "forward"]["z"].shape == (BATCH, STEPS, HIDDEN)


def test_inference_without_grad_equals_training_forward():
    layer = build_layer("lstm_layer_norm", num_layers=2)
    x = torch.randn(STEPS, BATCH, INPUT)
    with_grad, _ = layer(x)
    with torch.no_grad():
        without_grad, _ = layer(x)
    torch.testing.assert_close(without_grad, with_grad.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("case", ["gru", "gru_cho_layer_norm", "rnn_relu", "rnn_tanh", "lstm", "lstm_layer_norm"])
@pytest.mark.parametrize("batch", [1, 4, 6])
def test_stepper_equals_the_whole_sequence(case, batch):
    # batch ≤ 4 of a plain LSTM / GRU / RNN takes the stepper's direct path, 6 rows its general one
    layer = build_layer(case, num_layers=2).eval()
    x = torch.randn(STEPS, batch, INPUT)
    with reference_path(), torch.no_grad():
        whole, final = layer(x)
    stepper = LayerStepper(layer)
    state = stepper.initial_state(batch)
    outputs = []
    for x_t in x:
        h_t, state = stepper(x_t, state)
        outputs.append(h_t)
    torch.testing.assert_close(torch.stack(outputs), whole, rtol=1e-5, atol=1e-5)
    final_state = stepper.to_layer_state(state)
    for ours, expected in zip(
        final_state if isinstance(final, tuple) else (final_state,), final if isinstance(final, tuple) else (final,)
    ):
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_stepper_refuses_a_bidirectional_layer():
    with pytest.raises(rnnlab.errors.ConfigError, match="bidirectional"):
        LayerStepper(rnnlab.GRU(INPUT, HIDDEN, bidirectional=True))


def test_a_failed_build_falls_back_to_the_loop_and_says_why(monkeypatch, tmp_path, capsys):
    def failing_build(target, module_name):
        raise RuntimeError("the compiler failed (exit 1): simulated")

    monkeypatch.setenv("RNNLAB_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("RNNLAB_REQUIRE_KERNELS", "0")  # the users' fallback, not CI's error
    monkeypatch.setattr(build, "_module", None)
    monkeypatch.setattr(build, "_failure", None)
    monkeypatch.setattr(build, "_build", failing_build)
    layer = build_layer("gru_layer_norm")
    x = torch.randn(STEPS, BATCH, INPUT)
    output, _ = layer(x)
    assert "unavailable" in build.status() and "simulated" in build.status()
    assert "pure-PyTorch" in capsys.readouterr().err
    assert rnnlab.layers.active_kernel_paths()["kernels"].startswith("unavailable")
    with reference_path():
        expected, _ = layer(x)
    torch.testing.assert_close(output, expected, rtol=0, atol=0)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("RNNLAB_KERNELS", "0")
    calls = spy_on_kernel(monkeypatch)
    rnnlab.GRU(INPUT, HIDDEN)(torch.randn(STEPS, BATCH, INPUT))
    assert calls == [] and build.status().startswith("switched off")


def test_the_kernels_first_use_leaves_the_random_stream_alone():
    # the kernels check MKL's GEMM entry points once against at::mm on their first use; their test
    # matrices must not come from torch's generator, or seeded runs would differ by whether (and
    # when) a kernel ran first. A fresh process, since the check runs once per process.
    program = (
        "import torch, rnnlab\n"
        "layer, gru = rnnlab.MinGRU(3, 4), rnnlab.GRU(3, 4)\n"
        "x = torch.ones(5, 4, 3)\n"
        "torch.manual_seed(1); layer(x); gru(x); after_kernels = torch.rand(3)\n"
        "torch.manual_seed(1); untouched = torch.rand(3)\n"
        "print(torch.equal(after_kernels, untouched))\n"
    )
    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert completed.stdout.strip() == "True", completed.stderr[-2000:]
