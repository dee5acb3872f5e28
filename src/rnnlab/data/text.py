"""Character-level language modelling (seed 004) on any UTF-8 text, Chinese included.

The text is split contiguously (train, then validation, then test: 90/5/5 by default), the
vocabulary is the characters of the training part seen at least ``min_freq`` times, sorted by code
point, after ``<unk>`` at index 0 (rare and unseen characters). Windows cut each part into
``(x, y)`` pairs ``x = ids[s : s + T]``, ``y = ids[s + 1 : s + T + 1]`` with stride ``T``; the
validation and test windows end with a shorter one, so every character of those parts after the
first is scored exactly once.

The whole id stream of each part is ``dataset.tokens`` (``LongTensor``), for stateful training
with truncated back-propagation through time over long contiguous streams.

Baselines in bits per character on the test targets, with add-one smoothing from training counts
(``V`` the vocabulary size, ``N`` the training length):

    unigram:  p(c) = (n(c) + 1) / (N + V)
    bigram:   p(c | b) = (n(b c) + 1) / (n(b ·) + V)
    bpc = -mean log2 p
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rnnlab.data.files import read_text_file, resolve_source
from rnnlab.data.tasks import TaskData, TaskSpec
from rnnlab.errors import ConfigError, DataError

UNK = "<unk>"
UNK_INDEX = 0
BUILTINS = ("pydoc",)
DEFAULT_SEQ_LEN = 100


class TextWindows(Dataset):
    """Next-character windows over one part's id stream ``tokens``."""

    def __init__(self, tokens: torch.Tensor, seq_len: int, *, complete_only: bool):
        self.tokens = tokens
        self.seq_len = seq_len
        targets = len(tokens) - 1
        count = targets // seq_len if complete_only else -(-targets // seq_len)
        self.starts = np.arange(count, dtype=np.int64) * seq_len
        self.lengths = np.minimum(seq_len, targets - self.starts)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start, length = int(self.starts[index]), int(self.lengths[index])
        return self.tokens[start : start + length], self.tokens[start + 1 : start + length + 1]


def builtin_text(name: str) -> str:
    if name == "pydoc":
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key].strip() for key in sorted(topics)) + "\n"
    raise ValueError(name)


def read_text(path: str) -> str:
    """A UTF-8 text file with its line ends made ``\\n``; DataError if missing, empty or not UTF-8."""
    return read_text_file(path, what="text file").replace("\r\n", "\n").replace("\r", "\n")


def load_charlm(data, test_data, *, seq_len, seed, min_freq, val_fraction, test_fraction):
    from rnnlab.data.splits import check_fractions

    seq_len = DEFAULT_SEQ_LEN if seq_len is None else seq_len
    if seq_len < 1:
        raise ConfigError(f"charlm needs seq_len of at least 1, got {seq_len}")
    check_fractions(val_fraction, 0.0 if test_data is not None else test_fraction)
    builtin, path = resolve_source(data, BUILTINS, "pydoc", "charlm")
    text = builtin_text(builtin) if builtin else read_text(path)
    source = f"builtin:{builtin}" if builtin else path

    n = len(text)
    n_test = 0 if test_data is not None else round(n * test_fraction)
    n_val = round(n * val_fraction)
    n_train = n - n_val - n_test
    parts = {"train": text[:n_train], "val": text[n_train : n_train + n_val]}
    parts["test"] = read_text(test_data) if test_data is not None else text[n_train + n_val :]
    if n_train < seq_len + 1:
        raise DataError(
            f"{source}: the text has {n} characters; its training part ({n_train}) is shorter than one training "
            f"window of seq_len + 1 = {seq_len + 1} characters; give more text or a smaller seq_len"
        )
    for name in ("val", "test"):
        if len(parts[name]) < 2:
            where = test_data if name == "test" and test_data is not None else source
            raise DataError(
                f"{where}: the {name} part has {len(parts[name])} character(s), at least 2 are needed to score one "
                f"prediction; give more text (the {name} part is the end of the text)"
            )

    counts = Counter(parts["train"])
    vocab = [UNK, *sorted((c for c, k in counts.items() if k >= max(1, min_freq)), key=ord)]
    streams = {name: encode_text(vocab, part) for name, part in parts.items()}
    datasets = {name: TextWindows(stream, seq_len, complete_only=(name == "train")) for name, stream in streams.items()}
    spec = TaskSpec(
        task="charlm",
        head="lm",
        input_size=0,
        vocab_size=len(vocab),
        num_classes=len(vocab),
        output_shape=[],
        seq_len=seq_len,
        causal=True,
    )
    unknown = {name: float((stream == UNK_INDEX).float().mean()) for name, stream in streams.items()}
    meta = {
        "task": "charlm",
        "data": source,
        "seed": seed,
        "vocab": vocab,
        "unk_index": UNK_INDEX,
        "seq_len": seq_len,
        "min_freq": min_freq,
        "split_chars": {name: len(part) for name, part in parts.items()},
        "unk_share": unknown,
        "test_file": test_data,
    }
    baselines = ngram_baselines(streams["train"], streams["test"], len(vocab))
    return TaskData(spec, datasets["train"], datasets["val"], datasets["test"], baselines=baselines, meta=meta)


def encode_text(vocab: list[str], text: str) -> torch.Tensor:
    """``LongTensor`` of character ids; characters outside ``vocab`` become ``<unk>`` (0)."""
    codes = np.array([ord(c) for c in vocab[1:]], dtype=np.int64)  # sorted: vocab is in code-point order
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    position = np.searchsorted(codes, points)
    found = position < len(codes)
    found[found] = codes[position[found]] == points[found]
    return torch.from_numpy(np.where(found, position + 1, UNK_INDEX))


def decode_text(vocab: list[str], ids) -> str:
    """Ids back to text (``<unk>`` printed as U+FFFD, the replacement character)."""
    return "".join("\ufffd" if i == UNK_INDEX else vocab[i] for i in (ids.tolist() if hasattr(ids, "tolist") else ids))


def unknown_characters(meta: dict[str, Any], text: str) -> list[str]:
    """The distinct characters of ``text`` that the run's vocabulary lacks, in order of appearance."""
    known = set(meta["vocab"][1:])
    return list(dict.fromkeys(c for c in text if c not in known))


def ngram_baselines(train: torch.Tensor, test: torch.Tensor, vocab_size: int) -> dict[str, float]:
    """Unigram and bigram bits per character on ``test[1:]`` (the targets a model predicts)."""
    train_ids, test_ids = train.numpy(), test.numpy()
    unigram = np.bincount(train_ids, minlength=vocab_size).astype(np.float64)
    targets = test_ids[1:]
    p_unigram = (unigram[targets] + 1) / (unigram.sum() + vocab_size)
    # pairs as one integer b·V + c; counted sparsely (V² can be large for Chinese text)
    seen_pairs, seen_counts = np.unique(train_ids[:-1] * vocab_size + train_ids[1:], return_counts=True)
    test_pairs = test_ids[:-1] * vocab_size + targets
    position = np.minimum(np.searchsorted(seen_pairs, test_pairs), len(seen_pairs) - 1)
    pair = np.where(seen_pairs[position] == test_pairs, seen_counts[position], 0).astype(np.float64)
    before = np.bincount(train_ids[:-1], minlength=vocab_size).astype(np.float64)
    p_bigram = (pair + 1) / (before[test_ids[:-1]] + vocab_size)
    return {"unigram_bpc": float(-np.log2(p_unigram).mean()), "bigram_bpc": float(-np.log2(p_bigram).mean())}
