"""Resume after a kill: a run killed mid-epoch and resumed ends exactly where an uninterrupted one does."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = r"""
import sys, time
from pathlib import Path
import lightning as L
from rnnlab.train import TrainConfig, train

out, mode, kind = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "recall":
    config = TrainConfig(task="recall", model="lstm", seq_len=8, n_train=256, n_val=64, n_test=64, epochs=4,
                         batch_size=32, hidden_size=16, num_layers=2, dropout=0.3, patience=None, out=out)
else:  # charlm-lstm, charlm-gru: stateful TBPTT streams, dropout, a cosine schedule
    config = TrainConfig(task="charlm", model=kind.split("-")[1], data=sys.argv[4], seq_len=20, epochs=4,
                         batch_size=4, hidden_size=16, num_layers=1, patience=None, out=out)


class StallMidEpoch(L.Callback):
    # Marks the file system when epoch 3 is half done, then waits to be killed.
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 2 and batch_idx == 4:
            Path(out + ".stalled").touch()
            time.sleep(600)


if mode == "resume":
    train(TrainConfig(out=out), resume=True)
else:
    train(config, callbacks=[StallMidEpoch()] if mode == "stall" else [])
"""


def run_script(tmp_path: Path, out: Path, mode: str, kind: str = "recall") -> subprocess.Popen:
    script, text = tmp_path / "run.py", tmp_path / "text.txt"
    script.write_text(SCRIPT)
    if not text.exists():  # a small text of words drawn from a fixed vocabulary
        rng = random.Random(0)
        words = "the a recurrent network reads one step at a time and carries its state forward".split()  # noqa: SIM905
        text.write_text(" ".join(rng.choice(words) for _ in range(1500)) + "\n")
    # One thread per process: the same floating-point reduction order in every run.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, str(script), str(out), mode, kind, str(text)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    _stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("kind", ["recall", "charlm-lstm", "charlm-gru"])
def test_resume_after_kill_is_exact(tmp_path, kind):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = run_script(tmp_path, straight, "plain", kind)
    doomed = run_script(tmp_path, killed, "stall", kind)
    marker = Path(str(killed) + ".stalled")
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert doomed.poll() is None, doomed.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never reached the middle of epoch 3"
        time.sleep(0.2)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    # Killed mid-epoch: the last complete epoch (2) is checkpointed, nothing of the run's end exists.
    assert not (killed / "summary.json").exists()
    assert len(read_csv(killed / "metrics.csv")) == 2
    assert json.loads((killed / "checkpoint" / "last.json").read_text())["state"]["epoch"] == 1

    finish(run_script(tmp_path, killed, "resume", kind))
    finish(uninterrupted)
    resumed = json.loads((killed / "summary.json").read_text())
    expected = json.loads((straight / "summary.json").read_text())
    assert resumed["test_metrics"] == expected["test_metrics"]
    assert resumed["best_epoch"] == expected["best_epoch"] and resumed["epochs"] == expected["epochs"] == 4
    assert read_csv(killed / "metrics.csv") == read_csv(straight / "metrics.csv")
    assert (killed / "model.safetensors").read_bytes() == (straight / "model.safetensors").read_bytes()
    assert not (killed / "checkpoint").exists()
