"""Fixtures shared by every test folder."""

import pytest
import torch

from shared_files import shared_data


@pytest.fixture
def jsb_chorales():
    """The JSB Chorales file of ``../shared/data`` (skipped when absent, a failure under ``CI=true``)."""
    return shared_data("data/JSB_Chorales.mat")


@pytest.fixture
def one_thread():
    """Run on one thread: the tensors of these tests are tiny, and two OpenMP threads that spin-wait
    for each other on a busy two-core machine make each step many times slower. Restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
