"""What the lab measures on a model besides its test metric: cost, memory, gradients, gates, attention.

Every function takes a built model (``rnnlab.models.TaskModel``) and real batches of the task,
and returns plain JSON-able values.

* **Gradient flow through time** (the seeds' vanishing-gradient argument, seed 001 §1.1):

      ‖∂L/∂h_t‖  for t = 1 … T   (and ‖∂L/∂c_t‖ for the LSTM's cell state)

  read from the per-step states the recurrence really used (``record_gates(detach=False)`` keeps
  them in the graph; ``retain_grad()`` keeps their gradients), on the top recurrent layer, whose
  state reaches the loss only through time. Norms are per sample, then averaged over the batch.
* **Gates**: mean, and the share saturated (< 0.1 or > 0.9), of each sigmoid gate over samples,
  steps, units and layers; the *retention gate* — how much of the previous state a step keeps —
  is the LSTM's ``f_t``, the GRU's ``z_t`` in PyTorch's convention
  (``h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}``) and ``1 − z_t`` in the documents' (Cho's).
* **Cost**: forward + backward time of one training batch; inference latency of one sequence at
  batch 1; one streaming step at batch 1 (carried state for recurrent models, an incremental
  softmax for attention pooling, the receptive-field window for the TCN, the whole window for the
  Transformer, which carries no state); each the fastest of repeated runs after warm-up
  (``TIMING_STATISTIC``).
* **Memory**: ``train_memory_bytes`` counts what one training step holds — parameters, gradients,
  Adam's two moments (4 × the parameter bytes) and every tensor autograd saves for the backward
  pass (``saved_tensors_hooks``, each storage once, parameters not twice). It is what would have to
  fit on a GPU, and it is deterministic. ``peak_rss_mb`` is the process's peak resident memory.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from rnnlab.models.attention import AttentionPooling
    from rnnlab.models.seq2seq import Seq2SeqModel
    from rnnlab.models.task_model import TaskModel

#: At most this many points of a per-step curve are kept (evenly spaced, first and last included).
MAX_CURVE_POINTS = 128
#: Attention maps wider than this are summed into this many bins of neighbouring steps.
MAX_ATTENTION_STEPS = 500
SATURATED_LOW, SATURATED_HIGH = 0.1, 0.9


# --------------------------------------------------------------------------- gradients
def measure_gradient_flow(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, lengths: torch.Tensor | None = None
) -> dict[str, Any] | None:
    """``‖∂L/∂h_t‖`` (and ``‖∂L/∂c_t‖``) against ``t`` on the top recurrent layer; ``None`` without one."""
    from rnnlab.layers import record_gates

    if not _has_recurrent_layer(model):
        return None
    was_training = model.training
    model.eval()  # no dropout: the gradient of the model itself
    try:
        with record_gates(model, detach=False) as record:
            output = model(x, lengths)
        key = _top_forward_key(record)
        entry: dict[str, Any] = record[key]
        states = {"h": entry["h_steps"]}
        if "c_steps" in entry:
            states["c"] = entry["c_steps"]
        for steps in states.values():
            for state in steps:
                state.retain_grad()
        model.zero_grad(set_to_none=True)
        loss_fn(output, y).backward()
        seq_len = len(states["h"])
        valid = _valid_steps(lengths, x.size(0), seq_len)
        steps = curve_points(seq_len)
        norms = {}
        for name, per_step in states.items():
            values = []
            for t in steps:
                gradient = per_step[t - 1].grad
                if gradient is None:
                    values.append(0.0)
                    continue
                sample_norms = gradient.detach().float().norm(dim=-1)
                mask = valid[:, t - 1]
                values.append(float(sample_norms[mask].mean()) if bool(mask.any()) else 0.0)
            norms[name] = values
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {"layer": key[1], "steps": steps, "samples": int(x.size(0)), "norms": norms}


def _has_recurrent_layer(model: nn.Module) -> bool:
    from rnnlab.layers import GRU, LSTM, RNN

    return any(isinstance(module, (RNN, LSTM, GRU)) for module in model.modules())


def _top_forward_key(record: Any) -> tuple[str, int, str]:
    keys = [key for key in record if key[2] == "forward"]
    # the encoder's layers sit under one module; the highest layer index is the top
    return max(keys, key=lambda key: (key[1], key[0]))


def _valid_steps(lengths: torch.Tensor | None, batch_size: int, seq_len: int) -> torch.Tensor:
    positions = torch.arange(seq_len).unsqueeze(0)
    if lengths is None:
        return positions.expand(batch_size, seq_len) >= 0
    return positions < lengths.cpu().unsqueeze(1)


def curve_points(seq_len: int, limit: int = MAX_CURVE_POINTS) -> list[int]:
    """At most ``limit`` steps 1 … ``seq_len``, evenly spaced, always with the first and the last."""
    if seq_len <= limit:
        return list(range(1, seq_len + 1))
    return sorted({round(1 + i * (seq_len - 1) / (limit - 1)) for i in range(limit)})


# --------------------------------------------------------------------------- gates
def measure_gates(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, Any] | None:
    """Gate statistics of the gated recurrent layers (LSTM, GRU); ``None`` for models without gates."""
    from rnnlab.layers import record_gates

    if not _has_recurrent_layer(model):
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), record_gates(model, detach=True) as record:
            model(x, lengths)
    finally:
        model.train(was_training)
    valid = _valid_steps(lengths, x.size(0), x.size(1))
    pooled: dict[str, list[torch.Tensor]] = {}
    retention_over_time: list[torch.Tensor] = []
    retention_name = None
    for key in record:
        entry: dict[str, Any] = record[key]
        gates = _sigmoid_gates(entry)
        if not gates:
            return None  # a vanilla RNN: no gates
        steps = entry["h"].size(1)
        mask = valid[:, :steps]
        for name, values in gates.items():
            pooled.setdefault(name, []).append(values[mask])
        retention_name, retention = _retention(entry)
        pooled.setdefault("keep", []).append(retention[mask])
        weights = mask.unsqueeze(-1).to(retention.dtype)
        retention_over_time.append(
            (retention * weights).sum((0, 2)) / (weights.sum((0, 2)) * retention.size(2)).clamp(min=1)
        )
    stats = {name: _gate_stats(torch.cat(values)) for name, values in pooled.items()}
    retention_stats = stats.pop("keep")
    over_time = torch.stack(retention_over_time).mean(0)
    steps = curve_points(over_time.numel())
    return {
        "gates": stats,
        "retention_gate": retention_name,
        "retention": retention_stats,
        "over_time": {"steps": steps, "mean": [float(over_time[t - 1]) for t in steps]},
    }


def _sigmoid_gates(entry: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The sigmoid gates of one recorded layer (LSTM i, f, o; GRU z, r); tanh candidates excluded."""
    return {name: entry[name].float() for name in ("i", "f", "o", "z", "r") if name in entry}


