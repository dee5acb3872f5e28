"""The training configuration: one dataclass of plain values, every default visible here.

The command line's flags map to these fields by name (``--batch-size`` → ``batch_size``); a run's
``config.json`` is this dataclass written out with the task defaults filled in, enough to rebuild
the run. Fields left ``None`` take the task's default from ``TASK_DEFAULTS`` (chosen by measurement,
see docs/training.md#how-the-task-defaults-were-chosen) scaled by the ``budget``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rnnlab.config_fields import flag
from rnnlab.errors import ConfigError, unknown_name
from rnnlab.models import family, model_heads, model_names

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("plateau", "cosine", "none")
PRECISIONS = ("32", "bf16")
#: The recurrent initialisation, one vocabulary for ``TrainConfig`` and ``CompareConfig``: "auto"
#: the task decides (``TASK_DEFAULTS``: chrono on the long-range tasks, else orthogonal), "default"
#: torch's, "orthogonal" (orthogonal W_hh), "chrono" (Tallec & Ollivier 2018's gate biases too).
INITS = ("auto", "default", "orthogonal", "chrono")
INIT_HELP = (
    "Recurrent init: auto (the task's: chrono on long-range tasks, else orthogonal) | default (torch's) | "
    "orthogonal | chrono."
)
BUDGETS = ("quick", "standard", "full")

#: Per-task defaults for the fields a user leaves ``None`` (the ``standard`` budget).
#: Each is the cheapest setting measured to reach the task's acceptance figure on 2 CPU cores; the
#: measurements: docs/training.md#how-the-task-defaults-were-chosen, and the pages it points to.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # chrono init (Tallec & Ollivier 2018) lets the LSTM keep the symbol 100 steps in its first epoch
    # (docs/training.md#how-the-task-defaults-were-chosen)
    "recall": {"epochs": 30, "batch_size": 64, "lr": 2e-3, "init": "chrono", "num_layers": 1, "hidden_size": 64},
    # batch 16: more updates per sample seen leave the trivial plateau sooner
    # (docs/training.md#how-the-task-defaults-were-chosen)
    "adding": {"epochs": 6, "batch_size": 16, "lr": 2e-3, "init": "chrono", "num_layers": 1, "hidden_size": 64},
    # no alternative measured better at Bai et al.'s sizes within the budget (docs/bai2018.md#training-choices)
    "copy": {"epochs": 30, "batch_size": 32, "lr": 2e-3, "init": "chrono", "num_layers": 1, "hidden_size": 64},
    # forecast (a finite series): each window scaled by its own statistics and the forecast started
    # from the naive or seasonal-naive path, whichever the training windows favour (docs/real-data.md#forecasting)
    "forecast": {
        "epochs": 15,
        "batch_size": 64,
        "lr": 2e-3,
        "init": "orthogonal",
        "num_layers": 2,
        "hidden_size": 32,
        "anchored": True,
    },
    # classify (a user's sequences): both directions, the summary pooled over every step (mean and
    # max), and series longer than CLASSIFY_RECURRENT_STEPS read in patches of several steps, so the
    # recurrence stays ~100 steps long (docs/real-data.md#classification)
    "classify": {
        "epochs": 40,
        "batch_size": 32,
        "lr": 3e-3,
        "init": "orthogonal",
        "num_layers": 2,
        "hidden_size": 64,
        "bidirectional": True,
        "recurrent_options": {"pooling": "mean+max"},
        "recurrent_steps": 100,
        "small_validation": "full budget",
    },
    "tag": {"epochs": 30, "batch_size": 32, "lr": 3e-3, "init": "orthogonal", "num_layers": 2, "hidden_size": 64},
    # charlm trains stateful TBPTT over 32 parallel streams; dropout 0.2 holds off the overfitting a
    # plain 2×256 LSTM shows on the built-in corpus after a few minutes, and the cosine schedule
    # anneals to the run's budget (epochs, or --max-minutes when that ends first). The LSTM's own
    # settings (per_model) measured better and faster; the other models keep the task's
    # (docs/text-generation.md#the-lstms-own-settings).
    "charlm": {
        "epochs": 20,
        "batch_size": 32,
        "lr": 2e-3,
        "init": "orthogonal",
        "num_layers": 2,
        "hidden_size": 256,
        "dropout": 0.2,
        "schedule": "cosine",
        "per_model": {"lstm": {"lr": 3e-3, "model_options": {"embedding_dim": 64, "recurrent_dropout": 0.1}}},
    },
    # music: one piece per step (Bai et al.'s practice), one layer, dropout 0.5, lr 3e-3 halved on a stalled
    # validation NLL: the best LSTM setting measured on JSB Chorales (docs/bai2018.md#tuning-on-jsb-chorales)
    "music": {
        "epochs": 40,
        "batch_size": 1,
        "lr": 3e-3,
        "init": "orthogonal",
        "num_layers": 1,
        "hidden_size": 224,
        "dropout": 0.5,
    },
    # seq2seq: lstm+attn needs 2 epochs, the plain encoder–decoder 4+, hence 6; early stopping ends sooner
    # (docs/seq2seq.md#measured)
    "seq2seq": {"epochs": 6, "batch_size": 64, "lr": 3e-3, "init": "orthogonal", "num_layers": 1, "hidden_size": 64},
}
GENERIC_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 64,
    "lr": 2e-3,
    "init": "orthogonal",
    "num_layers": 2,
    "hidden_size": None,
}
#: Fields only a forecast reads: given without a task, they say the task is ``forecast``.
FORECAST_FIELDS = ("target", "covariates", "lookback", "horizon", "season", "log")


def implied_task(given: dict[str, Any]) -> str | None:
    """The task the given fields imply when ``task`` is not among them: ``forecast`` if any of
    ``FORECAST_FIELDS`` is (``rnnlab train --data s.csv --time t --target y --horizon 6`` forecasts)."""
    if "task" in given or not any(given.get(name) is not None for name in FORECAST_FIELDS):
        return None
    return "forecast"


#: The batch is never more than this fraction of the training set (a 36-series set gets batches of
#: 9, not one step per epoch), and an epoch is at least MIN_STEPS_PER_EPOCH optimiser steps.
MAX_BATCH_FRACTION = 0.25
MIN_STEPS_PER_EPOCH = 32
#: A validation split this small measures a metric to no better than ±4 points (the standard error
#: of an accuracy near 0.5 with 150 samples): after it has chosen the epochs (a task with
#: ``small_validation: "full budget"`` does not stop on it at all: the whole budget under a cosine
#: schedule), the model is refit on train + validation for as many epochs.
REFIT_BELOW = 150
#: Batches group sequences of similar length (``bucket``) by default when padding every training
#: sequence to the longest would make more than this share of the steps padding (``1 - mean/max``
#: of the lengths): more optimiser steps in the same time, as accurate (docs/real-data.md#classification).
BUCKET_ABOVE = 0.25
#: ``budget`` scales the epochs (and the time budget) of the standard configuration.
BUDGET_EPOCH_FACTOR = {"quick": 0.2, "standard": 1.0, "full": 3.0}


def _recurrent(model: str) -> bool:
    """``model`` is built of rnnlab's recurrent layers (``ModelFamily.recurrent``; unknown: no)."""
    return model in model_names() and family(model).recurrent


