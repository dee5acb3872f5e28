"""Text generation: stateful steps equal a full pass, sampling rules, seeds, errors, the CLI."""

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import rnnlab
from rnnlab.cli import app
from rnnlab.data import TaskSpec
from rnnlab.errors import ConfigError, DataError
from rnnlab.generate import _stateful_logits, generate_stream, next_distribution, sample_next
from rnnlab.models import build_model

VOCAB = ["<unk>", "\n", " ", "a", "b", "c", "d", "e", "t", "h", "o"]
SPEC = TaskSpec("charlm", "lm", 0, len(VOCAB), len(VOCAB), [], 16, True)

pytestmark = pytest.mark.usefixtures("one_thread")


def lm(name="lstm"):
    torch.manual_seed(0)
    return build_model(name, SPEC, hidden_size=16, num_layers=2).eval()


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_stateful_steps_give_the_distribution_of_a_full_pass_over_the_prefix(name):
    model = lm(name)
    prefix = [3, 9, 7, 2]
    steps = _stateful_logits(model, prefix)
    with torch.no_grad():
        logits = next(steps)
        for char_id in [4, 5, 10, 2, 8, 1, 3, 3, 6, 7]:
            full = model(torch.tensor([prefix]))[0, -1]  # reference: the whole prefix read again
            assert torch.allclose(torch.softmax(logits, -1), torch.softmax(full, -1), atol=1e-5)
            prefix.append(char_id)
            logits = steps.send(char_id)


@pytest.mark.parametrize("extras", [{}, {"zoneout": 0.2}], ids=["compiled step", "model.step fallback"])
def test_step_runner_gives_what_model_step_gives_and_its_state(extras):
    from rnnlab.kernels import build

    torch.manual_seed(0)
    model = build_model("lstm", SPEC, hidden_size=16, num_layers=2, **extras).eval()
    runner = model.step_runner()
    # zoneout mixes h_{t-1} into h_t even in evaluation: the compiled step does not run it
    assert runner.compiled == (not extras and build.load() is not None)
    state, carried = None, runner.start(None)
    with torch.inference_mode():
        for char_id in [3, 9, 7, 2, 4]:
            x_t = torch.tensor([char_id])
            expected, state = model.step(x_t, state)  # reference: the checked, general step
            output, carried = runner(x_t, carried)
            assert torch.allclose(output, expected, atol=1e-5)
        for got, want in zip(runner.layer_state(carried), state):
            assert torch.allclose(got, want, atol=1e-5)


def test_greedy_picks_the_most_likely_character_and_never_unk():
    logits = torch.tensor([9.0, 1.0, 3.0, 2.5])
    assert sample_next(logits, temperature=0) == 2  # <unk> (index 0) is the largest but never produced
    model = lm()
    text = rnnlab.generate(model, "hat", 12, temperature=0, vocab=VOCAB)
    ids = [VOCAB.index(c) for c in "hat"]
    for char in text:  # reference: argmax of a full pass, character by character
        with torch.no_grad():
            full = model(torch.tensor([ids]))[0, -1]
        full[0] = -math.inf
        assert VOCAB[int(full.argmax())] == char
        ids.append(VOCAB.index(char))


def test_temperature_scales_the_logits():
    logits = torch.tensor([0.5, 1.0, -2.0, 3.0])
    for temperature in (0.5, 1.0, 2.0):
        expected = np.exp(logits.numpy() / temperature)
        expected /= expected.sum()
        assert np.allclose(next_distribution(logits, temperature=temperature).numpy(), expected, atol=1e-6)


def test_top_k_keeps_the_k_most_likely_renormalised():
    logits = torch.tensor([0.0, 2.0, 1.0, 3.0, -1.0])
    kept = np.exp([2.0, 3.0])
    expected = np.zeros(5)
    expected[[1, 3]] = kept / kept.sum()
    assert np.allclose(next_distribution(logits, top_k=2).numpy(), expected, atol=1e-6)
    generator = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, top_k=2, generator=generator) for _ in range(200)}
    assert draws == {1, 3}


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.05, 0.5, 0.15, 0.3]))
    assert np.allclose(next_distribution(logits, top_p=0.7).numpy(), [0, 0.625, 0, 0.375], atol=1e-6)
    assert np.allclose(next_distribution(logits, top_p=0.5).numpy(), [0, 1, 0, 0], atol=1e-6)
    assert np.allclose(
        next_distribution(logits, top_p=0.81).numpy(), [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95], atol=1e-6
    )
    assert np.allclose(next_distribution(logits, top_p=1.0).numpy(), [0.05, 0.5, 0.15, 0.3], atol=1e-6)


