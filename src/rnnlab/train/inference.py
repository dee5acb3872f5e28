"""Using a finished run: ``load_run``, ``evaluate_run``, ``predict_run``, ``forecast_run`` and the CSV
rows they write. The run directory's files are described in ``run.py``."""

from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch

from rnnlab.errors import ConfigError, DataError
from rnnlab.io import atomic_write, atomic_write_json, check_output_file
from rnnlab.train.config import TrainConfig
from rnnlab.train.evaluation import EVALUATION_BATCH_SIZE, evaluate_model, finite_or_none
from rnnlab.train.run import load_task_data

if TYPE_CHECKING:
    from rnnlab.models.seq2seq import Seq2SeqModel
    from rnnlab.models.task_model import TaskModel


class LoadedRun(NamedTuple):
    """``load_run``'s answer: the configuration, the model with its best weights, and ``task.json``."""

    config: TrainConfig
    model: TaskModel
    task: dict[str, Any]


# --------------------------------------------------------------------------------------------- load, evaluate
def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """Rebuild a finished run's model with its best weights (read with safetensors: no pickle).

    Every file is checked before anything is allocated: the JSON files parse and agree with each
    other, and the model ``task.json`` describes is first built without storage (PyTorch's ``meta``
    device) so that its tensor names and shapes can be held against ``model.safetensors``' header. A
    corrupt or edited file is a ``ConfigError`` naming it, never a traceback or a huge allocation.
    """
    from rnnlab.models import build_model

    run_dir = Path(run_dir)
    for name in ("config.json", "task.json", "model.safetensors"):
        if not (run_dir / name).is_file():
            raise ConfigError(
                f"{run_dir} is not a finished run: {name} is missing (expected config.json, task.json "
                "and model.safetensors, as rnnlab train writes them)"
            )
    config = TrainConfig.load(run_dir / "config.json")
    task = _read_task(run_dir / "task.json", config)
    weights_path = run_dir / "model.safetensors"
    stored = tensor_shapes(weights_path)

    def build() -> TaskModel:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return build_model(task["model"], task["spec"], **task["model_options"])
        except (ConfigError, TypeError, ValueError) as error:
            raise ConfigError(f"{run_dir / 'task.json'}: its model cannot be built: {error}") from None

    with torch.device("meta"):  # names and shapes only: nothing is allocated
        expected = {name: tuple(tensor.shape) for name, tensor in build().state_dict().items()}
    if expected != stored:
        raise ConfigError(
            f"{weights_path} does not hold the model task.json describes: {_differences(expected, stored)}"
        )
    model = build()
    model.load_state_dict(load_weights(weights_path))
    model.eval()
    return LoadedRun(config, model, task)


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes in a safetensors file's header (its data is not read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(
            f"{path} is not a readable safetensors file ({error}); was it truncated or replaced?"
        ) from None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or a ``ConfigError`` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(
            f"{path} is not a readable safetensors file ({error}); was it truncated or replaced?"
        ) from None


def _differences(expected: dict[str, tuple[int, ...]], stored: dict[str, tuple[int, ...]]) -> str:
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    shapes = sorted(name for name in set(expected) & set(stored) if expected[name] != stored[name])
    parts = [
        f"missing {', '.join(missing[:3])}" if missing else "",
        f"unexpected {', '.join(extra[:3])}" if extra else "",
    ]
    parts += [f"{name} is {list(stored[name])} in the file, {list(expected[name])} in task.json" for name in shapes[:3]]
    return "; ".join(part for part in parts if part) + " (were task.json or the weights edited?)"


def _read_task(path: Path, config: TrainConfig) -> dict[str, Any]:
    """``task.json``, checked: valid JSON with the keys a run writes, naming the same task and model as
    ``config.json`` (one file decides the model; an edit to one of them alone is refused)."""
    try:
        task = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from None
    missing = [
        key for key in ("model", "spec", "model_options", "meta") if not isinstance(task, dict) or key not in task
    ]
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)} (expected the task.json rnnlab train writes)")
    spec_task = task["spec"].get("task") if isinstance(task["spec"], dict) else None
    for name, saved, described in (("model", config.model, task["model"]), ("task", config.task, spec_task)):
        if saved != described:
            raise ConfigError(
                f"config.json and task.json of {path.parent} disagree: {name} {saved!r} in config.json, {described!r} "
                "in task.json (task.json decides the model; was one of them edited?)"
            )
    return task


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
        **{name: finite_or_none(value) for name, value in metrics.items()},
        **{name: finite_or_none(value) for name, value in baselines.items()},
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

    if out is not None:
        check_output_file(out)
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

    if out is not None:
        check_output_file(out)
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