def _retention(entry: dict[str, Any]) -> tuple[str, torch.Tensor]:
    if "f" in entry:
        return "f (LSTM forget gate)", entry["f"].float()
    if "n" in entry:  # torch convention: h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
        return "z (GRU update gate, PyTorch convention: the share of h_{t−1} kept)", entry["z"].float()
    return "1 − z (GRU update gate, Cho's convention: the share of h_{t−1} kept)", 1.0 - entry["z"].float()


def _gate_stats(values: torch.Tensor) -> dict[str, float]:
    if values.numel() == 0:
        return {"mean": math.nan, "saturated_low": math.nan, "saturated_high": math.nan}
    return {
        "mean": float(values.mean()),
        "saturated_low": float((values < SATURATED_LOW).float().mean()),
        "saturated_high": float((values > SATURATED_HIGH).float().mean()),
    }


# --------------------------------------------------------------------------- attention
def measure_attention(model: TaskModel, x: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, Any] | None:
    """Attention weights over the input steps, one row per sample; ``None`` for models without attention.

    Attention pooling (``lstm+attn`` on sequence heads): its ``α_t``. Per-step attention: the row of
    the last query step. Transformer: the last layer's self-attention of the last step (the one its
    ``last`` pooling reads), averaged over heads.
    """
    was_training = model.training
    model.eval()
    try:
        if getattr(model, "attention", None) is not None:
            with torch.no_grad():
                model(x, lengths)
            weights = model.attention_weights
            assert weights is not None  # the forward call just set it
            kind = "attention pooling α_t" if weights.dim() == 2 else "per-step attention of the last step"
            if weights.dim() == 3:
                weights = weights[:, -1, :]
        else:
            weights = _transformer_last_step_attention(model, x, lengths)
            kind = "self-attention of the last step (last layer, mean over heads)"
            if weights is None:
                return None
    finally:
        model.train(was_training)
    weights = weights.float()
    steps = list(range(1, weights.size(1) + 1))
    if weights.size(1) > MAX_ATTENTION_STEPS:
        bins = torch.linspace(0, weights.size(1), MAX_ATTENTION_STEPS + 1).round().long()
        weights = torch.stack([weights[:, a:b].sum(1) for a, b in itertools.pairwise(bins)], dim=1)
        steps = [int(b) for b in bins[1:]]
        kind += f" (summed over bins of about {x.size(1) / MAX_ATTENTION_STEPS:.1f} steps)"
    return {"kind": kind, "steps": steps, "weights": [[float(v) for v in row] for row in weights]}


