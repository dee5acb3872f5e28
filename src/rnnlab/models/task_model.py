"""A task model: one sequence encoder, optional attention, one head shaped by the task.

Every encoder (recurrent, TCN, transformer) maps a padded batch to an ``EncoderOutput``:

* ``steps``   ``[B, T, step_size]``: one feature vector per time step (what per-step heads read);
* ``summary`` ``[B, summary_size]``: one vector per sequence (what sequence-level heads read);
* ``state``: the recurrent state after each sequence's last valid step (``None`` for encoders
  without one).

``TaskModel`` checks its inputs against the ``TaskSpec`` (the edge where a wrong batch can still
get a clear message), runs the encoder, the attention if any, dropout, and the head:

    classify   [B, num_classes]          tag / lm   [B, T, num_classes]
    forecast   [B, horizon, n_targets]   regress    [B]
    multilabel [B, T, num_classes]       (per-step independent logits, e.g. 88 piano keys)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from types import SimpleNamespace
from typing import Any, Literal, NamedTuple, cast, overload

import torch
from torch import nn

from rnnlab.data.tasks import HEADS
from rnnlab.errors import ConfigError
from rnnlab.layers import count_parameters
from rnnlab.models.instance_norm import instance_normalise

HEAD_NAMES = HEADS  # the data stage declares the heads its tasks have (rnnlab.data.tasks)
PER_STEP_HEADS = frozenset({"tag", "lm", "multilabel"})


class EncoderOutput(NamedTuple):
    steps: torch.Tensor
    summary: torch.Tensor
    state: Any = None


SPEC_DEFAULTS: dict[str, Any] = {
    "task": "custom",
    "head": None,
    "input_size": 0,
    "vocab_size": None,
    "num_classes": None,
    "output_shape": [],
    "seq_len": None,
    "causal": None,  # None: causal exactly when the head is "lm"
}


def normalize_spec(spec: Any) -> SimpleNamespace:
    """The task description as plain values with every field present, checked.

    Accepts ``rnnlab.data.TaskSpec``, a dict (e.g. read back from ``config.json``) or any object with
    the same attributes; refuses one a model cannot be built for, saying which field is wrong.
    """
    if is_dataclass(spec):
        values = asdict(cast(Any, spec))  # an instance (a TaskSpec), not a dataclass type
    elif isinstance(spec, dict):
        values = dict(spec)
    else:
        values = {key: getattr(spec, key) for key in SPEC_DEFAULTS if hasattr(spec, key)}
    values = {**SPEC_DEFAULTS, **values}
    if values["causal"] is None:
        values["causal"] = values["head"] == "lm"
    values["input_size"] = values["input_size"] or 0
    values["output_shape"] = list(values["output_shape"] or [])
    spec = SimpleNamespace(**values)
    _check_spec(spec)
    return spec


def _check_spec(spec: SimpleNamespace) -> None:
    if spec.head not in HEAD_NAMES:
        raise ConfigError(f"spec.head must be one of {', '.join(HEAD_NAMES)}; got {spec.head!r}")
    if spec.vocab_size is None and spec.input_size < 1:
        raise ConfigError(
            "a task needs token inputs (spec.vocab_size ≥ 1) or float features (spec.input_size ≥ 1); "
            f"got vocab_size={spec.vocab_size!r}, input_size={spec.input_size!r}"
        )
    if spec.vocab_size is not None and spec.vocab_size < 1:
        raise ConfigError(f"spec.vocab_size must be ≥ 1 when set; got {spec.vocab_size}")
    if spec.head in ("classify", "tag", "lm", "multilabel", "seq2seq") and (
        spec.num_classes is None or spec.num_classes < 1
    ):
        raise ConfigError(f"head {spec.head!r} needs spec.num_classes ≥ 1; got {spec.num_classes!r}")
    if spec.head == "forecast" and (len(spec.output_shape) != 2 or min(spec.output_shape) < 1):
        raise ConfigError(f"head 'forecast' needs spec.output_shape = [horizon, n_targets]; got {spec.output_shape!r}")
    if spec.head == "seq2seq" and (len(spec.output_shape) != 1 or spec.output_shape[0] < 1 or spec.vocab_size is None):
        raise ConfigError(
            "head 'seq2seq' needs token inputs (spec.vocab_size) and spec.output_shape = "
            f"[longest target with <eos>]; got vocab_size={spec.vocab_size!r}, "
            f"output_shape={spec.output_shape!r}"
        )
    if spec.seq_len is not None and spec.seq_len < 1:
        raise ConfigError(f"spec.seq_len must be ≥ 1 when set; got {spec.seq_len}")


@overload
def input_layer(spec: Any, size: int, *, project_features: Literal[True]) -> tuple[nn.Module, int]: ...
@overload
def input_layer(spec: Any, size: int, *, project_features: bool) -> tuple[nn.Module | None, int]: ...
def input_layer(spec: Any, size: int, *, project_features: bool) -> tuple[nn.Module | None, int]:
    """The first layer: an embedding table for token ids; float features pass through unchanged
    (or are projected to ``size`` when ``project_features``, as the transformer needs).

    Returns the module (``None`` when features pass through) and the features per step after it.
    """
    if spec.vocab_size is not None:
        return nn.Embedding(spec.vocab_size, size), size
    if project_features:
        return nn.Linear(spec.input_size, size), size
    return None, spec.input_size


def last_valid_step(steps: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``steps[b, lengths[b] - 1]`` for each sequence ``b`` (the last step when ``lengths`` is None)."""
    if lengths is None:
        return steps[:, -1]
    index = (lengths.to(steps.device) - 1).view(-1, 1, 1).expand(-1, 1, steps.size(2))
    return steps.gather(1, index).squeeze(1)


