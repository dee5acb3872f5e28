"""One writer per folder: an exclusive lock on a run directory or a comparison folder.

    with folder_lock(out):      # a second writer gets FolderBusy naming this process's PID
        ...write out...

The lock is an OS file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on ``out/.lock``,
which also holds the writer's PID. The operating system drops the lock when its process ends, however
it ends (SIGKILL included): a lock file left by a dead process is stale and simply taken over. The
file is removed when the lock is released; a process that opened it just before the removal sees
that the path no longer names the file it locked, and opens it again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from rnnlab.errors import ConfigError

LOCK_FILE = ".lock"


class FolderBusy(ConfigError):
    """Another live process holds the folder's lock."""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def holder(folder: str | os.PathLike) -> int | None:
    """The PID written in ``folder``'s lock file (``None``: no lock file, or no PID in it)."""
    try:
        text = (Path(folder) / LOCK_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def ensure_free(folder: str | os.PathLike, what: str = "run directory") -> None:
    """Raise ``FolderBusy`` when a live process holds ``folder``'s lock (a check before the work that
    leads up to ``folder_lock``; it takes nothing and creates nothing)."""
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR)
    except OSError:
        return
    try:
        if not _try_lock(fd):
            raise _busy(folder, what)
        _unlock(fd)
    finally:
        os.close(fd)


def _busy(folder: str | os.PathLike, what: str) -> FolderBusy:
    pid = holder(folder)
    by = f"process {pid}" if pid is not None else "another process"
    return FolderBusy(
        f"{folder} is in use by {by} (another rnnlab writing this {what}); wait for it to end or choose another folder"
    )


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "run directory") -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (which must exist) for the block; raise ``FolderBusy``
    at once, without waiting, when another process holds it."""
    path = Path(folder) / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise _busy(folder, what)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        _unlock(fd)  # the file was removed by the writer that just finished: lock the new one
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _unlock(fd)
        os.close(fd)
