"""rnn, lstm, gru, lstm+attn, gru+attn: a stacked rnnlab layer (``models/recurrent.py``), with
attention for the ``+attn`` names (``models/attention.py``), and on the ``seq2seq`` head the
encoder–decoder of the same cell (``models/seq2seq.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Any

from rnnlab.data.tasks import HEADS
from rnnlab.errors import ConfigError, unknown_name
from rnnlab.models.attention import AttentionPooling, StepAttention
from rnnlab.models.family import COMMON_SEARCH_SPACE, BuildOptions, ModelFamily, only_for, require_positive_int
from rnnlab.models.heads import build_head
from rnnlab.models.recurrent import RECURRENT_POOLINGS, RecurrentEncoder
from rnnlab.models.seq2seq import ATTENTIONS, Seq2SeqModel
from rnnlab.models.task_model import PER_STEP_HEADS, TaskModel

ATTENTION_MODELS = ("lstm+attn", "gru+attn")


def decoder_option(default: Any) -> Any:
    """A field of the seq2seq head's encoder–decoder only."""
    return field(default=default, metadata={"decoder": True})


@dataclass(frozen=True)
class RecurrentOptions:
    """The options of a stacked rnnlab layer. ``None`` on a layer option (``recurrent_dropout`` …
    ``checkpoint_steps``, ``nonlinearity``, ``convention``) leaves the rnnlab layer's own default
    (``rnnlab.layers``); ``embedding_dim`` ``None`` embeds token ids at the width; ``chrono_max_len``
    ``None`` with ``init="chrono"`` spans the task's length. ``attention``, ``beam_size`` and
    ``max_output_len`` set the decoder of the ``seq2seq`` head, ``attention_size`` the additive
    attention (pooling under a sequence head, Bahdanau's score on ``seq2seq``)."""

    embedding_dim: int | None = None
    recurrent_dropout: float | None = None
    zoneout: float | None = None
    weight_norm: bool | None = None
    chrono_max_len: int | None = None
    gradient_checkpointing: bool | None = None
    checkpoint_steps: int | None = None
    pooling: str = "last"  # "last", "mean", "mean+max": the summary of a sequence head
    patch: int = 1  # steps read as one
    attention_size: int | None = only_for(*ATTENTION_MODELS)
    attention: str = decoder_option("luong")  # "bahdanau" or "luong" (+attn on seq2seq)
    beam_size: int = decoder_option(1)  # 1: greedy decoding
    max_output_len: int | None = decoder_option(None)  # None: twice the task's longest target
    nonlinearity: str | None = only_for("rnn")  # "tanh" or "relu"
    convention: str | None = only_for("gru", "gru+attn")  # "torch" or "cho"

    def __post_init__(self) -> None:
        if self.pooling not in RECURRENT_POOLINGS:
            raise unknown_name("pooling", self.pooling, RECURRENT_POOLINGS)
        if isinstance(self.patch, bool) or not isinstance(self.patch, int) or self.patch < 1:
            raise ConfigError(f"patch must be a positive integer (steps read as one), got {self.patch!r}")


DECODER_OPTIONS = tuple(item.name for item in fields(RecurrentOptions) if item.metadata.get("decoder"))
LAYER_OPTIONS = (  # handed to the rnnlab layer as they are, when given
    "recurrent_dropout",
    "zoneout",
    "weight_norm",
    "chrono_max_len",
    "gradient_checkpointing",
    "checkpoint_steps",
    "nonlinearity",
    "convention",
)


def task_bidirectional(spec: SimpleNamespace) -> bool:
    """The task's choice when ``bidirectional`` is left unset: both directions for tagging a whole
    sequence, one for everything else."""
    return spec.head == "tag" and not spec.causal


def check_recurrent(name: str, spec: SimpleNamespace, options: BuildOptions[RecurrentOptions]) -> None:
    if spec.head == "seq2seq":
        _check_seq2seq(name, options)
        return
    model, given = options.model, options.given
    if spec.head in PER_STEP_HEADS or "+" in name:
        _refuse_summary_options(name, spec.head, model)
    if model.patch > 1 and spec.vocab_size is not None:
        raise ConfigError("patch reads several steps of float features as one; this task's inputs are token ids")
    decoder_options = [option for option in DECODER_OPTIONS if option in given]
    if decoder_options:
        raise ConfigError(
            f"{', '.join(sorted(decoder_options))} apply to the encoder–decoder of the seq2seq head; "
            f"head {spec.head!r} has no decoder"
        )
    if options.bidirectional is None:
        options.bidirectional = task_bidirectional(spec)
    if "attention_size" in given and spec.head in PER_STEP_HEADS:
        raise ConfigError(
            f"attention_size sets the additive pooling of sequence heads; head {spec.head!r} uses "
            "per-step attention, which has no such size"
        )


