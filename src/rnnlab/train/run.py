"""Training runs and their directories: ``train``, ``load_run``, ``evaluate_run``, ``predict_run``,
``forecast_run``.

A run directory holds

    config.json        the TrainConfig with the task defaults filled in: enough to rebuild the run
    task.json          the task spec, the data's meta (vocabulary, labels, scaler, ...) and baselines,
                       the model name and the options that rebuild it: what predict/forecast need
    model.safetensors  the weights of the best validation epoch (nothing is unpickled on load)
    metrics.csv        one row per epoch: epoch, train_loss, val_loss, val_<metric>..., lr, seconds
    summary.json       test_metrics (with the baselines beside them), num_parameters, train_seconds,
                       epochs, best_epoch, epochs_to_target, seconds_to_target, seconds_per_step, ...
    checkpoint/        while training: the last complete epoch (removed when the run finishes)

Everything that can be wrong with the input (the configuration, the data, the model options) is
checked before the directory is created, so bad input never leaves a partial run behind. A run that
fails while training keeps its last complete epoch in ``checkpoint/`` and can be resumed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import torch

from rnnlab.errors import ConfigError, DataError, TrainingError
from rnnlab.io import atomic_save_safetensors, atomic_write, atomic_write_json
from rnnlab.train.checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE, RECORD_FILE
from rnnlab.train.config import TrainConfig
from rnnlab.train.loaders import shard_loader
from rnnlab.train.metrics import metrics_for, primary_metric
from rnnlab.train.stateful import reads_stream

if TYPE_CHECKING:
    from rnnlab.models.seq2seq import Seq2SeqModel
    from rnnlab.models.task_model import TaskModel

# Lightning is imported only when training (callbacks.py, module.py): loading, evaluating and
# predicting with a run start quicker without it.

#: Fields a resumed run may change: how long it goes on, and on how many processes.
RESUMABLE_CHANGES = ("epochs", "max_minutes", "devices")
#: With refit on, the selection run may use this share of ``max_minutes``; the refit the rest.
SELECTION_SHARE = 0.5
EVALUATION_BATCH_SIZE = 256


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


class LoadedRun(NamedTuple):
    """``load_run``'s answer: the configuration, the model with its best weights, and ``task.json``."""

    config: TrainConfig
    model: TaskModel
    task: dict[str, Any]


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
    else:
        config = TrainConfig.from_dict(config) if isinstance(config, dict) else config
        config = replace(config, **changes)

    if resume:
        config, out = _resume_config(config)
    else:
        config.validate()
        out = Path(config.out) if config.out else _default_out(config)
        config = replace(config, out=str(out))
        _check_fresh_out(out)

    # Everything that can fail on bad input happens before the run directory exists.
    import lightning as L

    L.seed_everything(config.seed, workers=False, verbose=False)
    if task_data is None:
        task_data = load_task_data(config)
    if not resume:  # the defaults that follow from the data: its size
        config = config.resolved(**data_sizes(task_data))
    model = _build_model(config, task_data)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not resume:
            config.save(out / "config.json")
            atomic_write_json(out / "task.json", task_description(config, task_data, model))
        with _quiet_lightning():
            return _fit_and_test(config, out, model, task_data, resume=resume, progress=progress, callbacks=callbacks)
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
    }


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
        "baselines": {name: _finite_or_none(value) for name, value in task_data.baselines.items()},
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
        target=config.target,
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
        if unwrapped is error:
            raise
        raise unwrapped from None

    from safetensors.torch import load_file

    record = json.loads((checkpoint / RECORD_FILE).read_text(encoding="utf-8"))
    model.load_state_dict(load_file(out / "model.safetensors"))
    if config.refit:
        refitted, record["refit"] = refit(config, task_data, record, budget)
        if refitted is not None:
            model = refitted
            atomic_save_safetensors(out / "model.safetensors", model.state_dict())
    test_metrics = evaluate_model(model, task_data.test, task_data.spec, task_data.meta)
    summary = _summary(config, task_data, model, record, test_metrics)
    atomic_write_json(out / "summary.json", summary)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return RunResult(out, summary, model, task_data, config)


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
    baselines = {name: _finite_or_none(value) for name, value in task_data.baselines.items()}
    return {
        "task": config.task,
        "model": config.model,
        "primary_metric": metric,
        "primary_mode": mode,
        "test_metrics": {**{name: _finite_or_none(value) for name, value in test_metrics.items()}, **baselines},
        "baselines": baselines,
        "baseline_notes": task_data.meta.get("baseline_notes", {}),
        "val_metrics": {
            name.removeprefix("val_"): _finite_or_none(value)
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
        "target": config.target,
        "seconds_per_step": record["seconds_per_step"],
        "steps": record["steps"],
        "stop_reason": record["stop_reason"],
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
def _resume_config(given: TrainConfig) -> tuple[TrainConfig, Path]:
    if not given.out:
        raise ConfigError("resume needs the run directory: --out DIR")
    out = Path(given.out)
    if not (out / "config.json").is_file():
        raise ConfigError(
            f"nothing to resume in {out}: no config.json (expected the directory of a run started with rnnlab train)"
        )
    if (out / "summary.json").is_file():
        raise ConfigError(f"the run in {out} has finished (summary.json exists); there is nothing to resume")
    saved = TrainConfig.load(out / "config.json")
    defaults = TrainConfig()
    changes = {}
    for field in fields(TrainConfig):
        name = field.name
        value, before = getattr(given, name), getattr(saved, name)
        if name == "out" or value == before or value == getattr(defaults, name):
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


def _checkpoint_epoch_count(out: Path) -> int | None:
    path = out / CHECKPOINT_DIR / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))["state"]
    return int(state["epoch"]) + 1


