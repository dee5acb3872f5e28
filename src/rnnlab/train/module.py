"""The Lightning module: one task model, its loss, its optimiser and schedule, its data order.

Training practice from the seeds, and where each lives:

* Adam / AdamW with two parameter groups (seed 001: "hidden layer 0.01, input layer 0.001"): the
  recurrent matrices ``W_hh`` (parameters named ``weight_hh*``) learn at ``recurrent_lr``, every
  other parameter at ``lr``; AdamW's weight decay skips biases and normalisation gains.
* gradient clipping by global norm, bf16 autocast and gradient accumulation are Lightning's
  (``Trainer(gradient_clip_val=..., precision=...)``, see ``run.py``);
* the learning-rate schedule: ``plateau`` halves the rate when the validation metric has not
  improved for ``max(1, patience // 2)`` epochs (so it gets two chances before early stopping gives
  up); ``cosine`` decays it per step from ``lr`` to ``lr / 100`` after ``warmup_epochs`` of linear
  warm-up, over the epochs' steps or, when ``max_minutes`` is set and ends first, over the steps the
  time budget allows: measured once, after ``HORIZON_AFTER_STEPS`` steps (or the first epoch), then
  fixed and kept in the checkpoint, so a run cut by its budget ends annealed and a run whose budget
  is ample never reads the clock again (two such runs are bit-identical);
* the data order is a pure function of ``(seed, epoch)`` and is cut into one shard per process
  under data-parallel training, so a resumed run, and a run on 2 processes, see the batches they
  should.

A non-finite loss stops training at once with an error naming the step (epoch, batch, global step);
under data-parallel training the processes agree first, so none is left waiting.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch.nn.utils.rnn import PackedSequence
from torch.utils.data import DataLoader, Dataset

from rnnlab.errors import TrainingError
from rnnlab.train.config import TrainConfig
from rnnlab.train.loaders import shard_loader
from rnnlab.train.metrics import loss_function, metrics_for, primary_metric
from rnnlab.train.stateful import EVALUATION_WINDOW, StateCarrier, reads_stream, stream_loader

PLATEAU_FACTOR = 0.5
COSINE_FLOOR = 0.01  # the cosine schedule ends at lr · COSINE_FLOOR
#: The cosine schedule's horizon under a time budget is measured after this many steps (or at the end
#: of the first epoch, if sooner): enough for the time per step to settle.
HORIZON_AFTER_STEPS = 100


class TaskModule(L.LightningModule):
    """Trains ``model`` on ``task_data`` as ``config`` says (``config`` already ``resolved()``)."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, task_data: Any) -> None:
        super().__init__()
        keep_lstm_in_float32_if_needed(model, config.precision)
        self.model = model
        self.config = config
        self.task_data = task_data
        self.spec = task_data.spec
        self.loss = loss_function(self.spec.head)
        self.monitor, self.mode = primary_metric(self.spec.task, self.spec.head)
        self.val_metrics = metrics_for(self.spec, task_data.meta)
        self.val_results: dict[str, float] = {}
        self.val_count = 0  # validation samples of the last check
        self._train_loss_sum = 0.0
        self._train_batches = 0
        self._val_loss_sum = 0.0
        self._val_batches = 0
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._plateau_state: dict[str, Any] | None = None
        self.cosine: CosineWithWarmup | None = None
        self._horizon_state: dict[str, Any] | None = None
        # charlm: TBPTT over contiguous streams, the state carried between batches (stateful.py)
        self.streams = reads_stream(task_data.train)
        self.carriers = {"train": StateCarrier(), "val": StateCarrier()}

    # ----------------------------------------------------------------- forward and steps
    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, lengths)

    def _output(self, batch: Any, split: str = "train") -> torch.Tensor:
        if self.streams:
            return self.carriers[split].output(self.model, batch.x)
        x, _, lengths = batch
        # Equal lengths need no packing: the fused full-sequence path is faster.
        if lengths is not None and bool((lengths == x.size(1)).all()):
            lengths = None
        if self.spec.head == "seq2seq":  # teacher forcing: the decoder reads the true previous token
            return self.model(x, lengths, target=batch.y)
        return self.model(x, lengths)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self._output(batch), batch.y)
        finite = bool(torch.isfinite(loss.detach()))
        if self.trainer.world_size > 1:  # every process must stop together, or the others hang
            agreed = self.trainer.strategy.reduce(torch.tensor(1.0 if finite else 0.0), reduce_op="min")
            finite = bool(agreed > 0)
        if not finite:
            raise TrainingError(
                f"non-finite loss ({float(loss.detach()):.4g}) at epoch {self.current_epoch}, batch {batch_idx} "
                f"(global step {self.global_step}); try a lower lr (now {self.config.lr:g}) or clip "
                f"(now {self.config.clip:g}), or look for extreme values in the data"
            )
        self._train_loss_sum += float(loss.detach())
        self._train_batches += 1
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=batch.y.size(0))
        return loss

    def on_train_epoch_start(self) -> None:
        self.carriers["train"].reset()
        self._train_loss_sum, self._train_batches = 0.0, 0

    @property
    def train_loss(self) -> float:
        """Mean training loss of the epoch so far (this process)."""
        return self._train_loss_sum / self._train_batches if self._train_batches else float("nan")

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()
        self.carriers["val"].reset()
        self._val_loss_sum, self._val_batches = 0.0, 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        output = self._output(batch, "val")
        self._val_loss_sum += float(self.loss(output, batch.y)) * batch.y.size(0)
        self._val_batches += batch.y.size(0)
        if self.spec.head == "seq2seq":  # scored on what the model writes alone: decoded, not teacher-forced
            lengths = None if bool((batch.lengths == batch.x.size(1)).all()) else batch.lengths
            output = self.model(batch.x, lengths)
        self.val_metrics.update(output, batch.y)

    def on_validation_epoch_end(self) -> None:
        sums = dict(self.val_metrics.sums)
        sums["__loss"] = torch.tensor([self._val_loss_sum, float(self._val_batches)], dtype=torch.float64)
        if self.trainer.world_size > 1:
            sums = {name: self.trainer.strategy.reduce(value, reduce_op="sum") for name, value in sums.items()}
        loss_sum, count = sums.pop("__loss").tolist()
        results = self.val_metrics.compute(sums) if sums else {}
        results["loss"] = loss_sum / count if count else float("nan")
        self.val_results, self.val_count = results, int(count)
        for name, value in results.items():
            self.log(f"val_{name}", float(value), prog_bar=name == self.monitor, on_epoch=True, sync_dist=False)
        score = results.get(self.monitor, float("nan"))
        if self.plateau is not None and not self.trainer.sanity_checking and not math.isnan(score):
            self.plateau.step(score)

    def untrained_score(self) -> float:
        """The monitored validation metric of the model as it is now (before any step): a forecast
        started from its naive anchor is a model worth keeping if no epoch beats it."""
        metrics = metrics_for(self.spec, self.task_data.meta)
        training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for batch in self.loader(self.task_data.val, shuffle=False):
                metrics.update(self._output(batch, "val"), batch.y)
        self.model.train(training)
        return float(metrics.compute().get(self.monitor, float("nan")))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.plateau is not None:
            checkpoint["plateau_scheduler"] = self.plateau.state_dict()
        if self.cosine is not None:
            checkpoint["cosine_horizon"] = self.cosine.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called before configure_optimizers: kept until the scheduler exists.
        self._plateau_state = checkpoint.get("plateau_scheduler")
        self._horizon_state = checkpoint.get("cosine_horizon")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.cosine is not None and self.cosine.measuring and self.global_step >= HORIZON_AFTER_STEPS:
            self._fix_horizon()

    def on_train_epoch_end(self) -> None:
        if self.cosine is not None and self.cosine.measuring:
            self._fix_horizon()

    def _fix_horizon(self) -> None:
        """Measure, once, how many steps the time budget allows, and end the cosine there if sooner."""
        from rnnlab.train.callbacks import RunRecorder

        # Trainer.callbacks: set by Lightning's callback connector, not declared on the class
        recorder = next(c for c in self.trainer.callbacks if isinstance(c, RunRecorder))  # type: ignore[attr-defined]
        assert self.cosine is not None and recorder.max_seconds is not None
        allowed = int(self.global_step * recorder.max_seconds / max(recorder.seconds, 1e-9))
        if self.trainer.world_size > 1:  # clocks differ between processes: rank 0 decides for all
            allowed = int(self.trainer.strategy.broadcast(allowed, src=0))
        self.cosine.fix_horizon(allowed, measured_at=self.global_step)

    # ----------------------------------------------------------------- optimiser and schedule
    def configure_optimizers(self) -> Any:
        config = self.config
        assert config.lr is not None and config.epochs is not None  # the config is resolved()
        groups = parameter_groups(
            self.model, config.lr, config.recurrent_lr, config.weight_decay, decoupled=config.optimizer == "adamw"
        )
        optimizer: torch.optim.Optimizer
        if config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
        if config.schedule == "plateau":
            # Stepped by this module right after validation (not by Lightning after the epoch), so
            # its state is final when the end-of-epoch checkpoint is taken.
            patience = max(1, (config.patience or 4) // 2)
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=self.mode, factor=PLATEAU_FACTOR, patience=patience
            )
            if self._plateau_state is not None:
                self.plateau.load_state_dict(self._plateau_state)
            return optimizer
        if config.schedule == "cosine":
            from rnnlab.train.callbacks import RunRecorder

            total_steps = max(1, int(self.trainer.estimated_stepping_batches))
            steps_per_epoch = max(1, total_steps // max(1, config.epochs))
            warmup_steps = round(config.warmup_epochs * steps_per_epoch)
            # Trainer.callbacks: set by Lightning's callback connector, not declared on the class
            recorder = next((c for c in self.trainer.callbacks if isinstance(c, RunRecorder)), None)  # type: ignore[attr-defined]
            budgeted = bool(config.max_minutes) and recorder is not None and bool(recorder.max_seconds)
            schedule = CosineWithWarmup(warmup_steps, total_steps, measuring=budgeted)
            if self._horizon_state is not None:  # resumed: the horizon the run had measured
                schedule.load_state_dict(self._horizon_state)
            self.cosine = schedule
            # A plain function, not the schedule object: LambdaLR's state_dict copies a callable
            # object's attributes, which the checkpoint keeps on its own (``cosine_horizon``).
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        return optimizer

    # ----------------------------------------------------------------- data
    def train_dataloader(self) -> DataLoader:
        assert self.config.batch_size is not None  # the config is resolved()
        if self.streams:
            return stream_loader(
                self.task_data.train.tokens,
                self.spec.seq_len,
                self.config.batch_size,
                training=True,
                seed=self.config.seed,
                rank=self.trainer.global_rank,
                world_size=self.trainer.world_size,
            )
        return self.loader(self.task_data.train, shuffle=True, steps=self.config.steps_per_epoch)

    def val_dataloader(self) -> DataLoader:
        if self.streams:  # the whole held-out stream as one stream (every process reads it all)
            window = EVALUATION_WINDOW if self.model.stateful else self.spec.seq_len
            return stream_loader(self.task_data.val.tokens, window, 1, training=False)
        return self.loader(self.task_data.val, shuffle=False)

    def loader(self, dataset: Dataset, *, shuffle: bool, steps: int | None = None) -> DataLoader:
        """This process's share of ``dataset``, in an order fixed by ``(seed, epoch)``; ``steps``: an
        epoch of that many batches (``config.steps_per_epoch``), else one pass."""
        rank, world_size = self.trainer.global_rank, self.trainer.world_size
        assert self.config.batch_size is not None and self.config.bucket is not None  # the config is resolved()
        return shard_loader(
            dataset,
            self.config.batch_size,
            shuffle=shuffle,
            bucket=self.config.bucket,
            seed=self.config.seed,
            rank=rank,
            world_size=world_size,
            steps=steps,
        )


def keep_lstm_in_float32_if_needed(model: torch.nn.Module, precision: str) -> int:
    """Under bf16 autocast, run LSTM layers in float32 when the CPU cannot run them in bf16.

    PyTorch's CPU autocast sends LSTMs to oneDNN in bf16, which fails ("could not create a primitive
    descriptor for the LSTM forward propagation primitive") on CPUs without bf16 instructions (AVX2
    only). The recurrence then runs in float32 with autocast off, as mixed-precision practice keeps
    recurrences anyway; the other layers still autocast. Returns the number of layers so treated.
    """
    if precision != "bf16" or _cpu_runs_bf16_lstm():
        return 0
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.LSTM):
            module.forward = _in_float32(module.forward)  # type: ignore[method-assign]  # this instance's forward only
            count += 1
    return count


