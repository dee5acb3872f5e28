"""Fair comparisons: choose the width whose parameter count is closest to a budget.

A model's parameter count grows with its width (hidden size, channels, d_model), so the closest
width is found by doubling until the count reaches the budget, then bisecting: about
``2·log2(width)`` model constructions. Models are built on PyTorch's ``meta`` device when they can
be, which allocates no memory, so sizing a 10M-parameter model is as quick as a small one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rnnlab.models.task_model import count_parameters

MAX_WIDTH = 1 << 16


def count_built(build: Callable[[], nn.Module]) -> int:
    """The parameter count of ``build()``, built without allocating memory when possible."""
    try:
        with torch.device("meta"):
            return count_parameters(build())
    except (NotImplementedError, RuntimeError):
        # Some initialisers (e.g. a QR for orthogonal weights) have no meta kernel.
        return count_parameters(build())


def fit_width(count_at: Callable[[int], int], target: int, *, smallest: int = 1) -> int:
    """The width ``w ≥ smallest`` minimising ``|count_at(w) − target|``, for a ``count_at`` that does
    not decrease with ``w``. Returns ``smallest`` when even that is over the budget."""
    counts: dict[int, int] = {}

    def count(width: int) -> int:
        if width not in counts:
            counts[width] = count_at(width)
        return counts[width]

    high = smallest
    while count(high) < target and high < MAX_WIDTH:
        high *= 2
    low = max(smallest, high // 2)
    # Invariant: count(high) ≥ target (or high is the widest allowed); find the least such width.
    while low < high:
        middle = (low + high) // 2
        if count(middle) >= target:
            high = middle
        else:
            low = middle + 1
    if high > smallest and abs(count(high - 1) - target) <= abs(count(high) - target):
        return high - 1
    return high