def _transformer_last_step_attention(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None):
    """``[B, T]``: the last layer's attention of each sequence's last valid step, mean over heads."""
    weights = _rnnlab_self_attention(model, x, lengths)
    if weights is None:
        weights = _torch_self_attention(model, x, lengths)
    if weights is None:
        return None
    last = torch.full((x.size(0),), x.size(1) - 1) if lengths is None else lengths.cpu() - 1
    return weights[torch.arange(x.size(0)), last, :]


def _capture_last(module: nn.Module, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None) -> dict:
    """Run ``model`` and keep the positional and keyword inputs of ``module``'s (last) call."""
    captured: dict[str, Any] = {}

    def capture(_, args, kwargs):
        captured["args"], captured["kwargs"] = args, dict(kwargs)

    handle = module.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            model(x, lengths)
    finally:
        handle.remove()
    return captured


def _rnnlab_self_attention(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None):
    try:
        from rnnlab.models.transformer import SelfAttention
    except ImportError:
        return None
    layers = [m for m in model.modules() if isinstance(m, SelfAttention)]
    if not layers:
        return None
    attention = layers[-1]
    captured = _capture_last(attention, model, x, lengths)
    y = captured["args"][0]
    allowed = captured["args"][1] if len(captured["args"]) > 1 else captured["kwargs"].get("allowed")
    # The layer runs a fused kernel that returns no weights; recompute them from its own projections:
    # softmax(q kᵀ / √d_head + mask), as in the module's equations.
    with torch.no_grad():
        q, k, _ = attention.qkv(y).unflatten(-1, (3, attention.num_heads, attention.head_size)).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(attention.head_size)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1).mean(1)  # [B, T_query, T_key]