def test_sampling_frequencies_follow_the_distribution():
    logits = torch.log(torch.tensor([1e-9, 0.2, 0.3, 0.5]))
    generator = torch.Generator().manual_seed(1)
    counts = np.bincount([sample_next(logits, generator=generator) for _ in range(4000)], minlength=4)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / 4000, [0.2, 0.3, 0.5], atol=0.03)


def test_a_seed_makes_samples_reproducible_and_leaves_the_global_rng_alone():
    model = lm()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = rnnlab.generate(model, "the", 40, temperature=1.0, seed=7, vocab=VOCAB)
    assert torch.equal(torch.get_rng_state(), before)
    assert rnnlab.generate(model, "the", 40, temperature=1.0, seed=7, vocab=VOCAB) == first
    assert rnnlab.generate(model, "the", 40, temperature=1.0, seed=8, vocab=VOCAB) != first
    assert len(first) == 40 and set(first) <= set(VOCAB[1:])


def test_stateless_window_generation_agrees_with_stateful_while_the_text_fits_the_window():
    model = lm()
    kwargs = dict(temperature=0.8, seed=3, vocab=VOCAB)
    stateful = "".join(generate_stream(model, "ab", 10, **kwargs))
    rerun = "".join(generate_stream(model, "ab", 10, stateful=False, **kwargs))  # 12 characters < seq_len 16
    assert stateful == rerun


def test_transformer_generates_from_a_window():
    torch.manual_seed(0)
    model = build_model("transformer", SPEC, hidden_size=16, num_layers=1).eval()
    text = rnnlab.generate(model, "the", 30, temperature=0, vocab=VOCAB)
    assert len(text) == 30


def test_unknown_prompt_characters_are_listed():
    with pytest.raises(DataError, match=r"2 character\(s\).*'x' \(U\+0078\), '好' \(U\+597D\)"):
        rnnlab.generate(lm(), "hax好x", 5, vocab=VOCAB)
    with pytest.raises(DataError, match="at least one character"):
        rnnlab.generate(lm(), "", 5, vocab=VOCAB)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"temperature": -0.5}, r"temperature must be a finite number ≥ 0 .*got -0.5"),
        ({"temperature": math.nan}, "temperature must be a finite number"),
        ({"top_k": 0}, r"top_k must be a whole number ≥ 1, got 0"),
        ({"top_p": 1.5}, r"top_p must lie in \(0, 1\], got 1.5"),
        ({"top_p": 0.0}, r"top_p must lie in \(0, 1\], got 0.0"),
    ],
)
def test_impossible_sampling_settings_are_refused_at_the_call(arguments, message):
    with pytest.raises(ConfigError, match=message):
        generate_stream(lm(), "the", 5, vocab=VOCAB, **arguments)  # no next(): fails before the first character


def test_a_model_without_its_vocabulary_is_refused():
    with pytest.raises(ConfigError, match="vocab"):
        rnnlab.generate(lm(), "the", 5)


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("charlm-run")
    text = folder / "text.txt"
    text.write_text("the hat; a bat ate the hat. " * 30, encoding="utf-8")
    runner = CliRunner()
    with torch.random.fork_rng():
        result = runner.invoke(
            app,
            [
                "train",
                "--task",
                "charlm",
                "--data",
                str(text),
                "--model",
                "gru",
                "--hidden-size",
                "16",
                "--seq-len",
                "16",
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--out",
                str(folder / "run"),
            ],
        )
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_cli_generate_prints_the_prompt_and_the_characters(charlm_run):
    runner = CliRunner()
    arguments = [
        "generate",
        str(charlm_run),
        "--prompt",
        "the ",
        "--length",
        "25",
        "--temperature",
        "0.7",
        "--top-k",
        "5",
        "--seed",
        "2",
    ]
    first = runner.invoke(app, arguments)
    assert first.exit_code == 0, first.output
    assert first.output.startswith("the ") and len(first.output.rstrip("\n")) == 4 + 25
    assert runner.invoke(app, arguments).output == first.output
    api = rnnlab.generate(str(charlm_run), "the ", 25, temperature=0.7, top_k=5, seed=2)
    assert first.output == "the " + api + "\n"


def test_cli_generate_names_unknown_characters_and_bad_temperature(charlm_run):
    runner = CliRunner()
    unknown = runner.invoke(app, ["generate", str(charlm_run), "--prompt", "the Zoo", "--length", "5"])
    assert unknown.exit_code == 2 and "'Z' (U+005A)" in unknown.output and "the Zoo" not in unknown.output
    cold = runner.invoke(app, ["generate", str(charlm_run), "--prompt", "the", "--temperature", "-1"])
    assert cold.exit_code == 2 and "temperature must be a finite number ≥ 0" in cold.output
