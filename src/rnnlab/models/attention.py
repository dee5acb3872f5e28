"""Attention on top of a recurrent encoder (``lstm+attn``, ``gru+attn``).

Sequence-level heads (classify, regress, forecast) use the seeds' ``HybridModel`` pooling (seed
001, "GRU+Attention"): an additive score per step, a softmax over time, a weighted sum.

    e_t     = w_2ᵀ tanh(W_1 o_t + b_1) + b_2                (score of step t)
    α_t     = exp(e_t) / Σ_{s < len} exp(e_s)   for t < len, 0 on padding
    context = Σ_t α_t o_t                                   [B, H] → the head

Per-step heads (tag, lm, multilabel) need one context per step, so pooling does not fit. They use
Luong et al. (2015)'s "general" attention of every step over the encoder's own outputs followed by
their attentional hidden state:

    e_{t,s} = (o_t)ᵀ W_a o_s / √H                          (query step t, key step s)
    α_{t,s} = softmax over the allowed s:  s < len, and s ≤ t when the task is causal
    c_t     = Σ_s α_{t,s} o_s
    õ_t     = tanh(W_c [c_t ; o_t])                         [B, T, H] → the head

Causal masking keeps a language model from reading the tokens it must predict. A multiplicative
score costs one batched matrix product instead of an additive score's ``[B, T, T, H]`` tensor.
Rows of padded query steps are set to 0 (they are never scored).

Both keep the weights of their last call in ``last_weights`` (detached, ``[B, T]`` or
``[B, T, T]``) for the lab's heatmaps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnlab.models.task_model import valid_mask


class AttentionPooling(nn.Module):
    """The seeds' attention pooling: ``[B, T, H]`` outputs → ``[B, H]`` context (equations above)."""

    def __init__(self, size: int, attention_size: int | None = None) -> None:
        super().__init__()
        attention_size = attention_size or size
        self.score = nn.Sequential(nn.Linear(size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1))
        self.last_weights: torch.Tensor | None = None

    def forward(self, outputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        batch_size, seq_len, _ = outputs.shape
        scores = self.score(outputs).squeeze(-1)  # e_t  [B, T]
        valid = valid_mask(lengths, batch_size, seq_len, outputs.device)
        # Every sequence has at least one valid step, so no row is all -inf (no NaN).
        weights = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=1)  # α_t
        self.last_weights = weights.detach()
        return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1)  # context


class StepAttention(nn.Module):
    """Luong "general" attention of each step over all steps (causal when asked): ``[B, T, H]`` → ``[B, T, H]``."""

    def __init__(self, size: int, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.score = nn.Linear(size, size, bias=False)  # W_a
        self.combine = nn.Linear(2 * size, size)  # W_c
        self.last_weights: torch.Tensor | None = None

    def forward(self, outputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        batch_size, seq_len, size = outputs.shape
        scores = torch.bmm(outputs, self.score(outputs).transpose(1, 2)) / math.sqrt(size)  # e_{t,s}
        valid = valid_mask(lengths, batch_size, seq_len, outputs.device)  # [B, T]
        allowed = valid.unsqueeze(1).expand(batch_size, seq_len, seq_len)  # keys s < len
        if self.causal:
            positions = torch.arange(seq_len, device=outputs.device)
            allowed = allowed & (positions.unsqueeze(0) <= positions.unsqueeze(1)).unsqueeze(0)  # s ≤ t
        # Key s = 0 is always allowed (len ≥ 1, 0 ≤ t), so no row is all -inf.
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=2)  # α_{t,s}
        weights = weights * valid.unsqueeze(2).to(weights.dtype)  # padded query rows → 0
        self.last_weights = weights.detach()
        context = torch.bmm(weights, outputs)  # c_t
        return torch.tanh(self.combine(torch.cat([context, outputs], dim=2)))  # õ_t