def _checkpoint_epochs(out: Path) -> str:
    count = _checkpoint_epoch_count(out)
    return f"after epoch {count}" if count is not None else "none"


def _check_fresh_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "holds a run" if (out / "config.json").exists() else "is not an empty directory"
        raise ConfigError(f"{out} {what}; continue it with --resume, or choose another --out")


def _default_out(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.task}-{config.model.replace('+', '-')}-{stamp}"


# --------------------------------------------------------------------------------------------- load, evaluate
def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """Rebuild a finished run's model with its best weights (read with safetensors: no pickle)."""
    from safetensors.torch import load_file

    from rnnlab.models import build_model

    run_dir = Path(run_dir)
    for name in ("config.json", "task.json", "model.safetensors"):
        if not (run_dir / name).is_file():
            raise ConfigError(
                f"{run_dir} is not a finished run: {name} is missing (expected config.json, task.json "
                "and model.safetensors, as rnnlab train writes them)"
            )
    config = TrainConfig.load(run_dir / "config.json")
    task = json.loads((run_dir / "task.json").read_text(encoding="utf-8"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = build_model(task["model"], task["spec"], **task["model_options"])
    model.load_state_dict(load_file(run_dir / "model.safetensors"))
    model.eval()
    return LoadedRun(config, model, task)


def evaluate_model(
    model: torch.nn.Module, dataset: Any, spec: Any, meta: dict[str, Any], *, batch_size: int = EVALUATION_BATCH_SIZE
) -> dict[str, float]:
    """The task's metrics of ``model`` on ``dataset`` (in float32, without dropout); a text stream
    (charlm) is read whole with the recurrent state carried (``stateful.evaluate_stream``)."""
    from rnnlab.train.stateful import evaluate_stream, reads_stream

    if reads_stream(dataset):
        return evaluate_stream(model, dataset.tokens, spec, meta)
    metrics = metrics_for(spec, meta)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in shard_loader(dataset, batch_size, shuffle=False, bucket=False, seed=0):
            lengths = None if bool((batch.lengths == batch.x.size(1)).all()) else batch.lengths
            metrics.update(model(batch.x, lengths), batch.y)
    model.train(was_training)
    return metrics.compute()


def evaluate_run(run_dir: str | os.PathLike, data: str | os.PathLike | None = None) -> dict[str, float | None]:
    """Test metrics of a finished run, with baselines beside them; also written to ``evaluation.json``.

    ``data=None``: the run's own test split (rebuilt from ``config.json``). ``data=PATH``: a new
    labelled file of the run's kind (classify CSV, CoNLL file, forecast CSV, text), preprocessed with
    the run's vocabulary, labels and scaler.
    """
    run_dir = Path(run_dir)
    config, model, task = load_run(run_dir)
    spec, meta = task["spec"], task["meta"]
    baselines: dict[str, Any] = {}
    if data is None:
        task_data = load_task_data(config)
        _check_same_preprocessing(task, task_data)
        dataset, baselines, source = task_data.test, task_data.baselines, "test split"
    elif spec["task"] in ("classify", "tag"):
        dataset, source = _labelled_inputs(meta, spec, Path(data)), str(data)
    elif spec["task"] in ("recall", "adding", "copy"):
        raise ConfigError(f"task {spec['task']!r} is generated and reads no data file; evaluate without --data")
    elif spec["task"] == "charlm":  # a new text, read with the run's vocabulary (unseen characters: <unk>)
        from rnnlab.data.text import TextWindows, encode_text, read_text

        tokens = encode_text(meta["vocab"], read_text(str(data)))
        if len(tokens) < 2:
            raise DataError(f"{data}: has {len(tokens)} character(s); at least 2 are needed to score one prediction")
        dataset, source = TextWindows(tokens, int(spec["seq_len"] or 100), complete_only=False), str(data)
    else:
        task_data = load_task_data(replace(config, test_data=str(data)))
        _check_same_preprocessing(task, task_data)
        dataset, baselines, source = task_data.test, task_data.baselines, str(data)
    metrics = evaluate_model(model, dataset, spec, meta)
    result = {
        **{name: _finite_or_none(value) for name, value in metrics.items()},
        **{name: _finite_or_none(value) for name, value in baselines.items()},
    }
    evaluations_path = run_dir / "evaluation.json"
    evaluations = json.loads(evaluations_path.read_text(encoding="utf-8")) if evaluations_path.is_file() else {}
    evaluations[source] = result
    atomic_write_json(evaluations_path, evaluations)
    return result


def _check_same_preprocessing(task: dict[str, Any], task_data: Any) -> None:
    spec = task_data.spec.to_dict() if hasattr(task_data.spec, "to_dict") else dict(vars(task_data.spec))
    if spec != task["spec"]:
        changed = sorted(key for key in spec if spec[key] != task["spec"].get(key))
        raise DataError(
            f"the data now gives a different task than at training ({', '.join(changed)} changed: "
            f"{ {k: task['spec'].get(k) for k in changed} } then, { {k: spec[k] for k in changed} } now); "
            "was the data file changed?"
        )
    for key in ("vocab", "label_names", "tags", "scaler", "source_vocab", "target_vocab"):
        if key in task["meta"] and task_data.meta.get(key) != task["meta"][key]:
            raise DataError(
                f"the data's {key} differs from the one the run was trained with; was the training data changed since?"
            )


def _labelled_inputs(meta: dict[str, Any], spec: dict[str, Any], path: Path) -> Any:
    from rnnlab.data import SequenceDataset, predict_inputs

    inputs = predict_inputs(meta, path)
    if inputs.targets is None:
        what = "a label column" if spec["task"] == "classify" else "a tag on every line"
        raise DataError(f"{path}: has no {what} to evaluate against; `rnnlab predict` reads unlabelled files")
    names = meta["label_names"] if spec["task"] == "classify" else meta["tags"]
    index = {name: i for i, name in enumerate(names)}
    ys = []
    for key, target in zip(inputs.keys, inputs.targets):
        labels = [target] if spec["task"] == "classify" else list(target)
        unseen = [label for label in labels if label not in index]
        if unseen:
            where = ", ".join(f"{k} {v}" for k, v in key.items() if k != "tokens")
            raise DataError(
                f"{path}: {where}: label {unseen[0]!r} was not seen in training (known: {', '.join(names)})"
            )
        ys.append(
            torch.tensor(index[target]) if spec["task"] == "classify" else torch.tensor([index[t] for t in target])
        )
    return SequenceDataset(inputs.x, ys)


# --------------------------------------------------------------------------------------------- predict
def predict_run(
    run_dir: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    batch_size: int = EVALUATION_BATCH_SIZE,
) -> list[dict[str, Any]]:
    """Labels (classify), tags (tag) or decoded targets (seq2seq) for a new file; rows written to
    ``out`` as CSV when given (seq2seq rows: see ``_predict_seq2seq``).

    classify rows: where the sequence came from (``line`` or ``id``), ``predicted``, ``probability``
    (of the predicted label), ``true`` when the file has labels. tag rows: one per token: ``line``
    (of the sentence), ``position``, ``token``, ``predicted``, ``probability``, ``true``.
    """
    from rnnlab.data import collate, predict_inputs

    _config, model, task = load_run(run_dir)
    spec, meta = task["spec"], task["meta"]
    if spec["head"] == "seq2seq":
        seq2seq = cast("Seq2SeqModel", model)  # only Seq2SeqModel has the seq2seq head
        return _predict_seq2seq(seq2seq, meta, Path(data), out, batch_size=batch_size)
    if spec["task"] not in ("classify", "tag"):
        hint = "; use `rnnlab forecast`" if spec["task"] == "forecast" else ""
        raise ConfigError(f"predict works on classify and tag runs; this run's task is {spec['task']!r}{hint}")
    inputs = predict_inputs(meta, Path(data))
    names = meta["label_names"] if spec["task"] == "classify" else meta["tags"]
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        for start in range(0, len(inputs.x), batch_size):
            chunk = inputs.x[start : start + batch_size]
            batch = collate([(x, torch.zeros(())) for x in chunk])
            probabilities = torch.softmax(model(batch.x, batch.lengths).float(), dim=-1)
            confidence, predicted = probabilities.max(-1)
            for offset in range(len(chunk)):
                i = start + offset
                key = {k: v for k, v in inputs.keys[i].items() if k != "tokens"}
                true = inputs.targets[i] if inputs.targets is not None else None
                if spec["task"] == "classify":
                    row = {
                        **key,
                        "predicted": names[int(predicted[offset])],
                        "probability": round(float(confidence[offset]), 6),
                    }
                    if true is not None:
                        row["true"] = true
                    rows.append(row)
                    continue
                tokens = inputs.keys[i].get("tokens") or [""] * int(batch.lengths[offset])
                for position, token in enumerate(tokens):
                    row = {
                        **key,
                        "position": position,
                        "token": token,
                        "predicted": names[int(predicted[offset, position])],
                        "probability": round(float(confidence[offset, position]), 6),
                    }
                    if true is not None:
                        row["true"] = true[position]
                    rows.append(row)
    if out is not None:
        write_rows_csv(out, rows)
    return rows


def _predict_seq2seq(
    model: Seq2SeqModel, meta: dict[str, Any], data: Path, out: str | os.PathLike | None, *, batch_size: int
) -> list[dict[str, Any]]:
    """seq2seq rows: ``line``, ``source``, ``predicted`` (decoded as the model's ``beam_size`` says),
    ``log_probability`` (of the decoded sequence), ``true`` when the file has targets."""
    from rnnlab.data import collate, predict_inputs
    from rnnlab.data.seq2seq import decode_chars

    inputs = predict_inputs(meta, data)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(inputs.x), batch_size):
        chunk = inputs.x[start : start + batch_size]
        batch = collate([(x, torch.zeros(())) for x in chunk])
        decoded, scores = model.decode(batch.x, batch.lengths, return_scores=True)
        for offset, ids in enumerate(decoded):
            i = start + offset
            row = {
                **inputs.keys[i],
                "predicted": decode_chars(meta["target_vocab"], ids),
                "log_probability": round(float(scores[offset]), 6),
            }
            if inputs.targets is not None:
                row["true"] = inputs.targets[i]
            rows.append(row)
    if out is not None:
        write_rows_csv(out, rows)
    return rows


def forecast_run(
    run_dir: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike | None = None, *, count: int = 1
) -> list[dict[str, Any]]:
    """Forecast the ``horizon`` steps after the end of the CSV ``data`` (the last ``count`` windows).

    Rows, in original units: ``origin`` (time of the last observed row), ``time`` (the time forecast),
    ``step`` (1..horizon), ``target`` (column), ``forecast``. Written to ``out`` as CSV when given.
    """
    from rnnlab.data.timeseries import forecast_windows, inverse_scale

    _config, model, task = load_run(run_dir)
    meta = task["meta"]
    if task["spec"]["task"] != "forecast":
        raise ConfigError(
            f"forecast works on forecast runs; this run's task is {task['spec']['task']!r}"
            + ("; use `rnnlab predict`" if task["spec"]["task"] in ("classify", "tag") else "")
        )
    if count < 1:
        raise ConfigError(f"count must be at least 1, got {count}")
    windows = forecast_windows(meta, os.fspath(data), count=count)
    with torch.inference_mode():
        predictions = inverse_scale(meta, model(windows.x))  # [count, horizon, n_targets]
    rows = []
    for w, origin in enumerate(windows.origins):
        for step, when in enumerate(windows.future_times[w]):
            for j, target in enumerate(meta["targets"]):
                rows.append(
                    {
                        "origin": origin,
                        "time": when,
                        "step": step + 1,
                        "target": target,
                        "forecast": round(float(predictions[w, step, j]), 6),
                    }
                )
    if out is not None:
        write_rows_csv(out, rows)
    return rows


def write_rows_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as a CSV (columns: the union of the rows' keys, in first-seen order), atomically."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)


# --------------------------------------------------------------------------------------------- helpers
def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