def _check_seq2seq(name: str, options: BuildOptions[RecurrentOptions]) -> None:
    """Refuse what the encoder–decoder cannot honour, naming the option. The decoder's options are
    checked here, not in ``RecurrentOptions``: under another head their presence is the error."""
    model, given = options.model, options.given
    _refuse_summary_options(name, "seq2seq", model)
    if name not in ATTENTION_MODELS:  # (attention_size is not an option of theirs at all)
        if "attention" in given:
            raise ConfigError(
                f"attention sets the attention of lstm+attn / gru+attn; model {name!r} is the "
                "encoder–decoder without attention"
            )
    elif model.attention not in ATTENTIONS:
        raise ConfigError(f"attention must be one of {', '.join(ATTENTIONS)}; got {model.attention!r}")
    elif "attention_size" in given and model.attention != "bahdanau":
        raise ConfigError(
            "attention_size sets the additive (Bahdanau) score; Luong's multiplicative score has "
            "no such size (use attention='bahdanau', or leave attention_size out)"
        )
    for option in ("beam_size", "max_output_len"):
        require_positive_int(option, getattr(model, option))
    if options.bidirectional is None:
        options.bidirectional = True  # each h_s then sees its whole context: what attention reads


def _refuse_summary_options(name: str, head: str, model: RecurrentOptions) -> None:
    """``pooling`` and ``patch`` shape the summary of a sequence head; a model reading every step refuses them."""
    if model.pooling != "last" or model.patch > 1:
        raise ConfigError(
            f"pooling and patch summarise a whole sequence for a sequence head under a plain recurrent "
            f"model; {name!r} on head {head!r} reads every step"
        )


def layer_options(options: BuildOptions[RecurrentOptions], span: int | None) -> dict[str, Any]:
    """What the rnnlab layers are given: the layer options set, ``layer_norm`` and ``init``.
    ``span``: the dependency length chrono biases are drawn for (``T_max``) unless given."""
    given = {option: getattr(options.model, option) for option in LAYER_OPTIONS}
    chosen = {option: value for option, value in given.items() if value is not None}
    if options.layer_norm:
        chosen["layer_norm"] = True
    if options.init is not None:
        chosen["init"] = options.init
    if options.init == "chrono" and "chrono_max_len" not in chosen and span is not None:
        chosen["chrono_max_len"] = max(3, span)
    return chosen


def build_recurrent(name: str, spec: SimpleNamespace, width: int, options: BuildOptions[RecurrentOptions]) -> TaskModel:
    if spec.head == "seq2seq":
        return _build_seq2seq(name, spec, width, options)
    cell, _, attention_kind = name.partition("+")
    model = options.model
    encoder = RecurrentEncoder(
        spec,
        cell,
        width,
        num_layers=options.num_layers,
        bidirectional=bool(options.bidirectional),
        dropout=options.dropout,
        embedding_dim=model.embedding_dim,
        pooling=model.pooling,
        patch=model.patch,
        # Chrono biases are drawn for dependencies up to T_max steps: the task's length is that span.
        **layer_options(options, spec.seq_len),
    )
    attention: StepAttention | AttentionPooling | None = None
    if attention_kind == "attn":
        if spec.head in PER_STEP_HEADS:
            attention = StepAttention(encoder.step_size, causal=spec.causal)
        else:
            attention = AttentionPooling(encoder.summary_size, model.attention_size)
    return recurrent_task_model(name, spec, encoder, options.dropout, attention)


def recurrent_task_model(
    name: str,
    spec: SimpleNamespace,
    encoder: RecurrentEncoder,
    dropout: float,
    attention: StepAttention | AttentionPooling | None = None,
) -> TaskModel:
    """The head on a recurrent encoder: per-step heads and attention read every step, the others
    the summary."""
    reads_steps = spec.head in PER_STEP_HEADS or attention is not None
    head = build_head(spec, encoder.step_size if reads_steps else encoder.summary_size)
    return TaskModel(name, spec, encoder, head, attention=attention, dropout=dropout)


def _build_seq2seq(name: str, spec: SimpleNamespace, width: int, options: BuildOptions[RecurrentOptions]) -> TaskModel:
    cell, _, suffix = name.partition("+")
    model = options.model
    return Seq2SeqModel(
        name,
        spec,
        cell,
        width,
        num_layers=options.num_layers,
        bidirectional=bool(options.bidirectional),
        dropout=options.dropout,
        embedding_dim=model.embedding_dim,
        attention=model.attention if suffix == "attn" else None,
        attention_size=model.attention_size,
        beam_size=model.beam_size,
        max_output_len=model.max_output_len,
        **layer_options(options, spec.output_shape[0]),
    )


RECURRENT_SEARCH_SPACE = {**COMMON_SEARCH_SPACE, "recurrent_dropout": (0.0, 0.3)}


def _family(cell: str, name: str, description: str) -> ModelFamily:
    attention = name in ATTENTION_MODELS
    return ModelFamily(
        build_recurrent,
        RecurrentOptions,
        description,
        heads=HEADS,  # the seq2seq head too: the encoder–decoder of the same cell
        check=check_recurrent,
        recurrent=True,
        stacked_cell=None if attention else cell,
        streamable=not attention,  # attention reads all earlier outputs, not a state
        search_space={**RECURRENT_SEARCH_SPACE, **({"attention_size": (16, 128)} if attention else {})},
    )


FAMILIES = {
    **{cell: _family(cell, cell, f"stacked {cell.upper()}") for cell in ("rnn", "lstm", "gru")},
    **{f"{cell}+attn": _family(cell, f"{cell}+attn", f"{cell.upper()} + attention") for cell in ("lstm", "gru")},
}
