"""What each family states about itself (rnnlab.models.families): the options it takes are its
dataclass's fields, options of one cell are refused by the others, its static ``streamable``
agrees with the built model's, and its ``search_space`` names options it takes."""

from __future__ import annotations

from dataclasses import fields

import pytest
from model_helpers import SPECS, fits

from rnnlab.errors import ConfigError
from rnnlab.models import build_model, family, model_names, model_options

RECURRENT_TAKES = (
    "embedding_dim, recurrent_dropout, zoneout, weight_norm, chrono_max_len, gradient_checkpointing, "
    "checkpoint_steps, pooling, patch"
)
DECODER_TAKES = "attention, beam_size, max_output_len"
COMMON_OPTIONS = {"hidden_size", "num_layers", "dropout", "bidirectional", "layer_norm", "init"}


@pytest.mark.parametrize("name", model_names())
def test_the_options_a_model_takes_are_fields_of_its_family_options(name: str) -> None:
    declared = [item.name for item in fields(family(name).options)]
    assert set(model_options(name)) <= set(declared)
    assert list(model_options(name)) == [option for option in declared if option in model_options(name)]


@pytest.mark.parametrize(
    ("name", "option", "takes"),
    [  # the messages of the registry before the families declared dataclasses, word for word
        ("lstm", "nonlinearity", f"{RECURRENT_TAKES}, {DECODER_TAKES}"),
        ("rnn", "convention", f"{RECURRENT_TAKES}, {DECODER_TAKES}, nonlinearity"),
        ("lstm+attn", "convention", f"{RECURRENT_TAKES}, attention_size, {DECODER_TAKES}"),
        ("gru", "attention_size", f"{RECURRENT_TAKES}, {DECODER_TAKES}, convention"),
        ("mingru", "pooling", "embedding_dim"),
    ],
)
def test_an_option_of_another_cell_is_refused_with_what_the_model_takes(name: str, option: str, takes: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build_model(name, SPECS["classify"], hidden_size=8, **{option: "relu" if option != "attention_size" else 4})
    assert str(raised.value) == f"model {name!r} does not take {option}; it takes: {takes}"


def test_the_cells_own_options_are_taken() -> None:
    assert build_model("rnn", SPECS["classify"], hidden_size=4, nonlinearity="relu").encoder.rnn.nonlinearity == "relu"
    for name in ("gru", "gru+attn"):
        assert build_model(name, SPECS["classify"], hidden_size=4, convention="cho").encoder.rnn.convention == "cho"


# tag and seq2seq tasks make a recurrent encoder bidirectional by default, which then cannot stream
@pytest.mark.parametrize("head", ["classify", "lm", "forecast", "regress", "multilabel"])
@pytest.mark.parametrize("name", model_names())
def test_a_familys_streamable_agrees_with_a_default_build(name: str, head: str) -> None:
    if not fits(name, head):
        pytest.skip(f"{name} does not fit head {head!r}")
    model = build_model(name, SPECS[head], hidden_size=8)
    assert family(name).streamable == model.streamable


@pytest.mark.parametrize("name", model_names())
def test_a_search_space_ranges_over_options_the_model_takes(name: str) -> None:
    space = family(name).search_space
    assert space, name
    for option, (low, high) in space.items():
        assert option in COMMON_OPTIONS or option in model_options(name), option
        assert type(low) is type(high) and low < high, option
