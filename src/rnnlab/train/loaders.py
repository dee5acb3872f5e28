"""Data loaders for training and evaluation: this process's share of a dataset, in an order that is a
pure function of ``(seed, epoch)`` (so a resumed run and a run on several processes see the batches
they should). No Lightning here: evaluation and prediction use these without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import cast

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from rnnlab.data import BucketBatchSampler, SeededShuffleSampler, collate
from rnnlab.data.batching import dataset_lengths


class ShardSampler(Sampler[int]):
    """Process ``rank``'s share of ``sampler``'s indices: every ``world_size``-th, starting at ``rank``.

    ``pad=True`` (training) repeats the first indices so every process gets the same count and runs
    the same number of steps (DDP's gradient all-reduce needs that), as ``DistributedSampler`` does.
    ``set_epoch`` and the ``seed``/``epoch``/``shuffle`` attributes pass through to ``sampler``, so
    ``BucketBatchSampler`` and Lightning see it as the sampler it wraps.
    """

    def __init__(self, sampler: Sampler[int], rank: int, world_size: int, *, pad: bool) -> None:
        self.sampler, self.rank, self.world_size, self.pad = sampler, rank, world_size, pad
        self.data_source = getattr(sampler, "data_source", None)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return getattr(self.sampler, "epoch", 0)

    @property
    def seed(self) -> int:
        return getattr(self.sampler, "seed", 0)

    @property
    def shuffle(self) -> bool:
        return bool(getattr(self.sampler, "shuffle", False))

    def _total(self) -> int:
        count = len(cast(Sized, self.sampler))  # the samplers sharded here have a length
        return math.ceil(count / self.world_size) * self.world_size if self.pad else count

    def __iter__(self) -> Iterator[int]:
        indices = list(iter(self.sampler))
        if self.pad and indices:
            total = self._total()
            indices += (indices * math.ceil(total / len(indices)))[: total - len(indices)]
        return iter(indices[self.rank :: self.world_size])

    def __len__(self) -> int:
        total = self._total()
        return len(range(self.rank, total, self.world_size))


def shard_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    bucket: bool,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    steps: int | None = None,
) -> DataLoader:
    """A ``DataLoader`` of ``Batch`` es over process ``rank``'s share of ``dataset``.

    The order is ``SeededShuffleSampler``'s (a permutation from ``(seed, epoch)``) when ``shuffle``;
    ``bucket`` groups sequences of similar length (``BucketBatchSampler``). Loading runs in the main
    process: samples are cheap, and the cores are better spent on the model. ``steps`` (shuffled
    loaders): an epoch of this many batches per process, drawn as back-to-back permutations.
    """
    samples = None if steps is None else steps * batch_size * world_size
    sized = cast(Sized, dataset)  # map-style: it has a length (torch's Dataset does not declare one)
    sampler: Sampler[int] = (
        SeededShuffleSampler(sized, seed, num_samples=samples) if shuffle else SequentialSampler(sized)
    )
    if world_size > 1:
        sampler = ShardSampler(sampler, rank, world_size, pad=shuffle)
    # An explicit generator keeps DataLoader from drawing its base seed from the global RNG, which
    # would shift dropout's random numbers between a resumed run and an uninterrupted one.
    generator = torch.Generator().manual_seed(seed)
    if bucket:
        # lengths are indexed by dataset index, so a shard's indices look them up directly
        batch_sampler = BucketBatchSampler(sampler, batch_size, lengths=dataset_lengths(dataset), seed=seed)
        return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, generator=generator)
