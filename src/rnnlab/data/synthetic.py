"""Long-range dependency tasks at any length T: recall, adding, copy memory.

Each sample is generated on demand from ``numpy.random.default_rng([seed, split, index])``: nothing is
held in memory, a length-1000 task costs nothing to build, the same ``(seed, split, index)`` always
gives the same sample, and the three splits draw from disjoint seed streams (no test leakage).

* ``recall`` (the seeds' "I grew up in France … I speak fluent ___"): ``x[0]`` is a symbol from
  ``num_classes`` classes, ``x[1:T-1]`` are distractors from a separate alphabet of
  ``num_distractors`` tokens, ``x[T-1]`` is a query marker; ``y`` is the symbol. The answer has to
  cross ``T - 1`` steps. Token ids: symbols ``0..K-1``, distractors ``K..K+D-1``, query ``K+D``.
* ``adding`` (Hochreiter & Schmidhuber 1997; Le et al. 2015; Bai et al. 2018): ``x[t] = (v_t, m_t)``
  with ``v_t ~ U(0, 1)`` and a marker ``m_t`` that is 1 at one position of each half of the
  sequence; ``y = Σ_t v_t m_t``. Predicting 1 scores ``Var(y) = 2/12 ≈ 0.167``.
* ``copy`` (Arjovsky et al. 2016, in the convention of Bai et al. 2018's code): ``M`` symbols from
  ``{1..8}``, ``T - 1`` blanks ``0``, then ``M + 1`` delimiters ``9``; the target is ``M + T`` blanks
  followed by the ``M`` symbols; total length ``T + 2M`` and every step is scored. A model without
  memory can at best predict blanks exactly and guess uniformly over 8 symbols at the ``M`` answer
  steps: cross-entropy ``M ln 8 / (T + 2M)`` per step (``10 ln 8 / (T + 20)`` for ``M = 10``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from rnnlab.data.tasks import TaskData, TaskSpec
from rnnlab.errors import ConfigError

SPLITS = ("train", "val", "test")

COPY_ALPHABET = 8  # symbols 1..8
COPY_BLANK = 0
COPY_DELIMITER = 9


class SyntheticDataset(Dataset):
    """``size`` samples of length ``seq_len``, sample ``i`` drawn from ``rng([seed, split, i])``."""

    def __init__(self, size: int, seq_len: int, *, seed: int, split: str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.size = int(size)
        self.seq_len = int(seq_len)
        self.seed = int(seed)
        self.split = split

    def __len__(self) -> int:
        return self.size

    @property
    def lengths(self) -> np.ndarray:
        return np.full(self.size, self.sample_length, dtype=np.int64)

    @property
    def sample_length(self) -> int:
        return self.seq_len

    def rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a {self.split} split of {self.size} samples")
        return np.random.default_rng([self.seed, SPLITS.index(self.split), index])


class RecallDataset(SyntheticDataset):
    """``x``: ``LongTensor[T]`` (symbol, distractors, query); ``y``: ``LongTensor[]`` the symbol."""

    def __init__(self, size: int, seq_len: int, *, num_classes: int, num_distractors: int, seed: int, split: str):
        super().__init__(size, seq_len, seed=seed, split=split)
        self.num_classes = int(num_classes)
        self.num_distractors = int(num_distractors)
        self.query_token = self.num_classes + self.num_distractors
        self.vocab_size = self.query_token + 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        symbol = int(rng.integers(self.num_classes))
        tokens = np.empty(self.seq_len, dtype=np.int64)
        tokens[0] = symbol
        tokens[1:-1] = self.num_classes + rng.integers(self.num_distractors, size=self.seq_len - 2)
        tokens[-1] = self.query_token
        return torch.from_numpy(tokens), torch.tensor(symbol)


class AddingDataset(SyntheticDataset):
    """``x``: ``FloatTensor[T, 2]`` (value, marker); ``y``: ``FloatTensor[]`` the sum of the two marked values."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        half = self.seq_len // 2
        values = rng.random(self.seq_len, dtype=np.float32)
        first, second = int(rng.integers(0, half)), int(rng.integers(half, self.seq_len))
        x = np.zeros((self.seq_len, 2), dtype=np.float32)
        x[:, 0] = values
        x[[first, second], 1] = 1.0
        return torch.from_numpy(x), torch.tensor(values[first] + values[second], dtype=torch.float32)


