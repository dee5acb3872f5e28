"""The long-range tasks: recall, adding, copy memory (rnnlab/data/synthetic.py)."""

import math

import numpy as np
import pytest
import torch

from rnnlab.data import load_task
from rnnlab.errors import ConfigError

SMALL = {"n_train": 64, "n_val": 16, "n_test": 16}


def test_recall_holds_the_symbol_first_distractors_between_and_the_query_last():
    task = load_task("recall", seq_len=50, num_classes=5, num_distractors=3, **SMALL)
    assert task.spec.vocab_size == 5 + 3 + 1 and task.spec.num_classes == 5 and task.spec.causal
    for index in range(20):
        x, y = task.train[index]
        assert x.shape == (50,) and x.dtype == torch.long and y.shape == ()
        assert int(x[0]) == int(y) < 5
        assert ((x[1:-1] >= 5) & (x[1:-1] < 8)).all()
        assert int(x[-1]) == 8 == task.meta["query_token"]
    assert task.baselines["chance_accuracy"] == pytest.approx(1 / 5)


def test_samples_are_reproducible_and_splits_draw_from_different_streams():
    first = load_task("recall", seq_len=40, seed=7, **SMALL)
    again = load_task("recall", seq_len=40, seed=7, **SMALL)
    other = load_task("recall", seq_len=40, seed=8, **SMALL)
    assert torch.equal(first.test[3][0], again.test[3][0])
    assert not torch.equal(first.test[3][0], other.test[3][0])
    train = {tuple(first.train[i][0].tolist()) for i in range(len(first.train))}
    assert not any(tuple(first.test[i][0].tolist()) in train for i in range(len(first.test)))


def test_long_tasks_are_built_lazily():
    task = load_task("copy", seq_len=1000, n_train=1_000_000, n_val=10, n_test=10)
    assert len(task.train) == 1_000_000  # nothing generated up front
    x, y = task.train[999_999]
    assert x.shape == y.shape == (1020,)


def test_adding_marks_one_value_in_each_half_and_sums_them():
    task = load_task("adding", seq_len=31, **SMALL)
    for index in range(20):
        x, y = task.train[index]
        assert x.shape == (31, 2) and x.dtype == torch.float32
        marked = torch.nonzero(x[:, 1]).flatten().tolist()
        assert len(marked) == 2 and marked[0] < 15 <= marked[1]
        assert float(y) == pytest.approx(float(x[marked[0], 0] + x[marked[1], 0]))
        assert ((x[:, 0] >= 0) & (x[:, 0] < 1)).all()


def test_adding_trivial_mse_is_the_mse_of_predicting_one_on_the_test_split():
    task = load_task("adding", seq_len=20, n_train=4, n_val=4, n_test=1500)
    targets = torch.stack([task.test[i][1] for i in range(len(task.test))]).double()
    assert task.baselines["trivial_mse"] == pytest.approx(float(((targets - 1) ** 2).mean()))
    # the sum of two U(0,1) has variance 2/12; the standard error of the estimate here is about 0.005
    assert task.baselines["trivial_mse"] == pytest.approx(1 / 6, abs=0.02)


def bai_copy_sample(memory, blank_span):
    """Bai et al.'s copy-memory generator (TCN repo, copy_memory/utils.py), for one sequence."""
    m = len(memory)
    x = torch.cat([memory, torch.zeros(blank_span - 1, dtype=torch.long), torch.full((m + 1,), 9)])
    y = torch.cat([torch.zeros(m + blank_span, dtype=torch.long), memory])
    return x, y


def test_copy_follows_bai_et_al_layout():
    task = load_task("copy", seq_len=30, **SMALL)
    assert task.spec.seq_len == 50 and task.spec.head == "tag" and task.spec.num_classes == 10
    assert task.meta["answer_positions"] == [40, 50]
    for index in range(10):
        x, y = task.train[index]
        memory = x[:10]
        assert ((memory >= 1) & (memory <= 8)).all()
        expected_x, expected_y = bai_copy_sample(memory, 30)
        assert torch.equal(x, expected_x) and torch.equal(y, expected_y)


def test_copy_baseline_is_the_loss_of_the_best_memoryless_predictor():
    blank_span = 1000
    task = load_task("copy", seq_len=blank_span, **SMALL)
    _x, y = task.test[0]
    # memoryless: certain of the blank before the answer, uniform over the 8 symbols during it
    probabilities = torch.zeros(len(y), 10)
    probabilities[:1010, 0] = 1.0
    probabilities[1010:, 1:9] = 1 / 8
    loss = torch.nn.functional.nll_loss(torch.log(probabilities.clamp_min(1e-30)), y)
    assert task.baselines["memoryless_cross_entropy"] == pytest.approx(float(loss), rel=1e-6)
    assert task.baselines["memoryless_cross_entropy"] == pytest.approx(10 * math.log(8) / 1020)
    assert task.baselines["memoryless_cross_entropy"] == pytest.approx(0.0204, abs=5e-5)  # Bai et al.'s figure


@pytest.mark.parametrize(
    "task, kwargs, message",
    [
        ("recall", {"seq_len": 1}, "seq_len of at least 2"),
        ("recall", {"num_classes": 1}, "num_classes of at least 2"),
        ("adding", {"n_test": 0}, "n_test must be at least 1"),
        ("copy", {"memory_length": 0}, "memory_length of at least 1"),
        ("adding", {"data": "some.csv"}, "generated and reads no data file"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(task, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_task(task, **kwargs)


def test_adding_samples_differ_across_indices():
    task = load_task("adding", seq_len=10, **SMALL)
    values = np.stack([task.train[i][0][:, 0].numpy() for i in range(10)])
    assert len({row.tobytes() for row in values}) == 10