def _stacked_cell(model: str) -> bool:
    """``model`` is a plain stack of one cell (``ModelFamily.stacked_cell``): it pools and reads patches."""
    return model in model_names() and family(model).stacked_cell is not None


#: TrainConfig fields passed to ``rnnlab.data.load_task`` as data options (field → option name).
DATA_OPTION_FIELDS = {
    "label": "label",
    "target": "target",
    "time": "time",
    "covariates": "covariates",
    "lookback": "lookback",
    "horizon": "horizon",
    "season": "season",
    "fill": "fill",
    "n_train": "n_train",
    "n_val": "n_val",
    "n_test": "n_test",
    "log": "log",
}


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``None`` means "the task's default".

    Each field's ``flag(...)`` is its ``rnnlab train`` option (``--batch-size`` → ``batch_size``).
    """

    # what to learn
    task: str = field(default="recall", metadata=flag(lambda: f"Task: {task_list()}.", short="-t"))
    model: str = field(default="lstm", metadata=flag(lambda: f"Model: {model_list()}.", short="-m"))
    data: str | None = field(
        default=None, metadata=flag("Data file, or a built-in data set name (see `rnnlab tasks`).")
    )
    test_data: str | None = field(
        default=None, metadata=flag("Separate test file (else the test split is cut from --data).")
    )
    seq_len: int | None = field(default=None, metadata=flag("Sequence length T (generated tasks, text windows)."))
    # the data options (see ``rnnlab tasks``); ``data_options`` holds any further task option
    label: str | None = field(default=None, metadata=flag("classify: label column (default label)."))
    target: str | None = field(default=None, metadata=flag("forecast: target column(s), comma-separated."))
    time: str | None = field(default=None, metadata=flag("Time column (forecast, long classify CSV)."))
    covariates: str | None = field(default=None, metadata=flag("forecast: past-covariate columns, comma-separated."))
    lookback: int | None = field(default=None, metadata=flag("forecast: input window in steps."))
    horizon: int | None = field(default=None, metadata=flag("forecast: steps forecast at once."))
    season: int | None = field(default=None, metadata=flag("forecast: season in steps (seasonal naive, MASE)."))
    fill: str | None = field(default=None, metadata=flag("Missing values: none (error) | ffill | interpolate | zero."))
    log: bool | None = field(
        default=None,
        metadata=flag("forecast: model log(target) for a multiplicative series (values must be > 0)."),
    )
    # generated tasks: samples per split (on the command line: --option n_train=2000)
    n_train: int | None = field(default=None, metadata=flag("Training samples.", cli=False))
    n_val: int | None = field(default=None, metadata=flag("Validation samples.", cli=False))
    n_test: int | None = field(default=None, metadata=flag("Test samples.", cli=False))
    data_options: dict[str, Any] = field(
        default_factory=dict, metadata=flag("Further task options (--option KEY=VALUE).", cli=False)
    )
    # the model
    params: int | None = field(
        default=None, metadata=flag("Size the model to about this many parameters (instead of --hidden-size).")
    )
    hidden_size: int | None = field(default=None, metadata=flag("Hidden units (width) instead of --params."))
    num_layers: int | None = field(default=None, metadata=flag("Stacked layers.", old=("--layers",)))
    bidirectional: bool | None = field(
        default=None, metadata=flag("Default: the task decides (tag: bidirectional).", negatable=True)
    )
    layer_norm: bool = field(default=False, metadata=flag("Layer normalisation in the recurrent cells."))
    dropout: float | None = field(
        default=None,
        metadata=flag("Dropout between layers and before the head (default: the task's; charlm 0.2, else 0)."),
    )
    init: str | None = field(default="auto", metadata=flag(lambda: INIT_HELP))
    gradient_checkpointing: bool = field(
        default=False, metadata=flag("Recompute activations in backward (long sequences).")
    )
    model_options: dict[str, Any] = field(  # model extras (embedding_dim, kernel_size, ...)
        default_factory=dict, metadata=flag("Model options (--model-option KEY=VALUE).", cli=False)
    )
    # the optimisation
    epochs: int | None = field(default=None, metadata=flag("Epochs (default: the task's)."))
    # optimiser steps per epoch (one validation check each); None: one pass over the training set,
    # or MIN_STEPS_PER_EPOCH steps when a pass is shorter (a small set still gets updates enough)
    steps_per_epoch: int | None = field(
        default=None,
        metadata=flag(
            "Optimiser steps per epoch (one validation check); default one pass, "
            f"at least {MIN_STEPS_PER_EPOCH} steps on small sets."
        ),
    )
    max_minutes: float | None = field(default=None, metadata=flag("Training time budget in minutes."))
    batch_size: int | None = field(default=None, metadata=flag("Sequences per batch (default: the task's)."))
    optimizer: str = field(default="adam", metadata=flag(" | ".join(OPTIMIZERS) + "."))
    lr: float | None = field(default=None, metadata=flag("Learning rate (default: the task's)."))
    recurrent_lr: float | None = field(
        default=None, metadata=flag("Learning rate of the recurrent weights W_hh (default: --lr).")
    )
    weight_decay: float = field(default=0.0, metadata=flag("Weight decay."))
    clip: float = field(default=1.0, metadata=flag("Gradient clipping max-norm (clip_grad_norm_; 0 disables)."))
    # "plateau" (halve on a stalled validation metric) | "cosine" | "none"; None: the task's
    schedule: str | None = field(
        default=None,
        metadata=flag("plateau | cosine | none (default: the task's; charlm cosine to the budget, else plateau)."),
    )
    warmup_epochs: float = field(
        default=0.0, metadata=flag("Linear warm-up of the learning rate in epochs (cosine and plateau).")
    )
    precision: str = field(default="32", metadata=flag(" | ".join(PRECISIONS) + " (autocast on the CPU)."))
    bucket: bool | None = field(
        default=None,
        metadata=flag(
            f"Batch sequences of similar length together (default: when padding would exceed {BUCKET_ABOVE:.0%})."
        ),
    )
    # early stopping: epochs (validation checks) without improvement; None: off
    patience: int | None = field(default=5, metadata=flag("Early stopping patience in epochs (0: off)."))
    # then train a fresh model on train + validation for the epochs the run chose (its best with
    # early stopping, else all), Darts/NeuralForecast's refit; None: when the validation split is
    # too small to stop on (fewer than REFIT_BELOW samples: then no early stopping, a cosine schedule)
    refit: bool | None = field(
        default=None,
        metadata=flag(
            "After early stopping, retrain on train + validation for the best epoch count "
            f"(default: when validation has < {REFIT_BELOW} samples).",
            negatable=True,
        ),
    )
    # (summary.json keeps its key "target" for this level; config.json before #17 named it "target" too)
    stop_at: float | None = field(default=None, metadata=flag("Stop once the validation metric reaches this value."))
    budget: str = field(default="standard", metadata=flag("quick | standard | full: scales the default epochs."))
    seed: int = field(default=0, metadata=flag("Random seed."))
    devices: int = field(default=1, metadata=flag("Processes for data-parallel training (DDP, gloo)."))
    out: str | None = field(
        default=None, metadata=flag("Run directory (created; must not hold another run).", short="-o", required=True)
    )

    # ----------------------------------------------------------------- checks and defaults
    def validate(self) -> TrainConfig:
        """Refuse impossible values with a message naming the field; returns ``self``."""
        from rnnlab.data import TASKS
        from rnnlab.models import model_names

        if self.task not in TASKS:
            raise unknown_name("task", self.task, TASKS)
        if self.model not in model_names():
            raise unknown_name("model", self.model, model_names())
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.schedule is not None:
            _choice("schedule", self.schedule, SCHEDULES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("budget", self.budget, BUDGETS)
        if self.init is not None:
            _choice("init", self.init, INITS)
        for name in (
            "epochs",
            "steps_per_epoch",
            "batch_size",
            "seq_len",
            "params",
            "hidden_size",
            "num_layers",
            "lookback",
            "horizon",
            "season",
            "n_train",
            "n_val",
            "n_test",
            "devices",
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError(
                f"patience must be a positive integer (or None to turn early stopping off), got {self.patience!r}"
            )
        for name in ("lr", "recurrent_lr", "max_minutes"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        for name in ("clip", "weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a number ≥ 0, got {value!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.target is not None and not isinstance(self.target, str):
            raise ConfigError(
                f"target names the forecast target column(s), comma-separated; got {self.target!r} "
                "(the validation level to stop at is stop_at, called target before #17)"
            )
        if self.stop_at is not None and not math.isfinite(self.stop_at):
            raise ConfigError(f"stop_at must be a finite number, got {self.stop_at!r}")
        if self.params is not None and self.hidden_size is not None:
            raise ConfigError(
                f"give params or hidden_size, not both; got params={self.params}, hidden_size={self.hidden_size}"
            )
        if self.init not in (None, "auto", "default") and not _recurrent(self.model):
            raise ConfigError(f"init={self.init!r} sets recurrent weights; model {self.model!r} has none")
        if self.gradient_checkpointing and not _recurrent(self.model):
            raise ConfigError(f"gradient_checkpointing applies to the recurrent layers; model {self.model!r} has none")
        if self.recurrent_lr is not None and not _recurrent(self.model):
            raise ConfigError(
                f"recurrent_lr sets the learning rate of recurrent weights; model {self.model!r} has none"
            )
        for name in ("data_options", "model_options"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a mapping of option names to values, got {getattr(self, name)!r}")
        return self

    def resolved(
        self,
        *,
        train_size: int | None = None,
        val_size: int | None = None,
        median_length: int | None = None,
        padding: float | None = None,
        anchor: int | None = None,
        smoothing: float | None = None,
    ) -> TrainConfig:
        """A copy with every ``None`` that has a task default filled in (what ``config.json`` holds).

        ``train_size``/``val_size`` (samples: sequences or windows, known once the data is loaded)
        size the rest by the data: the batch is at most ``MAX_BATCH_FRACTION`` of the training set,
        an epoch at least ``MIN_STEPS_PER_EPOCH`` optimiser steps, and ``refit`` is on when the
        validation split has fewer than ``REFIT_BELOW`` samples. ``median_length`` (steps of the
        median training sequence) sets a task's ``recurrent_steps``: patches of
        ``⌈median_length / recurrent_steps⌉`` steps; ``padding`` (``1 - mean/max`` of the training
        lengths) turns ``bucket`` on above ``BUCKET_ABOVE`` when batches hold several sequences.
        ``anchor`` and ``smoothing`` (forecast: the data's naive, seasonal-naive or smoothed-level
        start) go to instance-normalised models.
        """
        self.validate()
        defaults = {**GENERIC_DEFAULTS, **TASK_DEFAULTS.get(self.task, {})}
        # a model's own measured settings for the task (charlm's LSTM) replace the task's
        defaults.update(defaults.pop("per_model", {}).get(self.model, {}))
        values: dict[str, Any] = {}
        if self.epochs is None:
            values["epochs"] = max(1, round(defaults["epochs"] * BUDGET_EPOCH_FACTOR[self.budget]))
        for name in ("batch_size", "lr", "num_layers"):
            if getattr(self, name) is None:
                values[name] = defaults[name]
        if self.init in (None, "auto"):
            # None: what a model without recurrent weights resolves to (and config.json then holds)
            values["init"] = defaults["init"] if _recurrent(self.model) else None
        if self.dropout is None:
            values["dropout"] = defaults.get("dropout", 0.0)
        if self.schedule is None:
            values["schedule"] = defaults.get("schedule", "plateau")
        if self.hidden_size is None and self.params is None and _recurrent(self.model):
            values["hidden_size"] = defaults["hidden_size"]
        model_defaults = dict(defaults.get("model_options", {}))
        if _stacked_cell(self.model):
            model_defaults.update(defaults.get("recurrent_options", {}))
            steps = defaults.get("recurrent_steps")
            if steps and median_length and median_length > steps:
                model_defaults["patch"] = math.ceil(median_length / steps)
        if self.bidirectional is None and _recurrent(self.model) and "bidirectional" in defaults:
            values["bidirectional"] = defaults["bidirectional"]
        if model_defaults:  # the user's own options win over the defaults'
            values["model_options"] = {**model_defaults, **self.model_options}
        merged = values.get("model_options", self.model_options)
        if defaults.get("anchored") and anchor is not None and "instance_norm" not in merged and "anchor" not in merged:
            start = {"anchor": anchor, **({"smoothing": smoothing} if smoothing is not None else {})}
            values["model_options"] = {**merged, "instance_norm": True, **start}
        if train_size is not None:
            if self.batch_size is None:
                values["batch_size"] = max(1, min(values["batch_size"], int(train_size * MAX_BATCH_FRACTION)))
            batch_size = values.get("batch_size", self.batch_size)
            assert batch_size is not None  # filled in from the defaults above
            if self.steps_per_epoch is None and math.ceil(train_size / batch_size) < MIN_STEPS_PER_EPOCH:
                values["steps_per_epoch"] = MIN_STEPS_PER_EPOCH
        if self.bucket is None:
            batch_size = values.get("batch_size", self.batch_size)
            assert batch_size is not None  # filled in from the defaults above
            values["bucket"] = padding is not None and padding > BUCKET_ABOVE and batch_size > 1
        if self.refit is None:
            values["refit"] = val_size is not None and 0 < val_size < REFIT_BELOW
            if values["refit"] and defaults.get("small_validation") == "full budget":
                # too few sequences to tell when to stop (on the real sets the epoch they chose tested
                # worse than the full budget's last): the whole budget, annealed, then the refit.
                # A forecast keeps early stopping: its untrained start (the naive anchor) is a
                # candidate that a run overfitting a few windows must beat.
                values["patience"] = None
                if self.schedule is None:
                    values["schedule"] = "cosine"
        return replace(self, **values)

    # ----------------------------------------------------------------- what the stages take
    def load_options(self) -> dict[str, Any]:
        """Keyword arguments for ``rnnlab.data.load_task`` (options left ``None`` are not passed)."""
        options = {
            option: getattr(self, name)
            for name, option in DATA_OPTION_FIELDS.items()
            if getattr(self, name) is not None
        }
        options.update(self.data_options)
        return {"data": self.data, "test_data": self.test_data, "seq_len": self.seq_len, "seed": self.seed, **options}

    def model_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``rnnlab.models.build_model`` (after ``resolved()``)."""
        arguments: dict[str, Any] = {
            "hidden_size": self.hidden_size,
            "params": self.params,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "layer_norm": self.layer_norm,
            "init": None if self.init in (None, "auto", "default") else self.init,  # build_model: None is torch's
            **self.model_options,
        }
        if self.num_layers is not None:
            arguments["num_layers"] = self.num_layers
        if self.gradient_checkpointing:
            arguments["gradient_checkpointing"] = True
        return arguments

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are refused with the nearest field names.

        A ``config.json`` written before #17 named the stop level ``target`` and the forecast
        target column ``target_column``: such a mapping is read with the current names.
        """
        values = _renamed_keys(values)
        known = [f.name for f in fields(cls)]
        for key in values:
            if key not in known:
                raise unknown_name("TrainConfig field", key, known)
        return cls(**values)

    def save(self, path: str | os.PathLike) -> Path:
        from rnnlab.io import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no config at {path}: expected the config.json a training run writes") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of TrainConfig fields, got {type(values).__name__}")
        return cls.from_dict(values)


def _renamed_keys(values: dict[str, Any]) -> dict[str, Any]:
    """An old-style mapping (``target`` the stop level, ``target_column`` the column) in today's names."""
    stop_level = values.get("target")
    old = "target_column" in values or (
        isinstance(stop_level, (int, float)) and not isinstance(stop_level, bool) and "stop_at" not in values
    )
    if not old:
        return values
    values = dict(values)
    if "stop_at" not in values:
        values["stop_at"] = values.pop("target", None)
    if "target_column" in values:
        values["target"] = values.pop("target_column")
    return values


def task_list() -> str:
    from rnnlab.data import TASKS

    return ", ".join(TASKS) + " (see `rnnlab tasks`)"


def model_list() -> str:
    """The registered models; one that fits only a few tasks names them (``informer (forecast)``)."""
    from rnnlab.data import TASKS

    names = []
    for name in model_names():
        heads = model_heads(name)
        fits = [task for task, info in TASKS.items() if heads is None or info.head in heads]
        names.append(f"{name} ({', '.join(fits)})" if len(fits) <= len(TASKS) // 2 else name)
    return ", ".join(names) + " (see `rnnlab tasks`)"


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise unknown_name(name, str(value), choices)
