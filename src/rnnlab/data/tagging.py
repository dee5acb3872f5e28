"""Sequence tagging: CoNLL-style files, and a generated task that needs context on both sides.

CoNLL: one token per line, the token first and its tag last (columns between them, as in
CoNLL-2003's POS and chunk columns, are ignored), whitespace-separated, a blank line between
sentences, ``-DOCSTART-`` lines ignored. ``x``: ``LongTensor[T]`` word ids (``vocab.py``);
``y``: ``LongTensor[T]`` tag indices into ``meta["tags"]``.

The built-in ``entities`` task is generated: sentences of filler words with mentions of
*ambiguous* names (``jordan``, ``paris``, ...) tagged ``B-/I-PER``, ``LOC`` or ``ORG`` in BIO. A
mention's type is given only by a cue word next to it, *before* it (``mr jordan``, ``in jordan``,
``joined jordan``) or *after* it (``jordan said``, ``jordan county``, ``jordan inc``), so for the
mentions cued only from the right a left-to-right tagger has to guess; a bidirectional one
can be exact. Cue words and names occur nowhere else.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rnnlab.data.batching import SequenceDataset
from rnnlab.data.files import read_text_file, resolve_source
from rnnlab.data.splits import split_indices
from rnnlab.data.tasks import TASKS, PredictInputs, TaskData, TaskSpec
from rnnlab.data.vocab import PAD_INDEX, UNK_INDEX, build_vocab, encode
from rnnlab.errors import ConfigError, DataError

BUILTINS = ("entities",)


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str] | None
    lines: list[int]  # file line of each token (empty for generated sentences)


def read_conll(path: str, *, require_tags: bool = True) -> list[Sentence]:
    """Sentences of a CoNLL file; DataError naming the file and line of a malformed line."""
    text = read_text_file(path, what="CoNLL file")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    tagged: bool | None = None

    def close() -> None:
        if tokens:
            sentences.append(Sentence(tokens.copy(), tags.copy() if tagged else None, lines.copy()))
        tokens.clear()
        tags.clear()
        lines.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            close()
            continue
        if len(fields) < 2 and require_tags:
            raise DataError(
                f"{path}: line {number}: expected a token and a tag separated by whitespace, got {line.strip()!r}"
            )
        has_tag = len(fields) >= 2
        if tagged is None:
            tagged = has_tag
        elif has_tag != tagged:
            raise DataError(
                f"{path}: line {number}: {'a tag' if has_tag else 'no tag'} here but "
                f"{'none' if has_tag else 'tags'} on the lines before; tag every token or none"
            )
        tokens.append(fields[0])
        if has_tag:
            tags.append(fields[-1])
        lines.append(number)
    close()
    if not sentences:
        raise DataError(f"{path}: no sentences (only blank or -DOCSTART- lines)")
    return sentences


def load_tagging(
    data, test_data, *, seq_len, seed, min_freq, lowercase, val_fraction, test_fraction, n_train, n_val, n_test
):
    if seq_len is not None:
        raise ConfigError("task 'tag' takes no seq_len: each sentence keeps its own length")
    builtin, path = resolve_source(data, BUILTINS, "entities", "tag")
    if builtin:
        if test_data is not None:
            raise ConfigError(
                "the built-in entities task generates its own test split; test_data applies to CoNLL files"
            )
        parts = {
            name: generate_entities(size, seed=seed, split=name)
            for name, size in (("train", n_train), ("val", n_val), ("test", n_test))
        }
        sources = dict.fromkeys(parts, "builtin:entities")
    else:
        defaults = TASKS["tag"].options
        for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            if value != defaults[name].default:
                raise ConfigError(
                    f"option {name!r} sizes the generated data only; {path} is split by val_fraction/test_fraction"
                )
        sentences = read_conll(path)
        if test_data is not None:
            train_rows, val_rows, _ = split_indices(
                len(sentences), val_fraction, 0.0, seed=seed, what="sentences", source=path
            )
            parts = {
                "train": [sentences[i] for i in train_rows],
                "val": [sentences[i] for i in val_rows],
                "test": read_conll(test_data),
            }
            sources = {"train": path, "val": path, "test": test_data}
        else:
            rows = split_indices(len(sentences), val_fraction, test_fraction, seed=seed, what="sentences", source=path)
            parts = {name: [sentences[i] for i in r] for name, r in zip(("train", "val", "test"), rows)}
            sources = dict.fromkeys(parts, path)

    def words(sentence: Sentence) -> list[str]:
        return [token.lower() for token in sentence.tokens] if lowercase else sentence.tokens

    tags = sorted({tag for sentence in parts["train"] for tag in sentence.tags})
    if len(tags) < 2:
        count = sum(len(sentence.tags) for sentence in parts["train"])
        raise DataError(
            f"{sources['train']}: the tag column holds one tag only ({tags[0] if tags else None!r} on all {count} "
            "training tokens); a tagger needs at least two"
        )
    for name in ("val", "test"):
        _check_known_tags(parts[name], set(tags), sources[name])
    vocab = build_vocab((words(s) for s in parts["train"]), min_freq)
    word_index = {word: i for i, word in enumerate(vocab)}
    tag_index = {tag: i for i, tag in enumerate(tags)}
    datasets = {
        name: SequenceDataset(
            [encode(words(s), word_index) for s in part], [torch.tensor([tag_index[t] for t in s.tags]) for s in part]
        )
        for name, part in parts.items()
    }
    spec = TaskSpec(
        task="tag",
        head="tag",
        input_size=0,
        vocab_size=len(vocab),
        num_classes=len(tags),
        output_shape=[],
        seq_len=None,
        causal=False,
    )
    meta = {
        "task": "tag",
        "data": f"builtin:{builtin}" if builtin else path,
        "seed": seed,
        "tags": tags,
        "vocab": vocab,
        "lowercase": lowercase,
        "min_freq": min_freq,
        "pad_index": PAD_INDEX,
        "unk_index": UNK_INDEX,
        "sizes": {name: len(d) for name, d in datasets.items()},
    }
    baselines = word_majority_baselines(
        [words(s) for s in parts["train"]],
        [s.tags for s in parts["train"]],
        [words(s) for s in parts["test"]],
        [s.tags for s in parts["test"]],
    )
    return TaskData(spec, datasets["train"], datasets["val"], datasets["test"], baselines=baselines, meta=meta)


def _check_known_tags(sentences: list[Sentence], known: set[str], source: str) -> None:
    unseen: list[tuple[str, int]] = []
    for s in sentences:
        assert s.tags is not None  # read with require_tags=True, or generated with tags
        unseen += [(tag, line) for tag, line in zip(s.tags, s.lines or [0] * len(s.tags)) if tag not in known]
    if unseen:
        names = sorted({tag for tag, _ in unseen})
        more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
        where = ", ".join(f"line {line}" for _, line in unseen[:5]) + more
        raise DataError(
            f"{source}: tag(s) {', '.join(map(repr, names))} never occur in the training data "
            f"(at {where}); "
            f"training tags: {', '.join(sorted(known))}"
        )


def word_majority_baselines(train_words, train_tags, test_words, test_tags) -> dict[str, float]:
    """Each word tagged with its most frequent training tag (unseen words: the most frequent tag):
    the classic context-free tagging baseline; its accuracy and token-level macro F1 on the test split."""
    from rnnlab.data.classify import macro_f1

    by_word: dict[str, Counter] = {}
    overall: Counter = Counter()
    for sentence_words, sentence_tags in zip(train_words, train_tags):
        for word, tag in zip(sentence_words, sentence_tags):
            by_word.setdefault(word, Counter())[tag] += 1
            overall[tag] += 1
    fallback = overall.most_common(1)[0][0]
    truth = [tag for tags in test_tags for tag in tags]
    predicted = [by_word[w].most_common(1)[0][0] if w in by_word else fallback for ws in test_words for w in ws]
    return {
        "word_majority_accuracy": float(np.mean(np.asarray(truth) == np.asarray(predicted))),
        "word_majority_macro_f1": macro_f1(truth, predicted),
    }


def tagging_inputs(meta: dict[str, Any], path: str):
    """A new CoNLL file (tags optional) encoded with a trained run's vocabulary: for ``rnnlab predict``."""
    sentences = read_conll(path, require_tags=False)
    word_index = {word: i for i, word in enumerate(meta["vocab"])}
    xs = [encode([t.lower() for t in s.tokens] if meta["lowercase"] else s.tokens, word_index) for s in sentences]
    keys = [{"line": s.lines[0], "tokens": s.tokens} for s in sentences]
    tagged = all(s.tags is not None for s in sentences)
    return PredictInputs(xs, keys, [s.tags for s in sentences] if tagged else None)


