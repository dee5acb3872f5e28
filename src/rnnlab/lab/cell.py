"""One cell of the grid: train a model at one length with one seed, then measure it.

``run_cell(cell, recipe, run_dir)`` runs inside a worker process (local or Ray) and returns the
cell's record for ``results.json`` (see the schema): the training run's test metric and history,
and everything ``measures.py`` measures — the gradient flow at initialisation (taken from the very
model ``train`` builds, by a callback at the start of fitting) and after training, gate statistics,
attention weights, timings and memory.

The target for "epochs to target" is read off the validation history after training, so reaching
it does not stop the run (``TrainConfig.stop_at`` would): the default target is skill 0.9 on the
results' 0–1 scale (accuracy ``chance + 0.9 · (1 − chance)``; an error a tenth of the trivial
baseline's), and for forecasts and language models beating the baseline.
"""

from __future__ import annotations

import csv
import math
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lightning.pytorch.callbacks import Callback

from rnnlab.models import family

if TYPE_CHECKING:
    from rnnlab.models.seq2seq import Seq2SeqModel

#: Test samples used for gradients, gates and attention (the test split's first ones).
MEASURE_SAMPLES = 32
ATTENTION_SAMPLES = 8
#: Skill (0 trivial … 1 perfect) that defines the default target.
TARGET_SKILL = 0.9
#: Tasks whose default target is "beat the baseline" (a skill of 0.9 is out of reach by nature).
BEAT_BASELINE_TASKS = ("forecast", "charlm")
LONG_RANGE_TASKS = ("recall", "copy", "adding")


