"""Small builders shared by the data tests."""

import numpy as np


def matlab_cell(items):
    """A 1 x n MATLAB cell array (numpy object array) holding ``items``."""
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def random_rolls(count, seed=0, start_length=6):
    rng = np.random.default_rng(seed)
    return [(rng.random((start_length + i, 88)) < 0.1).astype(np.uint8) for i in range(count)]
