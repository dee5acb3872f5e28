"""Reading the project's shared folder (``../shared`` beside the repository) from any test."""

import os
from pathlib import Path

import pytest

#: The repository's root (``/work/main``, a worktree, a user's clone): the folder holding ``tests/``.
REPOSITORY = Path(__file__).resolve().parent.parent
#: The project's shared folder sits beside the repository (``../shared``): data that is not ours to ship.
SHARED = REPOSITORY.parent / "shared"


def shared_data(relative: str) -> Path:
    """``../shared/<relative>`` resolved from the repository root; skips the calling test with the
    reason when the file is absent, and fails it instead when the environment says ``CI=true`` (CI must
    check every figure that rests on shared data, not skip it quietly)."""
    path = SHARED / relative
    if path.exists():
        return path
    reason = f"{relative} is not in {SHARED} (the shared folder beside the repository)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)
