"""model.options: what a run's config.json records to rebuild the model. It holds the common
options and only the model options that were given or fitted to a budget, never every default.

The expected dicts were read from build_model before each family declared its options as a
dataclass (issue 17): saved runs hold exactly these keys, so the refactor must not add any."""

from __future__ import annotations

import pytest
from model_helpers import SPECS

from rnnlab.models import build_model, model_names

COMMON = {"num_layers": 2, "dropout": 0.0, "layer_norm": False, "init": None}
# recurrent models record the bidirectional the task chose; the others what was given (None)
DEFAULTS = {
    "rnn": {"hidden_size": 128, **COMMON, "bidirectional": False},
    "lstm": {"hidden_size": 128, **COMMON, "bidirectional": False},
    "gru": {"hidden_size": 128, **COMMON, "bidirectional": False},
    "lstm+attn": {"hidden_size": 128, **COMMON, "bidirectional": False},
    "gru+attn": {"hidden_size": 128, **COMMON, "bidirectional": False},
    "tcn": {"hidden_size": 64, **COMMON, "bidirectional": None},
    "transformer": {"hidden_size": 64, **COMMON, "bidirectional": None},
    "mingru": {"hidden_size": 128, **COMMON, "bidirectional": False},
    "minlstm": {"hidden_size": 128, **COMMON, "bidirectional": False},
    "informer": {"hidden_size": 64, **COMMON, "bidirectional": None},
    "transformer-xl": {"hidden_size": 128, **COMMON, "bidirectional": None},
}
ONE_OPTION = {
    "rnn": {"nonlinearity": "relu"},
    "lstm": {"embedding_dim": 6},
    "gru": {"convention": "torch"},
    "lstm+attn": {"attention_size": 5},
    "gru+attn": {"zoneout": 0.1},
    "tcn": {"kernel_size": 3},
    "transformer": {"num_heads": 2},
    "mingru": {"embedding_dim": 6},
    "minlstm": {"embedding_dim": 6},
    "informer": {"factor": 3},
    "transformer-xl": {"mem_len": 4},
}
# a budget fits the width, then feedforward_size (the option these families refine)
BUDGET_20K = {
    "transformer": {"hidden_size": 28, "feedforward_size": 111},
    "informer": {"hidden_size": 20, "feedforward_size": 93},
    "transformer-xl": {"hidden_size": 28, "feedforward_size": 92},
}
HEAD = {"informer": "forecast", "transformer-xl": "lm"}


def test_every_registered_model_has_its_recorded_options_written_down() -> None:
    assert set(model_names()) == set(DEFAULTS) == set(ONE_OPTION)


@pytest.mark.parametrize("name", model_names())
def test_a_default_build_records_only_the_common_options(name: str) -> None:
    assert build_model(name, SPECS[HEAD.get(name, "classify")]).options == DEFAULTS[name]


@pytest.mark.parametrize("name", model_names())
def test_a_given_option_is_recorded_and_no_default_beside_it(name: str) -> None:
    model = build_model(name, SPECS[HEAD.get(name, "classify")], **ONE_OPTION[name])
    assert model.options == {**DEFAULTS[name], **ONE_OPTION[name]}


@pytest.mark.parametrize("name", sorted(BUDGET_20K))
def test_a_budget_records_the_fitted_width_and_refined_option(name: str) -> None:
    model = build_model(name, SPECS[HEAD.get(name, "classify")], params=20_000)
    assert model.options == {**DEFAULTS[name], **BUDGET_20K[name]}
