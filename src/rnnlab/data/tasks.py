"""The task registry and the contracts between data and the stages after it: ``TaskSpec`` (what a
model must take and give), ``TaskData`` (the splits, baselines and meta of a loaded task),
``PredictInputs`` (a new file encoded like the training data) and ``TASKS`` (every task, its data
options with their defaults and help, and the loader that reads it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch.utils.data import Dataset

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


@dataclass
class PredictInputs:
    """A new file encoded like the training data: samples, where each came from, true targets if present."""

    x: list[Any]
    keys: list[dict[str, Any]]
    targets: list[Any] | None = None
