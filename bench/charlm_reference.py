"""The charlm defaults against the plain recipe issue #6 gives for scale, at equal step counts or wall time.

    python bench/charlm_reference.py [--epochs 18] [--threads 2]            # built-in corpus, equal steps
    python bench/charlm_reference.py --minutes 10 [--data FILE.txt]         # equal wall time, test bpc

With ``--minutes M``: ``rnnlab train --task charlm --model lstm --max-minutes M`` (its defaults, on
FILE or the built-in corpus) against the plain recipe trained for the same M minutes of wall time
on the same split, its weights of the best validation check kept; both print the test split's bpc
read as one stream.

The plain recipe: seed 004's model applied at every step (embedding 128 → 2×256 ``nn.LSTM``,
dropout 0.2 → linear), Adam 2e-3, clipping at 5, no schedule, no early stopping, batches of 32
random 100-character windows of the training text, each read from a zero state. rnnlab's defaults:
``rnnlab train --task charlm --model lstm --epochs N`` (stateful TBPTT, cosine schedule to the
budget; ``TASK_DEFAULTS["charlm"]``). Both on the built-in corpus's split, both scored the same way:
bits per character of the whole validation stream read once with the state carried. The plain
recipe is scored after every ``steps_per_epoch`` steps of the stateful trainer, so row ``k`` of the
table compares both after the same number of optimiser steps on the same number of characters.
A quiet 10 minutes on this machine's two threads is 18 epochs of the defaults.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.data import load_task
from rnnlab.train import TrainConfig, train

WINDOW, BATCH = 100, 32


class PlainCharLSTM(nn.Module):
    """Seed 004's ``TextLSTM`` with the head applied at every step."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 128)
        self.lstm = nn.LSTM(128, 256, 2, batch_first=True, dropout=0.2)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(256, vocab_size)

    def forward(self, x: torch.Tensor, state=None):
        output, state = self.lstm(self.embedding(x), state)
        return self.head(self.dropout(output)), state


def stream_bpc(model: PlainCharLSTM, tokens: torch.Tensor, chunk: int = 1000) -> float:
    """Bits per character of ``tokens`` read once as one stream, the state carried between chunks."""
    model.eval()
    state, nats = None, 0.0
    with torch.no_grad():
        for start in range(0, len(tokens) - 1, chunk):
            targets = tokens[start + 1 : start + chunk + 1]
            logits, state = model(tokens[start : start + len(targets)][None], state)
            nats += F.cross_entropy(logits[0], targets, reduction="sum").item()
    model.train()
    return nats / (len(tokens) - 1) / math.log(2)


def plain_step(
    model: PlainCharLSTM, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, generator: torch.Generator
) -> None:
    """One step of the plain recipe: BATCH random windows, each read from a zero state."""
    starts = torch.randint(0, len(tokens) - WINDOW - 1, (BATCH,), generator=generator)
    windows = tokens[starts[:, None] + torch.arange(WINDOW + 1)]
    logits, _ = model(windows[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()


def plain_curve(task, steps_per_epoch: int, epochs: int, seed: int = 0) -> list[float]:
    """Validation bpc of the plain recipe after each ``steps_per_epoch`` steps."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_tokens, val_tokens = task.train.tokens, task.val.tokens
    model = PlainCharLSTM(task.spec.vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    curve = []
    for step in range(1, steps_per_epoch * epochs + 1):
        plain_step(model, optimizer, train_tokens, generator)
        if step % steps_per_epoch == 0:
            curve.append(stream_bpc(model, val_tokens))
    return curve


def defaults_curve(epochs: int, data: str | None = None) -> list[float]:
    """Validation bpc per epoch of ``rnnlab train --task charlm --model lstm --epochs N`` (no early stop)."""
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        train(TrainConfig(task="charlm", model="lstm", data=data, epochs=epochs, patience=None, out=str(run)))
        with open(run / "metrics.csv") as handle:
            return [float(row["val_bpc"]) for row in csv.DictReader(handle)]


def defaults_for(minutes: float, data: str | None) -> float:
    """Test bpc of ``rnnlab train --task charlm --model lstm --max-minutes M`` (its defaults otherwise)."""
    with tempfile.TemporaryDirectory() as folder:
        result = train(
            TrainConfig(task="charlm", model="lstm", data=data, max_minutes=minutes, out=str(Path(folder) / "run"))
        )
        return float(result.summary["test_metrics"]["bpc"])


def plain_for(task, minutes: float, steps_per_check: int, seed: int = 0) -> float:
    """Test bpc of the plain recipe trained for ``minutes`` of wall time, validated every
    ``steps_per_check`` steps, its best validation weights kept."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = PlainCharLSTM(task.spec.vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    best, best_state, step = math.inf, None, 0
    deadline = time.perf_counter() + minutes * 60
    while time.perf_counter() < deadline:
        plain_step(model, optimizer, task.train.tokens, generator)
        step += 1
        if step % steps_per_check == 0:
            score = stream_bpc(model, task.val.tokens)
            if score < best:
                best, best_state = score, {name: value.clone() for name, value in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    return stream_bpc(model, task.test.tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=None, help="a text file (default: the built-in corpus)")
    parser.add_argument("--minutes", type=float, default=None, help="compare at equal wall time instead of steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = load_task("charlm", data=args.data)
    steps_per_epoch = (len(task.train.tokens) - 1) // (BATCH * WINDOW)  # the stateful trainer's batches
    if args.minutes is not None:
        ours = defaults_for(args.minutes, args.data)
        theirs = plain_for(task, args.minutes, steps_per_epoch)
        print(f"{args.data or 'built-in corpus'}: test bpc after {args.minutes:g} minutes, {args.threads} thread(s)")
        print(
            f"| rnnlab defaults | plain recipe | difference |\n|---:|---:|---:|\n"
            f"| {ours:.3f} | {theirs:.3f} | {ours - theirs:+.3f} |"
        )
        return

    started = time.perf_counter()
    defaults = defaults_curve(args.epochs, args.data)
    defaults_seconds = time.perf_counter() - started
    started = time.perf_counter()
    plain = plain_curve(task, steps_per_epoch, args.epochs)
    plain_seconds = time.perf_counter() - started

    print(
        f"validation bpc after each {steps_per_epoch} steps ({BATCH}×{WINDOW} characters each), "
        f"{args.threads} thread(s); defaults {defaults_seconds:.0f} s, plain recipe {plain_seconds:.0f} s\n"
    )
    print("| steps | rnnlab defaults | plain recipe |\n|---:|---:|---:|")
    for epoch, (ours, theirs) in enumerate(zip(defaults, plain), start=1):
        print(f"| {epoch * steps_per_epoch:,} | {ours:.3f} | {theirs:.3f} |")
    print(f"| best | **{min(defaults):.3f}** | **{min(plain):.3f}** |")


if __name__ == "__main__":
    main()
