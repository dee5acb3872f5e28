"""Informer (Zhou et al. 2021, "Beyond Efficient Transformer for Long Sequence Time-Series
Forecasting") for the ``forecast`` head: ProbSparse self-attention, self-attention distilling, and a
generative decoder that emits the whole horizon in one forward pass.

Embedding (``x`` ``[B, T, F]``, ``T`` the lookback, ``H`` the horizon, ``L_label`` the start token):

    z_t = W_in x_t + b_in + PE_t                    (PE as in ``transformer.py``)

Encoder, ``num_layers`` attention layers with a distilling step between two of them (post-norm, as
in the paper):

    z ← LN(z + Dropout(ProbSparse(z)));   z ← LN(z + Dropout(W_2 GELU(W_1 z)))
    distil(z) = MaxPool_{k=3, stride 2}(ELU(BatchNorm(Conv1d_{k=3, circular}(z))))   T → ⌈T/2⌉

so a layer reads half the steps of the one before it and the encoder's memory is dominated by the
first layer.

ProbSparse self-attention of queries ``q_i`` over keys ``k_j`` (``L_Q`` queries, ``L_K`` keys, per head):

    M̄(q_i) = max_{j ∈ S_i} q_i k_jᵀ/√d − mean_{j ∈ S_i} q_i k_jᵀ/√d     S_i: n_sample random keys,
                                                                       n_sample = min(L_K, c·⌈ln L_K⌉)
    top    = the u = min(L_Q, c·⌈ln L_Q⌉) queries with the largest M̄   (the "active" queries)
    out_i  = softmax(q_i Kᵀ/√d) V                   for i ∈ top
    out_i  = mean(V)  (self-attention)  or  mean(V_{≤i})  (masked)       for the "lazy" rest

M̄ only chooses which queries to compute, so it is evaluated without gradients; its sampled scores
are never kept, and a layer stores ``u × L_K`` attention weights instead of ``L_Q × L_K``. A lazy
query's attention is close to uniform (that is what a small M̄ means), and uniform attention over the
keys a query may see is the mean of their values: under the decoder's causal mask the prefix mean.
When ``u ≥ L_Q`` every query is active and ProbSparse is exactly full attention. Training draws the
sampled keys from the global generator; evaluation draws them from a generator seeded with 0, so a
trained model's forecasts are reproducible.

Decoder (``decoder_layers`` layers), the generative-style inference of the paper:

    d_in = [x_{T−L_label} … x_{T−1} ; 0 … 0]       start token: the lookback's last L_label steps,
                                                   then H zero placeholders for the horizon
    d ← LN(d + Dropout(masked ProbSparse(d)));  d ← LN(d + Dropout(CrossAttention(d, encoder)));
    d ← LN(d + Dropout(FFN(d)))
    ŷ = W_out d_{L_label : L_label + H}            [B, H, n_targets]  (the ``forecast`` head, per step)

The paper also feeds time-stamp embeddings; here calendar features reach the model as the task's
covariate columns, like any other input feature. ``attention="full"`` puts canonical softmax
attention in the same skeleton, its ``L × L`` weights written out (the baseline the paper and
``bench/informer.py`` compare against). Cross attention is always full and runs PyTorch's fused
``scaled_dot_product_attention`` (its queries are only ``L_label + H``).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from rnnlab.errors import ConfigError
from rnnlab.models.task_model import EncoderOutput, _exporting
from rnnlab.models.transformer import DEFAULT_NUM_HEADS, sinusoidal_positions

ATTENTIONS = ("prob", "full")
#: The paper's sampling factor c (u = c·ln L); its experiments use 5.
DEFAULT_FACTOR = 5
#: Seed of the key sample in evaluation (``model.eval()``): forecasts are reproducible.
EVALUATION_SEED = 0
#: Queries whose M̄ is computed at once: bounds the transient ``[B, heads, block, n_sample, d]`` keys.
MEASURE_BLOCK = 256


def active_query_count(length: int, factor: int) -> int:
    """``u = min(length, c·⌈ln length⌉)`` (at least 1): queries (or sampled keys) ProbSparse keeps."""
    return max(1, min(length, factor * math.ceil(math.log(max(length, 2)))))


def prob_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    factor: int,
    causal: bool,
    dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ProbSparse attention (module docstring) of ``q`` ``[B, heads, L_Q, d]`` over ``k``, ``v``
    ``[B, heads, L_K, d]``; ``causal`` (needs ``L_Q == L_K``) lets query ``i`` see keys ``j ≤ i``.
    Returns ``[B, heads, L_Q, d]``; equals full attention when ``u ≥ L_Q``."""
    _batch_size, _heads, query_len, head_size = q.shape
    key_len = k.size(2)
    active = active_query_count(query_len, factor)
    if active >= query_len:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal)
    scale = 1.0 / math.sqrt(head_size)
    sampled = active_query_count(key_len, factor)
    with torch.no_grad():
        # One sample of keys per query, shared by the batch and the heads (as the authors' code).
        index = torch.randint(key_len, (query_len, sampled), generator=generator).to(q.device)
        spread = torch.cat(
            [
                _sparsity(q[:, :, block], k, index[block], block, scale, causal)
                for block in _blocks(query_len, MEASURE_BLOCK)
            ],
            dim=2,
        )
        top = spread.topk(active, dim=-1).indices  # [B, heads, u]
    gather_index = top.unsqueeze(-1).expand(-1, -1, -1, head_size)
    top_queries = q.gather(2, gather_index)  # [B, heads, u, d]
    weights = (top_queries @ k.transpose(-1, -2)) * scale  # [B, heads, u, L_K]
    if causal:
        later = torch.arange(key_len, device=q.device).view(1, 1, 1, -1) > top.unsqueeze(-1)
        weights = weights.masked_fill(later, float("-inf"))
    weights = F.dropout(torch.softmax(weights, dim=-1), p=dropout, training=dropout > 0)
    attended = weights @ v  # [B, heads, u, d]
    if causal:
        steps = torch.arange(1, key_len + 1, device=v.device, dtype=v.dtype).view(1, 1, -1, 1)
        lazy = v.cumsum(2) / steps  # mean of the values each query may see
    else:
        lazy = v.mean(2, keepdim=True).expand(-1, -1, query_len, -1)
    return lazy.scatter(2, gather_index, attended)


