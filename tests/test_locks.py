"""One writer per folder: a live holder refuses the next writer by PID; a dead one leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rnnlab.locks import LOCK_FILE, FolderBusy, ensure_free, folder_lock, holder

HOLD = """
import sys, time
from rnnlab.locks import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_in_child(folder):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_writer_is_refused_naming_the_holders_pid(tmp_path):
    child = hold_in_child(tmp_path)
    try:
        assert holder(tmp_path) == child.pid
        with pytest.raises(FolderBusy, match=f"{tmp_path} is in use by process {child.pid}"), folder_lock(tmp_path):
            pass
        with pytest.raises(FolderBusy, match=f"process {child.pid}"):
            ensure_free(tmp_path)
    finally:
        child.kill()
        child.wait()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    child = hold_in_child(tmp_path)
    child.kill()  # SIGKILL: no clean-up ran, the lock file with its PID stays behind
    child.wait()
    assert (tmp_path / LOCK_FILE).is_file() and holder(tmp_path) == child.pid
    ensure_free(tmp_path)  # the OS dropped the lock with the process: the stale file is no obstacle
    with folder_lock(tmp_path):
        assert holder(tmp_path) == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()  # released: nothing left in the folder


def test_a_stale_lock_file_without_a_process_is_no_obstacle(tmp_path):
    (tmp_path / LOCK_FILE).write_text("999999999\n")  # a PID no process has
    with folder_lock(tmp_path):
        assert holder(tmp_path) == os.getpid()


def test_the_lock_is_released_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), folder_lock(tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_FILE).exists()
    with folder_lock(tmp_path):  # free again
        assert holder(tmp_path) == os.getpid()


def test_a_comparison_into_a_folder_in_use_is_refused_before_it_touches_it(tmp_path):
    from rnnlab.lab import CompareConfig, compare

    folder = tmp_path / "comparison"
    folder.mkdir()
    child = hold_in_child(folder)
    try:
        with pytest.raises(FolderBusy, match=f"process {child.pid}.*comparison folder"):
            compare(CompareConfig(budget="quick", out=str(folder)), progress=False)
        assert [path.name for path in folder.iterdir()] == [LOCK_FILE]  # nothing written
    finally:
        child.kill()
        child.wait()
