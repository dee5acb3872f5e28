"""Tasks and their data: every source validated on load, returned as a :class:`TaskData`.

API (the trainer, ``rnnlab predict`` and ``rnnlab forecast`` are written against these):

``load_task(task, data=None, test_data=None, *, seq_len=None, seed=0, **options) -> TaskData``
    ``task``: a key of :data:`TASKS` (``recall``, ``adding``, ``copy``, ``forecast``, ``classify``,
    ``tag``, ``charlm``, ``music``). ``data``: a file/folder path or a built-in data set name
    (``TASKS[task].builtins``; an existing path wins); ``None`` takes ``TASKS[task].default_data``.
    ``test_data``: a separate test file (the test split is then read from it, not cut from
    ``data``). ``options``: the task's options (``TASKS[task].options``, with defaults and help);
    ``None`` values mean "not given", so a caller may pass every data option it knows; ``target``
    is also accepted as ``target_column``. Unknown task or option → ``ConfigError`` naming the
    nearest; bad data → ``DataError`` naming file, line/row, column and value.
``TaskData(spec, train, val, test, baselines, meta)``: datasets yield ``(x, y)`` as ARCHITECTURE.md
    says, and have a ``lengths`` array (for bucketing); ``baselines`` maps a metric name to its value
    on the test split; ``meta`` is JSON-able and holds what ``predict``/``forecast`` need.
``collate(samples) -> Batch(x, y, lengths)``; ``make_loader(dataset, batch_size, *, shuffle,
    bucket=False, seed=0, drop_last=False) -> DataLoader``; ``SeededShuffleSampler(dataset, seed)``
    and ``BucketBatchSampler(sampler, batch_size, drop_last=False, *, lengths=None, seed=None)``
    follow ``set_epoch`` (the order is a pure function of seed and epoch); ``IGNORE_INDEX = -100``.

Prediction on new files:

``predict_inputs(meta, path) -> PredictInputs(x: list[Tensor], keys: list[dict], targets: list | None)``
    ``classify`` (CSV) and ``tag`` (CoNLL, tags optional) runs: the new file encoded with the saved
    vocabulary, scaler and columns; ``keys[i]`` says where sample ``i`` came from (``{"line": 7}``,
    ``{"id": "s3", "lines": [first, last]}``, ``{"line": 12, "tokens": [...]}``); ``targets``: the
    true label/tag names when the file has them. Index → name: ``meta["label_names"]`` / ``meta["tags"]``.
``timeseries.forecast_windows(meta, path, *, count=1, fill=None) -> ForecastWindows(x, origins, future_times)``
    the latest ``count`` windows of a new CSV (``x``: ``FloatTensor[count, lookback, F]`` scaled like
    training; ``origins[i]``: time of window ``i``'s last row; ``future_times[i]``: the ``horizon``
    times it forecasts, computed from the step).
``timeseries.inverse_scale(meta, predictions) -> np.ndarray``: ``[..., n_targets]`` back to original units.
``text.encode_text(vocab, text) -> LongTensor``, ``text.decode_text(vocab, ids) -> str``,
    ``text.unknown_characters(meta, text) -> list[str]`` (for generation prompts).

Baselines (test split) by task: recall ``chance_accuracy``; adding ``trivial_mse``; copy
``memoryless_cross_entropy``; forecast ``naive_mae``, ``seasonal_naive_mae`` (original units);
classify ``majority_accuracy``, ``majority_macro_f1``; tag ``word_majority_accuracy``,
``word_majority_macro_f1``; charlm ``unigram_bpc``, ``bigram_bpc``; music ``marginal_nll``,
``persistence_nll`` (nats per frame).

``meta`` keys by task:

* all: ``task``, ``data`` (a path, ``builtin:NAME`` or ``generated``), ``seed``.
* ``recall``: ``seq_len``, ``num_classes``, ``num_distractors``, ``query_token``, ``distance`` (T-1).
* ``adding``: ``seq_len``. ``copy``: ``T``, ``seq_len`` (= T + 2M), ``memory_length``,
  ``answer_positions`` ([start, stop) of the scored symbols), ``blank``, ``delimiter``, ``alphabet``.
* ``forecast``: ``time_column``, ``time_kind`` (datetime | numeric | index), ``step``, ``targets``,
  ``covariates``, ``columns`` (input order: targets then covariates), ``lookback``, ``horizon``,
  ``season``, ``scaler`` ({``columns``, ``mean``, ``std``}), ``fill``, ``filled`` (column → cells
  filled), ``split`` (rows, first and last time of each part), ``mase_scale`` (per target: the
  in-sample seasonal-naive MAE of the training part; ``mase = mean_j MAE_j / mase_scale[j]``;
  ``None`` when undefined, with a note),
  ``last_time``, ``notes``.
* ``classify``: ``format`` (wide | long | text | digits), ``label_column``, ``label_names``,
  ``sizes``; wide: ``value_columns``, ``scaler``; long: ``id_column``, ``time_column``,
  ``features``, ``scaler``; text: ``text_column``, ``vocab``, ``lowercase``, ``min_freq``,
  ``pad_index`` (0), ``unk_index`` (1).
* ``tag``: ``tags``, ``vocab``, ``lowercase``, ``min_freq``, ``pad_index`` (0), ``unk_index`` (1), ``sizes``.
* ``charlm``: ``vocab`` (characters; index 0 is ``<unk>``), ``unk_index``, ``seq_len``, ``min_freq``,
  ``split_chars``, ``unk_share``, ``test_file``. The whole id stream of each part is
  ``task_data.train.tokens`` (a ``LongTensor``; also ``val``/``test``) for stateful TBPTT.
* ``seq2seq``: ``source_vocab``, ``target_vocab`` (characters after ``<pad>``, ``<unk>``, ``<bos>``,
  ``<eos>`` at 0-3), ``pad_index``, ``unk_index``, ``bos_index``, ``eos_index``, ``max_source_len``,
  ``longest_target`` (with ``<eos>``), ``sizes``, ``source_lengths`` ([min, max] per split),
  ``unseen_target_characters``, ``test_file``. ``x`` ``LongTensor[T_src]``, ``y``
  ``LongTensor[T_tgt + 1]`` (target characters then ``<eos>``). Baseline ``copy_source_exact_match``.
* ``music``: ``layout``, ``n_keys`` (88), ``lowest_note`` (MIDI 21), ``sequences`` and ``frames``
  per split, ``test_file``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from rnnlab.data.batching import (
    IGNORE_INDEX,
    Batch,
    BucketBatchSampler,
    SeededShuffleSampler,
    SequenceDataset,
    collate,
    make_loader,
)
from rnnlab.data.tasks import HEADS, TASKS, Option, PredictInputs, TaskData, TaskInfo, TaskSpec
from rnnlab.errors import ConfigError, unknown_name

__all__ = [
    "HEADS",
    "IGNORE_INDEX",
    "TASKS",
    "Batch",
    "BucketBatchSampler",
    "Option",
    "PredictInputs",
    "SeededShuffleSampler",
    "SequenceDataset",
    "TaskData",
    "TaskInfo",
    "TaskSpec",
    "collate",
    "load_task",
    "make_loader",
    "predict_inputs",
]


def load_task(
    task: str,
    data: str | os.PathLike | None = None,
    test_data: str | os.PathLike | None = None,
    *,
    seq_len: int | None = None,
    seed: int = 0,
    **options: Any,
) -> TaskData:
    """Load ``task`` on ``data`` (a path, a built-in name, or ``None`` for the default built-in).

    >>> task_data = load_task("recall", seq_len=20, n_train=8, n_val=4, n_test=4)
    >>> task_data.spec.head, task_data.spec.vocab_size, len(task_data.train)
    ('classify', 17, 8)
    """
    if task not in TASKS:
        raise unknown_name("task", task, TASKS)
    info = TASKS[task]
    resolved = resolve_options(task, options)
    if seq_len is not None:
        seq_len = _coerce("seq_len", seq_len, int)
    module_name, function_name = info.loader.split(":")
    loader = getattr(importlib.import_module(f"rnnlab.data.{module_name}"), function_name)
    data = os.fspath(data) if data is not None else None
    test_data = os.fspath(test_data) if test_data is not None else None
    return loader(data, test_data, seq_len=seq_len, seed=int(seed), **resolved)


def resolve_options(task: str, options: dict[str, Any]) -> dict[str, Any]:
    """The task's options with defaults filled in and values coerced to their types."""
    declared = TASKS[task].options
    alias_of = {alias: name for name, option in declared.items() for alias in option.aliases}
    given: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue  # "not given": callers may pass every option they know
        name = alias_of.get(key, key)
        if name not in declared:
            raise unknown_name(f"option for task {task!r}", key, list(declared))
        if name in given:
            raise ConfigError(f"option {name!r} of task {task!r} given twice (as {key!r} too)")
        given[name] = _coerce(key, value, declared[name].kind)
    return {name: given.get(name, option.default) for name, option in declared.items()}


def _coerce(name: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise ConfigError(f"option {name!r} expects true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"option {name!r} expects an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {name!r} expects an integer, got {value!r}") from None
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {name!r} expects a number, got {value!r}") from None
    return str(value)


def predict_inputs(meta: dict[str, Any], path: str | os.PathLike) -> PredictInputs:
    """Encode a new ``classify`` CSV or ``tag`` CoNLL file with a trained run's ``meta``."""
    task = meta.get("task")
    if task == "classify":
        from rnnlab.data.classify import classify_inputs

        return classify_inputs(meta, os.fspath(path))
    if task == "tag":
        from rnnlab.data.tagging import tagging_inputs

        return tagging_inputs(meta, os.fspath(path))
    if task == "seq2seq":
        from rnnlab.data.seq2seq import seq2seq_inputs

        return seq2seq_inputs(meta, os.fspath(path))
    if task == "forecast":
        raise ConfigError("forecast runs take new data through rnnlab.data.timeseries.forecast_windows")
    raise ConfigError(f"predict reads new files for classify and tag runs; this run's task is {task!r}")
