"""Training runs and their directories: ``train`` (and ``--resume``); ``inference.py`` uses a finished
run (``load_run``, ``evaluate_run``, ``predict_run``, ``forecast_run``).

A run directory holds

    config.json        the TrainConfig with the task defaults filled in: enough to rebuild the run
    task.json          the task spec, the data's meta (vocabulary, labels, scaler, ...) and baselines,
                       the model name and the options that rebuild it: what predict/forecast need
    model.safetensors  the weights of the best validation epoch (nothing is unpickled on load)
    metrics.csv        one row per epoch: epoch, train_loss, val_loss, val_<metric>..., lr, seconds
    summary.json       test_metrics (with the baselines beside them), num_parameters, train_seconds,
                       epochs, best_epoch, epochs_to_target, seconds_to_target, seconds_per_step, ...
    checkpoint/        while training: the last complete epoch (removed when the run finishes)
    .lock              while a process writes the directory: its PID (``rnnlab/locks.py``)

Everything that can be wrong with the input (the configuration, the data, the model options) is
checked before the directory is created, so bad input never leaves a partial run behind. A run that
fails while training keeps its last complete epoch in ``checkpoint/`` and can be resumed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rnnlab.errors import ConfigError, TrainingError
from rnnlab.io import atomic_save_safetensors, atomic_write_json
from rnnlab.locks import ensure_free, folder_lock
from rnnlab.train.checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE, RECORD_FILE
from rnnlab.train.config import TrainConfig
from rnnlab.train.evaluation import evaluate_model, finite_or_none
from rnnlab.train.metrics import divergence_warnings, primary_metric
from rnnlab.train.stateful import reads_stream

if TYPE_CHECKING:
    from rnnlab.models.task_model import TaskModel

# Lightning is imported only when training (callbacks.py, module.py): loading, evaluating and
# predicting with a run start quicker without it.

#: Fields a resumed run may change: how long it goes on, and on how many processes.
RESUMABLE_CHANGES = ("epochs", "max_minutes", "devices")
#: With refit on, the selection run may use this share of ``max_minutes``; the refit the rest.
SELECTION_SHARE = 0.5


@dataclass
class RunResult:
    """What ``train`` returns: the run directory, its summary, the trained model (best weights)."""

    dir: Path
    summary: dict[str, Any]
    model: TaskModel
    task_data: Any
    config: TrainConfig

    @property
    def test_metrics(self) -> dict[str, float | None]:
        return self.summary["test_metrics"]


# --------------------------------------------------------------------------------------------- train
def train(
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
    task_data: Any = None,
    **changes: Any,
) -> RunResult:
    """Train a model as ``config`` says and write its run directory.

    >>> from rnnlab.train import TrainConfig, train
    >>> result = train(TrainConfig(task="recall", model="lstm", seq_len=50, out="runs/recall"))  # doctest: +SKIP
    >>> result.summary["test_metrics"]["accuracy"]                                             # doctest: +SKIP

    ``config``: a ``TrainConfig`` (or a dict of its fields); ``changes`` override fields of it.
    ``resume``: continue the run in ``config.out`` from its last complete epoch; the run's own
    ``config.json`` is used, and only ``epochs``, ``max_minutes`` and ``devices`` may change.
    ``progress``: show a progress bar (loss, validation metric, sequences per second).
    ``callbacks``: extra Lightning callbacks. ``task_data``: train on this ``TaskData`` instead of
    loading ``config.task`` (the run then cannot be rebuilt from ``config.json`` alone).
    """
    if config is None:
        config = TrainConfig(**changes)
        given = set(changes)
    else:
        config = TrainConfig.from_dict(config) if isinstance(config, dict) else config
        config = replace(config, **changes)
        given = {f.name for f in fields(TrainConfig) if getattr(config, f.name) != getattr(TrainConfig(), f.name)}
        given |= set(changes)

    if resume:
        config, out = _resume_config(config, given)
    else:
        config.validate()
        out = Path(config.out) if config.out else _default_out(config)
        config = replace(config, out=str(out))
        ensure_free(out)
        _check_fresh_out(out)

    # Everything that can fail on bad input happens before the run directory exists.
    import lightning as L

    L.seed_everything(config.seed, workers=False, verbose=False)
    if task_data is None:
        task_data = load_task_data(config)
    if not resume:  # the defaults that follow from the data: its size
        config = config.resolved(**data_sizes(task_data))
    _check_streams(config, task_data)
    model = _build_model(config, task_data)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):  # one writer per run directory: a second train or resume is refused
        # checked again under the lock: another process may have written here since the check above
        if resume:
            _check_resumable(out)
        else:
            _check_fresh_out(out)
        try:
            if not resume:
                config.save(out / "config.json")
                atomic_write_json(out / "task.json", task_description(config, task_data, model))
            with _quiet_lightning():
                return _fit_and_test(
                    config, out, model, task_data, resume=resume, progress=progress, callbacks=callbacks
                )
        except BaseException as error:
            has_checkpoint = (out / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file()
            if not has_checkpoint and created:
                shutil.rmtree(out, ignore_errors=True)
            if isinstance(error, TrainingError):
                kept = (
                    f" The last good checkpoint ({_checkpoint_epochs(out)}) is kept in {out / CHECKPOINT_DIR}; "
                    f"continue it with `rnnlab train --resume --out {out}`."
                    if has_checkpoint
                    else " No epoch had finished, so no run directory was kept."
                )
                raise TrainingError(f"{error}.{kept}") from None
            raise


def load_task_data(config: TrainConfig) -> Any:
    """The ``TaskData`` that ``config`` describes."""
    from rnnlab.data import load_task

    options = config.load_options()
    return load_task(config.task, options.pop("data"), options.pop("test_data"), **options)


def data_sizes(task_data: Any) -> dict[str, int | None]:
    """``TrainConfig.resolved``'s view of finite data (a file or a data set): training and validation
    samples, the median training length and the padding share of one batch of all of it. A generated
    task makes more data for the asking (its sizes are the user's ``n_train``...) and a token stream
    (charlm) has defaults of its own: ``{}``."""
    if reads_stream(task_data.train) or task_data.meta.get("data") == "generated" or task_data.meta.get("generated"):
        return {}
    from rnnlab.data.batching import dataset_lengths

    lengths = dataset_lengths(task_data.train)
    # a per-step head (tag, music) scores every step of a validation sequence: its few sequences
    # hold many scores, so only whole-sequence heads count their validation samples for refit
    per_sequence = task_data.spec.head in ("classify", "forecast", "regress")
    return {
        "train_size": len(task_data.train),
        "val_size": len(task_data.val) if per_sequence else None,
        "median_length": int(np.median(lengths)) if len(lengths) else None,
        "padding": float(1 - np.mean(lengths) / np.max(lengths)) if len(lengths) else None,
        "anchor": task_data.meta.get("anchor"),
        "smoothing": task_data.meta.get("smoothing"),
    }


def _check_streams(config: TrainConfig, task_data: Any) -> None:
    """A text read as ``batch_size`` parallel streams (stateful TBPTT, ``stateful.py``) must hold a
    window of ``seq_len`` characters for each of them; otherwise the loader would train fewer streams
    than asked, in a step or two per epoch, without a word."""
    if not reads_stream(task_data.train):
        return
    assert config.batch_size is not None  # the config is resolved()
    windows, streams = len(task_data.train), config.batch_size * config.devices
    if streams > windows:
        characters = len(task_data.train.tokens)
        raise ConfigError(
            f"the training text ({characters:,} characters) holds {windows} window(s) of seq_len "
            f"{task_data.spec.seq_len}, fewer than the {streams} parallel streams batch_size {config.batch_size}"
            + (f" × devices {config.devices}" if config.devices > 1 else "")
            + " asks for; give a smaller --seq-len or --batch-size, or more text"
        )


def _build_model(config: TrainConfig, task_data: Any) -> TaskModel:
    """The model ``config`` names for ``task_data``; a multilabel head starts at the training label rates
    when the data gives them (``meta["key_rates"]`` of ``music``)."""
    from rnnlab.models import build_model
    from rnnlab.models.heads import StepHead, start_at_label_rates

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a params budget landing >10% away: reported in the summary
        model = build_model(config.model, task_data.spec, **config.model_arguments())
    rates = task_data.meta.get("key_rates")
    head = getattr(model, "head", None)
    if task_data.spec.head == "multilabel" and rates is not None and isinstance(head, StepHead):
        start_at_label_rates(head, rates)
    return model


def task_description(config: TrainConfig, task_data: Any, model: torch.nn.Module) -> dict[str, Any]:
    """``task.json``: what ``load_run``, ``predict`` and ``forecast`` need besides the weights."""
    from rnnlab.models import count_parameters

    spec = task_data.spec.to_dict() if hasattr(task_data.spec, "to_dict") else dict(vars(task_data.spec))
    metric, mode = primary_metric(spec["task"], spec["head"])
    return {
        "task": spec["task"],
        "spec": spec,
        "model": config.model,
        "model_options": dict(getattr(model, "options", {})),
        "num_parameters": count_parameters(model),
        "primary_metric": metric,
        "primary_mode": mode,
        "baselines": {name: finite_or_none(value) for name, value in task_data.baselines.items()},
        "meta": task_data.meta,
    }


def _fit_and_test(
    config: TrainConfig,
    out: Path,
    model: TaskModel,
    task_data: Any,
    *,
    resume: bool,
    progress: bool,
    callbacks: Sequence[Any],
) -> RunResult:
    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.strategies import DDPStrategy

    from rnnlab.train.callbacks import RunRecorder, SafetensorsCheckpointIO
    from rnnlab.train.module import TaskModule

    module = TaskModule(model, config, task_data)
    budget = config.max_minutes * 60 if config.max_minutes else None
    # a refit trains about as long again: the selection run gets its share of the time budget
    recorder = RunRecorder(
        out,
        module.monitor,
        module.mode,
        patience=config.patience,
        target=config.stop_at,
        max_seconds=budget * SELECTION_SHARE if budget and config.refit else budget,
        stop_on_perfect=not (config.refit and config.patience is None),
    )
    all_callbacks = [recorder, *callbacks]
    if progress:
        all_callbacks.append(TQDMProgressBar())
    # Several processes: forked (no re-run of the calling script, works from a notebook or a test),
    # each with its shard of every batch, gradients averaged over gloo.
    strategy: Any = "auto" if config.devices == 1 else DDPStrategy(start_method="fork", process_group_backend="gloo")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=config.devices,
        strategy=strategy,
        precision="bf16-mixed" if config.precision == "bf16" else "32-true",
        max_epochs=config.epochs,
        gradient_clip_val=config.clip or None,
        gradient_clip_algorithm="norm",
        logger=False,
        enable_checkpointing=True,  # the recorder is the checkpoint callback
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # the module shards the data itself (ShardSampler)
        callbacks=all_callbacks,
        plugins=[SafetensorsCheckpointIO()],
        default_root_dir=str(out),
    )
    checkpoint = out / CHECKPOINT_DIR
    ckpt_path = str(checkpoint) if resume and (checkpoint / CHECKPOINT_FILE).is_file() else None
    try:
        trainer.fit(module, ckpt_path=ckpt_path)
    except Exception as error:  # a forked process's error arrives as text: recover ours
        unwrapped = _unwrap_process_error(error)
        if unwrapped is error and not isinstance(error, TrainingError):
            raise
        if not isinstance(unwrapped, TrainingError):
            raise unwrapped from None
        record = _best_finite_epoch(checkpoint, recorder, unwrapped)
        if record is None:  # no epoch to keep: the error, with the checkpoint left to resume
            raise unwrapped from None
        atomic_save_safetensors(out / "model.safetensors", record.pop("best_weights"))
    else:
        record = json.loads((checkpoint / RECORD_FILE).read_text(encoding="utf-8"))

    from safetensors.torch import load_file

    model.load_state_dict(load_file(out / "model.safetensors"))
    if config.refit and "diverged" not in record:
        refitted, record["refit"] = refit(config, task_data, record, budget)
        if refitted is not None:
            model = refitted
            atomic_save_safetensors(out / "model.safetensors", model.state_dict())
    test_metrics = evaluate_model(model, task_data.test, task_data.spec, task_data.meta)
    summary = _summary(config, task_data, model, record, test_metrics)
    atomic_write_json(out / "summary.json", summary)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return RunResult(out, summary, model, task_data, config)


def _best_finite_epoch(checkpoint: Path, recorder: Any, error: TrainingError) -> dict[str, Any] | None:
    """The record of a run that a non-finite loss ended after it had a best epoch: that epoch's
    weights (``best_weights``) and the history up to the last good checkpoint, with ``stop_reason``
    saying what happened (``None``: no epoch finished, nothing to keep)."""
    from rnnlab.train.checkpoint import load_checkpoint

    if not (checkpoint / CHECKPOINT_FILE).is_file():
        return None
    states = load_checkpoint(checkpoint).get("callbacks", {}).values()
    state = next((state for state in states if isinstance(state, dict) and "best_weights" in state), None)
    if state is None or state["best_epoch"] is None or state["best_weights"] is None:
        return None
    seconds = recorder.seconds  # this session's training, the failed epoch included
    recorder.load_state_dict(state)  # the last good epoch's records (in this process, also under DDP)
    record = {**recorder.record(), "train_seconds": round(seconds, 3)}
    reason = str(error).split(";")[0]
    record["stop_reason"] = f"{reason}: the best finite epoch ({state['best_epoch']}) is the model"
    record["diverged"] = str(error)
    record["refit"] = {"done": False, "reason": "training ended on a non-finite loss: no refit"}
    record["best_weights"] = state["best_weights"]
    return record


def refit(
    config: TrainConfig, task_data: Any, record: dict[str, Any], budget: float | None
) -> tuple[TaskModel | None, dict[str, Any]]:
    """Train a fresh model on train + validation for the selection run's epoch count (its best with
    early stopping, else every epoch it trained), at the learning rates that run used epoch by epoch (Darts'
    and NeuralForecast's refit: the held-out
    part chose how long to train, then it trains too). Returns the model (``None`` when there was
    no best epoch or the time budget ran out first: the selection run's best is kept) and what
    ``summary.json["refit"]`` reports."""
    import lightning as L

    from rnnlab.data.batching import join_datasets
    from rnnlab.train.callbacks import ReplayLearningRates, StopAtSeconds
    from rnnlab.train.module import TaskModule

    epochs = record["best_epoch"] if config.patience is not None else len(record["history"])
    if epochs == 0:
        return None, {
            "done": False,
            "reason": "no epoch beat the untrained model (the naive start) on validation: it is kept",
        }
    if not epochs:
        return None, {"done": False, "reason": "no validation epoch finished"}
    L.seed_everything(config.seed, workers=False, verbose=False)
    model = _build_model(config, task_data)
    joined = replace(task_data, train=join_datasets(task_data.train, task_data.val))
    module = TaskModule(model, replace(config, epochs=epochs, schedule="none", patience=None, devices=1), joined)
    remaining = None if budget is None else max(0.0, budget - record["train_seconds"])
    replay = ReplayLearningRates([row["lr"] for row in record["history"][:epochs]])
    clock = StopAtSeconds(remaining)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_val_batches=0,
        gradient_clip_val=config.clip or None,
        gradient_clip_algorithm="norm",
        precision="bf16-mixed" if config.precision == "bf16" else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=[replay, clock],
    )
    trainer.fit(module)
    report = {"epochs": epochs, "steps": clock.steps, "samples": len(joined.train), "seconds": round(clock.seconds, 3)}
    if clock.stopped:
        return None, {
            **report,
            "done": False,
            "reason": f"the time budget ran out after {clock.steps} steps: the selection run's best is kept",
        }
    return model.eval(), {**report, "done": True}


def _summary(
    config: TrainConfig, task_data: Any, model: torch.nn.Module, record: dict[str, Any], test_metrics: dict[str, float]
) -> dict[str, Any]:
    from rnnlab.models import count_parameters

    metric, mode = primary_metric(task_data.spec.task, task_data.spec.head)
    best_row = next((row for row in record["history"] if row["epoch"] == record["best_epoch"]), None)
    baselines = {name: finite_or_none(value) for name, value in task_data.baselines.items()}
    return {
        "task": config.task,
        "model": config.model,
        "primary_metric": metric,
        "primary_mode": mode,
        "test_metrics": {**{name: finite_or_none(value) for name, value in test_metrics.items()}, **baselines},
        "baselines": baselines,
        "baseline_notes": task_data.meta.get("baseline_notes", {}),
        "val_metrics": {
            name.removeprefix("val_"): finite_or_none(value)
            for name, value in (best_row or {}).items()
            if name.startswith("val_")
        },
        "num_parameters": count_parameters(model),
        "hidden_size": getattr(model, "options", {}).get("hidden_size"),
        "train_seconds": record["train_seconds"],
        "epochs": record["epochs"],
        "best_epoch": record["best_epoch"],
        "epochs_to_target": record["epochs_to_target"],
        "seconds_to_target": record["seconds_to_target"],
        "target": config.stop_at,  # the key before #17 named the field: kept for readers of summary.json
        "seconds_per_step": record["seconds_per_step"],
        "steps": record["steps"],
        "stop_reason": record["stop_reason"],
        "time_budget_ended": record.get("time_budget_ended", False),  # the clock, not the steps, ended it
        "schedule": record.get("schedule"),
        # what says the numbers above should not be trusted (a divergence, a metric below the trivial one)
        "warnings": ([record["diverged"]] if "diverged" in record else [])
        + divergence_warnings(record["history"], test_metrics, baselines, mode),
        # how the number of epochs was chosen and what the tested model was trained on
        "validation": "held-out split, then refit on train + validation"
        if record.get("refit", {}).get("done")
        else "held-out split",
        "refit": record.get("refit"),
        "devices": config.devices,
        "threads": torch.get_num_threads(),
        "versions": _versions(),
    }


# --------------------------------------------------------------------------------------------- resume
def _resume_config(config: TrainConfig, given: set[str]) -> tuple[TrainConfig, Path]:
    """The saved configuration of the run in ``config.out``, with the fields of ``given`` (the ones
    the caller set) checked against it: each that differs is refused alike, unless it is one of
    ``RESUMABLE_CHANGES``; a field given with the saved value is no change."""
    if not config.out:
        raise ConfigError("resume needs the run directory: --out DIR")
    out = Path(config.out)
    if not (out / "config.json").is_file():
        raise ConfigError(
            f"nothing to resume in {out}: no config.json (expected the directory of a run started with rnnlab train)"
        )
    ensure_free(out)
    _check_resumable(out)
    saved = TrainConfig.load(out / "config.json")
    changes = {}
    for name in sorted(given - {"out"}):
        value, before = getattr(config, name), getattr(saved, name)
        if value == before:
            continue
        if name in RESUMABLE_CHANGES:
            changes[name] = value
        else:
            raise ConfigError(
                f"a resumed run keeps its configuration; {name} was {before!r}, got {value!r} "
                f"(only {', '.join(RESUMABLE_CHANGES)} may change)"
            )
    config = replace(saved, **changes).validate()
    done = _checkpoint_epoch_count(out)
    assert config.epochs is not None  # the saved config is resolved()
    if done is not None and config.epochs < done:
        raise ConfigError(
            f"the run in {out} has already trained {done} epochs; epochs must be at least that, got {config.epochs}"
        )
    if changes:
        config.save(out / "config.json")
    return config, out


def _check_resumable(out: Path) -> None:
    if (out / "summary.json").is_file():
        raise ConfigError(f"the run in {out} has finished (summary.json exists); there is nothing to resume")


def _checkpoint_epoch_count(out: Path) -> int | None:
    path = out / CHECKPOINT_DIR / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["state"]["epoch"]) + 1
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"checkpoint {path} is unreadable ({error!r}); was it truncated or edited?") from None


def _checkpoint_epochs(out: Path) -> str:
    count = _checkpoint_epoch_count(out)
    return f"after epoch {count}" if count is not None else "none"


def _check_fresh_out(out: Path) -> None:
    # the lock and the temporary files of an atomic write that a kill interrupted are dot files
    if out.exists() and (not out.is_dir() or any(not path.name.startswith(".") for path in out.iterdir())):
        if (out / "summary.json").exists():
            raise ConfigError(f"{out} holds a finished run; choose another --out")
        what = "holds a run" if (out / "config.json").exists() else "is not an empty directory"
        raise ConfigError(f"{out} {what}; continue it with --resume, or choose another --out")


def _default_out(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.task}-{config.model.replace('+', '-')}-{stamp}"


# --------------------------------------------------------------------------------------------- helpers
def _versions() -> dict[str, str]:
    import lightning

    from rnnlab.version import __version__

    return {"rnnlab": __version__, "torch": torch.__version__, "lightning": lightning.__version__}


_PROCESS_ERROR = re.compile(r"rnnlab\.errors\.(TrainingError|DataError|ConfigError): (.*)")


def _unwrap_process_error(error: Exception) -> Exception:
    """A forked training process's rnnlab error, from the text torch.multiprocessing passes back."""
    from rnnlab import errors

    if type(error).__name__ != "ProcessRaisedException":
        return error
    matches = _PROCESS_ERROR.findall(str(error))
    if not matches:
        return error
    kind, message = matches[-1]
    return getattr(errors, kind)(message)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up chatter (accelerator lines, tips) and warnings that do not apply
    (few data loader workers: loading is cheap here, by design)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="lightning")
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