def _cpu_runs_bf16_lstm() -> bool:
    global _BF16_LSTM
    if _BF16_LSTM is None:
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                torch.nn.LSTM(4, 4)(torch.zeros(2, 1, 4))
            _BF16_LSTM = True
        except RuntimeError:
            _BF16_LSTM = False
    return _BF16_LSTM


_BF16_LSTM: bool | None = None


def _in_float32(forward: Any) -> Any:
    def to_float32(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.float() if value.is_floating_point() else value
        if isinstance(value, PackedSequence):
            return value._replace(data=to_float32(value.data))
        if isinstance(value, (tuple, list)):
            return type(value)(to_float32(item) for item in value)
        return value

    def forward_in_float32(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", enabled=False):
            return forward(*to_float32(args), **{key: to_float32(value) for key, value in kwargs.items()})

    return forward_in_float32


class CosineWithWarmup:
    """``lr_t / lr = t / warmup`` during warm-up, then ``floor + (1 − floor)·(1 + cos(π·progress))/2``
    with ``progress = min(1, (t − warmup) / (horizon − warmup))``: a pure function of the step ``t``.

    ``horizon`` is ``total_steps`` (the epochs' steps) until ``fix_horizon(allowed)`` sets it, once, to
    the steps a time budget allows when that is fewer; ``measuring`` says the budget has yet to be
    measured. ``state_dict`` holds the horizon for a resumed run."""

    def __init__(self, warmup_steps: int, total_steps: int, floor: float = COSINE_FLOOR, *, measuring: bool = False):
        self.warmup_steps, self.total_steps, self.floor = warmup_steps, total_steps, floor
        self.horizon, self.measuring = total_steps, measuring
        self.measured_at: int | None = None

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.horizon - self.warmup_steps))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def fix_horizon(self, allowed: int, *, measured_at: int) -> None:
        self.horizon = max(measured_at + 1, min(self.total_steps, allowed))
        self.measuring, self.measured_at = False, measured_at

    def state_dict(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "measuring": self.measuring, "measured_at": self.measured_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.horizon, self.measuring, self.measured_at = state["horizon"], state["measuring"], state["measured_at"]


def parameter_groups(
    model: torch.nn.Module, lr: float, recurrent_lr: float | None, weight_decay: float, *, decoupled: bool
) -> list[dict[str, Any]]:
    """Optimiser groups: recurrent matrices at ``recurrent_lr`` (when given), the rest at ``lr``; with
    decoupled weight decay (AdamW), biases and normalisation gains (1-d tensors) are not decayed."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        recurrent = recurrent_lr is not None and "weight_hh" in name.rsplit(".", 1)[-1]
        decayed = weight_decay > 0 and (parameter.dim() > 1 or not decoupled)
        groups.setdefault((recurrent, decayed), []).append(parameter)
    return [
        {
            "params": params,
            "lr": recurrent_lr if recurrent else lr,
            "weight_decay": weight_decay if decayed else 0.0,
            "name": ("recurrent" if recurrent else "other") + ("" if decayed else ", no decay"),
        }
        for (recurrent, decayed), params in sorted(groups.items())
    ]
