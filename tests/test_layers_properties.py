"""Properties of any recurrent layer, checked on random cases (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_sequence

import rnnlab
from layer_helpers import KINDS, flat
from rnnlab.layers import reference_path

pytestmark = pytest.mark.usefixtures("one_thread")

INPUT, HIDDEN = 3, 4

kinds = st.sampled_from(list(KINDS))
paths = st.sampled_from(["default", "reference"])
# Extras that are deterministic in evaluation mode, so a property can compare two runs exactly.
eval_extras = st.sampled_from(
    [
        {},
        {"layer_norm": True},
        {"zoneout": 0.3},
        {"weight_norm": True},
        {"recurrent_dropout": 0.5},
        {"init": "orthogonal"},
    ]
)


def build(kind: str, seed: int, **kwargs):
    layer_class, _, base = KINDS[kind]
    torch.manual_seed(seed)
    return layer_class(INPUT, HIDDEN, **base, **kwargs).eval()


def path_context(path: str):
    return reference_path() if path == "reference" else torch.no_grad()


@settings(max_examples=15, deadline=None)
@given(
    kind=kinds,
    path=paths,
    num_layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_packed_equals_padded_per_sequence(kind, path, num_layers, bidirectional, lengths, seed):
    layer = build(kind, seed, num_layers=num_layers, bidirectional=bidirectional)
    generator = torch.Generator().manual_seed(seed)
    sequences = [torch.randn(length, INPUT, generator=generator) for length in lengths]
    with path_context(path), torch.no_grad():
        packed_output, packed_state = layer(pack_sequence(sequences, enforce_sorted=False))
        padded_output, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_output)
        for b, sequence in enumerate(sequences):
            alone_output, alone_state = layer(sequence.unsqueeze(1))
            torch.testing.assert_close(padded_output[: len(sequence), b], alone_output[:, 0], atol=1e-5, rtol=1e-5)
            for packed, alone in zip(flat(packed_state), flat(alone_state)):
                torch.testing.assert_close(packed[:, b], alone[:, 0], atol=1e-5, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    kind=kinds,
    path=paths,
    extras=eval_extras,
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_bidirectional_equals_forward_joined_with_backward_on_reversed_input(kind, path, extras, lengths, seed):
    bidirectional = build(kind, seed, bidirectional=True, **extras)
    forward, backward = build(kind, seed, **extras), build(kind, seed, **extras)
    state = bidirectional.state_dict()
    forward.load_state_dict({name: value for name, value in state.items() if not name.endswith("_reverse")})
    backward.load_state_dict(
        {name[: -len("_reverse")]: value for name, value in state.items() if name.endswith("_reverse")}
    )
    generator = torch.Generator().manual_seed(seed)
    seq_len = max(lengths)
    x = torch.randn(seq_len, len(lengths), INPUT, generator=generator)
    with path_context(path), torch.no_grad():
        both, _ = bidirectional(x, lengths=lengths)
        ahead, _ = forward(x, lengths=lengths)
        for b, length in enumerate(lengths):  # each sequence reversed within its own length
            reversed_output, _ = backward(x[:length, b : b + 1].flip(0))
            expected = torch.cat([ahead[:length, b], reversed_output.flip(0)[:, 0]], dim=-1)
            torch.testing.assert_close(both[:length, b], expected, atol=1e-5, rtol=1e-5)
            assert not both[length:, b].any(), "padded steps must be zero"


@settings(max_examples=20, deadline=None)
@given(
    kind=kinds,
    path=paths,
    extras=eval_extras,
    num_layers=st.integers(1, 2),
    cuts=st.lists(st.integers(1, 11), max_size=3, unique=True),
    seed=st.integers(0, 2**16),
)
def test_running_in_chunks_carrying_the_state_equals_running_whole(kind, path, extras, num_layers, cuts, seed):
    layer = build(kind, seed, num_layers=num_layers, batch_first=True, **extras)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 12, INPUT, generator=generator)
    with path_context(path), torch.no_grad():
        whole_output, whole_state = layer(x)
        outputs, state = [], None
        bounds = [0, *sorted(cuts), 12]
        for start, end in itertools.pairwise(bounds):
            output, state = layer(x[:, start:end], state)
            outputs.append(output)
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole_output, atol=1e-5, rtol=1e-5)
    for chunked, whole in zip(flat(state), flat(whole_state)):
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


def test_gru_cho_chunks_equal_whole():
    gru = rnnlab.GRU(INPUT, HIDDEN, convention="cho", layer_norm=True)
    x = torch.randn(9, 2, INPUT)
    whole, h_whole = gru(x)
    first, h = gru(x[:4])
    second, h = gru(x[4:], h)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    torch.testing.assert_close(h, h_whole)
