"""Polyphonic music data: .mat files, .npy folders, frame baselines (rnnlab/data/music.py)."""

import os

import numpy as np
import pytest
import torch

from rnnlab.data import load_task
from rnnlab.errors import ConfigError, DataError

from .helpers import matlab_cell, random_rolls


def test_samples_are_a_roll_and_its_next_frame(tiny_music_mat):
    task = load_task("music", tiny_music_mat())
    assert task.spec.head == "multilabel" and task.spec.input_size == 88 and task.spec.causal
    roll = random_rolls(4, seed=1)[2]
    x, y = task.train[2]
    assert torch.equal(x, torch.from_numpy(roll[:-1]).float()) and torch.equal(y, torch.from_numpy(roll[1:]).float())
    assert task.meta["sequences"] == {"train": 4, "val": 2, "test": 3}
    assert task.meta["frames"]["test"] == sum(len(r) - 1 for r in random_rolls(3, seed=3))


def test_midi_note_lists_become_rolls(tiny_music_mat):
    frames = [np.array([60.0, 64.0, 67.0]), np.array([60.0]), np.zeros((0,)), np.array([21.0, 108.0])]
    piece = np.empty((1, len(frames)), dtype=object)
    for t, notes in enumerate(frames):
        piece[0, t] = notes
    task = load_task("music", tiny_music_mat(traindata=matlab_cell([piece, piece])))
    x, y = task.train[0]
    on = [torch.nonzero(frame).flatten().tolist() for frame in torch.cat([x, y[-1:]])]
    assert on == [[39, 43, 46], [39], [], [0, 87]]


def test_frame_baselines_match_an_independent_bernoulli_nll(tiny_music_mat):
    task = load_task("music", tiny_music_mat())
    train = torch.cat([task.train[i][1] for i in range(len(task.train))])
    torch.cat([task.test[i][0] for i in range(len(task.test))])
    test_y = torch.cat([task.test[i][1] for i in range(len(task.test))])
    p = (train.sum(0) + 1) / (len(train) + 2)
    nll = torch.nn.functional.binary_cross_entropy(p.expand_as(test_y).double(), test_y.double(), reduction="sum")
    assert task.baselines["marginal_nll"] == pytest.approx(float(nll) / len(test_y))
    assert task.baselines["persistence_nll"] > 0


def test_a_mat_without_the_three_keys_is_named(tiny_music_mat):
    path = tiny_music_mat(validdata=None)
    with pytest.raises(DataError, match=r"music.mat: missing key\(s\) validdata.*keys present: traindata, testdata"):
        load_task("music", path)


def test_a_roll_that_is_not_88_wide_or_not_binary_is_named(tiny_music_mat):
    narrow = matlab_cell([np.zeros((5, 87), dtype=np.uint8)])
    with pytest.raises(DataError, match=r"traindata\[0\] has shape 5x87; expected time x 88"):
        load_task("music", tiny_music_mat(traindata=narrow))
    soft = np.zeros((5, 88))
    soft[3, 10] = 0.5
    with pytest.raises(DataError, match=r"testdata\[1\]: frame 3, key 10 holds 0.5; a piano roll holds only 0 and 1"):
        load_task("music", tiny_music_mat(testdata=matlab_cell([np.zeros((4, 88)), soft])))


def test_a_file_that_is_not_matlab_is_named(tmp_path):
    path = tmp_path / "notes.mat"
    path.write_text("not matlab")
    with pytest.raises(DataError, match=r"notes.mat: cannot read it as a MATLAB .mat file"):
        load_task("music", str(path))


def save_rolls(folder, rolls):
    os.makedirs(folder, exist_ok=True)
    for i, roll in enumerate(rolls):
        np.save(folder / f"piece{i:03d}.npy", roll)


def test_a_folder_of_rolls_is_split_by_piece_or_by_subfolder(tmp_path):
    save_rolls(tmp_path / "flat", random_rolls(20))
    task = load_task("music", str(tmp_path / "flat"))
    assert task.meta["sequences"] == {"train": 16, "val": 2, "test": 2} and task.meta["layout"] == "npy folder"
    for split, count in (("train", 3), ("valid", 2), ("test", 2)):
        save_rolls(tmp_path / "split" / split, random_rolls(count, seed=count))
    task = load_task("music", str(tmp_path / "split"))
    assert task.meta["sequences"] == {"train": 3, "val": 2, "test": 2}


def test_a_folder_without_rolls_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no .npy piano rolls in this folder"):
        load_task("music", str(tmp_path / "empty"))
    save_rolls(tmp_path / "partial" / "train", random_rolls(2))
    with pytest.raises(DataError, match=r"has subfolder\(s\) train but not valid, test"):
        load_task("music", str(tmp_path / "partial"))


def test_music_needs_data():
    with pytest.raises(ConfigError, match="needs data"):
        load_task("music")


def test_jsb_chorales_loads_with_the_standard_split(jsb_chorales):
    task = load_task("music", str(jsb_chorales))
    assert task.meta["sequences"] == {"train": 229, "val": 76, "test": 77}
    # the paper's LSTM scores 8.45: the baselines must leave room above it
    assert 8.45 < task.baselines["persistence_nll"] < task.baselines["marginal_nll"]


def test_bad_note_lists_and_short_pieces_are_named(tiny_music_mat, tmp_path):
    piece = np.empty((1, 2), dtype=object)
    piece[0, 0], piece[0, 1] = np.array([60.0]), np.array([120.0])
    with pytest.raises(DataError, match=r"traindata\[0\]: frame 1 holds note 120; piano notes are MIDI 21 to 108"):
        load_task("music", tiny_music_mat(traindata=matlab_cell([piece])))
    with pytest.raises(DataError, match=r"validdata\[0\] has 1 frame\(s\); at least 2 are needed"):
        load_task("music", tiny_music_mat(validdata=matlab_cell([np.zeros((1, 88))])))
    (tmp_path / "rolls").mkdir()
    np.save(tmp_path / "rolls" / "bad.npy", np.array([{"not": "a roll"}], dtype=object))
    with pytest.raises(DataError, match=r"bad.npy: cannot read it as a numeric .npy array"):
        load_task("music", str(tmp_path / "rolls"))
    with pytest.raises(ConfigError, match="takes no seq_len"):
        load_task("music", tiny_music_mat(), seq_len=10)


def test_a_bad_roll_in_a_folder_is_named_by_its_file(tmp_path):
    save_rolls(tmp_path / "rolls", random_rolls(3))
    np.save(tmp_path / "rolls" / "wide.npy", np.zeros((6, 89), dtype=np.uint8))
    with pytest.raises(DataError, match=r"rolls/wide.npy has shape 6x89; expected time x 88"):
        load_task("music", str(tmp_path / "rolls"))
    os.remove(tmp_path / "rolls" / "wide.npy")
    velocities = np.zeros((6, 88))
    velocities[2, 40] = 64  # a MIDI velocity, not an on/off flag
    np.save(tmp_path / "rolls" / "loud.npy", velocities)
    with pytest.raises(DataError, match=r"rolls/loud.npy: frame 2, key 40 holds 64; a piano roll holds only 0 and 1"):
        load_task("music", str(tmp_path / "rolls"))