def _blocks(length: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, length)) for start in range(0, length, size)]


def _sparsity(
    q: torch.Tensor, k: torch.Tensor, index: torch.Tensor, block: slice, scale: float, causal: bool
) -> torch.Tensor:
    """``M̄`` of the queries ``q`` ``[B, heads, n, d]`` (positions ``block``) over their sampled keys ``index``."""
    keys = k[:, :, index, :]  # [B, heads, n, n_sample, d]: transient, freed with the block
    scores = torch.einsum("bhqd,bhqsd->bhqs", q, keys) * scale
    if not causal:
        return scores.amax(-1) - scores.mean(-1)
    # a sampled key after the query is not one it may see: leave it out of max and mean
    positions = torch.arange(block.start, block.stop, device=q.device).unsqueeze(1)
    visible = index <= positions
    counts = visible.sum(-1).clamp(min=1)
    spread = scores.masked_fill(~visible, float("-inf")).amax(-1) - scores.masked_fill(~visible, 0.0).sum(-1) / counts
    return torch.nan_to_num(spread, neginf=-1e30)  # a query whose sample holds no visible key


def canonical_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, dropout: float = 0.0
) -> torch.Tensor:
    """``softmax(q kᵀ/√d + mask) v`` written out: the ``L_Q × L_K`` weights are materialised and kept
    for backward, as in the canonical self-attention the paper measures against."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))
    if causal:
        later = torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(later, float("-inf"))
    return F.dropout(torch.softmax(scores, dim=-1), p=dropout, training=dropout > 0) @ v


class InformerAttention(nn.Module):
    """Multi-head attention whose core is ProbSparse (``attention="prob"``) or full softmax
    attention; ``forward(queries_from, keys_from=None)`` (self-attention when ``keys_from`` is None).
    Cross attention is always full, as in the paper (its queries are few: ``L_label + H``)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float,
        *,
        attention: str,
        factor: int,
        causal: bool = False,
        cross: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads, self.head_size = num_heads, d_model // num_heads
        self.dropout, self.attention, self.factor = dropout, attention, factor
        self.causal, self.cross = causal, cross
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, queries_from: torch.Tensor, keys_from: torch.Tensor | None = None) -> torch.Tensor:
        keys_from = queries_from if keys_from is None else keys_from
        q = self.query(queries_from).unflatten(-1, (self.num_heads, self.head_size)).transpose(1, 2)
        k, v = self.key_value(keys_from).unflatten(-1, (2, self.num_heads, self.head_size)).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        if self.cross:
            heads = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        elif self.attention == "full":
            heads = canonical_attention(q, k, v, causal=self.causal, dropout=dropout)
        else:
            generator = None if self.training else torch.Generator().manual_seed(EVALUATION_SEED)
            heads = prob_sparse_attention(
                q, k, v, factor=self.factor, causal=self.causal, dropout=dropout, generator=generator
            )
        return self.out(heads.transpose(1, 2).flatten(2))


def feedforward(d_model: int, feedforward_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_model, feedforward_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(feedforward_size, d_model)
    )


class EncoderLayer(nn.Module):
    """``z ← LN(z + Dropout(attention(z)))``, ``z ← LN(z + Dropout(FFN(z)))``."""

    def __init__(
        self, d_model: int, num_heads: int, feedforward_size: int, dropout: float, *, attention: str, factor: int
    ) -> None:
        super().__init__()
        self.attention = InformerAttention(d_model, num_heads, dropout, attention=attention, factor=factor)
        self.attention_norm = nn.LayerNorm(d_model)
        self.feedforward = feedforward(d_model, feedforward_size, dropout)
        self.feedforward_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.attention_norm(z + self.dropout(self.attention(z)))
        return self.feedforward_norm(z + self.dropout(self.feedforward(z)))


