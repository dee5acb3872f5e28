"""Models: one encoder choice under one head per task.

    build_model("lstm", spec, params=70_000)   # → TaskModel, about 70K parameters

Encoders (``model_names()``):

=============  ==============================================================================
``rnn``        stacked ``rnnlab.RNN`` (tanh; ``nonlinearity="relu"`` as an option)
``lstm``       stacked ``rnnlab.LSTM``
``gru``        stacked ``rnnlab.GRU``
``lstm+attn``  LSTM + attention: the seeds' attention pooling for sequence heads, Luong attention
``gru+attn``   per step for tag/lm heads (see ``attention.py``); the seeds' ``HybridModel`` is
               ``gru+attn`` under a sequence head. On the ``seq2seq`` head: the encoder–decoder
               with Bahdanau or Luong attention (``seq2seq.py``); ``rnn``/``lstm``/``gru`` there
               are the same encoder–decoder without attention
``tcn``        temporal convolutional network (Bai et al. 2018); receptive field covers ``seq_len``
``transformer`` pre-norm Transformer encoder, sinusoidal positions, causal for ``lm``
``mingru``     stacked ``rnnlab.MinGRU`` / ``MinLSTM`` (Feng et al. 2024): gates from the input
``minlstm``    only, so training scans time without a matmul per step
``informer``   Informer (Zhou et al. 2021): ProbSparse attention, distilling, generative decoder;
               ``forecast`` only (see ``informer.py``)
``transformer-xl`` segment-level recurrent memory with relative positions (Dai et al. 2019);
               ``lm`` (``charlm``) only, the memory is its state (see ``transformer_xl.py``)
=============  ==============================================================================

Heads follow ``spec.head`` (see ``heads.py``). Options common to all models: ``hidden_size`` (the
width: hidden units per direction, TCN channels, or d_model), ``params`` (choose the width whose
parameter count is closest to this budget; give one of the two), ``num_layers`` (recurrent layers,
or transformer layers; the TCN's depth is its ``levels``), ``dropout`` (between recurrent layers
and before the head; inside TCN blocks and transformer layers), ``bidirectional`` (recurrent:
``None`` lets the task decide: True for ``tag``, else False; True is refused for causal tasks;
transformer: False masks later steps as a causal task does; tcn: causal always, True refused),
``layer_norm`` and ``init`` (``"orthogonal"`` / ``"chrono"``: recurrent models). Further options
per model are listed by ``model_options(name)``: the fields of the family's options dataclass
(``models/families/``, one file per family, which also states its heads, checks and builder).

Other packages add models with ``register_model``; ``model_names()`` lists every registered one.
``ModelFamily`` is defined in ``family.py`` so that the family files import it without importing
this registry, which imports them.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from torch import nn

from rnnlab.errors import ConfigError, unknown_name
from rnnlab.models.families import BUILT_IN
from rnnlab.models.family import ENCODER_HEADS, BuildOptions, ModelFamily
from rnnlab.models.sizing import count_built, fit_width
from rnnlab.models.task_model import HEAD_NAMES, EncoderOutput, TaskModel, count_parameters, normalize_spec
from rnnlab.models.tcn import receptive_field

# the first seven built-in names, for code written before model_names(); tests iterate model_names()
MODEL_NAMES = ("rnn", "lstm", "gru", "lstm+attn", "gru+attn", "tcn", "transformer")

__all__ = [
    "HEAD_NAMES",
    "MODEL_NAMES",
    "EncoderOutput",
    "ModelFamily",
    "TaskModel",
    "build_model",
    "count_parameters",
    "family",
    "model_heads",
    "model_names",
    "model_options",
    "receptive_field",
    "register_model",
]

_REGISTRY: dict[str, ModelFamily] = {}


def register_model(name: str, family: ModelFamily) -> None:
    """Make ``name`` buildable by ``build_model`` (and listed by ``model_names``)."""
    _REGISTRY[name] = family


def model_names() -> tuple[str, ...]:
    """Every registered model name: the built-in ones (``models/families/``) first."""
    return tuple(_REGISTRY)


def model_options(name: str) -> tuple[str, ...]:
    """The options ``name`` takes beyond the common ones: the fields of its family's options."""
    return family(name).option_names(name)


def model_heads(name: str) -> tuple[str, ...] | None:
    """The task heads ``name`` fits (``None``: every head); ``rnnlab tasks`` and the lab show them."""
    heads = family(name).heads
    return None if set(heads) == set(HEAD_NAMES) else heads


def family(name: str) -> ModelFamily:
    """The registered ``ModelFamily`` of ``name`` (what every stage asks about a model)."""
    if name not in _REGISTRY:
        raise unknown_name("model", name, model_names())
    return _REGISTRY[name]


