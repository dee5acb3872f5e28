"""Samples into batches: padding, lengths, seeded shuffling and bucketing by length.

A task's dataset yields ``(x, y)`` pairs, one sequence each (see ARCHITECTURE.md). ``collate`` pads a
list of them into a :class:`Batch` with the batch dimension first; ``make_loader`` wraps a dataset
in a ``DataLoader`` whose order is a pure function of ``(seed, epoch)``, so a resumed run sees the
same batches as an uninterrupted one.

Bucketing (seed 001: "bucket batches by sequence length") follows the pool-and-sort scheme: the
shuffled index stream is cut into pools of ``batches_per_bucket`` batches, each pool is sorted by
length and cut into batches, and the order of all batches is shuffled. Batches then hold sequences
of similar length (little padding) while which sequences meet in a batch still changes every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized
from typing import NamedTuple, cast

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import BatchSampler, ConcatDataset, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from rnnlab.errors import DataError

#: Target value of a step that is not scored (``torch.nn.CrossEntropyLoss``'s ``ignore_index``).
IGNORE_INDEX = -100


class Batch(NamedTuple):
    """A padded batch, batch first.

    ``x``: ``[B, T_max]`` token ids (padded with 0) or ``[B, T_max, F]`` features (padded with 0.0).
    ``y``: stacked when every target has the same shape (class index, regression value, forecast
    window); otherwise padded along time with ``-100`` (per-step targets of ``tag``, ``lm``,
    ``multilabel`` on sequences of different lengths).
    ``lengths``: ``LongTensor[B]`` on the CPU, as ``pack_padded_sequence`` wants.
    """

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor


class SequenceDataset(Dataset):
    """A list of ready ``(x, y)`` samples held in memory, with their lengths for bucketing."""

    def __init__(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]):
        if len(xs) != len(ys):
            raise ValueError(f"expected as many targets as inputs, got {len(xs)} inputs and {len(ys)} targets")
        self.xs = list(xs)
        self.ys = list(ys)
        self.lengths = np.array([len(x) for x in self.xs], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.xs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.xs[index], self.ys[index]


def collate(samples: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    """Pad a list of ``(x, y)`` samples into a :class:`Batch`.

    >>> batch = collate([(torch.tensor([3, 4, 5]), torch.tensor([1, 2, 0])), (torch.tensor([6]), torch.tensor([2]))])
    >>> batch.x.tolist(), batch.y.tolist(), batch.lengths.tolist()
    ([[3, 4, 5], [6, 0, 0]], [[1, 2, 0], [2, -100, -100]], [3, 1])
    """
    if len(samples) == 0:
        raise ValueError("cannot collate an empty list of samples")
    xs = [sample[0] for sample in samples]
    ys = [sample[1] for sample in samples]
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.long)
    if bool((lengths == 0).any()):
        empty = int(torch.nonzero(lengths == 0)[0])
        raise DataError(f"sample {empty} of the batch has 0 steps; every sequence needs at least one step")
    return Batch(_stack_or_pad(xs, 0), _stack_or_pad(ys, IGNORE_INDEX), lengths)


def _stack_or_pad(tensors: list[torch.Tensor], padding_value: int) -> torch.Tensor:
    # stacking equal shapes is several times faster than pad_sequence, and most tasks have them
    if all(tensor.shape == tensors[0].shape for tensor in tensors):
        return torch.stack(tensors)
    return pad_sequence(tensors, batch_first=True, padding_value=padding_value)


class SeededShuffleSampler(RandomSampler):
    """A random permutation of the dataset that is a pure function of ``(seed, epoch)``.

    ``set_epoch`` (Lightning calls it at each epoch start) picks the permutation, so resuming at
    epoch ``e`` replays exactly the order an uninterrupted run would have used. It subclasses
    ``RandomSampler`` so that Lightning recognises the loader as shuffled when it swaps in a
    distributed sampler. ``num_samples`` larger than the dataset makes an epoch of several
    permutations back to back (each a function of ``(seed, epoch, k)``), cut to that count: how a
    small training set gets an epoch of more than a handful of optimiser steps.
    """

    def __init__(self, data_source: Sized, seed: int = 0, num_samples: int | None = None):
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0
        self.shuffle = True
        self.samples = len(data_source) if num_samples is None else int(num_samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        size = len(self.data_source)
        if self.samples <= size:
            generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
            return iter(torch.randperm(size, generator=generator).tolist()[: self.samples])
        indices: list[int] = []
        for k in range(math.ceil(self.samples / size)):
            generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch, k))
            indices += torch.randperm(size, generator=generator).tolist()
        return iter(indices[: self.samples])

    def __len__(self) -> int:
        return self.samples


class BucketBatchSampler(BatchSampler):
    """Batches of sequences of similar length; every index of ``sampler`` exactly once per epoch.

    ``sampler`` gives the indices this process sees and their (shuffled) order; it may be a
    ``SeededShuffleSampler``, a ``SequentialSampler`` (evaluation: pools sorted, batches in order) or
    the ``DistributedSampler`` Lightning injects under DDP. ``lengths`` defaults to the
    ``lengths`` attribute of the sampler's dataset. Batch order is shuffled from
    ``(seed, sampler.epoch)`` when the sampler shuffles.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool = False,
        *,
        lengths: Sequence[int] | np.ndarray | None = None,
        seed: int | None = None,
        batches_per_bucket: int = 50,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if batches_per_bucket < 1:
            raise ValueError(f"batches_per_bucket must be at least 1, got {batches_per_bucket}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.batches_per_bucket = int(batches_per_bucket)
        if lengths is None:
            dataset = getattr(sampler, "data_source", None)
            if dataset is None:
                dataset = getattr(sampler, "dataset", None)
            if dataset is None:
                raise ValueError("BucketBatchSampler needs lengths, or a sampler whose dataset has them")
            lengths = dataset_lengths(dataset)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.seed = int(seed if seed is not None else getattr(sampler, "seed", 0))

    def __iter__(self) -> Iterator[list[int]]:
        indices = np.fromiter(iter(self.sampler), dtype=np.int64)
        pool_size = self.batch_size * self.batches_per_bucket
        batches: list[list[int]] = []
        for start in range(0, len(indices), pool_size):
            pool = indices[start : start + pool_size]
            # a stable sort keeps the sampler's random order among sequences of equal length
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches.extend(pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if getattr(self.sampler, "shuffle", isinstance(self.sampler, RandomSampler)):
            epoch = getattr(self.sampler, "epoch", 0)
            order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(batches))
            batches = [batches[i] for i in order]
        return iter(batches)

    def __len__(self) -> int:
        count = len(cast(Sized, self.sampler))  # the samplers batched here have a length
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)


