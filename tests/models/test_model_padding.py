"""Padding never changes a sequence's output: a padded batch equals each sequence run alone."""

from __future__ import annotations

import pytest
import torch
from model_helpers import FULL_LENGTH_ONLY, SPECS, make_inputs, model_head_cases

from rnnlab.models import build_model

LENGTHS = [9, 4, 6, 1]


@pytest.mark.parametrize(("name", "head"), model_head_cases(["classify", "tag", "lm", "forecast"], FULL_LENGTH_ONLY))
def test_padded_batch_equals_each_sequence_alone(name: str, head: str) -> None:
    spec = SPECS[head]
    torch.manual_seed(1)
    model = build_model(name, spec, hidden_size=8, num_layers=2).double().eval()
    generator = torch.Generator().manual_seed(1)
    # The padding holds random values, not zeros, so a model that reads it is caught.
    x = make_inputs(spec, len(LENGTHS), max(LENGTHS), generator)
    if x.is_floating_point():
        x = x.double()
    lengths = torch.tensor(LENGTHS)
    with torch.no_grad():
        batched = model(x, lengths)
        for b, length in enumerate(LENGTHS):
            alone = model(x[b : b + 1, :length])
            if model.per_step:
                torch.testing.assert_close(batched[b : b + 1, :length], alone, rtol=1e-9, atol=1e-10)
            else:
                torch.testing.assert_close(batched[b : b + 1], alone, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_state_after_padding_is_each_sequence_own_final_state(name: str) -> None:
    spec = SPECS["lm"]
    torch.manual_seed(2)
    model = build_model(name, spec, hidden_size=6).double().eval()
    x = make_inputs(spec, len(LENGTHS), max(LENGTHS), torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, state = model(x, torch.tensor(LENGTHS), return_state=True)
        for b, length in enumerate(LENGTHS):
            _, alone = model(x[b : b + 1, :length], return_state=True)
            for batched_part, alone_part in zip(_as_tuple(state), _as_tuple(alone)):
                torch.testing.assert_close(batched_part[:, b : b + 1], alone_part, rtol=1e-9, atol=1e-10)


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)
