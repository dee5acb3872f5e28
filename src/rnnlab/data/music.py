"""Polyphonic music: predict the next frame of an 88-key piano roll (Boulanger-Lewandowski et al. 2012).

A piece is a binary roll ``R[T, 88]`` (key ``k`` is MIDI note ``21 + k``, A0 to C8). The sample is
``x = R[:-1]``, ``y = R[1:]`` (``FloatTensor[T-1, 88]`` each): at each frame the model gives 88
independent probabilities for the next frame (head ``multilabel``). The metric, as in
Boulanger-Lewandowski et al. and Bai et al. 2018, is the frame-level negative log-likelihood

    nll = (1 / frames) Σ_frames Σ_k -[y_k log p_k + (1 - y_k) log(1 - p_k)]     (nats)

Sources: the standard ``.mat`` files (keys ``traindata``, ``validdata``, ``testdata``; each a cell
array of pieces, a piece either a ``T x 88`` roll or, as in Boulanger-Lewandowski's note lists, a
cell array of per-frame MIDI note numbers), or a folder of ``T x 88`` ``.npy`` rolls (``train/``,
``valid/`` and ``test/`` subfolders, or one folder split by piece). Nothing is unpickled.

Baselines on the test frames (add-one smoothed counts from the training frames):
``marginal_nll``: each key on with its training frequency; ``persistence_nll``: each key on with
probability ``p(on | the key's state in the previous frame)``. The training frequencies
``q_k`` are also ``meta["key_rates"]``: the engine starts the head's bias at their log-odds.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from rnnlab.data.batching import SequenceDataset
from rnnlab.data.files import resolve_source
from rnnlab.data.splits import split_indices
from rnnlab.data.tasks import TaskData, TaskSpec
from rnnlab.errors import ConfigError, DataError

N_KEYS = 88
LOWEST_NOTE = 21  # MIDI number of A0
MAT_KEYS = {"train": "traindata", "val": "validdata", "test": "testdata"}
FOLDER_NAMES = {"train": ("train",), "val": ("valid", "val", "validation"), "test": ("test",)}


def load_music(data, test_data, *, seq_len, seed, val_fraction, test_fraction):
    if seq_len is not None:
        raise ConfigError("task 'music' takes no seq_len: each piece is one sequence")
    if data is None:
        raise ConfigError(
            "task 'music' needs data: a .mat file (traindata/validdata/testdata) or a folder of .npy rolls"
        )
    _, path = resolve_source(data, (), None, "music")
    if os.path.isdir(path):
        pieces, layout = read_roll_folder(path, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    else:
        pieces, layout = read_mat(path), "mat"
    if test_data is not None:
        pieces["test"] = read_mat(test_data)["test"] if not os.path.isdir(test_data) else _read_npy_files(test_data)
    datasets = {}
    for name, rolls in pieces.items():
        datasets[name] = SequenceDataset(
            [torch.from_numpy(r[:-1].astype(np.float32)) for r in rolls],
            [torch.from_numpy(r[1:].astype(np.float32)) for r in rolls],
        )
    spec = TaskSpec(
        task="music",
        head="multilabel",
        input_size=N_KEYS,
        vocab_size=None,
        num_classes=N_KEYS,
        output_shape=[],
        seq_len=None,
        causal=True,
    )
    meta: dict[str, Any] = {
        "task": "music",
        "data": path,
        "seed": seed,
        "layout": layout,
        "n_keys": N_KEYS,
        "lowest_note": LOWEST_NOTE,
        "sequences": {name: len(rolls) for name, rolls in pieces.items()},
        "frames": {name: int(sum(len(r) - 1 for r in rolls)) for name, rolls in pieces.items()},
        "test_file": test_data,
        "key_rates": key_rates(pieces["train"]).tolist(),
    }
    baselines = frame_baselines(pieces["train"], pieces["test"])
    return TaskData(spec, datasets["train"], datasets["val"], datasets["test"], baselines=baselines, meta=meta)


def read_mat(path: str) -> dict[str, list[np.ndarray]]:
    """The three splits of a ``.mat`` file as lists of validated binary rolls."""
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises several types for a file that is not MATLAB
        raise DataError(f"{path}: cannot read it as a MATLAB .mat file ({error})") from None
    present = [key for key in contents if not key.startswith("__")]
    missing = [key for key in MAT_KEYS.values() if key not in contents]
    if missing:
        raise DataError(
            f"{path}: missing key(s) {', '.join(missing)}; a music .mat holds traindata, validdata and "
            f"testdata (keys present: {', '.join(present) or 'none'})"
        )
    pieces = {}
    for split, key in MAT_KEYS.items():
        cell = contents[key]
        items = list(cell.ravel()) if cell.dtype == object else [cell]
        if not items:
            raise DataError(f"{path}: {key} holds no pieces")
        pieces[split] = [to_roll(item, f"{path}: {key}[{i}]") for i, item in enumerate(items)]
    return pieces


def to_roll(piece: Any, where: str) -> np.ndarray:
    """A validated ``uint8[T, 88]`` roll from a numeric roll or a list of per-frame MIDI note numbers."""
    piece = np.asarray(piece)
    if piece.dtype == object:  # Boulanger-Lewandowski's layout: frame t lists the MIDI notes sounding
        frames = list(piece.ravel())
        roll = np.zeros((len(frames), N_KEYS), dtype=np.uint8)
        for t, notes in enumerate(frames):
            notes = np.asarray(notes, dtype=np.float64).ravel()
            bad = (notes < LOWEST_NOTE) | (notes >= LOWEST_NOTE + N_KEYS) | (notes != np.round(notes))
            if bad.any():
                raise DataError(f"{where}: frame {t} holds note {notes[bad][0]:g}; piano notes are MIDI 21 to 108")
            roll[t, notes.astype(np.int64) - LOWEST_NOTE] = 1
        piece = roll
    if piece.ndim != 2 or piece.shape[1] != N_KEYS:
        raise DataError(
            f"{where} has shape {'x'.join(map(str, piece.shape))}; expected time x {N_KEYS} (one column "
            f"per piano key, A0 to C8)"
        )
    if not np.isin(piece, (0, 1)).all():
        t, k = np.argwhere(~np.isin(piece, (0, 1)))[0]
        raise DataError(f"{where}: frame {t}, key {k} holds {float(piece[t, k]):g}; a piano roll holds only 0 and 1")
    if len(piece) < 2:
        raise DataError(f"{where} has {len(piece)} frame(s); at least 2 are needed to predict a next frame")
    return piece.astype(np.uint8)


def read_roll_folder(path: str, *, seed: int, val_fraction: float, test_fraction: float):
    """``train/ valid/ test/`` subfolders of ``.npy`` rolls, or one folder of rolls split by piece."""
    subfolders = {}
    for split, names in FOLDER_NAMES.items():
        found = [os.path.join(path, n) for n in names if os.path.isdir(os.path.join(path, n))]
        if found:
            subfolders[split] = found[0]
    if subfolders:
        absent = [FOLDER_NAMES[s][0] for s in FOLDER_NAMES if s not in subfolders]
        if absent:
            raise DataError(
                f"{path}: has subfolder(s) {', '.join(os.path.basename(p) for p in subfolders.values())} "
                f"but not {', '.join(absent)}; give train/, valid/ and test/, or put all rolls in one "
                f"folder"
            )
        return {split: _read_npy_files(folder) for split, folder in subfolders.items()}, "npy folders"
    rolls = _read_npy_files(path)
    rows = split_indices(len(rolls), val_fraction, test_fraction, seed=seed, what="pieces", source=path)
    return {split: [rolls[i] for i in r] for split, r in zip(("train", "val", "test"), rows)}, "npy folder"


def _read_npy_files(folder: str) -> list[np.ndarray]:
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".npy"))
    if not names:
        raise DataError(
            f"{folder}: no .npy piano rolls in this folder (expected files like piece001.npy, "
            f"each a time x {N_KEYS} array of 0 and 1)"
        )
    rolls = []
    for name in names:
        file = os.path.join(folder, name)
        try:
            array = np.load(file, allow_pickle=False)
        except Exception as error:  # not a .npy, or an object array that would need unpickling
            raise DataError(f"{file}: cannot read it as a numeric .npy array ({error})") from None
        rolls.append(to_roll(array, file))
    return rolls


def key_rates(train: list[np.ndarray]) -> np.ndarray:
    """``q_k = (n_k + 1) / (frames + 2)``: how often key ``k`` is on in the training targets (frames 1..),
    add-one smoothed."""
    train_next = np.concatenate([r[1:] for r in train]).astype(np.float64)
    return (train_next.sum(axis=0) + 1) / (len(train_next) + 2)


def frame_baselines(train: list[np.ndarray], test: list[np.ndarray]) -> dict[str, float]:
    """``marginal_nll`` and ``persistence_nll`` on the test targets (frames 1.. of each piece)."""
    train_previous = np.concatenate([r[:-1] for r in train]).astype(np.float64)
    train_next = np.concatenate([r[1:] for r in train]).astype(np.float64)
    test_previous = np.concatenate([r[:-1] for r in test]).astype(np.float64)
    test_next = np.concatenate([r[1:] for r in test]).astype(np.float64)
    p_marginal = key_rates(train)
    on_after_on = ((train_previous * train_next).sum(axis=0) + 1) / (train_previous.sum(axis=0) + 2)
    on_after_off = (((1 - train_previous) * train_next).sum(axis=0) + 1) / ((1 - train_previous).sum(axis=0) + 2)
    p_persistence = np.where(test_previous == 1, on_after_on, on_after_off)
    return {
        "marginal_nll": _frame_nll(np.broadcast_to(p_marginal, test_next.shape), test_next),
        "persistence_nll": _frame_nll(p_persistence, test_next),
    }


def _frame_nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1).mean())
