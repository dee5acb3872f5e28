"""Sequence to sequence: a parallel text file (source TAB target per line), or generated dates.

File: UTF-8, one pair per line, ``source<TAB>target``; blank lines are skipped; exactly one TAB per
line; neither side empty; no source longer than ``max_source_len`` characters. Each side gets its
own character vocabulary, built from the training part:

    index 0 <pad>   1 <unk>   2 <bos>   3 <eos>   then the characters, by code point

A sample is ``x = LongTensor[T_src]`` (source characters, no specials) and ``y =
LongTensor[T_tgt + 1]`` (target characters, then ``<eos>``); ``collate`` pads ``x`` with ``<pad>``
and ``y`` with ``-100``. The decoder reads ``<bos> y_1 … y_{T_tgt}`` and is trained to emit
``y_1 … y_{T_tgt} <eos>`` (teacher forcing). Characters of the validation and test parts never
seen in training become ``<unk>`` (a target holding one can then not be matched exactly).

The built-in ``dates`` task writes a calendar date (1900-01-01 … 2099-12-31, 73,049 days) in one of
12 surface forms and asks for its ISO form: ``Wednesday, March 3rd, 2021``, ``03.03.2021``,
``the third of march, two thousand and twenty-one`` … → ``2021-03-03``. That is 876,588 distinct
pairs, sources from 8 to 70 characters long; a pair belongs to one split only (a hash of date and
form decides), so the test split holds no pair seen in training. The long spelled-out forms are
where an encoder squeezed into one final state loses (Bahdanau et al. 2015, Fig. 2) and attention
does not.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import torch

from rnnlab.data.batching import SequenceDataset
from rnnlab.data.files import read_text_file, resolve_source
from rnnlab.data.splits import split_indices
from rnnlab.data.tasks import TASKS, PredictInputs, TaskData, TaskSpec
from rnnlab.errors import ConfigError, DataError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
PAD_INDEX, UNK_INDEX, BOS_INDEX, EOS_INDEX = 0, 1, 2, 3
SPECIALS = (PAD, UNK, BOS, EOS)
BUILTINS = ("dates",)


# ---------------------------------------------------------------------------------------------- files
def read_pairs(path: str, *, max_source_len: int, require_targets: bool = True) -> list[tuple[str, str | None, int]]:
    """``(source, target, line)`` of each non-blank line of a parallel text file.

    DataError naming the file and line for a line without a TAB, with more than one, an empty side
    or a source longer than ``max_source_len``; naming the byte offset when the file is not UTF-8.
    ``require_targets=False`` (prediction) takes lines without a TAB as a source alone.
    """
    text = read_text_file(path, what="parallel text file")
    pairs: list[tuple[str, str | None, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        tabs = line.count("\t")
        if tabs == 0 and require_targets:
            raise DataError(f"{path}: line {number}: expected source<TAB>target, found no TAB in {_clip(line)!r}")
        if tabs > 1:
            raise DataError(
                f"{path}: line {number}: expected one TAB between source and target, found {tabs} in {_clip(line)!r}"
            )
        source, target = line.split("\t") if tabs else (line, None)
        if not source:
            raise DataError(f"{path}: line {number}: the source (before the TAB) is empty")
        if target is not None and not target:
            raise DataError(f"{path}: line {number}: the target (after the TAB) is empty")
        if len(source) > max_source_len:
            raise DataError(
                f"{path}: line {number}: the source is {len(source)} characters long; the model "
                f"takes at most max_source_len={max_source_len} (raise the option, or shorten the line)"
            )
        pairs.append((source, target, number))
    if not pairs:
        raise DataError(f"{path}: no source<TAB>target pairs (only blank lines)")
    return pairs


def _clip(line: str, limit: int = 60) -> str:
    return line if len(line) <= limit else line[:limit] + "…"


def build_char_vocab(texts: list[str]) -> list[str]:
    """``[<pad>, <unk>, <bos>, <eos>, characters of texts by code point]``."""
    return [*SPECIALS, *sorted({char for text in texts for char in text})]


def encode_chars(text: str, index: dict[str, int]) -> torch.Tensor:
    return torch.tensor([index.get(char, UNK_INDEX) for char in text], dtype=torch.long)


def decode_chars(vocab: list[str], ids: Any) -> str:
    """The text of ``ids`` up to the first ``<eos>``; ``<pad>``/``<bos>`` dropped, ``<unk>`` shown as ``�``."""
    characters = []
    for index in ids.tolist() if hasattr(ids, "tolist") else ids:
        if index == EOS_INDEX or index < 0:
            break
        if index in (PAD_INDEX, BOS_INDEX):
            continue
        characters.append("\ufffd" if index == UNK_INDEX else vocab[index])
    return "".join(characters)


def encode_many(texts: list[str], index: dict[str, int], *, end: int | None = None) -> list[torch.Tensor]:
    """``encode_chars`` of each text (then ``end`` when given), as views of one tensor: one
    ``torch.tensor`` call per text costs more than the whole encoding."""
    sizes = np.array([len(text) for text in texts], dtype=np.int64)
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    distinct, inverse = np.unique(codes, return_inverse=True)
    lookup = np.array([index.get(chr(code), UNK_INDEX) for code in distinct.tolist()], dtype=np.int64)
    ids = lookup[inverse.reshape(-1)]
    if end is not None:  # one `end` after each text
        ids = np.insert(ids, np.cumsum(sizes), end)
        sizes = sizes + 1
    return list(torch.from_numpy(ids).split(sizes.tolist()))


# ---------------------------------------------------------------------------------------------- the task
def load_seq2seq(
    data, test_data, *, seq_len, seed, max_source_len, val_fraction, test_fraction, n_train, n_val, n_test
):
    if seq_len is not None:
        raise ConfigError(
            "task 'seq2seq' takes no seq_len: each pair keeps its own lengths (the limit on "
            "sources is the max_source_len option)"
        )
    if max_source_len < 1:
        raise ConfigError(f"max_source_len must be at least 1, got {max_source_len}")
    builtin, path = resolve_source(data, BUILTINS, "dates", "seq2seq")
    if builtin:
        if test_data is not None:
            raise ConfigError("the built-in dates task generates its own test split; test_data applies to files")
        parts = {
            name: generate_dates(size, seed=seed, split=name)
            for name, size in (("train", n_train), ("val", n_val), ("test", n_test))
        }
        for name, part in parts.items():
            _check_lengths(part, max_source_len, f"builtin:dates ({name})")
        sources = dict.fromkeys(parts, "builtin:dates")
    else:
        defaults = TASKS["seq2seq"].options
        for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            if value != defaults[name].default:
                raise ConfigError(
                    f"option {name!r} sizes the generated data only; {path} is split by val_fraction/test_fraction"
                )
        pairs = read_pairs(path, max_source_len=max_source_len)
        if test_data is not None:
            train_rows, val_rows, _ = split_indices(len(pairs), val_fraction, 0.0, seed=seed, what="pairs", source=path)
            parts = {
                "train": [pairs[i] for i in train_rows],
                "val": [pairs[i] for i in val_rows],
                "test": read_pairs(test_data, max_source_len=max_source_len),
            }
            sources = {"train": path, "val": path, "test": test_data}
        else:
            rows = split_indices(len(pairs), val_fraction, test_fraction, seed=seed, what="pairs", source=path)
            parts = {name: [pairs[i] for i in r] for name, r in zip(("train", "val", "test"), rows)}
            sources = dict.fromkeys(parts, path)

    source_vocab = build_char_vocab([source for source, _, _ in parts["train"]])
    target_vocab = build_char_vocab([target for _, target, _ in parts["train"]])
    source_index = {char: i for i, char in enumerate(source_vocab)}
    target_index = {char: i for i, char in enumerate(target_vocab)}
    datasets = {
        name: SequenceDataset(
            encode_many([source for source, _, _ in part], source_index),
            encode_many([target for _, target, _ in part], target_index, end=EOS_INDEX),
        )
        for name, part in parts.items()
    }
    longest_target = max(len(target) for _, target, _ in parts["train"]) + 1  # with <eos>
    spec = TaskSpec(
        task="seq2seq",
        head="seq2seq",
        input_size=0,
        vocab_size=len(source_vocab),
        num_classes=len(target_vocab),
        output_shape=[longest_target],
        seq_len=None,
        causal=False,
    )
    unseen = {
        name: sum(char not in target_index for _, target, _ in parts[name] for char in target)
        for name in ("val", "test")
    }
    meta = {
        "task": "seq2seq",
        "data": f"builtin:{builtin}" if builtin else path,
        "seed": seed,
        "generated": bool(builtin),  # the built-in dates are made for the asking (n_train)
        "source_vocab": source_vocab,
        "target_vocab": target_vocab,
        "pad_index": PAD_INDEX,
        "unk_index": UNK_INDEX,
        "bos_index": BOS_INDEX,
        "eos_index": EOS_INDEX,
        "max_source_len": max_source_len,
        "longest_target": longest_target,
        "sizes": {name: len(d) for name, d in datasets.items()},
        "source_lengths": {name: _length_range(part) for name, part in parts.items()},
        "unseen_target_characters": unseen,
        "test_file": sources["test"] if sources["test"] != sources["train"] else None,
    }
    baselines = {"copy_source_exact_match": copy_baseline(parts["test"])}
    return TaskData(spec, datasets["train"], datasets["val"], datasets["test"], baselines=baselines, meta=meta)


def _check_lengths(part: list[tuple[str, str, int]], max_source_len: int, source: str) -> None:
    for text, _, _ in part:
        if len(text) > max_source_len:
            raise ConfigError(
                f"{source}: a generated source is {len(text)} characters long ({text!r}); "
                f"max_source_len={max_source_len} is too small for it"
            )


def _length_range(part: list[tuple[str, Any, int]]) -> list[int]:
    lengths = [len(source) for source, _, _ in part]
    return [min(lengths), max(lengths)]


def copy_baseline(test: list[tuple[str, str, int]]) -> float:
    """Exact match of the model that copies its source: what a task asks beyond the identity."""
    return float(np.mean([source == target for source, target, _ in test]))


def seq2seq_inputs(meta: dict[str, Any], path: str):
    """A new file of sources (``source`` or ``source<TAB>target`` per line) encoded with a run's
    source vocabulary: for ``rnnlab predict``. Targets are returned when every line has one."""
    pairs = read_pairs(path, max_source_len=int(meta["max_source_len"]), require_targets=False)
    index = {char: i for i, char in enumerate(meta["source_vocab"])}
    xs = [encode_chars(source, index) for source, _, _ in pairs]
    keys = [{"line": line, "source": source} for source, _, line in pairs]
    targets = [target for _, target, _ in pairs]
    return PredictInputs(xs, keys, targets if all(t is not None for t in targets) else None)


# ---------------------------------------------------------------------------------------------- dates
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ONES = (
    "",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ORDINAL_ONES = (
    "",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
)
ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}
FIRST_DAY = dt.date(1900, 1, 1).toordinal()
DAY_COUNT = dt.date(2099, 12, 31).toordinal() - FIRST_DAY + 1
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
#: Of every 20 (day, form) pairs, by hash: 1 is held out for validation, 2 for testing.
SPLIT_BUCKETS = {"val": (0,), "test": (1, 2)}


def cardinal(number: int) -> str:
    """0 < number < 100 in words: ``21`` → ``twenty-one``."""
    if number < 20:
        return ONES[number]
    tens, ones = divmod(number, 10)
    return TENS[tens] + ("-" + ONES[ones] if ones else "")


def ordinal(number: int) -> str:
    """1 ≤ number ≤ 31 in words: ``21`` → ``twenty-first``."""
    if number < 20:
        return ORDINAL_ONES[number]
    tens, ones = divmod(number, 10)
    return ORDINAL_TENS[tens * 10] if not ones else TENS[tens] + "-" + ORDINAL_ONES[ones]


def year_words(year: int) -> str:
    """``1984`` → ``nineteen eighty-four``, ``1905`` → ``nineteen oh five``, ``2007`` → ``two thousand and seven``."""
    century, rest = divmod(year, 100)
    if century == 19:
        return "nineteen " + ("hundred" if rest == 0 else "oh " + ONES[rest] if rest < 10 else cardinal(rest))
    return "two thousand" + ("" if rest == 0 else " and " + cardinal(rest))


def suffix(day: int) -> str:
    return "th" if 10 < day % 100 < 14 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def date_forms(date: dt.date) -> list[str]:
    """The 12 surface forms of ``date`` (each one-to-one with the date)."""
    d, m, y = date.day, date.month, date.year
    month, weekday = MONTHS[m - 1], WEEKDAYS[date.weekday()]
    return [
        f"{d} {month} {y}",
        f"{month} {d}, {y}",
        f"{d:02d}.{m:02d}.{y}",
        f"{y}/{m:02d}/{d:02d}",
        f"{weekday}, {month} {d}{suffix(d)}, {y}",
        f"{month[:3]} {d} {y}",
        f"{d}{suffix(d)} of {month.lower()}, {y}",
        f"the {ordinal(d)} of {month.lower()} {year_words(y)}",
        f"{weekday[:3].upper()} {d} {month[:3].upper()} {y}",
        f"{month.lower()} the {ordinal(d)}, {y}",
        f"{weekday.lower()}, the {ordinal(d)} of {month.lower()}, {year_words(y)}",
        f"{y}, {month.lower()} {d}",
    ]


FORM_COUNT = 12


def _bucket(day: int, form: int) -> int:
    # a fixed integer hash (not Python's salted hash()): the split must be the same in every process
    return ((day * 1_000_003 + form * 7_919) * 2_654_435_761 >> 7) % 20


def generate_dates(count: int, *, seed: int, split: str) -> list[tuple[str, str, int]]:
    """``count`` pairs ``(surface form, ISO date, 0)`` of ``split``, a pure function of ``(seed, split)``.

    Days are uniform over 1900–2099 and forms uniform over the 12; a pair is drawn again until its
    hash bucket belongs to ``split``, so the three splits never share a pair.
    """
    if count < 1:
        raise ConfigError(f"the generated dates task needs at least 1 pair per split, got {count}")
    rng = np.random.default_rng([seed, 13, SPLIT_STREAMS[split]])
    wanted = set(SPLIT_BUCKETS.get(split, ())) if split != "train" else None
    excluded = {b for buckets in SPLIT_BUCKETS.values() for b in buckets}
    pairs: list[tuple[str, str, int]] = []
    while len(pairs) < count:
        days = rng.integers(0, DAY_COUNT, size=2 * count)
        forms = rng.integers(0, FORM_COUNT, size=2 * count)
        for day, form in zip(days.tolist(), forms.tolist()):
            bucket = _bucket(day, form)
            if (bucket in wanted) if wanted is not None else (bucket not in excluded):
                date = dt.date.fromordinal(FIRST_DAY + day)
                pairs.append((date_forms(date)[form], date.isoformat(), 0))
                if len(pairs) == count:
                    break
    return pairs
