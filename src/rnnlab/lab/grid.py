"""The experiment grid: models × sequence lengths × seeds on one task, and the budgets that size it.

A comparison is a ``CompareConfig`` (plain values; the ``rnnlab compare`` flags map to its fields
by name). ``resolve`` turns it into an ``Experiment``: the budget's defaults filled in, every name
and number checked, and the list of ``Cell`` s to run. A cell is one training run plus its
measurements; its key (``lstm__T100__s0``) names its result file, so a re-run finds what is done.

Two parts of an experiment are kept apart on purpose:

* the *recipe* (task, data and its fingerprint, parameter budget, epochs, time cap, batch size,
  target, learning settings): what makes one cell's number mean what it means. An output folder
  whose stored recipe differs holds a different experiment, and is refused unless ``force``;
* the *grid* (models, lengths, seeds): which cells to run. Widening it over the same recipe
  re-uses the cells already done.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rnnlab.config_fields import flag
from rnnlab.errors import ConfigError, unknown_name
from rnnlab.train.config import INIT_HELP, INITS, task_list

#: The long-range study: the family and its two challengers, each at the same parameter budget.
DEFAULT_MODELS = ("rnn", "lstm", "gru", "lstm+attn", "tcn", "transformer")
DEFAULT_TASK = "recall"
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Budget:
    """How much work one comparison may take. Every cell is capped by ``max_minutes`` of training.

    ``lengths`` apply to tasks whose sequence length is free (the synthetic ones, and the lookback
    of a forecast); ``train_samples`` sizes the synthetic training set.
    """

    name: str
    lengths: tuple[int, ...]
    seeds: int
    params: int
    epochs: int
    max_minutes: float
    batch_size: int
    train_samples: int
    patience: int
    #: seconds each timing measurement of a cell may take (medians of repeated runs)
    timing_seconds: float
    description: str


# Sized on this project's reference machine (2 cores, no GPU): `quick` is 18 cells in under 10
# minutes with 2 workers; `standard` reaches T=1000 for the six models with two seeds.
BUDGETS: dict[str, Budget] = {
    "quick": Budget(
        name="quick",
        lengths=(10, 50, 100),
        seeds=1,
        params=8_000,
        epochs=20,
        max_minutes=0.5,
        batch_size=64,
        train_samples=2_000,
        patience=4,
        timing_seconds=0.5,
        description="3 lengths up to 100, 1 seed, ~8K parameters, at most 30 s of training per cell",
    ),
    "standard": Budget(
        name="standard",
        lengths=(10, 30, 100, 300, 1000),
        seeds=2,
        params=20_000,
        epochs=60,
        max_minutes=5.0,
        batch_size=64,
        train_samples=4_000,
        patience=6,
        timing_seconds=1.5,
        description="5 lengths from 10 to 1000, 2 seeds, ~20K parameters, at most 5 min of training per cell",
    ),
    "full": Budget(
        name="full",
        lengths=(10, 20, 50, 100, 200, 500, 1000),
        seeds=3,
        params=50_000,
        epochs=100,
        max_minutes=12.0,
        batch_size=64,
        train_samples=8_000,
        patience=10,
        timing_seconds=2.5,
        description="7 lengths from 10 to 1000, 3 seeds, ~50K parameters, at most 12 min per cell",
    ),
}

#: CompareConfig fields passed on as data options (the rest come in ``data_options``).
DATA_OPTION_FIELDS = ("target", "time", "covariates", "horizon", "label", "fill")


@dataclass
class CompareConfig:
    """One comparison, as plain values. ``None`` means "the budget (or the task) decides".

    Each field's ``flag(...)`` is its ``rnnlab compare`` option (``--max-minutes`` → ``max_minutes``);
    ``models``, ``lengths`` and ``seeds`` are read from text by ``parse_models`` / ``parse_lengths`` /
    ``parse_seeds``.
    """

    task: str = field(
        default=DEFAULT_TASK,
        metadata=flag(lambda: f"Task: {task_list()}; recall is the long-range study.", short="-t"),
    )
    data: str | None = field(
        default=None, metadata=flag("Data file, or a built-in data set name (see `rnnlab tasks`).")
    )
    models: list[str] = field(
        default_factory=lambda: list(DEFAULT_MODELS), metadata=flag("Models to compare.", cli=False)
    )
    lengths: list[int] | None = field(default=None, metadata=flag("Sequence lengths.", cli=False))
    seeds: list[int] | None = field(default=None, metadata=flag("Seeds.", cli=False))
    budget: str = field(
        default="standard",
        metadata=flag("quick (≤10 min on 2 cores) | standard (T=10…1000) | full (more seeds and lengths).", short="-b"),
    )
    params: int | None = field(default=None, metadata=flag("Parameter budget every model is sized to."))
    epochs: int | None = field(default=None, metadata=flag("Epochs per cell (at most)."))
    max_minutes: float | None = field(default=None, metadata=flag("Training time cap per cell, minutes."))
    batch_size: int | None = field(default=None, metadata=flag("Sequences per batch."))
    #: the validation metric level that counts as "reached" (epochs and seconds to target); None:
    #: skill 0.9, or beating the baseline for forecasts (see ``cell.default_target``). The recipe
    #: (experiment.json) keeps its key ``target_metric``, so folders written before #17 are re-used.
    stop_at: float | None = field(
        default=None,
        metadata=flag(
            "Validation metric level counted as reached (default: skill 0.9, or the baseline for forecasts).",
            old=("--target-metric",),
        ),
    )
    num_layers: int | None = field(
        default=None, metadata=flag("Stacked layers (default: the task's).", old=("--layers",))
    )
    lr: float | None = field(default=None, metadata=flag("Learning rate (default: the task's)."))
    clip: float = field(default=1.0, metadata=flag("Gradient clipping max-norm (0 disables)."))
    #: recurrent models' initialisation (``rnnlab.train.config.INITS``): "auto" is chrono for the
    #: long-range tasks, else the task's default
    init: str = field(default="auto", metadata=flag(INIT_HELP))
    train_samples: int | None = field(default=None, metadata=flag("Training samples of a generated task."))
    # the data source's options that have a flag; ``data_options`` holds any further one, and
    # ``resolve`` passes them all on to training unchanged
    target: str | None = field(default=None, metadata=flag("forecast: target column(s), comma-separated."))
    time: str | None = field(default=None, metadata=flag("Time column (forecast, long classify CSV)."))
    covariates: str | None = field(default=None, metadata=flag("forecast: covariate columns, comma-separated."))
    horizon: int | None = field(default=None, metadata=flag("forecast: steps forecast at once."))
    label: str | None = field(default=None, metadata=flag("classify: label column."))
    fill: str | None = field(default=None, metadata=flag("Missing values: none (error) | ffill | interpolate | zero."))
    data_options: dict[str, Any] = field(
        default_factory=dict, metadata=flag("Further task options (--option KEY=VALUE).", cli=False)
    )
    out: str | None = field(
        default=None, metadata=flag("Output folder (default runs/compare-TASK-BUDGET).", short="-o")
    )
    force: bool = field(default=False, metadata=flag("Replace an output folder that holds a different experiment."))
    executor: str = field(default="local", metadata=flag("local (worker processes) | ray."))
    address: str | None = field(
        default=None,
        metadata=flag("Ray cluster address (host:port, ray://host:port, auto); default: start a local Ray instance."),
    )
    workers: int | None = field(default=None, metadata=flag("Cells run at once (default: min(cores, 4)).", short="-w"))
    #: a published table to re-run instead of one task (``"bai2018"``: see ``suites.py``)
    suite: str | None = field(
        default=None,
        metadata=flag(
            "Re-run a published table instead of one task: bai2018 "
            "(Bai et al. 2018: adding T=600, copy memory T=1000, music; rnn,lstm,gru,tcn)."
        ),
    )
    #: the suite's polyphonic music data (a .mat or a folder of .npy rolls); None: that row is not run
    music_data: str | None = field(
        default=None,
        metadata=flag(
            "--suite: the music row's data (JSB_Chorales.mat, "
            "or a folder of .npy rolls); without it that row is reported as missing."
        ),
    )
    #: the published row the music data is judged against ("jsb" | "nottingham"); None: the row of a
    #: file the suite knows by its sha256 (``suites.KNOWN_MUSIC_FILES``), else no published row
    suite_row: str | None = field(
        default=None,
        metadata=flag(
            "--suite: the published row the music data is judged against (jsb | nottingham); "
            "default: known files by their sha256, never by name; others have no published row."
        ),
    )

    def all_data_options(self) -> dict[str, Any]:
        """The data source's options: the flagged ones given (``target``, ``horizon``, ...), then ``data_options``."""
        options = {name: getattr(self, name) for name in DATA_OPTION_FIELDS if getattr(self, name) is not None}
        return {**options, **(self.data_options or {})}


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: ``model`` at sequence ``length`` (``None``: the data's own) with ``seed``."""

    model: str
    length: int | None
    seed: int

    @property
    def key(self) -> str:
        length = "native" if self.length is None else str(self.length)
        return f"{slug(self.model)}__T{length}__s{self.seed}"


@dataclass
class Experiment:
    """A resolved comparison: the recipe every cell shares, the grid, and where it is written."""

    recipe: dict[str, Any]
    models: list[str]
    lengths: list[int | None]
    seeds: list[int]
    out: Path
    executor: str
    address: str | None
    workers: int
    force: bool

    @property
    def cells(self) -> list[Cell]:
        """Every cell, shortest lengths first so a partial run already covers the whole family."""
        return [Cell(model, length, seed) for length in self.lengths for seed in self.seeds for model in self.models]

    def describe(self) -> dict[str, Any]:
        """The experiment as stored in ``experiment.json`` and ``results.json``."""
        return {**self.recipe, "models": list(self.models), "lengths": list(self.lengths), "seeds": list(self.seeds)}


def slug(name: str) -> str:
    """A file-name-safe form of a model name (``lstm+attn`` → ``lstm-attn``)."""
    return re.sub(r"[^a-z0-9_.-]", "-", name.lower().replace("+", "-"))


def default_out(task: str, budget: str) -> str:
    """Where a comparison is written when ``--out`` is not given."""
    return os.path.join("runs", f"compare-{slug(task)}-{budget}")


def resolve(
    config: CompareConfig,
    *,
    available_models: tuple[str, ...] | None = None,
    available_tasks: tuple[str, ...] | None = None,
) -> Experiment:
    """Check ``config`` and fill in what its budget decides.

    ``available_models`` / ``available_tasks`` default to what ``rnnlab.models`` and
    ``rnnlab.data`` register; tests may pass their own.
    """
    if config.budget not in BUDGETS:
        raise unknown_name("budget", str(config.budget), BUDGETS)
    budget = BUDGETS[config.budget]
    if available_tasks is None:
        available_tasks = _registered_tasks()
    if config.task not in available_tasks:
        raise unknown_name("task", str(config.task), available_tasks)
    if available_models is None:
        available_models = _registered_models()
    models = list(config.models or [])
    if not models:
        raise ConfigError("models: expected at least one model name; got none")
    for name in models:
        if name not in available_models:
            raise unknown_name("model", str(name), available_models)
    if len(set(models)) != len(models):
        raise ConfigError(f"models: each name once please; got {', '.join(models)}")
    _check_models_fit_task(models, config.task)
    if config.executor not in EXECUTORS:
        raise unknown_name("executor", str(config.executor), EXECUTORS)
    if config.stop_at is not None and not (isinstance(config.stop_at, (int, float)) and math.isfinite(config.stop_at)):
        raise ConfigError(f"stop_at must be a finite number; got {config.stop_at!r}")
    if config.init not in INITS:
        raise unknown_name("init", str(config.init), INITS)
    if config.address is not None and config.executor != "ray":
        raise ConfigError(f"--address {config.address!r} names a Ray cluster; add --executor ray")

    lengths = _resolve_lengths(config, budget)
    seeds = _resolve_seeds(config.seeds, budget)
    params = _positive_int("params", config.params if config.params is not None else budget.params)
    epochs = _positive_int("epochs", config.epochs if config.epochs is not None else budget.epochs)
    batch_size = _positive_int("batch_size", config.batch_size if config.batch_size is not None else budget.batch_size)
    num_layers = None if config.num_layers is None else _positive_int("num_layers", config.num_layers)
    train_samples = _positive_int(
        "train_samples", config.train_samples if config.train_samples is not None else budget.train_samples
    )
    if config.train_samples is not None and not is_generated(config.task):
        raise ConfigError(
            f"train_samples sizes generated data; task {config.task!r} reads its data "
            "(use the data's own split options)"
        )
    max_minutes = config.max_minutes if config.max_minutes is not None else budget.max_minutes
    if not (isinstance(max_minutes, (int, float)) and max_minutes > 0):
        raise ConfigError(f"max_minutes must be a positive number of minutes per cell; got {max_minutes!r}")
    if config.lr is not None and not (isinstance(config.lr, (int, float)) and config.lr > 0):
        raise ConfigError(f"lr must be a positive number; got {config.lr!r}")
    if not (isinstance(config.clip, (int, float)) and config.clip >= 0):
        raise ConfigError(f"clip must be >= 0 (0 disables clipping); got {config.clip!r}")
    workers = config.workers if config.workers is not None else max(1, min(os.cpu_count() or 1, 4))
    workers = _positive_int("workers", workers)

    recipe = {
        "task": config.task,
        "data": config.data,
        "data_sha256": file_fingerprint(config.data),
        "data_options": dict(sorted(config.all_data_options().items())),
        "budget": budget.name,
        "params": params,
        "epochs": epochs,
        "max_minutes": float(max_minutes),
        "batch_size": batch_size,
        "train_samples": train_samples if is_generated(config.task) else None,
        # Learning curves on the generated long-range tasks sit at chance for a while and then drop
        # suddenly: early stopping and plateau halving of the learning rate would end the runs that
        # are about to learn. There the time cap bounds a cell, and a perfect score ends it.
        "patience": None if is_generated(config.task) else budget.patience,
        "schedule": "none" if is_generated(config.task) else None,
        "stop_at_perfect": is_generated(config.task),
        "timing_seconds": budget.timing_seconds,
        # the recipe's key is still "target_metric": folders written before #17 stay the same experiment
        "target_metric": None if config.stop_at is None else float(config.stop_at),
        "num_layers": num_layers,
        "lr": None if config.lr is None else float(config.lr),
        "clip": float(config.clip),
        "init": config.init,
    }
    out = Path(config.out if config.out else default_out(config.task, budget.name))
    return Experiment(
        recipe=recipe,
        models=models,
        lengths=lengths,
        seeds=seeds,
        out=out,
        executor=config.executor,
        address=config.address,
        workers=workers,
        force=bool(config.force),
    )


def parse_lengths(text: str) -> list[int]:
    """``"10,50,100"`` → ``[10, 50, 100]``; anything but positive integers is refused, naming the item."""
    items = [item.strip() for item in str(text).split(",")]
    lengths = []
    for position, item in enumerate(items, start=1):
        if not re.fullmatch(r"\+?\d+", item) or int(item) < 1:
            raise ConfigError(
                f"--lengths: expected positive integers separated by commas (e.g. 10,50,100); "
                f"item {position} is {item!r}"
            )
        lengths.append(int(item))
    return lengths


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → seeds ``[0, 1, 2]``; ``"0,4,7"`` → those seeds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        count = int(text)
        if count < 1:
            raise ConfigError(f"--seeds: expected a number of seeds >= 1 or a list like 0,1,2; got {text!r}")
        return list(range(count))
    seeds = []
    for position, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not re.fullmatch(r"\d+", item):
            raise ConfigError(
                f"--seeds: expected a number of seeds (3) or non-negative integers separated by commas "
                f"(0,1,2); item {position} is {item!r}"
            )
        seeds.append(int(item))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: each seed once please; got {text!r}")
    return seeds


def parse_models(text: str) -> list[str]:
    """``"rnn, lstm"`` → ``["rnn", "lstm"]`` (names are checked by ``resolve``)."""
    return [item.strip() for item in str(text).split(",") if item.strip()]


def file_fingerprint(data: str | None) -> str | None:
    """SHA-256 of a data file, so a changed file under the same name counts as a different experiment."""
    if data is None or not os.path.isfile(data):
        return None
    digest = hashlib.sha256()
    with open(data, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: keys renamed in #17 (old → new), still read from a dict for one release
RENAMED_KEYS = {"target_metric": "stop_at"}


def config_from_dict(values: dict[str, Any]) -> CompareConfig:
    """A ``CompareConfig`` from a plain dict, refusing unknown keys by name (``RENAMED_KEYS`` are read)."""
    values = dict(values)
    for old, new in RENAMED_KEYS.items():
        if old in values and new not in values:
            values[new] = values.pop(old)
    known = {f.name for f in fields(CompareConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise unknown_name("compare option", unknown[0], sorted(known))
    return CompareConfig(**values)


# --------------------------------------------------------------------------- helpers
def _resolve_lengths(config: CompareConfig, budget: Budget) -> list[int | None]:
    if config.lengths is not None:
        lengths = list(config.lengths)
        if not lengths:
            raise ConfigError("lengths: expected at least one positive integer; got none")
        for position, length in enumerate(lengths, start=1):
            if isinstance(length, bool) or not isinstance(length, int) or length < 1:
                raise ConfigError(f"lengths: expected positive integers; item {position} is {length!r}")
        if len(set(lengths)) != len(lengths):
            raise ConfigError(f"lengths: each length once please; got {lengths}")
        if not lengths_apply(config.task):
            raise ConfigError(
                f"lengths: task {config.task!r} takes its sequence lengths from the data "
                f"({_task_info(config.task).seq_len}); leave out --lengths"
            )
        return [*sorted(lengths)]  # a list[int | None] (a list[int] is not one: lists are invariant)
    if is_generated(config.task):
        return list(budget.lengths)
    # Real data has its own length (or a lookback the data source chooses): one column of cells.
    return [None]


def _resolve_seeds(seeds: list[int] | None, budget: Budget) -> list[int]:
    if seeds is None:
        return list(range(budget.seeds))
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("seeds: expected at least one seed; got none")
    for position, seed in enumerate(seeds, start=1):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seeds: expected non-negative integers; item {position} is {seed!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: each seed once please; got {seeds}")
    return seeds


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    return value


def _registered_models() -> tuple[str, ...]:
    from rnnlab.models import model_names

    return tuple(model_names())


def _check_models_fit_task(models: list[str], task: str) -> None:
    """Refuse, before any cell runs, a model built for other heads (informer: forecast; transformer-xl: lm)."""
    from rnnlab.models import model_heads, model_names

    info = _task_info(task)
    if info is None:
        return
    heads_of = [(name, model_heads(name)) for name in models if name in model_names()]
    unfit = [(name, heads) for name, heads in heads_of if heads is not None and info.head not in heads]
    if unfit:
        reasons = "; ".join(f"{name} fits head {' or '.join(heads)}" for name, heads in unfit)
        raise ConfigError(
            f"task {task!r} has head {info.head!r}, which {', '.join(n for n, _ in unfit)} "
            f"cannot serve ({reasons}); drop it from --models (see `rnnlab tasks`)"
        )


def _registered_tasks() -> tuple[str, ...]:
    from rnnlab.data import TASKS

    return tuple(TASKS)


def _task_info(task: str) -> Any:
    from rnnlab.data import TASKS

    return TASKS.get(task)


def is_generated(task: str) -> bool:
    """The task generates its data (recall, adding, copy), so lengths and sample counts are ours to choose."""
    info = _task_info(task)
    return info is not None and info.formats.startswith("generated")


def lengths_apply(task: str) -> bool:
    """``--lengths`` means something for the task: a generated length, a lookback or a window."""
    info = _task_info(task)
    return info is not None and not info.seq_len.startswith("not used")
