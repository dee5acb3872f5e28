"""One writer per run directory: a second ``train`` (or ``--resume``) into a directory another live
process is writing is refused naming that process, and the first run finishes whole."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from rnnlab.locks import LOCK_FILE, FolderBusy
from rnnlab.train import TrainConfig, train

COMMAND = [sys.executable, "-m", "rnnlab.cli", "train", "--task", "recall", "--seq-len", "6", "--hidden-size", "8"]
COMMAND += ["--num-layers", "1", "--batch-size", "16", "--option", "n_train=64", "--option", "n_val=16"]
COMMAND += ["--option", "n_test=16", "--patience", "0", "-q"]


#: the first writer: a run that waits after its first epoch until the test creates ``go``
FIRST = """
import sys, time
from pathlib import Path
from lightning.pytorch.callbacks import Callback
from rnnlab.train import TrainConfig, train

class Wait(Callback):
    def on_train_epoch_end(self, trainer, module):
        while not Path(sys.argv[2]).exists():
            time.sleep(0.05)

config = TrainConfig(task="recall", seq_len=6, hidden_size=8, num_layers=1, batch_size=16, epochs=3, patience=None,
                     data_options={"n_train": 64, "n_val": 16, "n_test": 16}, out=sys.argv[1])
train(config, callbacks=[Wait()])
"""


def wait_for(path, process, seconds=120.0):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_second_train_into_a_running_directory_is_refused_and_the_first_finishes(tmp_path):
    out, go = tmp_path / "run", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", FIRST, str(out), str(go)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(out / "config.json", first)
        second = subprocess.run([*COMMAND, "--epochs", "2", "--out", str(out)], capture_output=True, text=True)
        assert second.returncode == 2
        assert f"in use by process {first.pid}" in " ".join((second.stdout + second.stderr).split())
        with pytest.raises(FolderBusy, match=f"process {first.pid}"):
            train(TrainConfig(task="recall", out=str(out)), resume=True)  # a resume is a second writer too
        go.touch()
        assert first.wait(timeout=600) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3  # the first run, whole: the refused ones wrote nothing
    assert not (out / LOCK_FILE).exists()
    assert json.loads((out / "config.json").read_text())["epochs"] == 3
