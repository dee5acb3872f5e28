"""build_model: every model under every head, the options it refuses, and the inputs it refuses."""

from __future__ import annotations

import pytest
import torch
from model_helpers import FULL_LENGTH_ONLY, SPECS, expected_shape, make_inputs, model_head_cases

from rnnlab.errors import ConfigError
from rnnlab.models import MODEL_NAMES, build_model, count_parameters, model_names, model_options


@pytest.mark.parametrize(("name", "head"), model_head_cases(list(SPECS)))
def test_every_model_under_every_head_runs_forward_and_backward(name: str, head: str) -> None:
    spec = SPECS[head]
    torch.manual_seed(0)
    model = build_model(name, spec, hidden_size=8, dropout=0.1)
    x = make_inputs(spec, 3, 12, torch.Generator().manual_seed(0))
    lengths = None if name in FULL_LENGTH_ONLY else torch.tensor([12, 5, 9])  # those refuse padding
    output = model(x, lengths)
    assert list(output.shape) == expected_shape(spec, 3, 12)
    assert torch.isfinite(output).all()
    output.square().mean().backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
    # Every parameter that can learn from this batch got a gradient somewhere.
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


def test_model_names_lists_the_built_in_models_first() -> None:
    assert model_names()[: len(MODEL_NAMES)] == MODEL_NAMES


def test_unknown_model_suggests_the_nearest_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'lstn'; did you mean 'lstm'"):
        build_model("lstn", SPECS["classify"])


def test_model_exposes_its_encoder_and_options_that_rebuild_it() -> None:
    model = build_model("gru", SPECS["tag"], params=5000, dropout=0.1)
    assert model.encoder.rnn.bidirectional  # tag: the task decides bidirectional
    rebuilt = build_model("gru", SPECS["tag"], **model.options)
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]
    assert count_parameters(rebuilt) == model.num_parameters


def test_lm_with_lstm_is_seed_004_textlstm() -> None:
    """Seed 004: Embedding → stacked LSTM → Dropout → Linear, here at every step."""
    spec = SPECS["lm"]
    model = build_model("lstm", spec, hidden_size=16, num_layers=2, dropout=0.2)
    embedding_dim = 16
    reference = (
        spec.vocab_size * embedding_dim
        + 4 * (16 * embedding_dim + 16 * 16 + 2 * 16)
        + 4 * (16 * 16 + 16 * 16 + 2 * 16)
        + (16 * spec.num_classes + spec.num_classes)
    )
    assert model.num_parameters == reference
    assert [type(m).__name__ for m in (model.encoder.embedding, model.encoder.rnn, model.head_dropout)] == [
        "Embedding",
        "LSTM",
        "Dropout",
    ]
    assert model.encoder.rnn.dropout == 0.2 and not model.encoder.rnn.bidirectional


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("lstm", {"hidden_size": 8, "params": 1000}, "give hidden_size or params, not both"),
        ("lstm", {"hidden_size": 0}, "hidden_size must be a positive integer; got 0"),
        ("lstm", {"num_layers": 0}, "num_layers must be a positive integer"),
        ("lstm", {"dropout": 1.0}, r"dropout must lie in \[0, 1\); got 1.0"),
        ("lstm", {"kernel_size": 3}, "model 'lstm' does not take kernel_size; it takes: embedding_dim"),
        ("tcn", {"layer_norm": True}, "layer_norm applies to rnn, lstm, gru"),
        ("tcn", {"bidirectional": True}, "tcn is causal by construction"),
        ("tcn", {"init": "chrono"}, "init='chrono' sets recurrent weights; model 'tcn' has none"),
        ("transformer", {"hidden_size": 30}, "multiple of 4; got 30"),
        ("transformer", {"pooling": "max"}, "pooling must be one of last, mean; got 'max'"),
    ],
)
def test_invalid_options_say_what_is_allowed(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(name, SPECS["classify"], **options)


def test_bidirectional_is_refused_for_a_causal_task() -> None:
    with pytest.raises(ConfigError, match="bidirectional=True reads later steps, which the causal task 'charlm'"):
        build_model("lstm", SPECS["lm"], bidirectional=True)


def test_model_options_list_what_each_model_takes() -> None:
    assert "levels" in model_options("tcn") and "convention" in model_options("gru")
    assert "attention_size" in model_options("lstm+attn") and "num_heads" in model_options("transformer")


def test_chrono_init_spans_the_task_length() -> None:
    model = build_model("lstm", SPECS["classify"], hidden_size=8, init="chrono")
    assert model.encoder.rnn.chrono_max_len == SPECS["classify"].seq_len


def test_spec_without_a_head_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"spec.head must be one of classify, tag, lm, forecast, regress, multilabel"):
        build_model("lstm", {"task": "x", "head": "segment", "vocab_size": 3, "num_classes": 2})


@pytest.mark.parametrize(
    ("head", "make_x", "lengths", "message"),
    [
        ("classify", lambda: torch.randn(2, 5, 3), None, r"expects token ids LongTensor\[B, T\]; got torch.float32"),
        ("classify", lambda: torch.full((2, 5), 10), None, r"token ids must lie in \[0, 9\] \(vocab_size 10\)"),
        ("forecast", lambda: torch.randn(2, 5, 4), None, r"expects FloatTensor\[B, T, 3\]; got .* \[2, 5, 4\]"),
        ("forecast", lambda: torch.randn(2, 5, 3), torch.tensor([5, 6]), r"lengths must lie in \[1, 5\]"),
        ("forecast", lambda: torch.randn(2, 5, 3), torch.tensor([5]), r"lengths must be LongTensor\[2\]"),
    ],
)
def test_wrong_inputs_say_what_was_expected_and_what_came(head, make_x, lengths, message) -> None:
    model = build_model("gru", SPECS[head], hidden_size=4)
    with pytest.raises(ConfigError, match=message):
        model(make_x(), lengths)


def test_a_state_for_a_model_without_one_is_refused() -> None:
    model = build_model("tcn", SPECS["classify"], hidden_size=4)
    with pytest.raises(ConfigError, match="model 'tcn' has no recurrent state"):
        model(torch.zeros(1, 3, dtype=torch.long), state=torch.zeros(1))
    output, state = model(torch.zeros(1, 3, dtype=torch.long), return_state=True)
    assert state is None and list(output.shape) == [1, 8]
