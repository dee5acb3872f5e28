"""Fixtures of the lab's tests (the builders of constructed results live in ``lab_fixtures.py``)."""

from __future__ import annotations

import pytest
from lab_fixtures import long_range_study

#: A real comparison small enough for the default test run: 2 models × 2 lengths × 1 seed, tiny models,
#: a few epochs (the time cap is far away, so the epochs decide and the runs are reproducible).
TINY = {
    "models": ["rnn", "lstm"],
    "lengths": [6, 12],
    "seeds": [0],
    "budget": "quick",
    "params": 1500,
    "epochs": 3,
    "max_minutes": 10.0,
    "train_samples": 256,
    "workers": 2,
}
#: The layer probe at a size that takes a moment.
TINY_PROBE = {"input_size": 8, "hidden_size": 16, "seq_len": 20, "batch_size": 8, "repeats": 3}


@pytest.fixture
def study() -> dict:
    """A constructed six-model long-range study (T = 10, 100, 1000; two seeds) with a layer probe."""
    return long_range_study()


@pytest.fixture(scope="session")
def tiny_comparison(tmp_path_factory):
    """``rnnlab compare`` run for real (local worker processes) on the TINY grid; returns its outcome."""
    from rnnlab.lab import CompareConfig, compare

    out = tmp_path_factory.mktemp("tiny") / "comparison"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare_module_of(), "PROBE_OPTIONS", TINY_PROBE)
        return compare(CompareConfig(out=str(out), **TINY), progress=False)


def compare_module_of():
    import importlib

    return importlib.import_module("rnnlab.lab.compare")