# ----------------------------------------------------------------------------------------------
# the generated entities task

NAMES = (
    "jordan",
    "paris",
    "victoria",
    "austin",
    "sydney",
    "florence",
    "georgia",
    "chelsea",
    "lincoln",
    "phoenix",
    "orlando",
    "madison",
    "chester",
    "dallas",
    "houston",
    "regina",
    "winston",
    "savannah",
    "camden",
    "preston",
)
CUES_BEFORE = {"PER": ("mr", "mrs", "dr"), "LOC": ("in", "near", "toward"), "ORG": ("joined", "sued", "acquired")}
CUES_AFTER = {
    "PER": ("said", "smiled", "laughed"),
    "LOC": ("county", "harbour", "valley"),
    "ORG": ("inc", "corp", "fc"),
}
FILLERS = (
    "the",
    "a",
    "of",
    "and",
    "to",
    "was",
    "for",
    "on",
    "with",
    "this",
    "that",
    "is",
    "by",
    "new",
    "last",
    "week",
    "year",
    "report",
    "today",
    "people",
    "many",
    "after",
    "before",
    "then",
    "also",
    "very",
    "more",
    "than",
    "it",
    "they",
    "we",
    "there",
    "some",
    "most",
    "early",
    "late",
    "team",
    "plan",
    "news",
    "season",
)
TYPES = ("PER", "LOC", "ORG")
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


