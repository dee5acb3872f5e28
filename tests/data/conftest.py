import pytest
import scipy.io

from .helpers import matlab_cell, random_rolls


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


@pytest.fixture(autouse=True)
def _one_thread_each(one_thread):
    """Every test of this folder runs on one thread (``one_thread``, tests/conftest.py)."""