class DistillingLayer(nn.Module):
    """``MaxPool(ELU(BatchNorm(Conv1d(z))))``: ``[B, T, d]`` → ``[B, ⌈T/2⌉, d]``, keeping the dominant
    features of each neighbourhood (the paper's self-attention distilling)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=3, padding=1, padding_mode="circular")
        self.norm = nn.BatchNorm1d(d_model)
        self.pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.pool(F.elu(self.norm(self.conv(z.transpose(1, 2))))).transpose(1, 2)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross attention to the encoder, FFN; each ``LN(d + Dropout(·))``."""

    def __init__(
        self, d_model: int, num_heads: int, feedforward_size: int, dropout: float, *, attention: str, factor: int
    ) -> None:
        super().__init__()
        self.self_attention = InformerAttention(
            d_model, num_heads, dropout, attention=attention, factor=factor, causal=True
        )
        self.self_norm = nn.LayerNorm(d_model)
        self.cross_attention = InformerAttention(
            d_model, num_heads, dropout, attention=attention, factor=factor, cross=True
        )
        self.cross_norm = nn.LayerNorm(d_model)
        self.feedforward = feedforward(d_model, feedforward_size, dropout)
        self.feedforward_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, d: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        d = self.self_norm(d + self.dropout(self.self_attention(d)))
        d = self.cross_norm(d + self.dropout(self.cross_attention(d, encoded)))
        return self.feedforward_norm(d + self.dropout(self.feedforward(d)))


class InformerEncoder(nn.Module):
    """Encoder and generative decoder; ``summary`` is the decoder's output over the horizon
    ``[B, H, d_model]`` (the forecast head maps each of its steps to the targets), ``steps`` the
    encoder's distilled output ``[B, ⌈T/2^(num_layers−1)⌉, d_model]``."""

    stateful = False
    bidirectional = True  # the encoder reads the whole lookback
    onnx_refusal = (
        "ProbSparse attention keeps u = c·ln L queries chosen by a top-k over randomly sampled keys; a "
        "trace freezes u and the sample at the traced length (wrong at any other lookback), and a random "
        "sample cannot be checked against PyTorch. Serve the PyTorch model (rnnlab forecast)"
    )

    def __init__(
        self,
        spec: SimpleNamespace,
        d_model: int,
        *,
        num_layers: int = 2,
        decoder_layers: int = 1,
        num_heads: int = DEFAULT_NUM_HEADS,
        feedforward_size: int | None = None,
        dropout: float = 0.0,
        attention: str = "prob",
        factor: int = DEFAULT_FACTOR,
        label_len: int | None = None,
        distil: bool = True,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.horizon = int(spec.output_shape[0])
        self.lookback = spec.seq_len
        self.label_len = label_len
        feedforward_size = feedforward_size or 4 * d_model
        layer: dict[str, Any] = dict(attention=attention, factor=factor)
        self.input = nn.Linear(spec.input_size, d_model)
        self.decoder_input = nn.Linear(spec.input_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, feedforward_size, dropout, **layer) for _ in range(num_layers)
        )
        self.distilling = nn.ModuleList(DistillingLayer(d_model) for _ in range(num_layers - 1 if distil else 0))
        self.encoder_norm = nn.LayerNorm(d_model)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, feedforward_size, dropout, **layer) for _ in range(decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(d_model)
        self.step_size = self.summary_size = d_model

    def start_length(self, lookback: int) -> int:
        """``L_label``: the lookback's last steps the decoder starts from (the paper: half the lookback)."""
        return min(lookback, self.label_len if self.label_len is not None else max(1, lookback // 2))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        batch_size, lookback, _ = x.shape
        if lengths is not None and not _exporting() and bool((lengths != lookback).any()):
            raise ConfigError(
                f"informer reads whole lookback windows of {lookback} steps (the decoder starts from the "
                f"window's last steps); got lengths from {int(lengths.min())} to {int(lengths.max())}"
            )
        z = self.input(x)
        z = self.dropout(z + sinusoidal_positions(lookback, self.d_model, z.device, z.dtype))
        for index, layer in enumerate(self.encoder_layers):
            z = layer(z)
            if index < len(self.distilling):
                z = self.distilling[index](z)
        encoded = self.encoder_norm(z)

        label_len = self.start_length(lookback)
        start = x[:, lookback - label_len :]
        placeholders = x.new_zeros(batch_size, self.horizon, x.size(2))
        d = self.decoder_input(torch.cat([start, placeholders], dim=1))
        d = self.dropout(d + sinusoidal_positions(label_len + self.horizon, self.d_model, d.device, d.dtype))
        for layer in self.decoder_layers:
            d = layer(d, encoded)
        forecast_steps = self.decoder_norm(d)[:, label_len:]  # [B, H, d_model]
        return EncoderOutput(encoded, forecast_steps, None)
