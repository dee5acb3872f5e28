"""Gates you can see: record_gates records what the recurrence computed, and ∂L/∂h_t through time."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from layer_helpers import weighted_sum
from rnnlab.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, BATCH, INPUT, HIDDEN = 7, 3, 4, 5


def test_lstm_gates_satisfy_the_cell_equations():
    lstm = rnnlab.LSTM(INPUT, HIDDEN, num_layers=2)
    with rnnlab.record_gates(lstm) as record:
        output, _ = lstm(torch.randn(STEPS, BATCH, INPUT))
    assert record.keys() == [("", 0, "forward"), ("", 1, "forward")]
    gates = record["", 1, "forward"]
    for name in ("i", "f", "o", "c_tilde", "c", "h"):
        assert gates[name].shape == (BATCH, STEPS, HIDDEN), name
    c_prev = torch.cat([torch.zeros(BATCH, 1, HIDDEN), gates["c"][:, :-1]], dim=1)
    torch.testing.assert_close(gates["c"], gates["f"] * c_prev + gates["i"] * gates["c_tilde"])
    torch.testing.assert_close(gates["h"], gates["o"] * torch.tanh(gates["c"]))
    torch.testing.assert_close(gates["h"], output.transpose(0, 1))
    assert not gates["h"].requires_grad


@pytest.mark.parametrize("convention", ["torch", "cho"])
def test_gru_gates_satisfy_the_cell_equations(convention):
    gru = rnnlab.GRU(INPUT, HIDDEN, convention=convention, batch_first=True)
    with rnnlab.record_gates(gru) as record:
        output, _ = gru(torch.randn(BATCH, STEPS, INPUT))
    gates = record["", 0, "forward"]
    h_prev = torch.cat([torch.zeros(BATCH, 1, HIDDEN), gates["h"][:, :-1]], dim=1)
    z = gates["z"]
    if convention == "torch":
        torch.testing.assert_close(gates["h"], (1 - z) * gates["n"] + z * h_prev)
    else:
        torch.testing.assert_close(gates["h"], (1 - z) * h_prev + z * gates["h_tilde"])
    torch.testing.assert_close(gates["h"], output)


def test_backward_direction_is_recorded_in_the_sequences_own_time_order():
    lstm = rnnlab.LSTM(INPUT, HIDDEN, bidirectional=True, batch_first=True)
    lengths = torch.tensor([7, 3, 5])
    with rnnlab.record_gates(lstm) as record:
        output, _ = lstm(torch.randn(BATCH, STEPS, INPUT), lengths=lengths)
    forward, backward = record["", 0, "forward"], record["", 0, "backward"]
    torch.testing.assert_close(forward["h"], output[..., :HIDDEN])
    torch.testing.assert_close(backward["h"], output[..., HIDDEN:])
    assert torch.equal(backward["lengths"], lengths)
    for b, length in enumerate(lengths.tolist()):  # backward: c_t = f_t c_{t+1} + i_t c~_t within the length
        c_next = torch.cat([backward["c"][b, 1:length], torch.zeros(1, HIDDEN)])
        torch.testing.assert_close(
            backward["c"][b, :length],
            backward["f"][b, :length] * c_next + backward["i"][b, :length] * backward["c_tilde"][b, :length],
        )
        assert not backward["f"][b, length:].any(), "steps past the length are recorded as zero"


def test_records_inside_a_model_by_module_name_and_leaves_the_fast_path_after():
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(rnnlab.GRU(INPUT, HIDDEN, batch_first=True))
            self.head = nn.Linear(HIDDEN, 2)

        def forward(self, x):
            return self.head(self.encoder(x)[0])

    model = Tagger()
    x = torch.randn(BATCH, STEPS, INPUT)
    with rnnlab.record_gates(model) as record:
        model(x)
        model(x[:, :4])
    assert record.keys() == [("encoder.0", 0, "forward")]
    assert len(record.calls) == 2 and record["encoder.0", 0, "forward"]["z"].shape == (BATCH, 4, HIDDEN)
    assert model.encoder[0]._runs_fused()


def test_recording_a_model_without_rnnlab_layers_says_why_it_cannot():
    with (
        pytest.raises(ConfigError, match="contains no rnnlab RNN/LSTM/GRU layer"),
        rnnlab.record_gates(nn.LSTM(INPUT, HIDDEN)),
    ):
        pass


def test_recording_works_on_a_packed_batch():
    rnn = rnnlab.RNN(INPUT, HIDDEN)
    packed = pack_padded_sequence(torch.randn(STEPS, BATCH, INPUT), [7, 2, 4], enforce_sorted=False)
    with rnnlab.record_gates(rnn) as record:
        rnn(packed)
    entry = record["", 0, "forward"]
    assert set(entry) == {"h", "lengths"} and entry["h"].shape == (BATCH, STEPS, HIDDEN)
    assert not entry["h"][1, 2:].any()


def hand_rolled_lstm(x, cells):
    """Stacked torch.nn.LSTMCells over time; every h_t and c_t kept with retain_grad()."""
    layer_input, per_layer = x, []
    for cell in cells:
        h = c = torch.zeros(x.shape[1], cell.hidden_size)
        hs, cs = [], []
        for x_t in layer_input:
            h, c = cell(x_t, (h, c))
            h.retain_grad()
            c.retain_grad()
            hs.append(h)
            cs.append(c)
        per_layer.append((hs, cs))
        layer_input = torch.stack(hs)
    return layer_input, per_layer


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_gradients_through_time_equal_a_hand_rolled_loop(gradient_checkpointing):
    lstm = rnnlab.LSTM(INPUT, HIDDEN, num_layers=2, gradient_checkpointing=gradient_checkpointing)
    cells = [nn.LSTMCell(INPUT if k == 0 else HIDDEN, HIDDEN) for k in range(2)]
    for k, cell in enumerate(cells):
        cell.load_state_dict({name: getattr(lstm, f"{name}_l{k}") for name in cell.state_dict()})
    x = torch.randn(STEPS, BATCH, INPUT)

    with rnnlab.record_gates(lstm, detach=False) as record:
        output, (h_n, c_n) = lstm(x)
    steps = {k: (record["", k, "forward"]["h_steps"], record["", k, "forward"]["c_steps"]) for k in range(2)}
    for hs, cs in steps.values():
        for tensor in hs + cs:
            tensor.retain_grad()
    weighted_sum([output, h_n[1], c_n[1]]).backward()

    hand_output, hand_steps = hand_rolled_lstm(x, cells)
    weighted_sum([hand_output, hand_steps[1][0][-1], hand_steps[1][1][-1]]).backward()

    for k in range(2):
        for t in range(STEPS):
            torch.testing.assert_close(steps[k][0][t].grad, hand_steps[k][0][t].grad, msg=f"dL/dh layer {k} step {t}")
            torch.testing.assert_close(steps[k][1][t].grad, hand_steps[k][1][t].grad, msg=f"dL/dc layer {k} step {t}")
    # the gradient does reach the first step: a real signal through time, not a vacuous match of zeros
    assert steps[0][0][0].grad.abs().sum() > 0
