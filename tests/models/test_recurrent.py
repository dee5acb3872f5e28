"""The recurrent encoder: its summary, carried state, and one-step streaming."""

from __future__ import annotations

import pytest
import torch
from model_helpers import SPECS, make_inputs

from rnnlab.errors import ConfigError
from rnnlab.layers import record_gates
from rnnlab.models import build_model

LENGTHS = torch.tensor([6, 2, 4])


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_bidirectional_summary_is_each_direction_final_state(name: str) -> None:
    """[→h at the last valid step ; ←h at step 0] is what the layer returns as the top layer's h_n."""
    spec = SPECS["classify"]
    model = build_model(name, spec, hidden_size=5, num_layers=2, bidirectional=True).double()
    x = make_inputs(spec, 3, 6, torch.Generator().manual_seed(0))
    encoded = model.encoder(x, LENGTHS)
    h_n = encoded.state[0] if isinstance(encoded.state, tuple) else encoded.state  # [layers·2, B, H]
    torch.testing.assert_close(encoded.summary, torch.cat([h_n[-2], h_n[-1]], dim=1))


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_carried_state_over_chunks_equals_the_whole_sequence(name: str) -> None:
    """Truncated BPTT's forward pass: chunks with the state carried give the whole run's outputs."""
    spec = SPECS["lm"]
    model = build_model(name, spec, hidden_size=6).double().eval()
    x = make_inputs(spec, 2, 9, torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole, whole_state = model(x, return_state=True)
        first, state = model(x[:, :4], return_state=True)
        second, state = model(x[:, 4:], state=state, return_state=True)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    for part, expected in zip(
        state if isinstance(state, tuple) else (state,),
        whole_state if isinstance(whole_state, tuple) else (whole_state,),
    ):
        torch.testing.assert_close(part, expected)


@pytest.mark.parametrize(("name", "head"), [("lstm", "lm"), ("gru", "forecast"), ("rnn", "multilabel")])
def test_step_by_step_equals_the_whole_sequence(name: str, head: str) -> None:
    spec = SPECS[head]
    model = build_model(name, spec, hidden_size=6).double().eval()
    x = make_inputs(spec, 2, 7, torch.Generator().manual_seed(2))
    if x.is_floating_point():
        x = x.double()
    with torch.no_grad():
        whole = model(x)
        state, outputs = None, []
        for t in range(7):
            output, state = model.step(x[:, t], state)
            outputs.append(output)
    if model.per_step:
        torch.testing.assert_close(torch.stack(outputs, 1), whole)
    else:
        torch.testing.assert_close(outputs[-1], whole)


@pytest.mark.parametrize(
    ("name", "head", "reason"),
    [
        ("tcn", "lm", "its encoder has no recurrent state"),
        ("lstm+attn", "lm", "attention reads all earlier outputs"),
        ("gru", "tag", "a bidirectional encoder reads the future"),
    ],
)
def test_step_is_refused_with_the_reason(name: str, head: str, reason: str) -> None:
    model = build_model(name, SPECS[head], hidden_size=4)
    assert not model.streamable
    with pytest.raises(ConfigError, match=reason):
        model.step(torch.zeros(1, dtype=torch.long))


def test_layer_extras_reach_the_rnnlab_layer() -> None:
    model = build_model(
        "gru",
        SPECS["classify"],
        hidden_size=4,
        layer_norm=True,
        init="orthogonal",
        recurrent_dropout=0.1,
        convention="cho",
    )
    layer = model.encoder.rnn
    assert (layer.layer_norm, layer.init, layer.recurrent_dropout, layer.convention) == (True, "orthogonal", 0.1, "cho")


def test_gates_of_a_task_model_can_be_recorded() -> None:
    """The lab reads gates through rnnlab.layers.record_gates on the whole model."""
    model = build_model("lstm", SPECS["classify"], hidden_size=4, num_layers=2)
    x = make_inputs(SPECS["classify"], 3, 6, torch.Generator().manual_seed(3))
    with record_gates(model) as record:
        model(x, LENGTHS)
    forget = record["encoder.rnn", 1, "forward"]["f"]
    assert list(forget.shape) == [3, 6, 4]
    assert (forget[1, 2:] == 0).all() and (forget[1, :2] > 0).all()  # zero past the length of 2
