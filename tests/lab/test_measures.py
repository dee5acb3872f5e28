"""Measurements against independent references: a hand-rolled recurrence, hand-counted bytes, full forwards."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.data import collate, load_task
from rnnlab.lab import measures
from rnnlab.models import build_model
from rnnlab.train.metrics import loss_function


@pytest.fixture(scope="module")
def recall():
    return load_task("recall", seq_len=12, n_train=16, n_val=8, n_test=8)


def batch_of(task_data, count=8):
    return collate([task_data.test[i] for i in range(count)])


def test_gradient_flow_equals_a_hand_rolled_recurrence(recall):
    torch.manual_seed(0)
    model = build_model("rnn", recall.spec, hidden_size=8, num_layers=1)
    batch = batch_of(recall)
    measured = measures.measure_gradient_flow(model, batch.x, batch.y, loss_function("classify"))
    assert all(p.grad is None for p in model.parameters())  # the measurement leaves no gradients behind

    # the reference: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) written out, ∂L/∂h_t by autograd
    rnn = model.encoder.rnn
    inputs = model.encoder.embedding(batch.x)
    h = torch.zeros(batch.x.size(0), 8)
    states = []
    for x_t in inputs.unbind(1):
        h = torch.tanh(x_t @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0)
        h.retain_grad()
        states.append(h)
    F.cross_entropy(model.head(h), batch.y).backward()
    expected = [float(state.grad.norm(dim=1).mean()) for state in states]

    assert measured["steps"] == list(range(1, 13))
    assert measured["norms"]["h"] == pytest.approx(expected, rel=1e-5)
    assert measured["samples"] == 8


def test_gradient_flow_of_the_lstm_has_the_cell_state_and_vanishes_slower(recall):
    torch.manual_seed(0)
    lstm = build_model("lstm", recall.spec, hidden_size=16, num_layers=2, init="chrono")
    batch = batch_of(recall)
    flow = measures.measure_gradient_flow(lstm, batch.x, batch.y, loss_function("classify"))
    assert flow["layer"] == 1  # the top layer
    assert set(flow["norms"]) == {"h", "c"} and len(flow["norms"]["c"]) == 12
    torch.manual_seed(0)
    rnn = build_model("rnn", recall.spec, hidden_size=16, num_layers=2)
    rnn_flow = measures.measure_gradient_flow(rnn, batch.x, batch.y, loss_function("classify"))["norms"]["h"]
    cell_flow = flow["norms"]["c"]
    # what reaches step 1 relative to step T: through the cell state far more than through tanh(W h)
    assert cell_flow[0] / cell_flow[-1] > 10 * rnn_flow[0] / rnn_flow[-1]
    assert (
        measures.measure_gradient_flow(
            build_model("tcn", recall.spec, hidden_size=8), batch.x, batch.y, loss_function("classify")
        )
        is None
    )


def test_curve_points_keep_the_ends():
    assert measures.curve_points(5) == [1, 2, 3, 4, 5]
    points = measures.curve_points(1000)
    assert points[0] == 1 and points[-1] == 1000 and len(points) <= measures.MAX_CURVE_POINTS
    assert points == sorted(set(points))


@pytest.mark.parametrize("convention, expected_keep", [("torch", 1.0), ("cho", 0.0)])
def test_gru_retention_gate_follows_the_convention(recall, convention, expected_keep):
    model = build_model("gru", recall.spec, hidden_size=8, num_layers=1, convention=convention)
    with torch.no_grad():  # update gate z ≈ 1 everywhere: torch keeps h_{t-1}, Cho's writes h~_t
        model.encoder.rnn.bias_ih_l0[8:16] = 30.0
    stats = measures.measure_gates(model, batch_of(recall).x)
    assert stats["retention"]["mean"] == pytest.approx(expected_keep, abs=1e-6)
    assert stats["gates"]["z"]["saturated_high"] == pytest.approx(1.0)
    assert measures.measure_gates(build_model("rnn", recall.spec, hidden_size=8), batch_of(recall).x) is None


def test_lstm_forget_gate_statistics_equal_the_gate_by_hand(recall):
    torch.manual_seed(1)
    model = build_model("lstm", recall.spec, hidden_size=8, num_layers=1)
    batch = batch_of(recall)
    stats = measures.measure_gates(model, batch.x)
    # reference: the gates of nn.LSTMCell with the same weights (torch's order i, f, g, o)
    rnn = model.encoder.rnn
    cell = nn.LSTMCell(8, 8)
    cell.load_state_dict(
        {
            "weight_ih": rnn.weight_ih_l0,
            "weight_hh": rnn.weight_hh_l0,
            "bias_ih": rnn.bias_ih_l0,
            "bias_hh": rnn.bias_hh_l0,
        }
    )
    h = c = torch.zeros(8, 8)
    forget = []
    with torch.no_grad():
        for x_t in model.encoder.embedding(batch.x).unbind(1):
            gates = x_t @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
            forget.append(torch.sigmoid(gates[:, 8:16]))
            h, c = cell(x_t, (h, c))
    forget = torch.stack(forget)
    assert stats["retention"]["mean"] == pytest.approx(float(forget.mean()), rel=1e-5)
    assert stats["retention"]["saturated_high"] == pytest.approx(float((forget > 0.9).float().mean()), abs=1e-6)


def test_streaming_attention_pooling_equals_the_whole_sequence(recall):
    torch.manual_seed(0)
    model = build_model("lstm+attn", recall.spec, hidden_size=8, num_layers=2).eval()
    x = batch_of(recall, 3).x
    stream = measures.PoolingStream.for_model(model)
    with torch.no_grad():
        outputs = [stream.step(x_t) for x_t in x.unbind(1)]
        for t in (1, 5, 12):  # the output after t steps is the model's output on the first t steps
            torch.testing.assert_close(outputs[t - 1], model(x[:, :t]), rtol=1e-5, atol=1e-6)
    assert measures.PoolingStream.for_model(build_model("lstm", recall.spec, hidden_size=8)) is None


def test_stream_step_modes(recall):
    x = batch_of(recall, 1).x
    lstm = build_model("lstm", recall.spec, hidden_size=8)
    assert "carried recurrent state" in measures.time_stream_step(lstm, x, budget_seconds=0.01)[1]
    tcn = build_model("tcn", recall.spec, hidden_size=8)
    milliseconds, mode = measures.time_stream_step(tcn, x, budget_seconds=0.01)
    assert milliseconds > 0 and f"receptive-field window ({min(tcn.receptive_field, 12)} steps)" in mode
    transformer = build_model("transformer", recall.spec, hidden_size=8)
    assert "whole window (12 steps)" in measures.time_stream_step(transformer, x, budget_seconds=0.01)[1]


def test_train_memory_counts_parameters_four_times_and_saved_activations():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(5, 3)

        def forward(self, x, lengths=None):
            return torch.tanh(self.linear(x))

    x, y = torch.randn(7, 5), torch.randn(7, 3)
    counted = measures.train_memory_bytes(Tiny(), x, y, lambda out, target: (out - target).square().mean())
    parameters = (5 * 3 + 3) * 4
    # saved for backward: the input x (by addmm), tanh's output (by tanh) and out − target (by square)
    saved = 7 * 5 * 4 + 7 * 3 * 4 + 7 * 3 * 4
    assert counted == 4 * parameters + saved


def test_attention_rows_are_distributions(recall):
    x = batch_of(recall, 4).x
    for name in ("lstm+attn", "transformer"):
        attention = measures.measure_attention(build_model(name, recall.spec, hidden_size=8), x)
        weights = torch.tensor(attention["weights"])
        assert weights.shape == (4, 12) and attention["steps"] == list(range(1, 13))
        torch.testing.assert_close(weights.sum(1), torch.ones(4), rtol=1e-5, atol=1e-5)
        assert bool((weights >= 0).all())
    assert measures.measure_attention(build_model("lstm", recall.spec, hidden_size=8), x) is None


def test_transformer_attention_equals_the_attention_by_hand(recall):
    torch.manual_seed(0)
    model = build_model("transformer", recall.spec, hidden_size=8, num_layers=1, num_heads=2).eval()
    x = batch_of(recall, 3).x
    measured = torch.tensor(measures.measure_attention(model, x)["weights"])
    # by hand: the input of the last layer's attention is LN(z) with z = embedding·√d + PE (one layer)
    encoder = model.encoder
    with torch.no_grad():
        z = encoder.input(x) * encoder.scale_input + measures_positions(12, 8)
        layer = encoder.layers[-1]
        y = layer.attention_norm(z)
        q, k, _ = layer.attention.qkv(y).chunk(3, dim=-1)
        q, k = q.view(3, 12, 2, 4).transpose(1, 2), k.view(3, 12, 2, 4).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / 2.0
        if encoder.causal:
            scores = scores.masked_fill(torch.ones(12, 12, dtype=torch.bool).triu(1), float("-inf"))
        expected = torch.softmax(scores, -1).mean(1)[:, -1, :]
    torch.testing.assert_close(measured, expected, rtol=1e-4, atol=1e-6)


def measures_positions(seq_len, size):
    from rnnlab.models.transformer import sinusoidal_positions

    return sinusoidal_positions(seq_len, size, torch.device("cpu"), torch.float32)


def test_long_attention_maps_are_binned_without_losing_weight():
    data = load_task("recall", seq_len=1200, n_train=4, n_val=4, n_test=4)
    model = build_model("lstm+attn", data.spec, hidden_size=4, num_layers=1)
    attention = measures.measure_attention(model, collate([data.test[0], data.test[1]]).x)
    weights = torch.tensor(attention["weights"])
    assert weights.shape[1] == measures.MAX_ATTENTION_STEPS and attention["steps"][-1] == 1200
    torch.testing.assert_close(weights.sum(1), torch.ones(2), rtol=1e-5, atol=1e-5)


def test_probe_counts_and_times_the_three_layers():
    probe = measures.probe_layer_costs(input_size=4, hidden_size=8, seq_len=5, batch_size=2, repeats=2)
    assert probe["parameters"] == {"rnn": 8 * (4 + 8 + 2), "lstm": 4 * 8 * (4 + 8 + 2), "gru": 3 * 8 * (4 + 8 + 2)}
    assert all(values["train_ms"] > 0 and values["infer_ms"] > 0 for values in probe["layers"].values())


def test_peak_rss_is_positive_and_resettable():
    assert measures.peak_rss_mb() > 10
    measures.reset_peak_rss()
    assert measures.peak_rss_mb() > 10


def test_timings_taken_while_the_process_is_starved_of_cpu_are_flagged():
    import time

    with measures.load_watch() as idle:  # waits without computing: the CPU went elsewhere
        time.sleep(0.3)
    assert idle["contended"] and idle["cpu_share"] < measures.CONTENDED_BELOW
    with measures.load_watch() as busy:  # computes all the time: it had its core, or what was left of it
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:
            sum(range(1000))
    assert busy["cpu_share"] > idle["cpu_share"]  # (whether it is flagged depends on what else runs)


def test_other_processes_holding_the_cpu_flag_the_timing():
    import os
    import subprocess
    import sys
    import time

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3 * (os.cpu_count() or 1))]
    try:
        time.sleep(0.5)  # let them take the cores
        with measures.load_watch() as load:
            deadline = time.perf_counter() + 1.0
            while time.perf_counter() < deadline:
                sum(range(1000))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert load["contended"], load
