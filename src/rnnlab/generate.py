"""Text generation from a character-level language model (a ``charlm`` run).

The prompt is read once to build the recurrent state; after that each new character costs one
``model.step``: the sampled character is fed back with the carried state, never a pass over a
window of the text so far. Models without a recurrent state (the transformer) re-read the last
``seq_len`` characters (their training context) for each new character.

Sampling the next character ``c`` from the logits ``z`` over the vocabulary:

    temperature τ > 0:  p(c) = softmax(z / τ)(c);   τ = 0: c = argmax z (greedy)
    top-k:              p(c) = 0 unless z_c is among the k largest, then renormalised
    top-p (nucleus):    the smallest set of most likely characters whose p sums to ≥ P is kept,
                        the rest set to 0, then renormalised (Holtzman et al. 2020)
    ``<unk>`` is never sampled: it stands for characters the vocabulary does not hold.

A ``seed`` makes the samples reproducible (a private ``torch.Generator``: the global random state
is left alone).

    >>> from rnnlab import generate
    >>> text = generate("runs/charlm-lstm", "def ", 200, temperature=0.5, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from rnnlab.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rnnlab.models.task_model import TaskModel

UNK_INDEX = 0


def generate(
    source: Any,
    prompt: str,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    vocab: list[str] | None = None,
) -> str:
    """``length`` characters generated after ``prompt`` (the prompt not included).

    ``source``: a run directory of ``rnnlab train --task charlm``, or a ``TaskModel`` with its
    ``vocab`` (``task_data.meta["vocab"]``). See ``generate_stream`` for the other arguments."""
    return "".join(
        generate_stream(
            source, prompt, length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, vocab=vocab
        )
    )


def generate_stream(
    source: Any,
    prompt: str,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    vocab: list[str] | None = None,
    stateful: bool = True,
) -> Iterator[str]:
    """Yield the generated characters one by one, as they are sampled.

    ``temperature`` ≥ 0 (0: greedy), ``top_k`` ≥ 1, ``0 < top_p ≤ 1``, ``seed``: reproducible
    samples. ``stateful=False`` re-reads a window of the last ``seq_len`` characters for every new
    character, as a model without a state must (kept to measure what the state saves, see
    ``bench/generate.py``). A prompt character outside the vocabulary raises ``DataError`` naming
    every such character."""
    model, vocab = _model_and_vocab(source, vocab)
    check_sampling(length, temperature, top_k, top_p)
    ids = encode_prompt(vocab, prompt)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    window = int(model.spec.get("seq_len") or 100)
    # checked above, before the first character is asked for: a bad argument fails at the call
    return _produce(model, vocab, ids, length, temperature, top_k, top_p, generator, stateful, window)


def _produce(
    model: TaskModel,
    vocab: list[str],
    ids: list[int],
    length: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator,
    stateful: bool,
    window: int,
) -> Iterator[str]:
    was_training = model.training
    model.eval()
    sample = Sampler(len(vocab), temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    try:
        with torch.inference_mode():
            if stateful and getattr(model, "streamable", False):
                steps = _stateful_logits(model, ids)
            else:
                steps = _window_logits(model, ids, window)
            logits = next(steps)
            for produced in range(length):
                char_id = sample(logits)
                yield vocab[char_id]
                if produced + 1 < length:
                    logits = steps.send(char_id)
    finally:
        model.train(was_training)


def _stateful_logits(model: TaskModel, ids: list[int]):
    """Coroutine: yields the next-character logits ``[V]``, is sent the chosen id. The prompt is
    read in one pass; each later character is one step of ``model.step_runner()`` (the compiled
    stacked-layer step) with the carried state."""
    output, state = model(torch.tensor([ids]), None, None, return_state=True)
    logits = output[0, -1]
    runner = model.step_runner()
    carried = runner.start(state)
    token_inputs = torch.arange(len(logits)).unsqueeze(1).unbind(0)  # x_t = [c] for each c, made once
    while True:
        output, carried = runner(token_inputs[(yield logits)], carried)
        logits = output[0]


def _window_logits(model: torch.nn.Module, ids: list[int], window: int):
    """Coroutine like ``_stateful_logits``, re-reading the last ``window`` characters every time."""
    ids = list(ids)
    while True:
        logits = model(torch.tensor([ids[-window:]]))[0, -1]
        ids.append((yield logits))


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """One character id drawn from ``next_distribution(logits, ...)`` (greedy at temperature 0)."""
    return Sampler(logits.numel(), temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)(logits)


class Sampler:
    """Draws character ids from logits ``[V]`` with fixed settings (the module docstring's rules).

    Built once per generation, so a character costs a few operations on a ``[V]`` tensor. Without
    top-k / top-p it draws by the Gumbel-max trick, exact for ``softmax(z / τ)``:

        c = argmax_c (z_c / τ + g_c),  g_c = −log E_c,  E_c ~ Exp(1)
          = argmax_c (z_c − τ·log E_c)                       (scaling by τ > 0 keeps the argmax)

    over the characters other than ``<unk>`` (index 0, left out by slicing ``z[1:]``): three
    operations on one reused buffer. With top-k / top-p it draws from ``next_distribution`` by the
    inverse CDF (the first ``c`` with ``Σ_{c' ≤ c} p(c') > u``, ``u ~ U[0, 1)``)."""

    def __init__(
        self,
        vocab_size: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.temperature, self.top_k, self.top_p, self.generator = temperature, top_k, top_p, generator
        self.restricted = top_k is not None or (top_p is not None and top_p < 1)
        self.log_exponential = torch.empty(vocab_size - 1)  # log E_c, redrawn in place for each character
        self.last = vocab_size - 1
        if UNK_INDEX != 0:  # the slicing below leaves out index 0
            raise AssertionError("Sampler assumes <unk> is index 0")

    def __call__(self, logits: torch.Tensor) -> int:
        known = logits.detach()[1:]  # every character but <unk>: it stands for unseen ones, never produce it
        if self.temperature == 0:
            return int(torch.argmax(known)) + 1
        if not self.restricted:
            self.log_exponential.exponential_(generator=self.generator).log_()
            return int(torch.argmax(torch.add(known, self.log_exponential, alpha=-self.temperature))) + 1
        masked = torch.cat([torch.full((1,), -math.inf), known.float()])
        probabilities = next_distribution(masked, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        cumulative = torch.cumsum(probabilities, dim=0)
        u = torch.rand((), generator=self.generator) * cumulative[-1]
        return min(int(torch.searchsorted(cumulative, u, right=True)), self.last)


def next_distribution(
    logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The sampling distribution ``[V]`` (sums to 1) from logits ``[V]``, with ``temperature > 0``,
    then top-k, then top-p (see the module docstring)."""
    if temperature <= 0:
        raise ConfigError(f"next_distribution needs temperature > 0 (0 is greedy: use sample_next); got {temperature}")
    scaled = logits.detach().double() / temperature
    if top_k is not None and top_k < scaled.numel():
        kth_largest = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth_largest, -math.inf)
    probabilities = torch.softmax(scaled, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_p, order = torch.sort(probabilities, descending=True)
        mass_before = torch.cumsum(sorted_p, dim=-1) - sorted_p
        # keep a character while the mass of the more likely ones is still short of top_p
        dropped = order[mass_before >= top_p]
        probabilities[dropped] = 0.0
        probabilities = probabilities / probabilities.sum()
    return probabilities.float()


def check_sampling(length: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """ConfigError naming the argument when a sampling setting is impossible."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ConfigError(f"length must be a whole number of characters ≥ 0, got {length!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be a finite number ≥ 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be a whole number ≥ 1, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ConfigError(f"top_p must lie in (0, 1], got {top_p!r}")


def encode_prompt(vocab: list[str], prompt: str) -> list[int]:
    """The prompt's character ids; DataError listing the characters the vocabulary lacks."""
    from rnnlab.data.text import encode_text, unknown_characters

    if not isinstance(prompt, str) or not prompt:
        raise DataError(f"the prompt must hold at least one character, got {prompt!r}")
    missing = unknown_characters({"vocab": vocab}, prompt)
    if missing:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing)
        raise DataError(
            f"the prompt has {len(missing)} character(s) the model's vocabulary lacks: {shown}; "
            f"the model knows {len(vocab) - 1} characters, those of its training text"
        )
    return encode_text(vocab, prompt).tolist()


def _model_and_vocab(source: Any, vocab: list[str] | None) -> tuple[TaskModel, list[str]]:
    if isinstance(source, (str, os.PathLike)):
        from rnnlab.train import load_run

        run = load_run(source)
        if run.task["spec"].get("head") != "lm" or "vocab" not in run.task["meta"]:
            raise ConfigError(
                f"{source} is a {run.task['spec'].get('task')!r} run; text generation needs a "
                "charlm run (rnnlab train --task charlm)"
            )
        return run.model, run.task["meta"]["vocab"]
    if vocab is None:
        raise ConfigError("generating from a model needs its vocabulary: vocab=task_data.meta['vocab']")
    if getattr(source, "spec", {}).get("head") != "lm":
        raise ConfigError(
            f"text generation needs a language model (head 'lm'); got head {getattr(source, 'spec', {}).get('head')!r}"
        )
    return source, list(vocab)
