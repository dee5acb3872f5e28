import numpy as np
import pytest
import scipy.io


def matlab_cell(items):
    """A 1 x n MATLAB cell array (numpy object array) holding ``items``."""
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def random_rolls(count, seed=0, start_length=6):
    rng = np.random.default_rng(seed)
    return [(rng.random((start_length + i, 88)) < 0.1).astype(np.uint8) for i in range(count)]


@pytest.fixture
def tiny_music_mat(tmp_path):
    """Write a small music .mat (traindata/validdata/testdata of random rolls); returns its path."""

    def write(name="music.mat", **overrides):
        contents = {
            "traindata": matlab_cell(random_rolls(4, seed=1)),
            "validdata": matlab_cell(random_rolls(2, seed=2)),
            "testdata": matlab_cell(random_rolls(3, seed=3)),
        }
        contents.update(overrides)
        contents = {key: value for key, value in contents.items() if value is not None}
        path = tmp_path / name
        scipy.io.savemat(path, contents)
        return str(path)

    return write
