"""What the registry knows of a model name: its ``ModelFamily`` (how to build it, the options it
takes, the heads it fits) and the ``BuildOptions`` its builder and check receive.

Each family file (``models/families/``) declares its options as a frozen dataclass: the fields are
the option names ``build_model`` accepts beyond the common ones, with their defaults, and
``__post_init__`` refuses a value no model could take. A field whose ``metadata["models"]`` lists
model names is an option of those names only (``nonlinearity``: ``rnn``). What depends on the task
or the common options (``patch`` with token ids, ``init`` for a model without recurrent weights)
is the family's ``check``, run after the options are made.

``search_space`` declares the ranges a tuner may draw the family's options from: option name →
``(low, high)``, both inclusive; integer bounds mean an integer option, float bounds a continuous
one. The names are common options or fields of the family's options. Declared data only: nothing
in ``build_model`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Any, Generic, TypeVar

from rnnlab.data.tasks import HEADS
from rnnlab.errors import ConfigError
from rnnlab.models.task_model import TaskModel

#: the heads of a model with no encoder–decoder: every head but ``seq2seq``
ENCODER_HEADS = tuple(head for head in HEADS if head != "seq2seq")
#: the common options' ranges, which most families' ``search_space`` start from
COMMON_SEARCH_SPACE: Mapping[str, tuple[float, float]] = {
    "hidden_size": (32, 256),
    "num_layers": (1, 3),
    "dropout": (0.0, 0.5),
}

Options = TypeVar("Options")


@dataclass
class BuildOptions(Generic[Options]):
    """The common options of ``build_model`` and the family's options, as its builder reads them.

    ``model``: the family's options dataclass (every field, defaults filled in); ``given``: the
    family options as given, and fitted (``refine``), which is what ``model.options`` records.
    A check may settle ``bidirectional`` (``None``: the task decides) before the build.
    """

    num_layers: int
    dropout: float
    bidirectional: bool | None
    layer_norm: bool
    init: str | None
    model: Options
    given: dict[str, Any]


def _one_width(options: Any) -> int:
    return 1


@dataclass(frozen=True)
class ModelFamily:
    """How to build one model name, and what the other stages ask of it.

    ``build(name, spec, width, options: BuildOptions) -> TaskModel``; ``options``: the family's
    options dataclass (its fields are what ``model_options(name)`` lists); ``heads``: the task heads
    it fits; ``check(name, spec, options)`` refuses combinations the model cannot honour;
    ``width_multiple(model_options)``: widths must be a multiple of this (the head count of an
    attention model); ``refine``: an integer option fitted after the width to bring the count
    closer to a budget. ``recurrent``: the encoder is made of rnnlab's recurrent layers with a
    ``W_hh`` (so ``init``, ``recurrent_lr``, gradient checkpointing and the task's
    ``bidirectional`` default apply); ``stacked_cell``: the cell of a plain stack of it (rnn, lstm,
    gru: the models that pool every step and read long series in patches, and whose cell the lab's
    layer probe times); ``streamable``: a default build on a task that leaves it unidirectional can
    run step by step (``TaskModel.step``), which ``TaskModel.streamable`` decides at run time;
    ``search_space``: see the module docstring.
    """

    build: Callable[..., TaskModel]
    options: type
    description: str
    heads: tuple[str, ...] = ENCODER_HEADS
    default_width: int = 128
    check: Callable[[str, SimpleNamespace, BuildOptions[Any]], None] | None = None
    width_multiple: Callable[[Any], int] = _one_width
    refine: str | None = None
    recurrent: bool = False
    stacked_cell: str | None = None
    streamable: bool = False
    search_space: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(COMMON_SEARCH_SPACE))

    def option_names(self, name: str) -> tuple[str, ...]:
        """The options model ``name`` of this family takes: the fields meant for it, in their order."""
        return tuple(item.name for item in fields(self.options) if name in item.metadata.get("models", (name,)))


def only_for(*models: str, default: Any = None) -> Any:
    """A field that is an option of ``models`` only (the others refuse it as unknown)."""
    return field(default=default, metadata={"models": models})


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def require_positive_int(label: str, value: Any, *, optional: bool = True) -> None:
    """Refuse ``value`` unless it is an integer ≥ 1 (or ``None`` when ``optional``): "``label`` must be…"."""
    if not (value is None and optional) and not is_positive_int(value):
        raise ConfigError(f"{label} must be a positive integer; got {value!r}")


def refuse_recurrent_options(name: str, options: BuildOptions[Any]) -> None:
    """``init`` sets the recurrent weights ``W_hh``; a model without them refuses it."""
    if options.init is not None:
        raise ConfigError(f"init={options.init!r} sets recurrent weights; model {name!r} has none (use init=None)")
