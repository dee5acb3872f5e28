"""Bad input to a layer raises a ValueError that names what was expected and what came."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab
from rnnlab.errors import ConfigError
from rnnlab.layers import LayerInputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def lstm():
    return rnnlab.LSTM(32, 16, num_layers=2)


def test_wrong_feature_size_names_expected_and_got(lstm):
    with pytest.raises(ValueError, match=r"input.size\(-1\) must be equal to input_size. Expected 32, got 7"):
        lstm(torch.randn(5, 3, 7))


def test_wrong_feature_size_in_a_packed_batch(lstm):
    packed = pack_padded_sequence(torch.randn(5, 3, 7), [5, 4, 2])
    with pytest.raises(ValueError, match="Expected 32, got 7"):
        lstm(packed)


@pytest.mark.parametrize("shape", [(32,), (2, 5, 3, 32)])
def test_wrong_rank_names_the_expected_layout(lstm, shape):
    with pytest.raises(
        ValueError, match=rf"expected input of 3 dimensions \(\[seq_len, batch, input_size\]\).*got {len(shape)}-D"
    ):
        lstm(torch.randn(shape))


def test_integer_input_is_refused_with_a_hint(lstm):
    with pytest.raises(ValueError, match=r"expected a floating-point input; got torch.int64.*Embedding"):
        lstm(torch.zeros(5, 3, 32, dtype=torch.long))


def test_dtype_mismatch_names_both_dtypes(lstm):
    with pytest.raises(ValueError, match=r"input dtype torch.float64 does not match the weights' torch.float32"):
        lstm(torch.randn(5, 3, 32, dtype=torch.float64))


def test_state_of_wrong_shape_names_expected_and_got(lstm):
    h0, c0 = torch.zeros(2, 3, 16), torch.zeros(2, 4, 16)
    with pytest.raises(ValueError, match=r"expected c_0 of shape \[2, 3, 16\].*got \[2, 4, 16\]"):
        lstm(torch.randn(5, 3, 32), (h0, c0))


def test_lstm_state_must_be_a_pair(lstm):
    with pytest.raises(
        ValueError, match=r"expected hx = \(h_0, c_0\), a pair of tensors; got a tensor of shape \[2, 3, 16\]"
    ):
        lstm(torch.randn(5, 3, 32), torch.zeros(2, 3, 16))


def test_gru_state_shape_for_a_bidirectional_stack():
    gru = rnnlab.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    with pytest.raises(ValueError, match=r"expected h_0 of shape \[4, 3, 6\].*got \[2, 3, 6\]"):
        gru(torch.randn(3, 5, 4), torch.zeros(2, 3, 6))


def test_state_dtype_mismatch_is_refused():
    rnn = rnnlab.RNN(4, 6)
    with pytest.raises(ValueError, match=r"h_0 dtype torch.float64 does not match the weights' torch.float32"):
        rnn(torch.randn(5, 3, 4), torch.zeros(1, 3, 6, dtype=torch.float64))


def test_zero_length_sequence_in_a_packed_batch_is_refused(lstm):
    # pack_padded_sequence refuses a zero length itself; a hand-built PackedSequence can still hold one.
    good = pack_padded_sequence(torch.randn(4, 2, 32), [4, 2])
    packed = PackedSequence(good.data, good.batch_sizes, torch.tensor([0, 2, 1]), torch.tensor([0, 2, 1]))
    with pytest.raises(
        ValueError, match=r"holds 3 sequences but only 2 have a first step: 1 sequence\(s\) of length 0"
    ):
        lstm(packed)


def test_zero_length_in_lengths_is_refused(lstm):
    with pytest.raises(ValueError, match=r"lengths\[1\] is 0; expected every length in 1..5"):
        lstm(torch.randn(5, 3, 32), lengths=[5, 0, 3])


def test_length_beyond_the_padded_length_is_refused(lstm):
    with pytest.raises(ValueError, match=r"lengths\[2\] is 9; expected every length in 1..5"):
        lstm(torch.randn(5, 3, 32), lengths=torch.tensor([5, 1, 9]))


def test_lengths_of_wrong_shape_are_refused(lstm):
    with pytest.raises(ValueError, match=r"lengths must be integers of shape \[3\].*got torch.int64 of shape \[2\]"):
        lstm(torch.randn(5, 3, 32), lengths=[5, 1])


def test_lengths_with_a_packed_input_is_refused(lstm):
    with pytest.raises(ValueError, match="a PackedSequence carries its own"):
        lstm(pack_padded_sequence(torch.randn(5, 3, 32), [5, 4, 2]), lengths=[5, 4, 2])


def test_errors_are_also_runtime_errors_like_torch_nn(lstm):
    # code written for torch.nn catches RuntimeError for these mistakes
    with pytest.raises(RuntimeError):
        lstm(torch.randn(5, 3, 7))
    assert issubclass(LayerInputError, ValueError)


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("recurrent_dropout", 1.0, r"recurrent_dropout must be a probability in \[0, 1\); got 1.0"),
        ("zoneout", -0.1, r"zoneout must be a probability in \[0, 1\); got -0.1"),
        ("init", "orthogonl", r"unknown init 'orthogonl'; did you mean 'orthogonal'"),
        ("checkpoint_steps", 0, r"checkpoint_steps must be a positive integer; got 0"),
    ],
)
def test_bad_extra_options_are_refused(keyword, value, message):
    with pytest.raises(ConfigError, match=message):
        rnnlab.LSTM(4, 6, **{keyword: value})


def test_chrono_needs_its_horizon():
    with pytest.raises(ConfigError, match=r"init='chrono' needs chrono_max_len.*got None"):
        rnnlab.LSTM(4, 6, init="chrono")


def test_unknown_gru_convention_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown GRU convention 'chow'; did you mean 'cho'"):
        rnnlab.GRU(4, 6, convention="chow")
