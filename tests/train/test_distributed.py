"""Data-parallel training on 2 processes (DDP over gloo) equals one process with the doubled batch."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rnnlab.train import TrainConfig, train


def config(out, devices, batch_size):
    # No dropout: both runs must draw no random numbers that differ between one and two processes.
    return TrainConfig(
        task="recall",
        model="lstm",
        seq_len=6,
        n_train=64,
        n_val=24,
        n_test=32,
        epochs=2,
        batch_size=batch_size,
        hidden_size=12,
        num_layers=1,
        patience=None,
        devices=devices,
        out=str(out),
    )


def test_two_processes_average_gradients_like_one_process_with_twice_the_batch(tmp_path):
    # Process r takes every 2nd index of the epoch's permutation from r; its batch k of 8 together with
    # the other process's batch k is exactly batch k of 16 in one process. DDP averages the two
    # gradients, which is the gradient of the mean loss over the 16.
    parallel = train(config(tmp_path / "ddp", devices=2, batch_size=8))
    single = train(config(tmp_path / "one", devices=1, batch_size=16))

    assert parallel.summary["devices"] == 2
    assert parallel.summary["steps"] == single.summary["steps"] == 2 * 64 // 16
    ddp_weights = load_file(tmp_path / "ddp" / "model.safetensors")
    one_weights = load_file(tmp_path / "one" / "model.safetensors")
    assert ddp_weights.keys() == one_weights.keys()
    for name in ddp_weights:
        torch.testing.assert_close(ddp_weights[name], one_weights[name], rtol=1e-4, atol=1e-5, msg=name)
    # Validation sums are reduced over both processes: the same metrics as one process.
    ddp_rows = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
    one_rows = (tmp_path / "one" / "metrics.csv").read_text().splitlines()
    for ddp_row, one_row in zip(ddp_rows[1:], one_rows[1:]):
        ddp_values = [float(v) for v in ddp_row.split(",")[1:-1]]  # all but epoch and seconds
        one_values = [float(v) for v in one_row.split(",")[1:-1]]
        assert ddp_values == pytest.approx(one_values, rel=1e-4, abs=1e-5)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["test_metrics"]["accuracy"] == pytest.approx(single.summary["test_metrics"]["accuracy"])