def train_config(cell: dict[str, Any], recipe: dict[str, Any], run_dir: str) -> Any:
    """The ``TrainConfig`` of a cell: the recipe's settings, the cell's model, length and seed."""
    from rnnlab.train import TrainConfig

    recurrent = family(cell["model"]).recurrent
    init = recipe.get("init", "auto")
    if init == "auto":
        # The long-range study gives every recurrent model its best-practice start: chrono biases
        # for the gated ones (Tallec & Ollivier 2018), orthogonal recurrent weights for all.
        init = "chrono" if recipe["task"] in LONG_RANGE_TASKS else "auto"
    data_options = dict(recipe.get("data_options") or {})
    fields: dict[str, Any] = {}
    if recipe.get("schedule"):
        fields["schedule"] = recipe["schedule"]
    if recipe.get("stop_at_perfect"):
        from rnnlab.data import TASKS
        from rnnlab.train.metrics import primary_metric

        metric, mode = primary_metric(recipe["task"], TASKS[recipe["task"]].head)
        if mode == "max" and metric.endswith("accuracy"):
            fields["stop_at"] = 1.0  # nothing left to learn
    if recipe.get("train_samples"):
        test_samples = min(1000, max(200, recipe["train_samples"] // 4))
        fields.update(n_train=recipe["train_samples"], n_val=test_samples, n_test=test_samples)
    values = dict(
        task=recipe["task"],
        model=cell["model"],
        data=recipe.get("data"),
        seq_len=cell["length"],
        params=recipe["params"],
        num_layers=recipe.get("num_layers"),
        init=init if recurrent else None,
        epochs=recipe["epochs"],
        max_minutes=recipe["max_minutes"],
        batch_size=recipe["batch_size"],
        lr=recipe.get("lr"),
        clip=recipe.get("clip", 1.0),
        patience=recipe.get("patience"),
        seed=cell["seed"],
        out=run_dir,
        data_options=data_options,
        **fields,
    )
    # A suite (suites.py) gives some models settings of their own: the TCN rows of Bai et al. 2018
    # train with that paper's learning rate, kernel size and dropout.
    values.update((recipe.get("model_settings") or {}).get(cell["model"], {}))
    return TrainConfig(**values)


def run_cell(cell: dict[str, Any], recipe: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Train and measure one cell; a failure is returned as a ``failed`` record, not raised."""
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    key = cell["key"]
    try:
        record = _train_and_measure(cell, recipe, run_dir)
        record["status"] = "done"
    except Exception as error:
        record = {
            "key": key,
            "model": cell["model"],
            "length": cell["length"],
            "seed": cell["seed"],
            "status": "failed",
            "error": f"{type(error).__name__}: {error}".splitlines()[0][:500],
            "traceback": traceback.format_exc()[-4000:],
        }
    record["timing"] = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - clock, 3),
    }
    return record


def _train_and_measure(cell: dict[str, Any], recipe: dict[str, Any], run_dir: str) -> dict[str, Any]:
    import shutil

    import torch

    from rnnlab.lab import measures
    from rnnlab.models.seq2seq import TeacherForced
    from rnnlab.train import train
    from rnnlab.train.metrics import loss_function, primary_metric

    measures.reset_peak_rss()
    config = train_config(cell, recipe, run_dir)
    if Path(run_dir).exists():
        # a cell interrupted before it finished: its partial run is not resumable here, start over
        shutil.rmtree(run_dir)
    at_init = InitialGradientFlow()
    result = train(config, callbacks=[at_init])
    model, task_data = result.model, result.task_data
    spec = task_data.spec
    metric, mode = primary_metric(spec.task, spec.head)
    higher = mode == "max"
    loss_fn = loss_function(spec.head)
    test = _batch(task_data.test, MEASURE_SAMPLES)
    train_batch = _batch(task_data.train, config.batch_size)
    one = _batch(task_data.test, 1)

    seq2seq = spec.head == "seq2seq"
    # seq2seq: the training-like measures read the teacher-forced logits; gates, the encoder's;
    # the gradient flow through a decoder is not the seeds' question and is not measured
    trained = TeacherForced(cast("Seq2SeqModel", model), train_batch.y) if seq2seq else model
    trained_flow = None if seq2seq else measures.measure_gradient_flow(model, test.x, test.y, loss_fn, test.lengths)
    gradient_flow = None
    if trained_flow is not None and at_init.flow is not None:
        gradient_flow = {
            "layer": trained_flow["layer"],
            "steps": trained_flow["steps"],
            "samples": trained_flow["samples"],
            "init": at_init.flow["norms"],
            "trained": trained_flow["norms"],
        }
    attention = None
    alignments = by_source_length = None
    if seq2seq:
        from rnnlab.data import collate

        sample = collate([task_data.test[i] for i in measures.alignment_examples(task_data.test)])
        alignments = measures.measure_alignments(
            cast("Seq2SeqModel", model), sample.x, sample.lengths, sample.y, task_data.meta
        )
        by_source_length = measures.exact_match_by_source_length(model, task_data.test, task_data.meta)
    elif cell["model"].endswith("+attn") or cell["model"] == "transformer":
        sample = _batch(task_data.test, ATTENTION_SAMPLES)
        attention = measures.measure_attention(model, sample.x, sample.lengths)
        if attention is not None:
            attention["targets"] = [_plain(value) for value in sample.y]

    seconds = recipe.get("timing_seconds", 1.5)
    with measures.load_watch() as load:  # flags timings taken while other processes held the CPU
        stream_ms, stream_mode = measures.time_stream_step(model, one.x, budget_seconds=seconds)
        train_ms = measures.time_training_step(
            trained, train_batch.x, train_batch.y, loss_fn, train_batch.lengths, budget_seconds=seconds
        )
        sequence_ms = measures.time_inference(model, one.x, one.lengths, budget_seconds=seconds)
    cost = {
        "train_ms_per_step": train_ms,
        "latency_ms_sequence": sequence_ms,
        "latency_ms_step": stream_ms,
        "stream_mode": stream_mode,
        "timing_load": load,
        "loop_ms_per_step": None
        if result.summary.get("seconds_per_step") is None
        else result.summary["seconds_per_step"] * 1000,
        "train_memory_mb": measures.train_memory_bytes(
            trained, train_batch.x, train_batch.y, loss_fn, train_batch.lengths
        )
        / 2**20,
        "peak_rss_mb": measures.peak_rss_mb(),
        "batch_size": int(train_batch.x.size(0)),
        "threads": torch.get_num_threads(),
        "statistic": measures.TIMING_STATISTIC,
    }

    summary = result.summary
    baselines = {name: _finite(value) for name, value in (summary.get("baselines") or {}).items()}
    value = summary["test_metrics"].get(metric)
    if value is None or not math.isfinite(value):
        raise RuntimeError(f"the test {metric} is not a finite number ({value!r}); the model did not train")
    target = default_target(recipe, spec, metric, higher, baselines)
    history = read_history(Path(result.dir) / "metrics.csv", metric)
    epochs_to_target, seconds_to_target = first_reaching(history, target)
    return {
        "key": cell["key"],
        "model": cell["model"],
        "length": cell["length"],
        "seed": cell["seed"],
        "run_dir": str(result.dir),
        "init": result.config.init,
        "hidden_size": summary.get("hidden_size"),
        "receptive_field": getattr(result.model, "receptive_field", None),
        "num_parameters": summary["num_parameters"],
        "metric": {"name": metric, "value": float(value), "higher_is_better": higher},
        "test_metrics": {name: _finite(v) for name, v in summary["test_metrics"].items() if name not in baselines},
        "baselines": baselines,
        "spec": spec.to_dict() if hasattr(spec, "to_dict") else dict(vars(spec)),
        "target": target,
        "epochs": summary["epochs"],
        "best_epoch": summary.get("best_epoch"),
        "stopped": summary.get("stop_reason"),
        "epochs_to_target": epochs_to_target,
        "seconds_to_target": seconds_to_target,
        "train_seconds": summary["train_seconds"],
        "history": history,
        "cost": cost,
        "gradient_flow": gradient_flow,
        "gates": measures.measure_gates(model.encoder if seq2seq else model, test.x, test.lengths),
        "attention": attention,
        **({"alignments": alignments, "by_source_length": by_source_length} if seq2seq else {}),
    }


class InitialGradientFlow(Callback):
    """Measures the gradient flow of the freshly initialised model, before the first optimiser step."""

    def __init__(self) -> None:
        self.flow: dict[str, Any] | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.flow is not None:
            return
        from rnnlab.lab import measures
        from rnnlab.train.metrics import loss_function

        task_data = pl_module.task_data
        if task_data.spec.head == "seq2seq":
            return  # not measured for an encoder–decoder (see _train_and_measure)
        batch = _batch(task_data.test, MEASURE_SAMPLES)
        self.flow = measures.measure_gradient_flow(
            pl_module.model, batch.x, batch.y, loss_function(task_data.spec.head), batch.lengths
        )


def _batch(dataset: Any, count: int) -> Any:
    from rnnlab.data import collate

    count = max(1, min(count, len(dataset)))
    batch = collate([dataset[index] for index in range(count)])
    lengths: Any = batch.lengths  # None below: the measures' "nothing padded" (Batch declares a tensor)
    if lengths is not None and bool((lengths == batch.x.size(1)).all()):
        lengths = None  # nothing is padded: the models' fast path
    return type(batch)(batch.x, batch.y, lengths)


def default_target(
    recipe: dict[str, Any], spec: Any, metric: str, higher: bool, baselines: dict[str, float | None]
) -> dict[str, Any] | None:
    """The validation level that counts as "reached" (see the module docstring); ``None`` if unknown."""
    from rnnlab.lab.results import chance_level, reference_error

    if recipe.get("target_metric") is not None:
        return {"metric": metric, "value": float(recipe["target_metric"]), "higher_is_better": higher}
    task = {"baselines": baselines, "spec": {"num_classes": getattr(spec, "num_classes", None)}}
    if higher:
        if not metric.endswith("accuracy") and metric != "macro_f1":
            return None
        chance = chance_level(task) if metric.endswith("accuracy") else 0.0
        if chance is None:
            return None
        value = chance + TARGET_SKILL * (1 - chance)
    else:
        reference = reference_error(task, metric)
        if reference is None:
            return None
        value = reference if spec.task in BEAT_BASELINE_TASKS else (1 - TARGET_SKILL) * reference
    return {"metric": metric, "value": round(value, 6), "higher_is_better": higher}


def read_history(path: Path, metric: str) -> list[dict[str, Any]]:
    """The run's per-epoch rows from ``metrics.csv``: epoch, cumulative training seconds, validation
    metric, train loss."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append(
                {
                    "epoch": int(row["epoch"]),
                    "seconds": float(row["seconds"]),
                    "val_metric": _number(row.get(f"val_{metric}")),
                    "train_loss": _number(row.get("train_loss")),
                }
            )
    return rows


def first_reaching(history: list[dict[str, Any]], target: dict[str, Any] | None) -> tuple[int | None, float | None]:
    """The first epoch (and training seconds) whose validation metric reaches ``target``."""
    if target is None:
        return None, None
    for row in history:
        value = row["val_metric"]
        if value is None:
            continue
        if (value >= target["value"]) if target["higher_is_better"] else (value <= target["value"]):
            return row["epoch"], row["seconds"]
    return None, None


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