def build_model(
    name: str,
    spec: Any,
    *,
    hidden_size: int | None = None,
    num_layers: int = 2,
    params: int | None = None,
    dropout: float = 0.0,
    bidirectional: bool | None = None,
    layer_norm: bool = False,
    init: str | None = None,
    **extras: Any,
) -> TaskModel:
    """The model ``name`` for the task ``spec`` (a ``TaskSpec``, or a dict of its fields).

    Give ``hidden_size`` (the width) or ``params`` (a parameter budget: the width whose count is
    closest is chosen, and a warning says so when it lands more than 10% away), not both; neither
    gives the model's default width. ``model.options`` holds the arguments that rebuild it exactly:
    the common options and the model options given or fitted, not the defaults of the others.
    """
    entry = family(name)
    spec = normalize_spec(spec)
    # a model for every head but seq2seq is told below which models have an encoder–decoder
    fits_every_encoder_head = set(ENCODER_HEADS) <= set(entry.heads)
    if spec.head not in entry.heads and not fits_every_encoder_head:
        raise ConfigError(
            f"model {name!r} fits tasks with head {' or '.join(entry.heads)} ({entry.description}); "
            f"task {spec.task!r} has head {spec.head!r}"
        )
    if hidden_size is not None and params is not None:
        raise ConfigError(f"give hidden_size or params, not both; got hidden_size={hidden_size}, params={params}")
    for option, value in (("hidden_size", hidden_size), ("params", params)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{option} must be a positive integer; got {value!r}")
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ConfigError(f"num_layers must be a positive integer; got {num_layers!r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must lie in [0, 1); got {dropout}")
    instance_norm, anchor = extras.pop("instance_norm", False), extras.pop("anchor", None)
    smoothing = extras.pop("smoothing", None)
    if not isinstance(instance_norm, bool):
        raise ConfigError(f"instance_norm must be true or false, got {instance_norm!r}")
    if (instance_norm or anchor is not None) and spec.head != "forecast":
        raise ConfigError(
            f"instance_norm and anchor act on forecast windows; task {spec.task!r} has head {spec.head!r}"
        )
    if anchor is not None:
        if not instance_norm:
            raise ConfigError("anchor sets where an instance-normalised forecast starts; it needs instance_norm=true")
        if isinstance(anchor, bool) or not isinstance(anchor, int) or not 1 <= anchor <= (spec.seq_len or 0):
            raise ConfigError(f"anchor must be a season of 1 to lookback ({spec.seq_len}) steps, got {anchor!r}")
    if smoothing is not None:
        if anchor != 1:
            raise ConfigError(f"smoothing sets the level a forecast starts from; it needs anchor=1, got {anchor!r}")
        if isinstance(smoothing, bool) or not isinstance(smoothing, int | float) or not 0 < smoothing <= 1:
            raise ConfigError(f"smoothing must lie in (0, 1], got {smoothing!r}")
    takes = entry.option_names(name)
    unknown = sorted(set(extras) - set(takes))
    if unknown:
        raise ConfigError(
            f"model {name!r} does not take {', '.join(unknown)}; it takes: {', '.join(takes) or 'no further options'}"
        )
    if bidirectional and spec.causal:
        raise ConfigError(
            f"bidirectional=True reads later steps, which the causal task {spec.task!r} (head {spec.head!r}) "
            "forbids; use bidirectional=False or leave it unset"
        )
    if spec.head not in entry.heads:
        raise ConfigError(
            f"model {name!r} has no encoder–decoder for the seq2seq head; use lstm+attn, gru+attn "
            "(with attention) or rnn, lstm, gru (without)"
        )
    options = BuildOptions(
        num_layers=num_layers,
        dropout=float(dropout),
        bidirectional=bidirectional,
        layer_norm=bool(layer_norm),
        init=init,
        model=entry.options(**extras),  # refuses a value no model could take
        given=dict(extras),
    )
    if entry.check is not None:
        entry.check(name, spec, options)

    multiple = entry.width_multiple(options.model)
    if hidden_size is not None and hidden_size % multiple:
        raise ConfigError(f"model {name!r} needs hidden_size to be a multiple of {multiple}; got {hidden_size}")
    width = (
        (hidden_size or entry.default_width) if params is None else _fit_to_budget(name, entry, spec, options, params)
    )
    model = entry.build(name, spec, width, options)
    model.instance_norm, model.anchor = instance_norm, anchor
    model.smoothing = None if smoothing is None else float(smoothing)
    if anchor is not None:  # the untrained model is the (seasonal) naive forecast
        assert isinstance(model.head.linear, nn.Linear)  # a forecast's SequenceHead
        nn.init.zeros_(model.head.linear.weight)
        nn.init.zeros_(model.head.linear.bias)
    model.options = {
        "hidden_size": width,
        "num_layers": num_layers,
        "dropout": float(dropout),
        "bidirectional": options.bidirectional,
        "layer_norm": bool(layer_norm),
        "init": init,
        **options.given,
        **({"instance_norm": True} if instance_norm else {}),
        **({"anchor": anchor} if anchor is not None else {}),
        **({"smoothing": float(smoothing)} if smoothing is not None else {}),
    }
    return model


def _fit_to_budget(
    name: str, family: ModelFamily, spec: SimpleNamespace, options: BuildOptions[Any], params: int
) -> int:
    """The width (a multiple of ``family.width_multiple``) whose count is closest to ``params``;
    then ``family.refine``, unless given, fitted at that width (recorded in ``options``)."""
    multiple = family.width_multiple(options.model)
    # The count does not depend on the initialiser: build with the default (cheap) one.
    counting = replace(options, init=None)

    def count_at(width: int, **overrides: Any) -> int:
        trial = replace(counting, model=replace(counting.model, **overrides), given={**counting.given, **overrides})
        return count_built(lambda: family.build(name, spec, width, trial))

    width = fit_width(lambda k: count_at(k * multiple), params) * multiple
    refine = family.refine
    if refine is not None and refine not in options.given:
        refined = fit_width(lambda value: count_at(width, **{refine: value}), params)
        options.given[refine] = refined
        options.model = replace(options.model, **{refine: refined})
    refined_option = {refine: options.given[refine]} if refine is not None and refine in options.given else {}
    reached = count_at(width, **refined_option)
    if abs(reached - params) > 0.1 * params:
        warnings.warn(
            f"params={params:,}: the closest {name} for task {spec.task!r} has {reached:,} parameters (width {width})",
            stacklevel=3,
        )
    return width


for _name, _family in BUILT_IN.items():
    register_model(_name, _family)