def generate_entities(count: int, *, seed: int, split: str) -> list[Sentence]:
    """``count`` sentences, sentence ``i`` drawn from ``rng([seed, split, i])``.

    A mention is 1-2 names of one type with a cue after it (1/2), before it (1/4) or on both
    sides (1/4); a sentence has 6-14 fillers and 1-3 mentions.
    """
    if count < 1:
        raise ConfigError(f"the generated entities task needs at least 1 sentence per split, got {count}")
    return [_entity_sentence(np.random.default_rng([seed, 11, SPLIT_STREAMS[split], i])) for i in range(count)]


def _entity_sentence(rng: np.random.Generator) -> Sentence:
    fillers = [str(word) for word in rng.choice(FILLERS, size=rng.integers(6, 15))]
    mentions: dict[int, list[tuple[str, str]]] = {}
    # distinct slots between fillers: two mentions never touch, so "mr jordan paris said" (one
    # mention or two?) cannot arise and every tag is determined by the sentence
    for slot in rng.choice(len(fillers) + 1, size=rng.integers(1, 4), replace=False):
        kind = TYPES[rng.integers(3)]
        names = [str(n) for n in rng.choice(NAMES, size=rng.integers(1, 3), replace=False)]
        mention = [(name, ("B-" if k == 0 else "I-") + kind) for k, name in enumerate(names)]
        where = rng.random()
        if where >= 0.5:  # cued before (1/4), or on both sides (1/4)
            mention.insert(0, (str(rng.choice(CUES_BEFORE[kind])), "O"))
        if where < 0.5 or where >= 0.75:  # cued after (1/2), or on both sides
            mention.append((str(rng.choice(CUES_AFTER[kind])), "O"))
        mentions[int(slot)] = mention
    pairs: list[tuple[str, str]] = []
    for position in range(len(fillers) + 1):
        pairs.extend(mentions.get(position, []))
        if position < len(fillers):
            pairs.append((fillers[position], "O"))
    return Sentence([w for w, _ in pairs], [t for _, t in pairs], [])
