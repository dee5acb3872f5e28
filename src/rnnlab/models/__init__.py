"""Models: one encoder choice under one head per task.

    build_model("lstm", spec, params=70_000)   # → TaskModel, about 70K parameters

Encoders (``MODEL_NAMES``):

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
per model are listed by ``model_options(name)``.

Other packages add models with ``register_model``; ``model_names()`` lists every registered one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from torch import nn

from rnnlab.errors import ConfigError, unknown_name
from rnnlab.models.attention import AttentionPooling, StepAttention
from rnnlab.models.heads import StepHead, build_head
from rnnlab.models.recurrent import RECURRENT_POOLINGS, RecurrentEncoder
from rnnlab.models.seq2seq import SEQ2SEQ_EXTRAS, build_seq2seq, check_seq2seq
from rnnlab.models.sizing import count_built, fit_width
from rnnlab.models.task_model import (
    HEAD_NAMES,
    PER_STEP_HEADS,
    EncoderOutput,
    TaskModel,
    count_parameters,
    normalize_spec,
)
from rnnlab.models.tcn import DEFAULT_KERNEL_SIZE, TCNEncoder, choose_levels, receptive_field
from rnnlab.models.transformer import POOLINGS, TransformerEncoder

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


@dataclass(frozen=True)
class ModelFamily:
    """How to build one model name.

    ``build(name, spec, width, options) -> TaskModel`` where ``options`` is a namespace of the
    common options (``num_layers``, ``dropout``, ``bidirectional``, ``layer_norm``, ``init``) and
    ``options.extras`` (a dict of the model's own options, already checked against ``extras``).
    ``check(name, spec, options)`` refuses combinations the model cannot honour.
    ``width_multiple(extras)``: widths must be a multiple of this (the transformer's head count).
    ``refine``: an integer option fitted after the width to bring the count closer to a budget.
    ``recurrent``: the encoder is made of rnnlab's recurrent layers with a ``W_hh`` (so ``init``,
    ``recurrent_lr``, gradient checkpointing and the task's ``bidirectional`` default apply);
    ``stacked_cell``: the cell of a plain stack of it (rnn, lstm, gru: the models that pool every
    step and read long series in patches, and whose cell the lab's layer probe times).
    """

    build: Callable[..., TaskModel]
    extras: tuple[str, ...] = ()
    default_width: int = 128
    check: Callable[[str, SimpleNamespace, SimpleNamespace], None] | None = None
    width_multiple: Callable[[dict[str, Any]], int] = field(default=lambda extras: 1)
    refine: str | None = None
    description: str = ""
    heads: tuple[str, ...] | None = None  # the task heads the model fits; None: every head
    recurrent: bool = False
    stacked_cell: str | None = None


_REGISTRY: dict[str, ModelFamily] = {}


def register_model(name: str, family: ModelFamily) -> None:
    """Make ``name`` buildable by ``build_model`` (and listed by ``model_names``)."""
    _REGISTRY[name] = family


def model_names() -> tuple[str, ...]:
    """Every registered model name: the built-in ``MODEL_NAMES`` first."""
    return tuple(_REGISTRY)


def model_options(name: str) -> tuple[str, ...]:
    """The options ``name`` takes beyond the common ones."""
    return family(name).extras


def model_heads(name: str) -> tuple[str, ...] | None:
    """The task heads ``name`` fits (``None``: every head); ``rnnlab tasks`` and the lab show them."""
    entry = family(name)
    if entry.heads is None and entry.check is not _check_recurrent:
        # only rnn/lstm/gru(+attn) build the encoder–decoder of the seq2seq head
        return tuple(head for head in HEAD_NAMES if head != "seq2seq")
    return entry.heads


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
    gives the model's default width. ``model.options`` holds the arguments that rebuild it exactly.
    """
    entry = family(name)
    spec = normalize_spec(spec)
    if entry.heads is not None and spec.head not in entry.heads:
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
    unknown = sorted(set(extras) - set(entry.extras))
    if unknown:
        takes = ", ".join(entry.extras) if entry.extras else "no further options"
        raise ConfigError(f"model {name!r} does not take {', '.join(unknown)}; it takes: {takes}")
    if bidirectional and spec.causal:
        raise ConfigError(
            f"bidirectional=True reads later steps, which the causal task {spec.task!r} (head {spec.head!r}) "
            "forbids; use bidirectional=False or leave it unset"
        )
    options = SimpleNamespace(
        num_layers=num_layers,
        dropout=float(dropout),
        bidirectional=bidirectional,
        layer_norm=bool(layer_norm),
        init=init,
        extras=dict(extras),
    )
    if spec.head == "seq2seq" and entry.check is not _check_recurrent:
        raise ConfigError(
            f"model {name!r} has no encoder–decoder for the seq2seq head; use lstm+attn, gru+attn "
            "(with attention) or rnn, lstm, gru (without)"
        )
    if entry.check is not None:
        entry.check(name, spec, options)

    multiple = entry.width_multiple(options.extras)
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
        **options.extras,
        **({"instance_norm": True} if instance_norm else {}),
        **({"anchor": anchor} if anchor is not None else {}),
        **({"smoothing": float(smoothing)} if smoothing is not None else {}),
    }
    return model


def _fit_to_budget(name: str, family: ModelFamily, spec: SimpleNamespace, options: SimpleNamespace, params: int) -> int:
    multiple = family.width_multiple(options.extras)
    # The count does not depend on the initialiser: build with the default (cheap) one.
    counting = SimpleNamespace(**{**vars(options), "init": None, "extras": dict(options.extras)})

    def count_at(width: int, **overrides: Any) -> int:
        trial = SimpleNamespace(**{**vars(counting), "extras": {**counting.extras, **overrides}})
        return count_built(lambda: family.build(name, spec, width, trial))

    width = fit_width(lambda k: count_at(k * multiple), params) * multiple
    refine = family.refine
    if refine is not None and refine not in options.extras:
        refined = fit_width(lambda value: count_at(width, **{refine: value}), params)
        options.extras[refine] = refined
    refined_option = {refine: options.extras[refine]} if refine is not None and refine in options.extras else {}
    reached = count_at(width, **refined_option)
    if abs(reached - params) > 0.1 * params:
        warnings.warn(
            f"params={params:,}: the closest {name} for task {spec.task!r} has {reached:,} parameters (width {width})",
            stacklevel=3,
        )
    return width


# --------------------------------------------------------------------------- recurrent
# Options handed to the rnnlab layer as they are (see rnnlab.layers), plus the embedding width.
RECURRENT_EXTRAS = (
    "embedding_dim",
    "recurrent_dropout",
    "zoneout",
    "weight_norm",
    "chrono_max_len",
    "gradient_checkpointing",
    "checkpoint_steps",
    "pooling",
    "patch",
)


def _build_recurrent(name: str, spec: SimpleNamespace, width: int, options: SimpleNamespace) -> TaskModel:
    if spec.head == "seq2seq":  # the same names build the encoder–decoder (models/seq2seq.py)
        return build_seq2seq(name, spec, width, options)
    cell, _, attention_kind = name.partition("+")
    extras = dict(options.extras)
    attention_size = extras.pop("attention_size", None)
    embedding_dim = extras.pop("embedding_dim", None)
    layer_options = dict(extras)
    if options.layer_norm:
        layer_options["layer_norm"] = True
    if options.init is not None:
        layer_options["init"] = options.init
    if options.init == "chrono" and "chrono_max_len" not in layer_options and spec.seq_len is not None:
        # Chrono biases are drawn for dependencies up to T_max steps: the task's length is that span.
        layer_options["chrono_max_len"] = max(3, spec.seq_len)
    encoder = RecurrentEncoder(
        spec,
        cell,
        width,
        num_layers=options.num_layers,
        bidirectional=options.bidirectional,
        dropout=options.dropout,
        embedding_dim=embedding_dim,
        **layer_options,
    )
    attention: StepAttention | AttentionPooling | None = None
    if attention_kind == "attn":
        if spec.head in PER_STEP_HEADS:
            attention = StepAttention(encoder.step_size, causal=spec.causal)
        else:
            attention = AttentionPooling(encoder.summary_size, attention_size)
    per_step = spec.head in PER_STEP_HEADS
    head = build_head(spec, encoder.step_size if per_step or attention is not None else encoder.summary_size)
    return TaskModel(name, spec, encoder, head, attention=attention, dropout=options.dropout)


def _check_recurrent(name: str, spec: SimpleNamespace, options: SimpleNamespace) -> None:
    if spec.head == "seq2seq":
        check_seq2seq(name, spec, options)
        return
    pooling, patch = options.extras.get("pooling", "last"), options.extras.get("patch", 1)
    if pooling not in RECURRENT_POOLINGS:
        raise unknown_name("pooling", pooling, RECURRENT_POOLINGS)
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise ConfigError(f"patch must be a positive integer (steps read as one), got {patch!r}")
    if (pooling != "last" or patch > 1) and (spec.head in PER_STEP_HEADS or spec.head == "seq2seq" or "+" in name):
        raise ConfigError(
            f"pooling and patch summarise a whole sequence for a sequence head under a plain recurrent "
            f"model; {name!r} on head {spec.head!r} reads every step"
        )
    if patch > 1 and spec.vocab_size is not None:
        raise ConfigError("patch reads several steps of float features as one; this task's inputs are token ids")
    given = sorted(set(options.extras) & set(SEQ2SEQ_EXTRAS))
    if given:
        raise ConfigError(
            f"{', '.join(given)} apply to the encoder–decoder of the seq2seq head; head {spec.head!r} has no decoder"
        )
    if options.bidirectional is None:
        options.bidirectional = spec.head == "tag" and not spec.causal
    if "attention_size" in options.extras and spec.head in PER_STEP_HEADS:
        raise ConfigError(
            f"attention_size sets the additive pooling of sequence heads; head {spec.head!r} uses "
            "per-step attention, which has no such size"
        )


for _cell in ("rnn", "lstm", "gru"):
    _cell_extras = (
        RECURRENT_EXTRAS + SEQ2SEQ_EXTRAS + {"rnn": ("nonlinearity",), "gru": ("convention",), "lstm": ()}[_cell]
    )
    register_model(
        _cell,
        ModelFamily(
            _build_recurrent,
            _cell_extras,
            128,
            _check_recurrent,
            description=f"stacked {_cell.upper()}",
            recurrent=True,
            stacked_cell=_cell,
        ),
    )
for _cell in ("lstm", "gru"):
    register_model(
        f"{_cell}+attn",
        ModelFamily(
            _build_recurrent,
            RECURRENT_EXTRAS + ("attention_size",) + SEQ2SEQ_EXTRAS + (("convention",) if _cell == "gru" else ()),
            128,
            _check_recurrent,
            description=f"{_cell.upper()} + attention",
            recurrent=True,
        ),
    )


# --------------------------------------------------------------------------- tcn
def _check_not_recurrent(name: str, spec: SimpleNamespace, options: SimpleNamespace) -> None:
    if options.init is not None:
        raise ConfigError(f"init={options.init!r} sets recurrent weights; model {name!r} has none (use init=None)")
    if name == "tcn":
        if options.bidirectional:
            raise ConfigError("tcn is causal by construction: bidirectional must be None or False")
        if options.layer_norm:
            raise ConfigError(
                "tcn normalises its weights (weight normalisation, Bai et al. 2018); layer_norm applies "
                "to rnn, lstm, gru and their +attn forms"
            )
    if name == "transformer":
        pooling = options.extras.get("pooling", "last")
        if pooling not in POOLINGS:
            raise ConfigError(f"transformer pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        heads = options.extras.get("num_heads", 4)
        if not isinstance(heads, int) or heads < 1:
            raise ConfigError(f"transformer num_heads must be a positive integer; got {heads!r}")


def _build_tcn(name: str, spec: SimpleNamespace, width: int, options: SimpleNamespace) -> TaskModel:
    kernel_size = options.extras.get("kernel_size", DEFAULT_KERNEL_SIZE)
    levels = choose_levels(spec, kernel_size, options.extras.get("levels"))
    encoder = TCNEncoder(
        spec,
        width,
        levels=levels,
        kernel_size=kernel_size,
        dropout=options.dropout,
        embedding_dim=options.extras.get("embedding_dim"),
    )
    head = build_head(spec, encoder.step_size)
    model = TaskModel(name, spec, encoder, head, dropout=options.dropout)
    model.receptive_field = encoder.receptive_field
    return model


register_model(
    "tcn",
    ModelFamily(
        _build_tcn,
        ("kernel_size", "levels", "embedding_dim"),
        64,
        _check_not_recurrent,
        description="temporal convolutional network (Bai et al. 2018)",
    ),
)


# --------------------------------------------------------------------------- transformer
def _build_transformer(name: str, spec: SimpleNamespace, width: int, options: SimpleNamespace) -> TaskModel:
    encoder = TransformerEncoder(
        spec,
        width,
        num_layers=options.num_layers,
        num_heads=options.extras.get("num_heads", 4),
        feedforward_size=options.extras.get("feedforward_size"),
        dropout=options.dropout,
        causal=spec.causal or options.bidirectional is False,
        pooling=options.extras.get("pooling", "last"),
    )
    head = build_head(spec, encoder.step_size)
    return TaskModel(name, spec, encoder, head, dropout=options.dropout)


register_model(
    "transformer",
    ModelFamily(
        _build_transformer,
        ("num_heads", "feedforward_size", "pooling"),
        64,
        _check_not_recurrent,
        width_multiple=lambda extras: extras.get("num_heads", 4),
        refine="feedforward_size",
        description="pre-norm Transformer encoder with sinusoidal positions",
    ),
)


# --------------------------------------------------------------------------- minGRU, minLSTM
def _check_min_recurrent(name: str, spec: SimpleNamespace, options: SimpleNamespace) -> None:
    for option, value in (("layer_norm", options.layer_norm), ("init", options.init)):
        if value:
            raise ConfigError(
                f"{option}={value!r} applies to rnn, lstm and gru; {name} (Feng et al. 2024) has "
                "no recurrent weights to normalise or initialise"
            )
    _check_recurrent(name, spec, options)


for _cell in ("mingru", "minlstm"):  # gates from the input only, trained with a scan over time
    register_model(
        _cell,
        ModelFamily(
            _build_recurrent,
            ("embedding_dim",),
            128,
            _check_min_recurrent,
            description=f"stacked {'minGRU' if _cell == 'mingru' else 'minLSTM'} (Feng et al. 2024)",
        ),
    )


# --------------------------------------------------------------------------- informer
def _check_attention_model(name: str, spec: SimpleNamespace, options: SimpleNamespace) -> None:
    for option, value in (("layer_norm", options.layer_norm), ("init", options.init)):
        if value:
            raise ConfigError(
                f"{option}={value!r} applies to rnn, lstm and gru; {name} normalises its own "
                "layers and has no recurrent weights"
            )
    if options.bidirectional is not None and options.bidirectional != (name == "informer"):
        reading = "reads the whole lookback" if name == "informer" else "is causal by construction"
        raise ConfigError(f"{name} {reading}: bidirectional must be None or {name == 'informer'}")
    heads = options.extras.get("num_heads", 4)
    if not isinstance(heads, int) or heads < 1:
        raise ConfigError(f"{name} num_heads must be a positive integer; got {heads!r}")
    for option in ("factor", "label_len", "decoder_layers", "segment_len", "feedforward_size"):
        value = options.extras.get(option)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} {option} must be a positive integer; got {value!r}")
    mem_len = options.extras.get("mem_len")
    if mem_len is not None and (isinstance(mem_len, bool) or not isinstance(mem_len, int) or mem_len < 0):
        raise ConfigError(f"{name} mem_len must be an integer ≥ 0 (0: no memory); got {mem_len!r}")
    if name == "informer":
        from rnnlab.models.informer import ATTENTIONS

        if options.extras.get("attention", "prob") not in ATTENTIONS:
            raise unknown_name("informer attention", str(options.extras["attention"]), ATTENTIONS)
        label_len = options.extras.get("label_len")
        if label_len is not None and spec.seq_len is not None and label_len > spec.seq_len:
            raise ConfigError(
                f"informer label_len (the decoder's start token) must be at most the lookback "
                f"{spec.seq_len}; got {label_len}"
            )


def _build_informer(name: str, spec: SimpleNamespace, width: int, options: SimpleNamespace) -> TaskModel:
    from rnnlab.models.informer import DEFAULT_FACTOR, InformerEncoder

    extras = options.extras
    encoder = InformerEncoder(
        spec,
        width,
        num_layers=options.num_layers,
        decoder_layers=extras.get("decoder_layers", 1),
        num_heads=extras.get("num_heads", 4),
        feedforward_size=extras.get("feedforward_size"),
        dropout=options.dropout,
        attention=extras.get("attention", "prob"),
        factor=extras.get("factor", DEFAULT_FACTOR),
        label_len=extras.get("label_len"),
        distil=extras.get("distil", True),
    )
    # one linear map per forecast step, from the decoder's output at that step
    head = StepHead(width, spec.output_shape[1])
    return TaskModel(name, spec, encoder, head, dropout=options.dropout)


register_model(
    "informer",
    ModelFamily(
        _build_informer,
        ("num_heads", "feedforward_size", "decoder_layers", "factor", "label_len", "attention", "distil"),
        64,
        _check_attention_model,
        width_multiple=lambda extras: extras.get("num_heads", 4),
        refine="feedforward_size",
        description="Informer (Zhou et al. 2021): ProbSparse attention, distilling, generative decoder",
        heads=("forecast",),
    ),
)


# --------------------------------------------------------------------------- transformer-xl
def _build_transformer_xl(name: str, spec: SimpleNamespace, width: int, options: SimpleNamespace) -> TaskModel:
    from rnnlab.models.transformer_xl import TransformerXLEncoder

    extras = options.extras
    encoder = TransformerXLEncoder(
        spec,
        width,
        num_layers=options.num_layers,
        num_heads=extras.get("num_heads", 4),
        feedforward_size=extras.get("feedforward_size"),
        dropout=options.dropout,
        segment_len=extras.get("segment_len"),
        mem_len=extras.get("mem_len"),
    )
    head = build_head(spec, width)
    return TaskModel(name, spec, encoder, head, dropout=options.dropout)


register_model(
    "transformer-xl",
    ModelFamily(
        _build_transformer_xl,
        ("num_heads", "feedforward_size", "segment_len", "mem_len"),
        128,
        _check_attention_model,
        width_multiple=lambda extras: extras.get("num_heads", 4),
        refine="feedforward_size",
        description="Transformer-XL (Dai et al. 2019): segment memory, relative positions",
        heads=("lm",),
    ),
)
