"""Splitting a data set into train / validation / test parts: seeded, stratified when asked."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnlab.errors import ConfigError, DataError


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"val_fraction and test_fraction must lie in [0, 1) and sum below 1, got {val_fraction} and {test_fraction}"
        )


def split_indices(
    count: int,
    val_fraction: float,
    test_fraction: float,
    *,
    seed: int,
    strata: Sequence | None = None,
    what: str = "samples",
    source: str = "the data",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted index arrays ``(train, val, test)`` of ``range(count)``, a pure function of ``seed``.

    With ``strata`` (one label per sample) each label is split on its own, so every part keeps the
    label proportions and every label keeps at least one training sample.
    """
    check_fractions(val_fraction, test_fraction)
    rng = np.random.default_rng([seed, 5])
    if strata is None:
        labels = np.zeros(count, dtype=np.int64)
    else:
        labels = np.unique(np.asarray(strata), return_inverse=True)[1]
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in range(labels.max() + 1 if count else 0):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        while n_test + n_val >= len(members) and n_test + n_val > 0:  # keep a training sample
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
        parts[2].append(members[:n_test])
        parts[1].append(members[n_test : n_test + n_val])
        parts[0].append(members[n_test + n_val :])
    train, val, test = (np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts)
    wanted = [("training", train, True), ("validation", val, val_fraction > 0), ("test", test, test_fraction > 0)]
    for name, part, needed in wanted:
        if needed and len(part) == 0:
            raise DataError(
                f"{source}: {count} {what} are too few to hold out a {name} part with val_fraction {val_fraction} "
                f"and test_fraction {test_fraction}; give more data or a separate test file"
            )
    return train, val, test
