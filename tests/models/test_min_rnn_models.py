"""The mingru / minlstm models: the model contract, padding, streaming, sizing and refusals."""

from __future__ import annotations

import pytest
import torch
from model_helpers import SPECS, expected_shape, make_inputs

from rnnlab.errors import ConfigError
from rnnlab.models import build_model, count_parameters, model_names

NAMES = ["mingru", "minlstm"]
LENGTHS = [9, 4, 6, 1]


def test_registered():
    assert {"mingru", "minlstm"} <= set(model_names())


@pytest.mark.parametrize("head", ["classify", "tag", "lm", "forecast", "regress"])
@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_padding_independence(name, head):
    spec = SPECS[head]
    torch.manual_seed(1)
    model = build_model(name, spec, hidden_size=8, num_layers=2).double().eval()
    x = make_inputs(spec, len(LENGTHS), max(LENGTHS), torch.Generator().manual_seed(1))
    x = x.double() if x.is_floating_point() else x
    with torch.no_grad():
        batched = model(x, torch.tensor(LENGTHS))
        assert list(batched.shape) == expected_shape(spec, len(LENGTHS), max(LENGTHS))
        for b, length in enumerate(LENGTHS):  # the padding holds random values: reading it would show
            alone = model(x[b : b + 1, :length])
            got = batched[b : b + 1, :length] if model.per_step else batched[b : b + 1]
            torch.testing.assert_close(got, alone, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_step_by_step_equals_the_whole_sequence(name):
    spec = SPECS["lm"]
    torch.manual_seed(2)
    model = build_model(name, spec, hidden_size=6).double().eval()
    assert model.streamable
    x = make_inputs(spec, 2, 7, torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = model(x)
        state, steps = None, []
        for t in range(x.shape[1]):
            output, state = model.step(x[:, t], state)
            steps.append(output)
    torch.testing.assert_close(torch.stack(steps, dim=1), whole, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_params_budget_picks_the_closest_width(name):
    model = build_model(name, SPECS["classify"], params=20_000)
    wider = build_model(name, SPECS["classify"], hidden_size=model.options["hidden_size"] + 1)
    narrower = build_model(name, SPECS["classify"], hidden_size=model.options["hidden_size"] - 1)
    distance = abs(count_parameters(model) - 20_000)
    assert distance <= abs(count_parameters(wider) - 20_000)
    assert distance <= abs(count_parameters(narrower) - 20_000)


@pytest.mark.parametrize("name", NAMES)
def test_trains_one_step(name):
    spec = SPECS["classify"]
    torch.manual_seed(3)
    model = build_model(name, spec, hidden_size=8)
    x = make_inputs(spec, 4, 12, torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3])
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    before = torch.nn.functional.cross_entropy(model(x), y)
    before.backward()
    optimiser.step()
    after = torch.nn.functional.cross_entropy(model(x), y)
    assert after.item() < before.item()


@pytest.mark.parametrize("option", [{"layer_norm": True}, {"init": "orthogonal"}])
def test_recurrent_weight_options_are_refused(option):
    with pytest.raises(ConfigError, match="no recurrent weights"):
        build_model("mingru", SPECS["classify"], **option)