class CopyDataset(SyntheticDataset):
    """``x``, ``y``: ``LongTensor[T + 2M]``; ``seq_len`` is the paper's ``T`` (the blank span + 1)."""

    def __init__(self, size: int, seq_len: int, *, memory_length: int, seed: int, split: str):
        super().__init__(size, seq_len, seed=seed, split=split)
        self.memory_length = int(memory_length)

    @property
    def sample_length(self) -> int:
        return self.seq_len + 2 * self.memory_length

    @property
    def answer_positions(self) -> tuple[int, int]:
        """``[start, stop)`` of the steps whose target is a remembered symbol."""
        return self.seq_len + self.memory_length, self.sample_length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        memory = rng.integers(1, COPY_ALPHABET + 1, size=self.memory_length)
        x = np.full(self.sample_length, COPY_BLANK, dtype=np.int64)
        x[: self.memory_length] = memory
        x[self.memory_length + self.seq_len - 1 :] = COPY_DELIMITER
        y = np.full(self.sample_length, COPY_BLANK, dtype=np.int64)
        y[self.answer_positions[0] :] = memory
        return torch.from_numpy(x), torch.from_numpy(y)


def load_recall(data, test_data, *, seq_len, seed, num_classes, num_distractors, n_train, n_val, n_test):
    _no_files("recall", data, test_data)
    seq_len = _length("recall", seq_len, default=100, minimum=2)
    if num_classes < 2:
        raise ConfigError(f"recall needs num_classes of at least 2, got {num_classes}")
    if num_distractors < 1:
        raise ConfigError(f"recall needs num_distractors of at least 1, got {num_distractors}")
    splits = _splits(
        RecallDataset, n_train, n_val, n_test, seq_len, seed, num_classes=num_classes, num_distractors=num_distractors
    )
    vocab_size = splits[0].vocab_size
    spec = TaskSpec(
        task="recall",
        head="classify",
        input_size=0,
        vocab_size=vocab_size,
        num_classes=num_classes,
        output_shape=[],
        seq_len=seq_len,
        causal=True,
    )
    meta = {
        "task": "recall",
        "data": "generated",
        "seed": seed,
        "seq_len": seq_len,
        "num_classes": num_classes,
        "num_distractors": num_distractors,
        "query_token": splits[0].query_token,
        "distance": seq_len - 1,
    }
    return TaskData(spec, *splits, baselines={"chance_accuracy": 1.0 / num_classes}, meta=meta)


def load_adding(data, test_data, *, seq_len, seed, n_train, n_val, n_test):
    _no_files("adding", data, test_data)
    seq_len = _length("adding", seq_len, default=200, minimum=2)
    splits = _splits(AddingDataset, n_train, n_val, n_test, seq_len, seed)
    test = splits[2]
    targets = np.array([float(test[i][1]) for i in range(len(test))])
    spec = TaskSpec(
        task="adding",
        head="regress",
        input_size=2,
        vocab_size=None,
        num_classes=None,
        output_shape=[1],
        seq_len=seq_len,
        causal=True,
    )
    meta = {"task": "adding", "data": "generated", "seed": seed, "seq_len": seq_len}
    return TaskData(spec, *splits, baselines={"trivial_mse": float(np.mean((targets - 1.0) ** 2))}, meta=meta)


def load_copy(data, test_data, *, seq_len, seed, memory_length, n_train, n_val, n_test):
    _no_files("copy", data, test_data)
    seq_len = _length("copy", seq_len, default=100, minimum=1)
    if memory_length < 1:
        raise ConfigError(f"copy needs memory_length of at least 1, got {memory_length}")
    splits = _splits(CopyDataset, n_train, n_val, n_test, seq_len, seed, memory_length=memory_length)
    total = splits[0].sample_length
    spec = TaskSpec(
        task="copy",
        head="tag",
        input_size=0,
        vocab_size=COPY_DELIMITER + 1,
        num_classes=COPY_DELIMITER + 1,
        output_shape=[],
        seq_len=total,
        causal=True,
    )
    meta = {
        "task": "copy",
        "data": "generated",
        "seed": seed,
        "T": seq_len,
        "seq_len": total,
        "memory_length": memory_length,
        "answer_positions": list(splits[0].answer_positions),
        "blank": COPY_BLANK,
        "delimiter": COPY_DELIMITER,
        "alphabet": list(range(1, COPY_ALPHABET + 1)),
    }
    memoryless = memory_length * math.log(COPY_ALPHABET) / total
    return TaskData(spec, *splits, baselines={"memoryless_cross_entropy": memoryless}, meta=meta)


def _splits(cls, n_train, n_val, n_test, seq_len, seed, **kwargs):
    for name, size in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if size < 1:
            raise ConfigError(f"{name} must be at least 1, got {size}")
    sizes = (n_train, n_val, n_test)
    return [cls(size, seq_len, seed=seed, split=split, **kwargs) for size, split in zip(sizes, SPLITS)]


def _length(task: str, seq_len: int | None, *, default: int, minimum: int) -> int:
    if seq_len is None:
        return default
    if seq_len < minimum:
        raise ConfigError(f"{task} needs seq_len of at least {minimum}, got {seq_len}")
    return int(seq_len)


def _no_files(task: str, data, test_data) -> None:
    if data is not None or test_data is not None:
        given = data if data is not None else test_data
        raise ConfigError(f"task {task!r} is generated and reads no data file; got data {str(given)!r}")