def _torch_self_attention(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None):
    layers = [m for m in model.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    if not layers:
        return None
    # nn.TransformerEncoderLayer asks its attention for no weights; capture the inputs and masks of
    # the last layer's call and ask again, for weights. (A hook also turns off the layer's fused
    # inference path, which would bypass ``self_attn``.)
    attention = layers[-1].self_attn
    captured = _capture_last(attention, model, x, lengths)
    query, key, value = captured["args"][:3]
    kwargs = {name: captured["kwargs"].get(name) for name in ("attn_mask", "key_padding_mask")}
    with torch.no_grad():
        _, weights = attention(query, key, value, need_weights=True, average_attn_weights=True, **kwargs)
    return weights


# --------------------------------------------------------------------------- sequence to sequence
#: Alignment maps kept per seq2seq cell (the first test sources of most distinct lengths).
ALIGNMENT_SAMPLES = 4
#: At most this many source-length buckets in the accuracy-against-length breakdown; a bucket of
#: fewer sources than MIN_BUCKET_SOURCES joins its shorter neighbour (a rate over 3 sources is noise).
MAX_LENGTH_BUCKETS = 7
MIN_BUCKET_SOURCES = 20


def alignment_examples(dataset: Any, count: int = ALIGNMENT_SAMPLES) -> list[int]:
    """Indices of ``count`` test sources spread over the lengths present (shortest … longest)."""
    order = sorted(range(len(dataset)), key=lambda i: (int(dataset[i][0].shape[0]), i))
    if len(order) <= count:
        return order
    return [order[round(k * (len(order) - 1) / (count - 1))] for k in range(count)] if count > 1 else order[-1:]


def measure_alignments(
    model: Seq2SeqModel, x: torch.Tensor, lengths: torch.Tensor | None, y: torch.Tensor, meta: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """The decoder's attention ``α_{t,s}`` while it decodes each source (greedy), as text and weights:
    ``[{source, output, target, weights: [T_out][T_in]}]``; ``None`` for a model without attention."""
    from rnnlab.data.seq2seq import decode_chars

    if getattr(model, "attention", None) is None:
        return None
    was_training = model.training
    model.eval()
    try:
        decoded = model.decode(x, lengths, beam_size=1)
        weights = model.attention_weights
    finally:
        model.train(was_training)
    assert weights is not None  # a model with attention, which decode just ran
    maps = []
    for row in range(x.size(0)):
        length = int(lengths[row]) if lengths is not None else x.size(1)
        output = decode_chars(meta["target_vocab"], decoded[row])
        steps = min(len(output) + 1, decoded.size(1))  # the characters and <eos>
        maps.append(
            {
                "source": decode_chars(meta["source_vocab"], x[row, :length]),
                "output": output,
                "target": decode_chars(meta["target_vocab"], y[row]),
                "weights": [[round(float(v), 5) for v in weights[row, t, :length]] for t in range(steps)],
            }
        )
    return maps


def exact_match_by_source_length(
    model: nn.Module, dataset: Any, meta: dict[str, Any], *, batch_size: int = 256, min_count: int = MIN_BUCKET_SOURCES
) -> dict[str, Any]:
    """Exact match and CER of greedy (or the model's beam) decoding on ``dataset``, per bucket of
    source lengths: ``{"buckets": [{"min", "max", "count", "exact_match", "cer"}]}``. Buckets have
    equal widths (a multiple of 5 characters) over the lengths present; one of fewer than ``min_count``
    sources joins the bucket before it."""
    from rnnlab.data import collate
    from rnnlab.train.metrics import Seq2SeqMetrics

    lengths = [int(dataset[i][0].shape[0]) for i in range(len(dataset))]
    shortest, longest = min(lengths), max(lengths)
    width = max(5, 5 * math.ceil((longest - shortest + 1) / MAX_LENGTH_BUCKETS / 5))
    buckets: dict[int, Any] = {}
    was_training = model.training
    model.eval()
    try:
        order = sorted(range(len(dataset)), key=lengths.__getitem__)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = collate([dataset[i] for i in chunk])
            decoded = model(batch.x, batch.lengths)
            for bucket in sorted({(lengths[i] - shortest) // width for i in chunk}):
                rows = [r for r, i in enumerate(chunk) if (lengths[i] - shortest) // width == bucket]
                metrics = buckets.setdefault(bucket, Seq2SeqMetrics(meta.get("eos_index", 3)))
                metrics.update(decoded[rows], batch.y[rows])
    finally:
        model.train(was_training)
    merged: list[list[Any]] = []  # [low, high, metrics]
    for bucket, metrics in sorted(buckets.items()):
        low = shortest + bucket * width
        high = min(longest, low + width - 1)
        if merged and metrics.sums["sequences"] < min_count:
            merged[-1][1] = high
            for name, value in metrics.sums.items():
                merged[-1][2].sums[name] = merged[-1][2].sums[name] + value
        else:
            merged.append([low, high, metrics])
    return {
        "buckets": [
            {"min": low, "max": high, "count": int(metrics.sums["sequences"]), **metrics.compute()}
            for low, high, metrics in merged
        ]
    }


# --------------------------------------------------------------------------- cost
def time_training_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable,
    lengths: torch.Tensor | None = None,
    *,
    budget_seconds: float = 3.0,
) -> float:
    """Milliseconds of forward + loss + backward on one batch (train mode), fastest of repeated runs."""
    was_training = model.training
    model.train()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(x, lengths), y).backward()

    try:
        return _fastest_ms(step, budget_seconds=budget_seconds)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def time_inference(
    model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None = None, *, budget_seconds: float = 2.0
) -> float:
    """Milliseconds of one forward pass without gradients (eval mode), fastest of repeated runs."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _fastest_ms(lambda: model(x, lengths), budget_seconds=budget_seconds)
    finally:
        model.train(was_training)


def time_stream_step(model: TaskModel, x: torch.Tensor, *, budget_seconds: float = 2.0) -> tuple[float | None, str]:
    """Milliseconds of producing the output for one new step at batch 1 (fastest of repeated runs),
    and how it was done.

    ``x``: one sequence ``[1, T, ...]``; the state is first carried through ``x[:, :-1]`` so the timed
    step sees a realistic state (and, for windows, a full window).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if getattr(model, "streamable", False):
                _, state = model(x[:, :-1], return_state=True) if x.size(1) > 1 else (None, None)
                last = x[:, -1]
                return _fastest_ms(
                    lambda: model.step(last, state), budget_seconds=budget_seconds
                ), "one step with the carried recurrent state"
            stream = PoolingStream.for_model(model)
            if stream is not None:
                stream.feed(x[:, :-1])
                last = x[:, -1]
                return _fastest_ms(
                    lambda: stream.peek(last), budget_seconds=budget_seconds
                ), "one step with the carried state and an incremental attention softmax"
            field = getattr(model, "receptive_field", None)
            if field is not None:
                window = x[:, -min(field, x.size(1)) :]
                return _fastest_ms(
                    lambda: model(window), budget_seconds=budget_seconds
                ), f"the receptive-field window ({window.size(1)} steps) recomputed: no state to carry"
            return _fastest_ms(
                lambda: model(x), budget_seconds=budget_seconds
            ), f"the whole window ({x.size(1)} steps) recomputed: no state to carry"
    finally:
        model.train(was_training)


class PoolingStream:
    """Streaming for a recurrent encoder under attention pooling, step by step with carried state.

    Pooling is a softmax-weighted sum over all steps so far; it is kept as a running maximum ``m``,
    normaliser ``s = Σ exp(e_t − m)`` and weighted sum ``v = Σ exp(e_t − m) o_t`` (the online
    softmax), so each step costs one encoder step, one score and one head — not a pass over the past.
    ``output = head(v / s)`` equals the model's output on the sequence so far.
    """

    def __init__(self, model: TaskModel) -> None:
        self.model = model
        self.state: Any = None
        self.running_max: torch.Tensor | None = None
        self.normaliser: torch.Tensor | None = None
        self.weighted_sum: torch.Tensor | None = None

    @classmethod
    def for_model(cls, model: TaskModel) -> PoolingStream | None:
        from rnnlab.models.attention import AttentionPooling

        if (
            isinstance(getattr(model, "attention", None), AttentionPooling)
            and getattr(model, "stateful", False)
            and not getattr(model.encoder, "bidirectional", False)
        ):
            return cls(model)
        return None

    def _advance(self, x_t: torch.Tensor, state: Any, running_max, normaliser, weighted_sum):
        encoded = self.model.encoder(x_t.unsqueeze(1), None, state)
        output_t = encoded.steps[:, 0]
        score = cast("AttentionPooling", self.model.attention).score(output_t)  # e_t  [B, 1] (see for_model)
        new_max = score if running_max is None else torch.maximum(running_max, score)
        scale_new = torch.exp(score - new_max)
        if running_max is None:
            normaliser, weighted_sum = scale_new, scale_new * output_t
        else:
            scale_old = torch.exp(running_max - new_max)
            normaliser = normaliser * scale_old + scale_new
            weighted_sum = weighted_sum * scale_old + scale_new * output_t
        return encoded.state, new_max, normaliser, weighted_sum

    def feed(self, x: torch.Tensor) -> None:
        """Carry the state through ``x`` ``[B, T, ...]`` one step at a time."""
        for x_t in x.unbind(1):
            self.state, self.running_max, self.normaliser, self.weighted_sum = self._advance(
                x_t, self.state, self.running_max, self.normaliser, self.weighted_sum
            )

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """Take step ``x_t`` ``[B, ...]`` and return the output for the sequence so far."""
        self.feed(x_t.unsqueeze(1))
        assert self.weighted_sum is not None and self.normaliser is not None  # fed just above
        return self.model.head(self.weighted_sum / self.normaliser)

    def peek(self, x_t: torch.Tensor) -> torch.Tensor:
        """The output if ``x_t`` came next, leaving the carried state as it was (for timing one step)."""
        _, _, normaliser, weighted_sum = self._advance(
            x_t, self.state, self.running_max, self.normaliser, self.weighted_sum
        )
        return self.model.head(weighted_sum / normaliser)


#: How every timing is summarised: the fastest of the repeated runs. On a shared machine the
#: slower runs measure the other processes (preemption, cache eviction), not the code; the minimum
#: is the stable estimate of the code's own cost (the rule of Python's ``timeit``).
TIMING_STATISTIC = "min"


#: A block of timings is flagged as measured under contention when the process got less than this
#: share of a core's time while it ran (CPU seconds / wall seconds): other processes held the CPU.
CONTENDED_BELOW = 0.75


@contextlib.contextmanager
def load_watch() -> Iterator[dict[str, Any]]:
    """What the machine was doing while the block's timings ran: ``cpu_share`` (this process's CPU
    seconds over the wall seconds), ``loadavg_per_core`` (the 1-minute load average over the cores, at
    the end) and ``contended`` (``cpu_share < CONTENDED_BELOW``: a figure to re-time, not to trust)."""
    record: dict[str, Any] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield record
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    share = cpu / wall if wall > 0 else 1.0
    load = os.getloadavg()[0] / (os.cpu_count() or 1) if hasattr(os, "getloadavg") else None
    record.update(
        cpu_share=round(share, 3),
        loadavg_per_core=None if load is None else round(load, 3),
        contended=share < CONTENDED_BELOW,
    )


def _fastest_ms(
    function: Callable[[], Any], *, budget_seconds: float, warmup: int = 2, least: int = 3, most: int = 50
) -> float:
    """Milliseconds of the fastest of at least ``least`` and at most ``most`` timed calls of
    ``function``, after ``warmup`` untimed ones, stopping once ``budget_seconds`` are spent. A call
    slower than the whole budget gets one warm-up and two timed runs."""
    started = time.perf_counter()
    function()
    first = time.perf_counter() - started
    if first > budget_seconds:
        warmup, least = 1, 2
    for _ in range(warmup - 1):
        function()
    times: list[float] = []
    spent_since = time.perf_counter()
    while len(times) < most and (len(times) < least or time.perf_counter() - spent_since < budget_seconds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times) * 1000.0


# --------------------------------------------------------------------------- memory
def train_memory_bytes(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, lengths: torch.Tensor | None = None
) -> int:
    """Bytes one Adam training step holds: 4 × parameter bytes + the tensors saved for backward."""
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device.type != "meta" and tensor.layout == torch.strided:
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if pointer not in parameter_storages and pointer != 0:
                saved[pointer] = max(saved.get(pointer, 0), storage.nbytes())
        return tensor

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = loss_fn(model(x, lengths), y)
        loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return 4 * parameter_bytes + sum(saved.values())


def reset_peak_rss() -> bool:
    """Start a new peak-memory measurement in this process; ``False`` where the system cannot.

    Linux resets the process's resident high-water mark (``VmHWM``) when ``5`` is written to
    ``/proc/self/clear_refs`` (since 4.0), which lets one worker process measure cell after cell.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process since the last ``reset_peak_rss`` (or its start), MiB."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --------------------------------------------------------------------------- layer probe
def probe_layer_costs(
    *,
    input_size: int = 32,
    hidden_size: int = 128,
    seq_len: int = 100,
    batch_size: int = 32,
    repeats: int = 15,
    seed: int = 0,
) -> dict[str, Any]:
    """One-layer RNN, LSTM and GRU at the same sizes, timed interleaved in this process.

    The seeds' cost claims compare cells of the same hidden size; this measures exactly that:
    forward + backward of a random batch (training) and a forward pass without gradients
    (inference), ``repeats`` rounds in which every layer runs once; the fastest round of each, in
    milliseconds (``TIMING_STATISTIC``).
    """
    from rnnlab.layers import GRU, LSTM, RNN, count_parameters

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, seq_len, input_size, generator=generator)
    torch.manual_seed(seed)
    layers = {
        "rnn": RNN(input_size, hidden_size, batch_first=True),
        "lstm": LSTM(input_size, hidden_size, batch_first=True),
        "gru": GRU(input_size, hidden_size, batch_first=True),
    }
    train_times: dict[str, list[float]] = {name: [] for name in layers}
    infer_times: dict[str, list[float]] = {name: [] for name in layers}

    def train_once(layer: nn.Module) -> None:
        layer.zero_grad(set_to_none=True)
        output, _ = layer(x)
        output.square().mean().backward()

    def infer_once(layer: nn.Module) -> None:
        with torch.inference_mode():
            layer(x)

    for layer in layers.values():  # warm-up
        train_once(layer)
        infer_once(layer)
    for _ in range(repeats):
        for name, layer in layers.items():
            started = time.perf_counter()
            train_once(layer)
            train_times[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            infer_once(layer)
            infer_times[name].append(time.perf_counter() - started)
    return {
        "input_size": input_size,
        "hidden_size": hidden_size,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "statistic": TIMING_STATISTIC,
        "parameters": {name: count_parameters(layer) for name, layer in layers.items()},
        "layers": {
            name: {"train_ms": min(train_times[name]) * 1000, "infer_ms": min(infer_times[name]) * 1000}
            for name in layers
        },
    }
