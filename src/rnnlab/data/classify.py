"""Sequence classification: one label per sequence, from three CSV layouts or scikit-learn's digits.

* **wide**: one row per sequence, a label column and one value per step in the other columns;
  shorter sequences leave their trailing cells empty. ``x``: ``FloatTensor[T, 1]``.
* **long**: one row per step: a sequence id, a time (or order) column, feature columns and the
  label (the same on every row of a sequence). Multivariate, any lengths. ``x``: ``FloatTensor[T, F]``.
* **text**: a text column and a label; words become ids of a vocabulary built from the training
  part (see ``vocab.py``). ``x``: ``LongTensor[T]``.

The layout is detected (``id`` and ``time`` columns → long; a ``text`` column, or a single
non-numeric column beside the label → text; else wide) and can be forced with ``format``. Numeric
features are scaled by ``normalise``:

* ``channel``: standard-scaled per feature with statistics of the training part,
  ``x' = (x - mean_f) / std_f``;
* ``series``: each series z-normalised per feature by its own statistics over time,
  ``x'_t = (x_t - mean_t x) / std_t x`` (the UCR convention; a constant feature is only centred);
* ``auto`` (the default): ``series`` when the training series' scales span more than
  ``SERIES_SCALE_SPAN`` (the 90th over the 10th percentile of the per-series standard deviations,
  in any feature): one global ``std_f`` then leaves most series as flat lines near zero; else
  ``channel``, which keeps each series' level and amplitude as information.

What was applied is ``meta["scaler"]``. ``y`` is the index of the label in ``meta["label_names"]``
(sorted, numerically when all labels are numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from rnnlab.data.baselines import znormalise_series
from rnnlab.data.batching import SequenceDataset
from rnnlab.data.files import (
    Table,
    missing_mask,
    parse_times,
    read_table,
    require_columns,
    resolve_source,
    split_names,
    to_numbers,
)
from rnnlab.data.splits import split_indices
from rnnlab.data.tasks import PredictInputs, TaskData, TaskSpec
from rnnlab.data.vocab import PAD_INDEX, UNK_INDEX, build_vocab, encode, tokenize_words
from rnnlab.errors import ConfigError, DataError, unknown_name

FORMATS = ("wide", "long", "text")
BUILTINS = ("digits",)
NORMALISATIONS = ("auto", "channel", "series")
#: ``normalise="auto"`` z-normalises each series when the training series' standard deviations span
#: more than this factor (90th over 10th percentile): three orders of magnitude.
SERIES_SCALE_SPAN = 1000.0


@dataclass
class Records:
    """Parsed sequences before encoding: raw inputs, label texts and where each came from."""

    inputs: list[Any]  # float arrays [T, F] or token lists
    labels: list[str | None]
    keys: list[dict[str, Any]]  # {"line": n} or {"id": ..., "lines": [first, last]}

    def where(self, i: int) -> str:
        key = self.keys[i]
        if "line" in key:
            return f"line {key['line']}"
        return f"sequence {key['id']!r} (lines {key['lines'][0]}-{key['lines'][1]})"


def load_classify(
    data,
    test_data,
    *,
    seq_len,
    seed,
    format,
    label,
    id,
    time,
    text,
    features,
    min_freq,
    lowercase,
    normalise,
    val_fraction,
    test_fraction,
):
    if seq_len is not None:
        raise ConfigError("task 'classify' takes no seq_len: each sequence keeps its own length")
    if format != "auto" and format not in FORMATS:
        raise unknown_name("classify format", format, ("auto", *FORMATS))
    if normalise not in NORMALISATIONS:
        raise unknown_name("classify normalise", normalise, NORMALISATIONS)
    builtin, path = resolve_source(data, BUILTINS, "digits", "classify")
    if builtin:
        if test_data is not None:
            raise ConfigError("the built-in digits carry their own test split; test_data applies to CSV files")
        return load_digits(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)

    columns = {"label": label, "id": id, "time": time, "text": text, "features": features}
    table = read_table(path)
    if format == "auto":
        fmt, columns["text"] = detect_format(table, columns)
    else:
        fmt = format
    records = read_records(table, fmt, columns, lowercase=lowercase, require_label=True)
    if test_data is not None:
        test_records = read_records(read_table(test_data), fmt, columns, lowercase=lowercase, require_label=True)
        train_rows, val_rows, _ = split_indices(
            len(records.inputs), val_fraction, 0.0, seed=seed, strata=records.labels, what="sequences", source=path
        )
        parts = {"train": _subset(records, train_rows), "val": _subset(records, val_rows), "test": test_records}
        sources = {"train": path, "val": path, "test": test_data}
    else:
        rows = split_indices(
            len(records.inputs),
            val_fraction,
            test_fraction,
            seed=seed,
            strata=records.labels,
            what="sequences",
            source=path,
        )
        parts = {name: _subset(records, r) for name, r in zip(("train", "val", "test"), rows)}
        sources = dict.fromkeys(("train", "val", "test"), path)

    label_names = sort_labels(set(parts["train"].labels))
    if len(label_names) < 2:
        raise DataError(
            f"{path}: the label column {label!r} holds one class only ({label_names[0]!r} in all "
            f"{len(parts['train'].labels)} training sequences); a classifier needs at least two"
        )
    for name in ("val", "test"):
        _check_known_labels(parts[name], label_names, sources[name])
    label_index = {name: i for i, name in enumerate(label_names)}

    meta: dict[str, Any] = {
        "task": "classify",
        "data": path,
        "seed": seed,
        "format": fmt,
        "label_column": label,
        "label_names": label_names,
    }
    if fmt == "text":
        vocab = build_vocab(parts["train"].inputs, min_freq)
        word_index = {word: i for i, word in enumerate(vocab)}
        xs = {name: [encode(tokens, word_index) for tokens in part.inputs] for name, part in parts.items()}
        meta.update(
            text_column=text,
            vocab=vocab,
            lowercase=lowercase,
            min_freq=min_freq,
            pad_index=PAD_INDEX,
            unk_index=UNK_INDEX,
        )
        spec_inputs = {"input_size": 0, "vocab_size": len(vocab)}
    else:
        feature_names = ["value"] if fmt == "wide" else _feature_columns(table, columns)
        scaler = fit_scaler(parts["train"].inputs, normalise, feature_names)
        xs = {name: [torch.from_numpy(apply_scaler(scaler, x)) for x in part.inputs] for name, part in parts.items()}
        meta.update(scaler=scaler)
        if fmt == "wide":
            meta.update(value_columns=[c for c in table.columns if c != label])
        else:
            meta.update(id_column=id, time_column=time, features=feature_names)
        spec_inputs = {"input_size": len(feature_names), "vocab_size": None}
    ys = {name: [torch.tensor(label_index[lab]) for lab in part.labels] for name, part in parts.items()}
    datasets = {name: SequenceDataset(xs[name], ys[name]) for name in parts}
    meta["sizes"] = {name: len(dataset) for name, dataset in datasets.items()}
    spec = TaskSpec(
        task="classify",
        head="classify",
        num_classes=len(label_names),
        output_shape=[],
        seq_len=None,
        causal=False,
        **spec_inputs,
    )
    baselines = majority_baselines(parts["train"].labels, parts["test"].labels)
    if fmt != "text":
        baselines.update(nearest_neighbour_baselines(parts))
    return TaskData(spec, datasets["train"], datasets["val"], datasets["test"], baselines=baselines, meta=meta)


def fit_scaler(inputs: list[np.ndarray], normalise: str, columns: list[str]) -> dict[str, Any]:
    """The scaling of numeric sequences ``inputs`` (the training part, ``[T_i, F]`` each) that
    ``normalise`` names (module docstring), as ``meta["scaler"]``: ``{"columns", "per_series",
    "scale_span", "mean", "std"}`` (``mean``/``std``: the training part's per feature, used when
    ``per_series`` is false)."""
    stds = np.stack([x.std(axis=0) for x in inputs])  # [N, F]
    low, high = np.quantile(stds, 0.1, axis=0), np.quantile(stds, 0.9, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        span = float(np.max(np.where(high > 0, high / low, 1.0)))  # a zero 10th percentile: inf
    per_series = normalise == "series" or (normalise == "auto" and span > SERIES_SCALE_SPAN)
    stacked = np.concatenate(inputs)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return {
        "columns": columns,
        "normalise": normalise,
        "per_series": bool(per_series),
        "scale_span": span if np.isfinite(span) else None,
        "mean": mean.tolist(),
        "std": std.tolist(),
    }


def apply_scaler(scaler: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """``x[T, F]`` scaled as ``scaler`` (``fit_scaler``) says, as float32."""
    if scaler.get("per_series"):
        return znormalise_series(x).astype(np.float32)
    return ((x - np.asarray(scaler["mean"])) / np.asarray(scaler["std"])).astype(np.float32)


def nearest_neighbour_baselines(parts: dict[str, Records]) -> dict[str, float]:
    """1-NN accuracy on the test part with Euclidean distance and with DTW (``baselines.py``), the
    references of the UCR archive; the neighbours are every labelled series the model may learn
    from (training and validation parts), as given in the file (no scaling changes a 1-NN's answer
    here but per-series normalisation, which is the user's choice)."""
    from rnnlab.data.baselines import nearest_neighbour_accuracy

    references = parts["train"].inputs + parts["val"].inputs
    labels = parts["train"].labels + parts["val"].labels
    test = parts["test"]
    return {
        f"1nn_{distance}_accuracy": nearest_neighbour_accuracy(
            references, labels, test.inputs, test.labels, distance=distance
        )
        for distance in ("euclidean", "dtw")
    }


def detect_format(table: Table, columns: dict[str, str]) -> tuple[str, str]:
    """``(format, text column)``: long when the id and time columns exist; text when the text column
    exists or the only column beside the label holds words (then that is the text column); else wide."""
    if columns["id"] in table.columns and columns["time"] in table.columns:
        return "long", columns["text"]
    if columns["text"] in table.columns:
        return "text", columns["text"]
    others = [c for c in table.columns if c != columns["label"]]
    if len(others) == 1:
        cells = table.frame[others[0]]
        missing = missing_mask(cells)
        numeric = pd.to_numeric(cells.where(~missing, None), errors="coerce").notna().to_numpy() | missing
        if numeric.mean() < 0.5:
            return "text", others[0]
    return "wide", columns["text"]


def read_records(table: Table, fmt: str, columns: dict[str, str], *, lowercase: bool, require_label: bool) -> Records:
    """Parse a table in the given layout; the label column may be absent when ``require_label`` is False."""
    label = columns["label"]
    if require_label:
        require_columns(table, [label], "label")
    labels = _labels(table, label) if label in table.columns else None
    if fmt == "wide":
        return _read_wide(table, label, labels)
    if fmt == "long":
        return _read_long(table, columns, labels)
    require_columns(table, [columns["text"]], "text")
    inputs, keys = [], []
    for line, cell in zip(table.lines, table.frame[columns["text"]]):
        tokens = tokenize_words(cell, lowercase=lowercase)
        if not tokens:
            raise DataError(f"{table.path}: line {line}: the text column {columns['text']!r} is empty")
        inputs.append(tokens)
        keys.append({"line": int(line)})
    return Records(inputs, cast(list[str | None], labels or [None] * len(inputs)), keys)  # all labelled or none


def _labels(table: Table, label: str) -> list[str]:
    cells = table.frame[label]
    missing = missing_mask(cells)
    if missing.any():
        raise DataError(f"{table.path}: line {table.lines[missing.argmax()]}: the label column {label!r} is empty")
    return cells.tolist()


def _read_wide(table: Table, label: str, labels: list[str] | None) -> Records:
    value_columns = [c for c in table.columns if c != label]
    if not value_columns:
        raise DataError(f"{table.path}: no value columns beside the label {label!r}")
    values = to_numbers(table, value_columns)  # NaN where empty; DataError on text
    present = ~np.isnan(values)
    steps = np.arange(values.shape[1])
    lengths = np.where(present.any(axis=1), values.shape[1] - np.argmax(present[:, ::-1], axis=1), 0)
    if (lengths == 0).any():
        raise DataError(f"{table.path}: line {table.lines[np.argmax(lengths == 0)]} has no values")
    gaps = ~present & (steps[None, :] < lengths[:, None])
    if gaps.any():
        row, col = np.argwhere(gaps)[0]
        raise DataError(
            f"{table.path}: line {table.lines[row]} column {value_columns[col]!r}: missing value inside the sequence "
            f"(only trailing cells may be empty, for sequences shorter than {len(value_columns)} steps)"
        )
    inputs = [values[i, : lengths[i], None] for i in range(len(values))]
    keys = [{"line": int(line)} for line in table.lines]
    return Records(inputs, cast(list[str | None], labels or [None] * len(inputs)), keys)  # all labelled or none


def _feature_columns(table: Table, columns: dict[str, str]) -> list[str]:
    if columns["features"] is not None:
        return split_names(columns["features"])
    reserved = {columns["id"], columns["time"], columns["label"]}
    return [c for c in table.columns if c not in reserved]


def _read_long(table: Table, columns: dict[str, str], labels: list[str] | None) -> Records:
    id_column, time_column = columns["id"], columns["time"]
    require_columns(table, [id_column], "id")
    require_columns(table, [time_column], "time")
    features = _feature_columns(table, columns)
    require_columns(table, features, "features")
    if not features:
        raise DataError(f"{table.path}: no feature columns beside {id_column!r}, {time_column!r} and the label")
    values = to_numbers(table, features)
    missing = np.isnan(values)
    if missing.any():
        row, col = np.argwhere(missing)[0]
        raise DataError(
            f"{table.path}: line {table.lines[row]} column {features[col]!r}: missing value "
            f"({int(missing.sum())} missing in all)"
        )
    ids = table.frame[id_column]
    if missing_mask(ids).any():
        line = table.lines[missing_mask(ids).argmax()]
        raise DataError(f"{table.path}: line {line}: the id column {id_column!r} is empty")
    order_key = _order_values(table, time_column)
    inputs, out_labels, keys = [], [], []
    for sequence_id, rows in ids.groupby(ids, sort=False).indices.items():
        rows = rows[np.argsort(order_key[rows], kind="stable")]
        repeated = np.flatnonzero(np.diff(order_key[rows]) == 0)
        if len(repeated):
            first, second = table.lines[rows[repeated[0]]], table.lines[rows[repeated[0] + 1]]
            time_text = table.frame[time_column].iat[rows[repeated[0]]]
            raise DataError(
                f"{table.path}: sequence {sequence_id!r} has time {time_text!r} twice (lines {first} and {second})"
            )
        if labels is not None:
            sequence_labels = {labels[r] for r in rows}
            if len(sequence_labels) > 1:
                lines = ", ".join(f"line {table.lines[r]}: {labels[r]!r}" for r in rows[:6])
                raise DataError(
                    f"{table.path}: sequence {sequence_id!r} has more than one label ({lines}); "
                    f"a sequence has one label"
                )
            out_labels.append(labels[rows[0]])
        inputs.append(values[rows])
        keys.append({"id": sequence_id, "lines": [int(table.lines[rows].min()), int(table.lines[rows].max())]})
    return Records(inputs, out_labels if labels is not None else [None] * len(inputs), keys)


def _order_values(table: Table, column: str) -> np.ndarray:
    """The time column as sortable numbers (dates as their timestamps)."""
    kind, times = parse_times(table, column)
    if kind == "numeric":
        return times
    assert isinstance(times, pd.DatetimeIndex)  # not numbers, so dates
    return times.asi8.astype(np.float64)


def sort_labels(labels: set[str]) -> list[str]:
    """Numerically when every label is a number (2 before 10), else alphabetically."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _check_known_labels(records: Records, label_names: list[str], source: str) -> None:
    known = set(label_names)
    unseen = [i for i, lab in enumerate(records.labels) if lab not in known]
    if unseen:
        names = sort_labels({cast(str, records.labels[i]) for i in unseen})  # read with require_label=True
        more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
        where = ", ".join(records.where(i) for i in unseen[:5]) + more
        raise DataError(
            f"{source}: label(s) {', '.join(map(repr, names))} never occur in the training data "
            f"(at {where}); training labels: {', '.join(label_names)}"
        )


def _subset(records: Records, rows: np.ndarray) -> Records:
    return Records(
        [records.inputs[i] for i in rows], [records.labels[i] for i in rows], [records.keys[i] for i in rows]
    )


def macro_f1(truth, predicted) -> float:
    """Mean over the labels present in ``truth`` or ``predicted`` of ``F1 = 2·tp / (2·tp + fp + fn)``
    (scikit-learn's ``f1_score(average="macro")``, without importing it at load time)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    scores = []
    for label in np.union1d(truth, predicted):
        true_positive = np.sum((truth == label) & (predicted == label))
        false_positive_or_negative = np.sum((truth == label) != (predicted == label))
        scores.append(2 * true_positive / (2 * true_positive + false_positive_or_negative))
    return float(np.mean(scores))


def majority_baselines(train_labels: list[str], test_labels: list[str]) -> dict[str, float]:
    """Accuracy and macro F1 of always predicting the most frequent training label."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    predicted = [values[np.argmax(counts)]] * len(test_labels)
    return {
        "majority_accuracy": float(np.mean(np.asarray(test_labels) == predicted[0])),
        "majority_macro_f1": macro_f1(test_labels, predicted),
    }


def load_digits(*, seed: int, val_fraction: float, test_fraction: float):
    """scikit-learn's 1797 digit images (8x8, values 0-16, shipped with the package) as 8 steps of 8
    features scaled to [0, 1]: each image row is one step, read top to bottom."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.from_numpy((digits.images / 16.0).astype(np.float32))
    targets = digits.target.astype(np.int64)
    rows = split_indices(
        len(targets), val_fraction, test_fraction, seed=seed, strata=targets, what="images", source="builtin:digits"
    )
    datasets = [SequenceDataset(list(images[r]), [torch.tensor(t) for t in targets[r]]) for r in rows]
    spec = TaskSpec(
        task="classify",
        head="classify",
        input_size=8,
        vocab_size=None,
        num_classes=10,
        output_shape=[],
        seq_len=8,
        causal=False,
    )
    label_names = [str(d) for d in range(10)]
    meta = {
        "task": "classify",
        "data": "builtin:digits",
        "seed": seed,
        "format": "digits",
        "label_column": None,
        "label_names": label_names,
        "scaler": None,
        "sizes": {name: len(d) for name, d in zip(("train", "val", "test"), datasets)},
    }
    baselines = majority_baselines([str(t) for t in targets[rows[0]]], [str(t) for t in targets[rows[2]]])
    train, val, test = datasets  # split_indices gives three parts
    return TaskData(spec, train, val, test, baselines=baselines, meta=meta)


def classify_inputs(meta: dict[str, Any], path: str):
    """A new CSV encoded like a trained run's data (labels optional): for ``rnnlab predict``."""
    fmt = meta["format"]
    if fmt == "digits":
        raise ConfigError(
            "a run on the built-in digits predicts from a CSV in the wide or long format only "
            "when trained on one; train on a CSV to predict on CSVs"
        )
    label = meta["label_column"]
    columns = {
        "label": label,
        "id": meta.get("id_column"),
        "time": meta.get("time_column"),
        "text": meta.get("text_column"),
        "features": ",".join(meta.get("features", [])) or None,
    }
    table = read_table(path)
    records = read_records(table, fmt, columns, lowercase=meta.get("lowercase", True), require_label=False)
    if fmt == "text":
        word_index = {word: i for i, word in enumerate(meta["vocab"])}
        xs = [encode(tokens, word_index) for tokens in records.inputs]
    else:
        width = len(meta["scaler"]["columns"])
        for i, x in enumerate(records.inputs):
            if x.shape[1] != width:
                raise DataError(
                    f"{path}: {records.where(i)} has {x.shape[1]} features per step, the model was trained on {width}"
                )
        xs = [torch.from_numpy(apply_scaler(meta["scaler"], x)) for x in records.inputs]
    has_labels = label in table.columns
    return PredictInputs(xs, records.keys, list(records.labels) if has_labels else None)
