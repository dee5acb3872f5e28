"""Tiny data files for training tests: every task at a size that trains in a second."""

import math

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """Paths of tiny data files: a forecast CSV, wide and text classify CSVs, a CoNLL file, a text, music rolls."""
    folder = tmp_path_factory.mktemp("tiny-data")
    rng = np.random.default_rng(0)
    files = {}

    rows = ["time,flow,rain"]
    for hour in range(120):
        flow = 100 + 30 * math.sin(2 * math.pi * hour / 24) + rng.normal(0, 3)
        rows.append(f"2024-01-{1 + hour // 24:02d} {hour % 24:02d}:00,{flow:.2f},{rng.random():.3f}")
    files["forecast"] = folder / "flow.csv"
    files["forecast"].write_text("\n".join(rows) + "\n")

    rows = ["label,v1,v2,v3,v4,v5,v6"]
    for i in range(60):
        label = ["up", "down", "flat"][i % 3]
        slope = {"up": 1.0, "down": -1.0, "flat": 0.0}[label]
        length = 4 + i % 3  # variable lengths: empty trailing cells
        values = [f"{slope * t + rng.normal(0, 0.3):.3f}" for t in range(length)] + [""] * (6 - length)
        rows.append(",".join([label, *values]))
    files["classify"] = folder / "shapes.csv"
    files["classify"].write_text("\n".join(rows) + "\n")

    lines = []
    words = {"PER": ["ana", "bob"], "LOC": ["rome", "oslo"], "O": ["the", "went", "to", "saw"]}
    for i in range(30):
        for tag in ("PER", "O", "O", "LOC"):
            lines.append(f"{words[tag][i % len(words[tag])]} {tag}")
        lines.append("")
    files["tag"] = folder / "ner.conll"
    files["tag"].write_text("\n".join(lines))

    files["charlm"] = folder / "text.txt"
    files["charlm"].write_text("the quick brown fox jumps over the lazy dog. " * 16)

    music = folder / "rolls"
    for split, count in (("train", 6), ("valid", 2), ("test", 2)):
        (music / split).mkdir(parents=True)
        for piece in range(count):
            roll = (rng.random((12, 88)) < 0.05).astype(np.float32)
            np.save(music / split / f"piece{piece}.npy", roll)
    files["music"] = music
    return files


@pytest.fixture(autouse=True)
def _one_thread_each(one_thread):
    """Every test of this folder runs on one thread (``one_thread``, tests/conftest.py)."""
