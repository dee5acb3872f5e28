"""Fixtures of the lab's tests (the builders live in ``lab_fixtures.py``)."""

from __future__ import annotations

import pytest
from lab_fixtures import long_range_study


@pytest.fixture
def study() -> dict:
    """A constructed six-model long-range study (T = 10, 100, 1000; two seeds) with a layer probe."""
    return long_range_study()
