"""Padding, seeded shuffling and bucketing (rnnlab/data/batching.py)."""

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DistributedSampler

from rnnlab.data import BucketBatchSampler, SeededShuffleSampler, SequenceDataset, collate, make_loader
from rnnlab.errors import DataError


def variable_length_dataset(count=200, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=count)
    xs = [torch.full((int(n),), i, dtype=torch.long) for i, n in enumerate(lengths)]
    ys = [torch.full((int(n),), i % 5, dtype=torch.long) for i, n in enumerate(lengths)]
    return SequenceDataset(xs, ys)


def test_collate_pads_inputs_with_zero_and_step_targets_with_minus_100():
    samples = [
        (torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([4, 5])),
        (torch.tensor([[5.0, 6.0]]), torch.tensor([6])),
    ]
    batch = collate(samples)
    assert batch.x.tolist() == [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [0.0, 0.0]]]
    assert batch.y.tolist() == [[4, 5], [6, -100]]
    assert batch.lengths.tolist() == [2, 1]
    assert batch.lengths.dtype == torch.long and batch.lengths.device.type == "cpu"


def test_collate_stacks_fixed_shape_targets():
    forecast = [(torch.zeros(5, 3), torch.full((4, 2), float(i))) for i in range(3)]
    batch = collate(forecast)
    assert batch.y.shape == (3, 4, 2) and batch.y[:, 0, 0].tolist() == [0.0, 1.0, 2.0]
    scalars = collate([(torch.zeros(3, dtype=torch.long), torch.tensor(k)) for k in (2, 7)])
    assert scalars.y.tolist() == [2, 7]


def test_collate_pads_multilabel_frames_with_minus_100():
    batch = collate([(torch.ones(3, 88), torch.ones(3, 88)), (torch.ones(1, 88), torch.zeros(1, 88))])
    assert batch.y.shape == (2, 3, 88)
    assert (batch.y[1, 1:] == -100).all() and (batch.y[1, 0] == 0).all()


def test_collate_rejects_a_sequence_without_steps():
    with pytest.raises(DataError, match="sample 1 of the batch has 0 steps"):
        collate([(torch.tensor([1]), torch.tensor(0)), (torch.tensor([], dtype=torch.long), torch.tensor(0))])


def test_shuffle_order_is_a_function_of_seed_and_epoch():
    dataset = variable_length_dataset(50)
    first, again, other_seed = (
        SeededShuffleSampler(dataset, 3),
        SeededShuffleSampler(dataset, 3),
        SeededShuffleSampler(dataset, 4),
    )
    epoch0 = list(first)
    assert sorted(epoch0) == list(range(50))
    assert list(again) == epoch0 and list(other_seed) != epoch0
    first.set_epoch(1)
    again.set_epoch(1)
    assert list(first) != epoch0 and list(first) == list(again)


@pytest.mark.parametrize("batch_size, drop_last", [(1, False), (7, False), (7, True), (64, False), (500, False)])
def test_bucket_sampler_yields_every_index_exactly_once(batch_size, drop_last):
    dataset = variable_length_dataset(200)
    sampler = BucketBatchSampler(SeededShuffleSampler(dataset, 0), batch_size, drop_last, batches_per_bucket=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    seen = [i for batch in batches for i in batch]
    if drop_last:
        assert all(len(b) == batch_size for b in batches)
        assert len(seen) == 200 - 200 % batch_size and len(set(seen)) == len(seen)
    else:
        assert sorted(seen) == list(range(200))


def test_bucketing_cuts_padding_and_still_reshuffles_each_epoch():
    dataset = variable_length_dataset(400)

    def padded_steps(loader):
        return sum(int(b.lengths.max()) * len(b.lengths) - int(b.lengths.sum()) for b in loader)

    plain = make_loader(dataset, 16, shuffle=True, seed=1)
    bucketed = make_loader(dataset, 16, shuffle=True, seed=1, bucket=True)
    assert padded_steps(bucketed) < 0.25 * padded_steps(plain)
    first = [b.x[:, 0].tolist() for b in bucketed]
    bucketed.batch_sampler.sampler.set_epoch(1)
    second = [b.x[:, 0].tolist() for b in bucketed]
    assert first != second
    assert sorted(i for b in second for i in b) == list(range(400))


def test_lightning_epoch_hook_reaches_the_bucket_sampler():
    dataset = variable_length_dataset(100)
    loader = make_loader(dataset, 8, shuffle=True, bucket=True, seed=0)
    before = [b.x[:, 0].tolist() for b in loader]
    _set_sampler_epoch(loader, 5)  # what Lightning's fit loop calls at each epoch start
    assert loader.batch_sampler.sampler.epoch == 5
    assert [b.x[:, 0].tolist() for b in loader] != before


def test_bucket_sampler_splits_work_across_distributed_ranks():
    dataset = variable_length_dataset(101)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        # Lightning rebuilds a custom batch sampler as cls(sampler, batch_size=, drop_last=) under DDP
        batch_sampler = BucketBatchSampler(sampler, batch_size=8, drop_last=False)
        seen += [i for batch in batch_sampler for i in batch]
    assert set(seen) == set(range(101)) and len(seen) == 102  # DistributedSampler pads to an even split


def test_unshuffled_loader_keeps_dataset_order():
    dataset = variable_length_dataset(30)
    loader = make_loader(dataset, 4, shuffle=False)
    assert [i for b in loader for i in b.x[:, 0].tolist()] == list(range(30))
    assert len(list(make_loader(dataset, 4, shuffle=False, drop_last=True))) == 7
