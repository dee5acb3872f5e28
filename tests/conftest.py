"""Fixtures shared by every test folder."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run on one thread: the tensors of these tests are tiny, and two OpenMP threads that spin-wait
    for each other on a busy two-core machine make each step many times slower. Restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
