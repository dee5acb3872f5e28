"""Export tests run torch on one thread."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def recall_run(tmp_path_factory):
    """A GRU trained one epoch on a small recall task: a real run directory, written by the engine."""
    from rnnlab.train import TrainConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "recall-gru"
    train(
        TrainConfig(
            task="recall",
            model="gru",
            seq_len=10,
            n_train=256,
            n_val=64,
            n_test=128,
            epochs=1,
            hidden_size=16,
            num_layers=1,
            out=str(out),
        )
    )
    torch.set_num_threads(threads)
    return out


@pytest.fixture(autouse=True)
def _one_thread_each(one_thread):
    """Every test of this folder runs on one thread (``one_thread``, tests/conftest.py)."""
