"""The encoder–decoder of the seq2seq head: encoder, attention, decoding (rnnlab/models/seq2seq.py)."""

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.errors import ConfigError
from rnnlab.models import build_model
from rnnlab.models.seq2seq import BOS_INDEX, EOS_INDEX, PAD_INDEX, Memory, TeacherForced, beam_search

SPEC = {
    "task": "seq2seq",
    "head": "seq2seq",
    "input_size": 0,
    "vocab_size": 12,
    "num_classes": 9,
    "output_shape": [6],
    "seq_len": None,
    "causal": False,
}

pytestmark = pytest.mark.usefixtures("one_thread")


def model_of(name="lstm+attn", seed=0, **options):
    torch.manual_seed(seed)
    model = build_model(name, SPEC, hidden_size=8, num_layers=options.pop("num_layers", 1), **options)
    return model.eval()


def sources(lengths, seed=0):
    """A right-padded batch of random source ids 4..11 (padding 0) and its lengths."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(4, 12, (len(lengths), max(lengths)), generator=generator)
    for row, length in enumerate(lengths):
        x[row, length:] = PAD_INDEX
    return x, torch.tensor(lengths)


def targets(rows, length, seed=1):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(4, 9, (rows, length), generator=generator)
    y[:, -1] = EOS_INDEX
    return y


# ------------------------------------------------------------------------------------------ encoder
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_source_encoder_equals_a_packed_bidirectional_torch_layer(cell):
    model = model_of(f"{cell}+attn", num_layers=2)
    encoder = model.encoder
    reference = getattr(nn, cell.upper())(8, 8, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(2):
            for direction, suffix in enumerate(("", "_reverse")):
                own = encoder.rnn[layer * 2 + direction]
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(reference, f"{name}_l{layer}{suffix}").copy_(getattr(own, f"{name}_l0"))
    x, lengths = sources([5, 2, 7, 1])
    embedded = encoder.embedding(x)
    packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    expected, state = reference(packed)
    expected, _ = pad_packed_sequence(expected, batch_first=True, total_length=x.size(1))
    got = encoder(x, lengths)
    torch.testing.assert_close(got.steps, expected, atol=1e-6, rtol=1e-5)
    h_n = state[0] if cell == "lstm" else state
    torch.testing.assert_close(got.state, h_n, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------ padding
@pytest.mark.parametrize("name,attention", [("lstm+attn", "luong"), ("gru+attn", "bahdanau"), ("lstm", None)])
def test_padding_gets_no_attention_and_changes_no_output(name, attention):
    options = {"attention": attention} if attention else {}
    model = model_of(name, **options)
    x, lengths = sources([6, 3, 1])
    y = targets(3, 4)
    logits = model(x, lengths, target=y)
    if attention:
        weights = model.attention_weights
        assert weights.shape == (3, 4, 6)
        for row, length in enumerate(lengths.tolist()):
            assert (weights[row, :, length:] == 0).all()
            torch.testing.assert_close(weights[row].sum(-1), torch.ones(4))
    # each row alone, unpadded, and with garbage in its padding: the same logits and decodes
    garbage = x.clone()
    garbage[x == PAD_INDEX] = 11
    torch.testing.assert_close(model(garbage, lengths, target=y), logits, atol=1e-6, rtol=1e-5)
    decoded = model(x, lengths)
    for row, length in enumerate(lengths.tolist()):
        alone = x[row : row + 1, :length]
        torch.testing.assert_close(
            model(alone, None, target=y[row : row + 1]), logits[row : row + 1], atol=1e-6, rtol=1e-5
        )
        single = model(alone, None)
        assert single[0].tolist() == decoded[row, : single.size(1)].tolist()


def test_teacher_forcing_reads_only_earlier_target_tokens():
    model = model_of("gru+attn", attention="bahdanau")
    x, lengths = sources([5, 4])
    y = targets(2, 5)
    changed = y.clone()
    changed[:, 2] = 4 if int(y[0, 2]) != 4 else 5
    before, after = model(x, lengths, target=y), model(x, lengths, target=changed)
    torch.testing.assert_close(before[:, :3], after[:, :3])  # steps 0..2 read tokens before position 2
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_luong_scores_follow_the_equations():
    model = model_of("lstm+attn", attention="luong")
    x, lengths = sources([4, 2])
    y = targets(2, 3)
    logits = model(x, lengths, target=y)
    # per-equation reference: s_t from the decoder layer, e = s_t W_a h_s, α = softmax, h~ = tanh(W_c[c; s])
    memory, state = model.encode(x, lengths)
    inputs = torch.cat([torch.full((2, 1), BOS_INDEX), y[:, :-1]], dim=1)
    s, _ = model.decoder(model.target_embedding(inputs), state)
    scores = torch.einsum("bth,hm,bsm->bts", s, model.attention.key.weight, memory.outputs)
    scores = scores.masked_fill(~memory.valid.unsqueeze(1), -math.inf)
    alpha = torch.softmax(scores, -1)
    context = alpha @ memory.outputs
    expected = model.head(torch.tanh(model.combine(torch.cat([context, s], -1))))
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.attention_weights, alpha, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------ decoding
def greedy_one_by_one(model, x, lengths, max_len):
    """Reference greedy decoding: one sequence at a time, no padding, argmax until <eos>."""
    results = []
    for row, length in enumerate(lengths.tolist()):
        memory, state = model.encode(x[row : row + 1, :length], None)
        token, tokens = torch.tensor([BOS_INDEX]), []
        for _ in range(max_len):
            log_probs, state, _ = model.decode_step(token, state, memory)
            token = log_probs.argmax(-1)
            tokens.append(int(token))
            if tokens[-1] == EOS_INDEX:
                break
        results.append(tokens)
    return results


@pytest.mark.parametrize("name,attention", [("lstm+attn", "luong"), ("gru+attn", "bahdanau"), ("gru", None)])
def test_beam_size_one_is_greedy_decoding_batched_with_eos_handling(name, attention):
    model = model_of(name, seed=3, max_output_len=7, **({"attention": attention} if attention else {}))
    # shift the <eos> logit until the sequences end at different steps (or some not at all)
    x, lengths = sources([6, 2, 4, 5, 3], seed=5)
    with torch.no_grad():
        model.head.weight.mul_(20)  # sharp, input-dependent choices
    original = float(model.head.bias[EOS_INDEX])
    for shift in torch.linspace(-4, 4, 17).tolist():
        with torch.no_grad():
            model.head.bias[EOS_INDEX] = original + shift
        expected = greedy_one_by_one(model, x, lengths, 7)
        if len({len(tokens) for tokens in expected}) > 1:
            break
    assert len({len(tokens) for tokens in expected}) > 1
    decoded = model.decode(x, lengths, beam_size=1)
    assert torch.equal(model(x, lengths), decoded)
    for row, tokens in enumerate(expected):
        assert decoded[row, : len(tokens)].tolist() == tokens
        assert (decoded[row, len(tokens) :] == PAD_INDEX).all()  # <pad> after <eos>
    if attention:
        weights = model.attention_weights
        for row, tokens in enumerate(expected):
            assert (weights[row, len(tokens) :] == 0).all()


def table_step(table):
    """A decoder whose next-token distribution depends on the prefix only: ``table[prefix] = probs``."""
    prefixes = {prefix: index for index, prefix in enumerate(table)}

    def step(tokens, state, memory):
        codes = state[0, :, 0].long().tolist()
        rows, new_codes = [], []
        for code, token in zip(codes, tokens.tolist()):
            prefix = list(prefixes)[code]
            extended = prefix if token in (BOS_INDEX, PAD_INDEX) else (*prefix, token)
            new_code = prefixes.get(extended, prefixes[()])
            rows.append(torch.tensor(table.get(extended, table[("end",)])).log())
            new_codes.append(new_code if extended in prefixes else prefixes[("end",)])
        return torch.stack(rows), torch.tensor(new_codes, dtype=torch.float).view(1, -1, 1), None

    return step


def test_beam_search_finds_the_sequence_greedy_misses_and_matches_exhaustive_search():
    a, b = 4, 5

    # V = 6: <pad> <unk> <bos> <eos> a b. Greedy takes a (0.6) and then faces a flat choice
    # (best 0.4 → 0.24 after a); b (0.4) then <eos> (0.9) scores 0.36.
    def probs(eos, pa, pb):
        return [1e-9, 1e-9, 1e-9, eos, pa, pb]

    table = {
        (): probs(1e-9, 0.6, 0.4),
        (a,): probs(0.4, 0.3, 0.3),
        (b,): probs(0.9, 0.05, 0.05),
        ("end",): probs(1.0, 1e-9, 1e-9),
    }
    step = table_step(table)
    memory = Memory(torch.zeros(1, 1, 1), None, torch.ones(1, 1, dtype=torch.bool))
    state = torch.zeros(1, 1, 1)
    greedy, greedy_score, _ = beam_search(step, state, memory, batch_size=1, beam_size=1, max_len=4)
    beam, beam_score, _ = beam_search(step, state, memory, batch_size=1, beam_size=2, max_len=4)
    assert greedy[0].tolist()[:2] == [a, EOS_INDEX]
    assert beam[0].tolist()[:2] == [b, EOS_INDEX]
    assert float(beam_score) > float(greedy_score)
    assert math.isclose(float(beam_score), math.log(0.4 * 0.9), rel_tol=1e-5)

    # exhaustive reference: the best <eos>-terminated sequence of up to 3 tokens
    def score(sequence):
        total, prefix = 0.0, ()
        for token in sequence:
            total += math.log(table.get(prefix, table[("end",)])[token])
            prefix = (*prefix, token) if prefix in table else ("end",)
        return total

    candidates = [(*seq, EOS_INDEX) for n in range(3) for seq in itertools.product((a, b), repeat=n)]
    best = max(candidates, key=score)
    assert beam[0].tolist()[: len(best)] == list(best)


def test_beam_scores_are_the_log_probabilities_of_the_chosen_tokens():
    model = model_of("lstm+attn", seed=2, max_output_len=6)
    x, lengths = sources([5, 3, 6], seed=2)
    tokens, beam = model.decode(x, lengths, beam_size=4, return_scores=True)
    # reference: the same tokens scored by teacher forcing, over the tokens a decoder may output
    # (everything but <pad> and <bos>)
    logits = model(x, lengths, target=torch.where(tokens == PAD_INDEX, torch.full_like(tokens, -100), tokens))
    logits[..., [PAD_INDEX, BOS_INDEX]] = -math.inf
    chosen = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    recomputed = torch.where(tokens != PAD_INDEX, chosen, torch.zeros_like(chosen)).sum(1)
    torch.testing.assert_close(recomputed, beam, atol=1e-4, rtol=1e-4)


def test_teacher_forced_view_gives_the_training_logits():
    model = model_of("gru")
    x, lengths = sources([3, 2])
    y = targets(2, 3)
    torch.testing.assert_close(TeacherForced(model, y)(x, lengths), model(x, lengths, target=y))


# ------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    "name,options,message",
    [
        ("lstm+attn", {"attention": "dot"}, r"attention must be one of bahdanau, luong; got 'dot'"),
        ("lstm", {"attention": "luong"}, r"attention sets the attention of lstm\+attn / gru\+attn; model 'lstm' is"),
        ("lstm+attn", {"attention_size": 4}, r"attention_size sets the additive \(Bahdanau\) score"),
        ("gru+attn", {"beam_size": 0}, r"beam_size must be a positive integer; got 0"),
        ("tcn", {}, r"model 'tcn' has no encoder–decoder for the seq2seq head"),
        ("transformer", {}, r"model 'transformer' has no encoder–decoder for the seq2seq head"),
    ],
)
def test_options_the_encoder_decoder_cannot_honour_are_refused(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, SPEC, hidden_size=8, **options)


def test_seq2seq_options_are_refused_on_other_heads():
    spec = {**SPEC, "head": "classify", "task": "classify", "output_shape": []}
    with pytest.raises(ConfigError, match=r"beam_size apply to the encoder–decoder of the seq2seq head"):
        build_model("lstm", spec, hidden_size=8, beam_size=3)


def test_the_model_rebuilds_from_its_options_and_sizes_to_a_budget():
    model = model_of("gru+attn", attention="bahdanau", attention_size=5, beam_size=3)
    again = build_model("gru+attn", SPEC, **model.options)
    assert again.num_parameters == model.num_parameters and again.beam_size == 3
    sized = build_model("lstm+attn", SPEC, params=20_000)
    assert abs(sized.num_parameters - 20_000) < 0.1 * 20_000


def test_onnx_export_is_refused_with_the_reason(tmp_path):
    from rnnlab.export import export_onnx

    with pytest.raises(
        ConfigError,
        match=r"model 'lstm\+attn' cannot be exported to ONNX: an encoder–decoder "
        r"writes its output in a loop whose length depends on the data",
    ):
        export_onnx(model_of("lstm+attn"), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
