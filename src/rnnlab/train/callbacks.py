"""What happens at the edges of epochs: records, checkpoints, early stopping, targets, time budget.

``RunRecorder`` is the run's memory. After each epoch's validation it appends a row to
``metrics.csv``, keeps the best weights (by the task's validation metric), notes when ``target`` was
first reached, decides early stopping, and writes a checkpoint (``checkpoint.py``: safetensors +
JSON, atomic) holding everything needed to continue exactly: weights, optimiser and schedule state,
loop counters, its own records and the random number generators. The data order needs no state: it
is a function of ``(seed, epoch)``.

Checkpoints are taken at the end of an epoch (``on_train_epoch_end``, after validation), so a run
killed mid-epoch continues from the start of that epoch and replays it exactly. A recorder that is
a ``lightning.Checkpoint`` runs after the other callbacks, so the state it saves is final.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from rnnlab.errors import TrainingError
from rnnlab.io import atomic_save_safetensors, atomic_write_json, atomic_write_text
from rnnlab.train.checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE, RECORD_FILE, load_checkpoint, save_checkpoint
from rnnlab.train.metrics import PERFECT_SCORE

if TYPE_CHECKING:
    from rnnlab.train.module import TaskModule


class RunRecorder(Checkpoint):
    """Records epochs, keeps the best weights, stops early or on target, checkpoints each epoch.

    ``monitor``/``mode``: the validation metric and whether more is better; ``patience``: epochs
    without improvement before stopping (``None``: never); ``target``: stop once the metric reaches
    it; ``max_seconds``: training time budget (checked after every batch); ``stop_on_perfect``: stop
    once the validation metric is perfect (off when the split is too small for that to mean much).
    """

    def __init__(
        self,
        run_dir: str | Path,
        monitor: str,
        mode: str,
        *,
        patience: int | None = None,
        target: float | None = None,
        max_seconds: float | None = None,
        stop_on_perfect: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.monitor, self.mode = monitor, mode
        self.stop_on_perfect = stop_on_perfect
        self.patience, self.target, self.max_seconds = patience, target, max_seconds
        self.history: list[dict[str, float]] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.epochs_to_target: int | None = None
        self.seconds_to_target: float | None = None
        self.stop_reason: str | None = None
        self.schedule: dict[str, Any] | None = None  # the cosine schedule's horizon (on_fit_end)
        self.previous_seconds = 0.0  # training time of earlier sessions of a resumed run
        self.steps = 0
        self.step_seconds = 0.0
        self._session_started = time.perf_counter()
        self._batch_started = 0.0
        self._validated_epoch: int | None = None
        self._epoch_lr = float("nan")
        self._rng_to_restore: dict[str, Any] | None = None

    # ----------------------------------------------------------------- time
    @property
    def seconds(self) -> float:
        """Training time so far, over every session of this run."""
        return self.previous_seconds + time.perf_counter() - self._session_started

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._session_started = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = cast("TaskModule", pl_module)  # the module rnnlab.train runs
        if self.stop_reason is not None:  # resumed from the checkpoint of a run that had decided to stop
            trainer.should_stop = True
        if not self.history and self.best_epoch is None and getattr(module.model, "anchor", None) is not None:
            # a forecast that starts at the (seasonal) naive forecast: that start is "epoch 0", and
            # the run keeps it unless an epoch does better on validation
            score = module.untrained_score()
            if not math.isnan(score):
                self.best_score, self.best_epoch = score, 0
                self.best_weights = {
                    name: tensor.detach().cpu().clone() for name, tensor in module.model.state_dict().items()
                }

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._rng_to_restore is not None:
            # Restored here, not at load time: nothing may draw random numbers between this point of
            # the uninterrupted run (its end of the previous epoch) and this one.
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        self._epoch_lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        seconds = time.perf_counter() - self._batch_started
        self.steps += 1
        self.step_seconds += seconds
        if seconds > 0:
            sequences = batch.y.size(0) * trainer.world_size
            pl_module.log(
                "seq/s", sequences / seconds, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch.y.size(0)
            )
        if self.max_seconds is not None:
            out_of_time = self.seconds >= self.max_seconds
            if trainer.world_size > 1:  # clocks differ between processes: rank 0 decides for all
                out_of_time = trainer.strategy.broadcast(out_of_time, src=0)
            if out_of_time:
                self.stop_reason = self.stop_reason or "time budget"
                trainer.should_stop = True

    # ----------------------------------------------------------------- the end of an epoch
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = cast("TaskModule", pl_module)  # the module rnnlab.train runs
        epoch = trainer.current_epoch
        if self._validated_epoch != epoch:
            return  # the epoch was cut short (time budget): no validation, nothing to record
        train_loss = torch.tensor(module.train_loss, dtype=torch.float64)
        if trainer.world_size > 1:
            train_loss = trainer.strategy.reduce(train_loss, reduce_op="mean")
        results = dict(module.val_results)
        row = {"epoch": epoch + 1, "train_loss": float(train_loss), "val_loss": results.pop("loss", float("nan"))}
        if module.val_count and not math.isfinite(row["val_loss"]):
            # raised before this epoch is recorded or checkpointed: the last good epoch stays the last
            raise TrainingError(
                f"non-finite validation loss ({row['val_loss']:.4g}) after epoch {epoch + 1} (train loss "
                f"{row['train_loss']:.4g}): the weights diverged; try a lower lr (now {module.config.lr:g}) "
                f"or clip (now {module.config.clip:g})"
            )
        row.update({f"val_{name}": value for name, value in results.items()})
        row["lr"] = self._epoch_lr
        row["seconds"] = round(self.seconds, 3)
        self.history.append(row)

        score = results.get(self.monitor, float("nan"))
        if self._improved(score):
            self.best_score, self.best_epoch = score, epoch + 1
            self.best_weights = {
                name: tensor.detach().cpu().clone() for name, tensor in module.model.state_dict().items()
            }
        if self.target is not None and self.epochs_to_target is None and self._reached(score):
            self.epochs_to_target, self.seconds_to_target = epoch + 1, round(self.seconds, 3)
            self.stop_reason = "target reached"
        if self.stop_on_perfect and PERFECT_SCORE.get(self.monitor) == score:
            self.stop_reason = self.stop_reason or f"perfect validation {self.monitor}"
        if self.patience is not None and self.best_epoch is not None and epoch + 1 - self.best_epoch >= self.patience:
            self.stop_reason = self.stop_reason or f"no improvement of val {self.monitor} for {self.patience} epochs"
        if self.stop_reason is not None and self.stop_reason != "time budget":
            trainer.should_stop = True
        if math.isnan(score) and self.best_epoch is None and self.best_weights is None:
            # Keep something to evaluate even if the metric is undefined (e.g. empty validation split).
            self.best_weights = {
                name: tensor.detach().cpu().clone() for name, tensor in module.model.state_dict().items()
            }
            self.best_epoch = epoch + 1

        if trainer.is_global_zero:
            write_metrics_csv(self.run_dir / "metrics.csv", self.history)
        trainer.save_checkpoint(self.run_dir / CHECKPOINT_DIR)

    def _improved(self, score: float) -> bool:
        if not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def _reached(self, score: float) -> bool:
        if math.isnan(score):
            return False
        assert self.target is not None  # asked only when there is a target
        return score >= self.target if self.mode == "max" else score <= self.target

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Publish the best weights and the final record (read by ``train`` in the main process)."""
        cosine = getattr(pl_module, "cosine", None)
        if cosine is not None:  # where the cosine schedule ended, and whether a time budget set it
            self.schedule = {
                "kind": "cosine",
                "steps": cosine.horizon,
                "epochs_steps": cosine.total_steps,
                "set_by": "time budget"
                if cosine.horizon < cosine.total_steps
                else ("epochs (the budget ended before it was measured)" if cosine.measuring else "epochs"),
                "measured_at_step": cosine.measured_at,
            }
        if self.best_weights is None:  # stopped before any epoch finished: keep what there is
            model = cast("TaskModule", pl_module).model  # the module rnnlab.train runs
            self.best_weights = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
        if trainer.is_global_zero:
            atomic_save_safetensors(self.run_dir / "model.safetensors", self.best_weights)
            atomic_write_json(self.run_dir / CHECKPOINT_DIR / RECORD_FILE, self.record())
        trainer.strategy.barrier("rnnlab.RunRecorder.on_fit_end")

    def record(self) -> dict[str, Any]:
        """What the run summary takes from training."""
        return {
            "history": self.history,
            "epochs": len(self.history),
            "best_epoch": self.best_epoch,
            "best_val_score": self.best_score,
            "epochs_to_target": self.epochs_to_target,
            "seconds_to_target": self.seconds_to_target,
            "train_seconds": round(self.seconds, 3),
            "steps": self.steps,
            "seconds_per_step": self.step_seconds / self.steps if self.steps else None,
            "stop_reason": self.stop_reason or "epochs done",
            "time_budget_ended": self.stop_reason == "time budget",
            "schedule": self.schedule,
        }

    # ----------------------------------------------------------------- checkpoint state
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Taken in on_train_epoch_end, the loop counters say "epoch processed, not yet completed";
        # everything that still happens before "completed" is stateless here (no per-epoch Lightning
        # scheduler is used), so mark it completed: the resumed run then starts the next epoch afresh.
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress")
        if progress is not None:
            for counts in (progress["total"], progress["current"]):
                counts["completed"] = counts["processed"]

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "epochs_to_target": self.epochs_to_target,
            "seconds_to_target": self.seconds_to_target,
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
            "steps": self.steps,
            "step_seconds": self.step_seconds,
            "rng": get_rng_states(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_weights = state["best_weights"]
        self.epochs_to_target, self.seconds_to_target = state["epochs_to_target"], state["seconds_to_target"]
        self.stop_reason = state["stop_reason"]
        self.previous_seconds = float(state["seconds"])
        self.steps, self.step_seconds = int(state["steps"]), float(state["step_seconds"])
        self._rng_to_restore = state["rng"]


class ReplayLearningRates(L.Callback):
    """Each epoch starts at the learning rate another run had in that epoch (a refit replays its
    selection run's schedule, whose plateau steps needed a validation metric the refit lacks).
    Every parameter group is scaled alike, so a separate ``recurrent_lr`` keeps its ratio."""

    def __init__(self, rates: list[float]) -> None:
        self.rates = rates
        self._base: list[float] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        groups = trainer.optimizers[0].param_groups
        if self._base is None:
            self._base = [group["lr"] for group in groups]
        factor = self.rates[min(trainer.current_epoch, len(self.rates) - 1)] / self.rates[0]
        for group, base in zip(groups, self._base):
            group["lr"] = base * factor


class StopAtSeconds(L.Callback):
    """Counts optimiser steps and stops training once ``seconds`` (``None``: never) have passed."""

    def __init__(self, seconds: float | None) -> None:
        self.limit = seconds
        self.steps = 0
        self.stopped = False
        self._started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._started

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.steps += 1
        if self.limit is not None and self.seconds >= self.limit:
            self.stopped = trainer.should_stop = True


def get_rng_states() -> dict[str, Any]:
    """The states of the random number generators training draws from (torch, numpy, Python)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(tuple(states["numpy"]))
    random.setstate(states["python"])


def write_metrics_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """One row per epoch; columns in the order of the first row (later rows have the same keys)."""
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_number(value) for key, value in row.items()})
    atomic_write_text(path, buffer.getvalue())


def _csv_number(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O through ``save_checkpoint``/``load_checkpoint``: ``path`` is a folder."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        save_checkpoint(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path)

    def remove_checkpoint(self, path: Any) -> None:
        folder = Path(path)
        for file in [*list(folder.glob("train-*.safetensors")), folder / CHECKPOINT_FILE]:
            file.unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
