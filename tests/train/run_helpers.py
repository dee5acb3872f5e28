"""Small runs and the callbacks that break them, shared by the training tests."""

from __future__ import annotations

import lightning as L
import torch

from rnnlab.train import TrainConfig


def tiny_recall(out, **changes):
    """A run of a few seconds: the recall task (or ``task=...``) on 64 training samples."""
    values = dict(
        task="recall",
        seq_len=6,
        n_train=64,
        n_val=16,
        n_test=16,
        batch_size=16,
        hidden_size=8,
        num_layers=1,
        epochs=3,
        patience=None,
        out=str(out),
    )
    return TrainConfig(**{**values, **changes})


class PoisonWeights(L.Callback):
    """Turns the model's weights to NaN at the start of epoch ``epoch`` (0-based) of training, as a
    diverging run would, or at the start of its validation (``during="validation"``)."""

    def __init__(self, epoch, during="training"):
        self.epoch, self.during = epoch, during

    def _poison(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(float("nan"))

    def on_train_epoch_start(self, trainer, pl_module):
        if self.during == "training":
            self._poison(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module):
        if self.during == "validation":
            self._poison(trainer, pl_module)


class Crash(L.Callback):
    """Ends training with an error at the start of epoch ``epoch`` (a crash, not a divergence)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("crashed")