def valid_mask(lengths: torch.Tensor | None, batch_size: int, seq_len: int, device: torch.device) -> torch.Tensor:
    """``[B, T]`` booleans, True on the steps of each sequence that are not padding."""
    positions = torch.arange(seq_len, device=device).unsqueeze(0)
    if lengths is None:
        return positions.expand(batch_size, seq_len) >= 0
    return positions < lengths.to(device).unsqueeze(1)


def _exporting() -> bool:
    """Tracing or exporting: value checks would be frozen into the graph (or break it), so skip them."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    )


class TaskModel(nn.Module):
    """An encoder under one head; see the module docstring for the output shapes.

    Attributes: ``encoder`` (the sequence encoder), ``attention`` (``None`` unless ``lstm+attn`` /
    ``gru+attn``), ``head``, ``spec`` (the task description as a dict), ``name`` (the model name),
    ``options`` (the ``build_model`` arguments that rebuild this exact architecture),
    ``stateful`` (the encoder carries a recurrent state), ``streamable`` (``step`` works).
    """

    receptive_field: int  # TCN models only (set by their builder): the steps one output sees

    def __init__(
        self,
        name: str,
        spec: Any,
        encoder: nn.Module,
        head: nn.Module,
        *,
        attention: nn.Module | None = None,
        dropout: float = 0.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        spec = normalize_spec(spec)
        self.spec = vars(spec).copy()
        self.per_step = spec.head in PER_STEP_HEADS
        self.encoder = encoder
        self.attention = attention
        self.head_dropout = nn.Dropout(dropout)
        self.head = head
        self.options = dict(options or {})
        self.instance_norm = False  # forecast: each window scaled by its own statistics (instance_norm.py)
        self.anchor: int | None = None  # forecast: start from the seasonal-naive path of this season
        self.smoothing: float | None = None  # forecast, anchor 1: start from the smoothed level

    # ----------------------------------------------------------------- properties
    @property
    def stateful(self) -> bool:
        return bool(getattr(self.encoder, "stateful", False))

    @property
    def streamable(self) -> bool:
        """One step at a time with a carried state equals the whole sequence: a unidirectional
        recurrent encoder without attention (attention needs all earlier outputs, not a state)."""
        return (
            self.stateful
            and self.attention is None
            and not getattr(self.encoder, "bidirectional", False)
            and getattr(self.encoder, "streamable", True)
            and not self.instance_norm
        )

    @property
    def attention_weights(self) -> torch.Tensor | None:
        """The attention of the last forward call, detached: ``[B, T]`` (pooling, sequence heads)
        or ``[B, T_query, T_key]`` (per-step heads); rows sum to 1, padding gets 0. ``None`` for
        models without attention. The transformer's is its last layer's self-attention, mean over heads."""
        if self.attention is None:
            return getattr(self.encoder, "attention_weights", None)
        return cast("torch.Tensor | None", self.attention.last_weights)  # AttentionPooling's or StepAttention's

    @property
    def num_parameters(self) -> int:
        return count_parameters(self)

    @property
    def hidden_size(self) -> int:
        """The width the model was built with (hidden size, channels or d_model)."""
        return int(self.options.get("hidden_size", self.encoder.step_size))

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        state: Any = None,
        return_state: bool = False,
    ):
        """``x``: ``LongTensor[B, T]`` token ids or ``FloatTensor[B, T, input_size]``; ``lengths``:
        ``LongTensor[B]`` valid steps per sequence (padding on the right), ``None`` when all are full;
        ``state``: the recurrent state to start from (recurrent models only). Returns the head's
        output, and with ``return_state=True`` the pair ``(output, state)`` (state ``None`` for
        encoders without one). The state is not detached: detach it between batches for
        truncated backpropagation through time."""
        if not _exporting():
            self._check_inputs(x, lengths, state)
        undo = None
        if self.instance_norm:
            x, undo = instance_normalise(x, lengths, self.spec["output_shape"][-1], self.anchor, self.smoothing)
        encoded = self.encoder(x, lengths, state) if self.stateful else self.encoder(x, lengths)
        steps, summary = encoded.steps, encoded.summary
        if self.attention is not None:
            if self.per_step:
                steps = self.attention(steps, lengths)
            else:
                summary = self.attention(steps, lengths)
        features = steps if self.per_step else summary
        output = self.head(self.head_dropout(features))
        if undo is not None:
            output = undo(output)
        return (output, encoded.state) if return_state else output

    def step(self, x_t: torch.Tensor, state: Any = None):
        """One time step with a carried state, for streaming: ``x_t`` is ``LongTensor[B]`` or
        ``FloatTensor[B, input_size]``; returns ``(output, state)`` where ``output`` is what
        ``forward`` gives at this step (per-step heads: ``[B, C]``; sequence heads: the output as if
        the sequence ended here). Feeding a sequence step by step equals running it whole."""
        self._check_streamable()
        output, state = self.forward(x_t.unsqueeze(1), None, state, return_state=True)
        return (output.squeeze(1) if self.per_step else output), state

    def step_runner(self) -> StepRunner:
        """A lean ``step`` for a long run of steps in evaluation mode (generation, streaming): see
        :class:`StepRunner`. Build it when the weights are final; it reads them as they are then."""
        self._check_streamable()
        return StepRunner(self)

    def _check_streamable(self) -> None:
        if not self.streamable:
            reason = (
                "its encoder has no recurrent state"
                if not self.stateful
                else "attention reads all earlier outputs, not a state"
                if self.attention is not None
                else "a bidirectional encoder reads the future"
            )
            raise ConfigError(f"model {self.name!r} cannot run one step at a time: {reason}")

    def _check_inputs(self, x: torch.Tensor, lengths: torch.Tensor | None, state: Any) -> None:
        spec = self.spec
        if spec["vocab_size"] is not None:
            if x.dim() != 2 or x.is_floating_point() or x.is_complex():
                raise ConfigError(
                    f"{self.name} on task {spec['task']!r} expects token ids LongTensor[B, T]; "
                    f"got {x.dtype} of shape {list(x.shape)}"
                )
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= spec["vocab_size"]):
                raise ConfigError(
                    f"token ids must lie in [0, {spec['vocab_size'] - 1}] (vocab_size {spec['vocab_size']}); "
                    f"got values from {int(x.min())} to {int(x.max())}"
                )
        elif x.dim() != 3 or x.size(2) != spec["input_size"] or not x.is_floating_point():
            raise ConfigError(
                f"{self.name} on task {spec['task']!r} expects FloatTensor[B, T, {spec['input_size']}]; "
                f"got {x.dtype} of shape {list(x.shape)}"
            )
        if x.size(1) < 1:
            raise ConfigError(f"sequences must have at least one step; got shape {list(x.shape)}")
        if lengths is not None:
            if lengths.dim() != 1 or lengths.size(0) != x.size(0):
                raise ConfigError(
                    f"lengths must be LongTensor[{x.size(0)}] (one per sequence); got shape {list(lengths.shape)}"
                )
            if int(lengths.min()) < 1 or int(lengths.max()) > x.size(1):
                raise ConfigError(
                    f"lengths must lie in [1, {x.size(1)}] (the padded length); "
                    f"got values from {int(lengths.min())} to {int(lengths.max())}"
                )
        if state is not None and not self.stateful:
            raise ConfigError(f"model {self.name!r} has no recurrent state; got a state to start from")


class StepRunner:
    """``model.step`` for a long run of steps in evaluation mode, with the per-call work done once.

    ``model.step`` checks its input, runs the encoder's layer over a one-step sequence (its
    dispatch, the state stacked per layer, autograd bookkeeping) and the head: for a 2×256 LSTM at
    batch 1 that is ~3 ms of work around ~0.25 ms of arithmetic (oneDNN even builds an RNN
    primitive per call). The runner keeps the same equations, ``x_t → e_t → (h_t, state) →
    head(h_t)``, with everything that does not change between steps resolved once:

    * ``e_t``: the embedding row of each token id (``F.embedding``), or the features as given;
    * the whole stacked layer in one compiled call (``kernels.streaming.LayerStepper``, no autograd),
      the state kept in the stepper's per-layer form between calls;
    * ``output = head(h_t)``: the top layer's ``h_t`` is what every head reads at that step
      (unidirectional, no attention: ``steps[:, t]`` and ``summary`` are both ``h_t``).

    Where the compiled step does not apply (kernels unavailable or switched off, ``zoneout``,
    ``proj_size``, minGRU/minLSTM layers), it runs ``model.step`` on PyTorch's own CPU recurrent
    kernels instead of oneDNN's.

    >>> runner = model.step_runner()                      # doctest: +SKIP
    >>> carried = runner.start(state)                     # state as model.step takes it (None: zeros)
    >>> output, carried = runner(x_t, carried)            # output as model.step gives it
    >>> state = runner.layer_state(carried)               # back to model.step's form

    No input checks: the caller checks ``x_t`` once at its edge (generation encodes the prompt
    against the vocabulary). Run it under ``torch.inference_mode()`` with the model in ``eval()``;
    it reads the weights as they are when built.
    """

    def __init__(self, model: TaskModel) -> None:
        self.model = model
        encoder = model.encoder
        embedding = getattr(encoder, "embedding", None)
        self.embedding_weight = None if embedding is None else embedding.weight.detach()
        self.head: Callable[[torch.Tensor], torch.Tensor] = model.head
        linear = getattr(model.head, "linear", None)
        if model.per_step and isinstance(linear, nn.Linear):  # a per-step head is one linear map:
            # call it as a function, not through two module calls (their hooks cost more than it)
            weight, bias = linear.weight.detach(), None if linear.bias is None else linear.bias.detach()
            self.head = lambda top_h: nn.functional.linear(top_h, weight, bias)
        self.stepper = _layer_stepper(getattr(encoder, "rnn", None)) if not model.training else None

    @property
    def compiled(self) -> bool:
        """Whether steps run the compiled stacked-layer step (else ``model.step``)."""
        return self.stepper is not None

    def start(self, state: Any = None, batch_size: int = 1) -> Any:
        """The carried form of ``state`` (``model.step``'s form; ``None``: zeros for ``batch_size``)."""
        if self.stepper is None:
            return state
        if state is None:
            return self.stepper.initial_state(batch_size)
        return self.stepper.from_layer_state(state)

    def layer_state(self, carried: Any) -> Any:
        """``carried`` in ``model.step``'s form (``h_n``, or ``(h_n, c_n)`` for an LSTM)."""
        return carried if self.stepper is None else self.stepper.to_layer_state(carried)

    def __call__(self, x_t: torch.Tensor, carried: Any) -> tuple[torch.Tensor, Any]:
        if self.stepper is None:
            with _NativeRecurrentKernels():
                return self.model.step(x_t, carried)
        inputs = x_t if self.embedding_weight is None else nn.functional.embedding(x_t, self.embedding_weight)
        top_h, carried = self.stepper(inputs, carried)
        return self.head(top_h), carried


def _layer_stepper(layer: Any) -> Any:
    """A ``LayerStepper`` for ``layer``, or ``None`` where the compiled step does not apply."""
    from rnnlab.layers import GRU, LSTM, RNN

    if not isinstance(layer, (RNN, LSTM, GRU)) or layer.zoneout > 0 or layer.proj_size > 0:
        return None
    if layer.weight_ih_l0.device.type != "cpu" or layer.weight_ih_l0.dtype not in (torch.float32, torch.float64):
        return None
    from rnnlab.kernels import build
    from rnnlab.kernels.streaming import LayerStepper

    if not build.enabled() or build.load() is None:
        return None
    return LayerStepper(layer)


class _NativeRecurrentKernels:
    """Run ``torch.lstm``/``gru`` on PyTorch's own CPU kernels rather than oneDNN's, for one step.

    oneDNN builds an RNN primitive on every call, a fixed cost of about 2 ms that is cheap over a
    long sequence but is ~6× the work of one 2×256 LSTM step at batch 1 (measured: 3.2 ms vs
    0.46 ms per step). The flag is restored at once, so nothing else runs with it changed."""

    def __enter__(self) -> None:
        self.before = torch.backends.mkldnn.set_flags(False, None, None, None)

    def __exit__(self, *exc: Any) -> None:
        torch.backends.mkldnn.set_flags(self.before[0], None, None, None)
