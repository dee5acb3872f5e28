"""rnnlab.RNN / LSTM / GRU against torch.nn: same keys, same outputs, states and gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from layer_helpers import KINDS, flat, make_twins, random_state, weighted_sum
from rnnlab.layers import reference_path

pytestmark = pytest.mark.usefixtures("one_thread")

INPUT, HIDDEN, BATCH, STEPS = 3, 4, 3, 5
LENGTHS = torch.tensor([5, 2, 4])  # unsorted on purpose: packing must keep the caller's batch order


def _run(layer, form: str, x: torch.Tensor, hx, batch_first: bool):
    """Run ``layer`` on ``x`` given as a full padded batch, a PackedSequence, or padded + lengths.

    torch.nn has no ``lengths=``; for it that form runs packed and is padded back, which is what
    rnnlab's ``lengths=`` promises to equal.
    """
    if form == "padded":
        return layer(x, hx)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    if form == "packed":
        return layer(packed, hx)
    if isinstance(layer, rnnlab.layers._RecurrentLayer):
        return layer(x, hx, lengths=LENGTHS)
    output, state = layer(packed, hx)
    return pad_packed_sequence(output, batch_first=batch_first, total_length=STEPS)[0], state


GRID = list(
    itertools.product(KINDS, (1, 2, 3), (False, True), (False, True), ("padded", "packed", "lengths"), (False, True))
)


# "default": whatever the layer picks (torch.nn's fused kernel, or a compiled rnnlab kernel where one
# is faster); "fused": torch.nn's fused kernel, with the compiled kernels switched off; "reference":
# the loop over cells.
PATHS = ["default", "fused", "reference"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("kind", "num_layers", "bidirectional", "batch_first", "form", "with_state"), GRID)
def test_matches_torch_nn(kind, num_layers, bidirectional, batch_first, form, with_state, path, monkeypatch):
    if path == "fused":
        monkeypatch.setenv("RNNLAB_KERNELS", "0")
    reference, ours = make_twins(kind, INPUT, HIDDEN, num_layers, bidirectional=bidirectional, batch_first=batch_first)
    generator = torch.Generator().manual_seed(7)
    shape = (BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT)
    x = torch.randn(shape, generator=generator)
    hx = (
        random_state(kind, num_layers * (2 if bidirectional else 1), BATCH, HIDDEN, generator=generator)
        if with_state
        else None
    )

    results = []
    for layer in (reference, ours):
        x_leaf = x.clone().requires_grad_(True)
        hx_leaf = None if hx is None else tuple(t.clone().requires_grad_(True) for t in flat(hx))
        hx_arg = None if hx_leaf is None else (hx_leaf if kind == "lstm" else hx_leaf[0])
        with reference_path() if (path == "reference" and layer is ours) else torch.enable_grad():
            output, state = _run(layer, form, x_leaf, hx_arg, batch_first)
        tensors = flat(output) + flat(state)
        inputs = [x_leaf, *(hx_leaf or ()), *layer.parameters()]
        grads = torch.autograd.grad(weighted_sum(tensors), inputs)
        results.append((tensors, grads))

    (ref_tensors, ref_grads), (our_tensors, our_grads) = results
    assert len(ref_tensors) == len(our_tensors)
    for ref, got in zip(ref_tensors, our_tensors):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    names = ["input", *(["hx"] * len(flat(hx) if hx is not None else [])), *dict(reference.named_parameters())]
    for name, ref, got in zip(names, ref_grads, our_grads):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"grad of {name}: {m}")


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_keys_equal_torch_nn(kind):
    reference, ours = make_twins(kind, INPUT, HIDDEN, 2, bidirectional=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in reference.parameters()]


@pytest.mark.parametrize("kind", list(KINDS))
def test_same_seed_gives_torch_nn_initial_weights(kind):
    ours_class, torch_class, extra = KINDS[kind]
    torch.manual_seed(3)
    reference = torch_class(INPUT, HIDDEN, 2, **extra)
    torch.manual_seed(3)
    ours = ours_class(INPUT, HIDDEN, 2, **extra)
    for (name, ref), got in zip(reference.named_parameters(), ours.parameters()):
        assert torch.equal(ref, got), name


@pytest.mark.parametrize("path", ["default", "reference"])
@pytest.mark.parametrize("form", ["padded", "packed"])
def test_lstm_with_projection_matches_torch_nn(path, form):
    reference, ours = make_twins("lstm", INPUT, HIDDEN, 2, bidirectional=True, proj_size=2)
    x = torch.randn(STEPS, BATCH, INPUT)
    hx = (torch.randn(4, BATCH, 2), torch.randn(4, BATCH, HIDDEN))
    expected = flat(_run(reference, form, x, hx, False))
    with reference_path() if path == "reference" else torch.no_grad():
        got = flat(_run(ours, form, x, hx, False))
    for ref, out in zip(expected, got):
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("path", PATHS)
def test_unbatched_input_matches_torch_nn(kind, path, monkeypatch):
    if path == "fused":
        monkeypatch.setenv("RNNLAB_KERNELS", "0")
    reference, ours = make_twins(kind, INPUT, HIDDEN, 2, bidirectional=True)
    x = torch.randn(STEPS, INPUT)
    hx = random_state(kind, 4, 1, HIDDEN)
    hx = tuple(t.squeeze(1) for t in hx) if kind == "lstm" else hx.squeeze(1)
    expected = flat(reference(x, hx))
    with reference_path() if path == "reference" else torch.no_grad():
        got = flat(ours(x, hx))
    for ref, out in zip(expected, got):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_between_layers_only_in_training(kind):
    reference, ours = make_twins(kind, INPUT, HIDDEN, 2, dropout=0.5)
    x = torch.randn(STEPS, BATCH, INPUT)
    reference.eval()
    ours.eval()
    torch.testing.assert_close(ours(x)[0], reference(x)[0], atol=1e-6, rtol=0)
    ours.train()
    with reference_path():
        torch.manual_seed(0)
        first = ours(x)[0]
        torch.manual_seed(1)
        second = ours(x)[0]
    assert not torch.allclose(first, second), "dropout between layers changed nothing in training"


def test_is_a_torch_nn_layer_and_works_inside_a_model():
    model = nn.Sequential(rnnlab.LSTM(INPUT, HIDDEN))
    assert isinstance(model[0], nn.LSTM)
    output, (h_n, c_n) = model(torch.randn(STEPS, BATCH, INPUT))
    assert output.shape == (STEPS, BATCH, HIDDEN) and h_n.shape == c_n.shape == (1, BATCH, HIDDEN)


def test_count_parameters_equals_torch_nn_count():
    assert rnnlab.count_parameters(rnnlab.LSTM(32, 128)) == sum(p.numel() for p in nn.LSTM(32, 128).parameters())
    frozen = rnnlab.GRU(32, 128)
    frozen.weight_ih_l0.requires_grad_(False)
    assert rnnlab.count_parameters(frozen, trainable_only=True) == rnnlab.count_parameters(frozen) - 3 * 128 * 32