class JoinedDataset(ConcatDataset):
    """Two or more datasets read as one, with their ``lengths`` joined (for bucketing)."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        super().__init__(datasets)
        self.lengths = np.concatenate([dataset_lengths(dataset) for dataset in datasets])


def join_datasets(*datasets: Dataset) -> JoinedDataset:
    return JoinedDataset(datasets)


def dataset_lengths(dataset: Dataset) -> np.ndarray:
    """Sequence length of every sample: the dataset's ``lengths`` attribute, or measured one by one."""
    lengths = getattr(dataset, "lengths", None)
    if lengths is not None:
        return np.asarray(lengths, dtype=np.int64)
    size = len(cast(Sized, dataset))  # map-style: it has a length (torch's Dataset does not declare one)
    return np.array([dataset[i][0].shape[0] for i in range(size)], dtype=np.int64)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    bucket: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` of :class:`Batch` es whose order depends only on ``(seed, epoch)``.

    ``shuffle``: a fresh permutation each epoch (call ``loader.sampler.set_epoch(e)``, or
    ``loader.batch_sampler.sampler.set_epoch(e)`` when bucketing; Lightning does this itself).
    ``bucket``: batches of similar length (see :class:`BucketBatchSampler`). Loading runs in the
    main process: samples are cheap to build and the machine's cores are better spent on the model.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    sized = cast(Sized, dataset)  # map-style: it has a length (torch's Dataset does not declare one)
    sampler: Sampler[int] = SeededShuffleSampler(sized, seed) if shuffle else SequentialSampler(sized)
    if bucket:
        batch_sampler = BucketBatchSampler(sampler, batch_size, drop_last, lengths=dataset_lengths(dataset), seed=seed)
        return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, collate_fn=collate)


def _mix(*numbers: int) -> int:
    """One 63-bit seed from several integers (``numpy``'s SeedSequence hashing), for torch generators."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
