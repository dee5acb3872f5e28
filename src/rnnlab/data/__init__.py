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
from dataclasses import asdict, dataclass, field
from typing import Any

from torch.utils.data import Dataset

from rnnlab.data.batching import (
    IGNORE_INDEX,
    Batch,
    BucketBatchSampler,
    SeededShuffleSampler,
    SequenceDataset,
    collate,
    make_loader,
)
from rnnlab.errors import ConfigError, unknown_name

__all__ = [
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

HEADS = ("classify", "tag", "lm", "forecast", "regress", "multilabel", "seq2seq")


@dataclass
class TaskSpec:
    """What a model must take and give for a task (plain values, JSON-able)."""

    task: str  # "recall", "adding", "copy", "forecast", "classify", "tag", "charlm", "music"
    head: str  # "classify" | "tag" | "lm" | "forecast" | "regress" | "multilabel"
    input_size: int  # features per step (0 when the input is token ids)
    vocab_size: int | None  # token inputs: size of the embedding table
    num_classes: int | None  # classify / tag / lm: size of the output layer; multilabel: outputs per step
    output_shape: list[int]  # forecast: [horizon, n_targets]; regress: [1]; else []
    seq_len: int | None  # fixed length when the task has one (synthetic tasks, windows)
    causal: bool  # the model may not look ahead (read left to right only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TaskSpec:
        return cls(**values)


@dataclass
class TaskData:
    """A task's splits, its baselines on the test split and what is needed to preprocess new data."""

    spec: TaskSpec
    train: Dataset
    val: Dataset
    test: Dataset
    baselines: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """One data option of a task: its default (``None``: decided from the data) and what it does."""

    default: Any
    help: str
    kind: type = str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskInfo:
    """A task as ``rnnlab tasks`` prints it."""

    description: str
    head: str
    formats: str  # the data it accepts
    builtins: dict[str, str]  # built-in data set name -> what it is
    default_data: str | None  # built-in used when no data is given
    seq_len: str  # what --seq-len means for the task
    options: dict[str, Option]
    loader: str  # "module:function" inside rnnlab.data


def _sizes(n_train: int, n_val: int, n_test: int, what: str = "samples") -> dict[str, Option]:
    return {
        "n_train": Option(n_train, f"training {what}", int),
        "n_val": Option(n_val, f"validation {what}", int),
        "n_test": Option(n_test, f"test {what}", int),
    }


def _fractions(val: float, test: float, what: str) -> dict[str, Option]:
    return {
        "val_fraction": Option(val, f"share of {what} held out for validation", float),
        "test_fraction": Option(test, f"share of {what} held out for testing (when no --test-data)", float),
    }


TASKS: dict[str, TaskInfo] = {
    "recall": TaskInfo(
        description="recall the symbol seen at t=0 after T-1 distractor steps "
        '("I grew up in France … I speak fluent ___")',
        head="classify",
        formats="generated (no data file)",
        builtins={},
        default_data=None,
        seq_len="sequence length T (default 100)",
        options={
            "num_classes": Option(8, "symbols to remember (K); chance accuracy is 1/K", int),
            "num_distractors": Option(8, "size of the separate distractor alphabet", int),
            **_sizes(10000, 1000, 1000),
        },
        loader="synthetic:load_recall",
    ),
    "adding": TaskInfo(
        description="adding problem (Hochreiter 1997, Le et al. 2015): sum the two marked values of T uniform numbers",
        head="regress",
        formats="generated (no data file)",
        builtins={},
        default_data=None,
        seq_len="sequence length T (default 200)",
        options=_sizes(10000, 1000, 1000),
        loader="synthetic:load_adding",
    ),
    "copy": TaskInfo(
        description="copy memory (Arjovsky 2016, Bai 2018): reproduce 10 symbols after T blank steps; length T+20",
        head="tag",
        formats="generated (no data file)",
        builtins={},
        default_data=None,
        seq_len="blank span T of Bai et al. (default 100; sequences are T + 2·memory_length long)",
        options={
            "memory_length": Option(10, "symbols to copy (M)", int),
            **_sizes(10000, 1000, 1000),
        },
        loader="synthetic:load_copy",
    ),
    "forecast": TaskInfo(
        description="multi-horizon forecasting of one or more series from a CSV (time column, targets, covariates)",
        head="forecast",
        formats="CSV: a time column, numeric target and covariate columns, one row per time step",
        builtins={
            "traffic": "hourly road traffic flow, 1 year, generated: daily and weekly cycles, trend, noise, incidents",
            "sunspots": "yearly sunspot numbers 1700-2008 (statsmodels)",
            "co2": "weekly Mauna Loa CO2 1958-2001 (statsmodels; its gaps filled by interpolation)",
        },
        default_data="traffic",
        seq_len="same as --lookback",
        options={
            "time": Option(None, "time column (default: one named time/date/datetime/timestamp/ds; else row order)"),
            "target": Option(
                None,
                "target column(s), comma-separated (default: every column but time and covariates, as Darts does)",
                aliases=("target_column",),
            ),
            "covariates": Option(None, "past-covariate column(s), comma-separated: inputs, not forecast"),
            "lookback": Option(
                None,
                "input window in steps (default: two horizons or two seasons, at most half "
                "the training part; traffic 72, sunspots 30, co2 104)",
                int,
            ),
            "horizon": Option(None, "steps forecast at once (default 24; traffic 24, sunspots 10, co2 26)", int),
            "season": Option(
                None,
                "season in steps for seasonal naive and MASE (default from the step: hourly 24, daily 7, "
                "weekly 52, monthly 12, quarterly 4; else the autocorrelation's peak, if clear; sunspots 11)",
                int,
            ),
            "fill": Option("none", "missing values: none (error) | ffill | interpolate | zero"),
            "log": Option(
                False,
                "model log(target) (multiplicative series; every value must be positive); "
                "forecasts and metrics stay in the original units",
                bool,
            ),
            **_fractions(0.15, 0.15, "the series (the end of it, by time)"),
        },
        loader="timeseries:load_forecast",
    ),
    "classify": TaskInfo(
        description="sequence classification: one label per sequence (numeric sequences or text)",
        head="classify",
        formats="CSV, auto-detected: wide (label + one value per step, empty trailing cells for shorter "
        "sequences) | long (id, time, feature columns, label) | text (text, label)",
        builtins={"digits": "scikit-learn's 8x8 digits read as 8 steps of 8 features (1797 images, 10 classes)"},
        default_data="digits",
        seq_len="not used (lengths come from the data)",
        options={
            "format": Option("auto", "auto | wide | long | text"),
            "label": Option("label", "label column"),
            "id": Option("id", "sequence id column (long format)"),
            "time": Option("time", "time/order column within a sequence (long format)"),
            "text": Option("text", "text column (text format)"),
            "features": Option(None, "feature columns, comma-separated (long format; default: all others)"),
            "min_freq": Option(2, "text: words seen fewer times in training become <unk>", int),
            "lowercase": Option(True, "text: lower-case before splitting into words", bool),
            "normalise": Option(
                "auto",
                "numbers: channel (each feature standardised on the training part) | "
                "series (each series z-normalised by its own mean and std, the UCR convention) | "
                "auto (series when the training series' scales span over 1000x, else channel)",
            ),
            **_fractions(0.1, 0.1, "the sequences (stratified by label)"),
        },
        loader="classify:load_classify",
    ),
    "tag": TaskInfo(
        description="sequence tagging (NER/POS style): one tag per token, context on both sides",
        head="tag",
        formats="CoNLL: token first and tag last on each line, blank line between sentences, -DOCSTART- ignored",
        builtins={
            "entities": "generated: ambiguous names tagged PER/LOC/ORG by a cue word before or after them",
        },
        default_data="entities",
        seq_len="not used (lengths come from the data)",
        options={
            "min_freq": Option(2, "words seen fewer times in training become <unk>", int),
            "lowercase": Option(False, "lower-case tokens before looking them up", bool),
            **_fractions(0.1, 0.1, "the sentences"),
            **_sizes(2000, 300, 300, "sentences (generated data only)"),
        },
        loader="tagging:load_tagging",
    ),
    "charlm": TaskInfo(
        description="character-level language modelling (seed 004): predict the next character",
        head="lm",
        formats="any UTF-8 text file (Chinese included)",
        builtins={"pydoc": "the Python standard library's pydoc topics (pydoc_data.topics, about 465k characters)"},
        default_data="pydoc",
        seq_len="characters per training window (default 100)",
        options={
            "min_freq": Option(2, "characters seen fewer times in training become <unk>", int),
            **_fractions(0.05, 0.05, "the text (contiguous, at its end)"),
        },
        loader="text:load_charlm",
    ),
    "music": TaskInfo(
        description="polyphonic music: predict the next 88-key piano-roll frame "
        "(frame NLL, Boulanger-Lewandowski 2012)",
        head="multilabel",
        formats=".mat with traindata/validdata/testdata (time x 88 rolls or MIDI note lists) | a folder of "
        "time x 88 .npy rolls (train/ valid/ test/ subfolders, or one folder split by file)",
        builtins={},
        default_data=None,
        seq_len="not used (whole pieces)",
        options=_fractions(0.1, 0.1, "the pieces (a flat folder of .npy rolls only)"),
        loader="music:load_music",
    ),
    "seq2seq": TaskInfo(
        description="sequence to sequence (translation style): read a source string, write its target string",
        head="seq2seq",
        formats="UTF-8 text: source<TAB>target on each line (character vocabularies, <bos>/<eos>/<pad>)",
        builtins={
            "dates": "generated: a date 1900-2099 in 12 surface forms (8-70 characters) -> its ISO form "
            "(876,588 distinct pairs)"
        },
        default_data="dates",
        seq_len="not used (each pair keeps its lengths; see max_source_len)",
        options={
            "max_source_len": Option(200, "longest source (characters) accepted; longer lines are refused", int),
            **_fractions(0.1, 0.1, "the pairs"),
            **_sizes(20000, 1000, 2000, "pairs (generated data only)"),
        },
        loader="seq2seq:load_seq2seq",
    ),
}


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


@dataclass
class PredictInputs:
    """A new file encoded like the training data: samples, where each came from, true targets if present."""

    x: list[Any]
    keys: list[dict[str, Any]]
    targets: list[Any] | None = None


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
