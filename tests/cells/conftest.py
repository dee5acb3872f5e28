import pytest


@pytest.fixture(autouse=True)
def _one_thread_each(one_thread):
    """Every test of this folder runs on one thread (``one_thread``, tests/conftest.py)."""
