"""Transformer-XL (Dai et al. 2019): segment-level recurrence with relative positional encoding,
for the language-model (``lm``) head.

Text is read in segments of ``segment_len`` tokens. Each layer ``n`` keeps the inputs it saw over
the last ``mem_len`` positions as its memory ``m^{n−1}`` (detached: gradients stop at the segment
edge, the paper's SG(·)), and attends over memory and segment together:

    h̃^{n−1}  = [SG(m^{n−1}) ; h^{n−1}]                               [M + T, d]
    q = LN(h^{n−1}) W_q,   k = LN(h̃^{n−1}) W_k,   v = LN(h̃^{n−1}) W_v   (pre-norm, per head)
    A_{i,j} = (q_i + u)ᵀ k_j + (q_i + v)ᵀ W_R R_{i−j}                  (the paper's terms (a)+(c), (b)+(d))
    R_δ     = sinusoid of the distance δ (PE of ``transformer.py`` at position δ)
    a_i     = softmax_j(A_{i,j}/√d_head  masked where j > M + i) · v     (causal over memory + segment)
    h^n     = h^{n−1} + Dropout(W_o a);   h^n ← h^n + Dropout(FFN(LN(h^n)))
    m^n_new = the last ``mem_len`` rows of [m^{n−1} ; h^{n−1}]

Positions enter only as the distance ``i − j``, so the same weights serve a query whatever its
absolute place in the text, and memory states computed in an earlier segment stay valid. ``u`` and
``v`` are the content and position biases that replace the absolute query position. The effective
context grows with depth: layer ``n`` reaches ``n · mem_len`` tokens back through the memories.

State contract (``TaskModel.forward(x, state=..., return_state=True)``): the memory is the state, one
tensor ``[num_layers, B, M, d_model]`` (``M ≤ mem_len``, layer inputs, oldest first), so
``train/stateful.py`` carries it between TBPTT batches like a recurrent state. An input longer than
``segment_len`` is read segment by segment with the memory carried (how the paper evaluates), so
the stream evaluation's long windows see exactly the context the model was trained with, and
``model.step`` (one token, a segment of one) generates text with the memory as its state.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from rnnlab.errors import ConfigError
from rnnlab.models.task_model import EncoderOutput, _exporting
from rnnlab.models.transformer import DEFAULT_NUM_HEADS, sinusoidal_positions

#: Segment length when the task has no fixed length.
DEFAULT_SEGMENT_LEN = 128


class RelativeSelfAttention(nn.Module):
    """Multi-head attention of a segment over memory + segment with relative positions (module
    docstring); ``forward(segment [B, T, d], memory [B, M, d]) -> [B, T, d]``, both already normed."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.d_model, self.num_heads, self.head_size = d_model, num_heads, d_model // num_heads
        self.dropout = nn.Dropout(dropout)
        self.query = nn.Linear(d_model, d_model, bias=False)  # W_q
        self.key_value = nn.Linear(d_model, 2 * d_model, bias=False)  # W_k, W_v
        self.position = nn.Linear(d_model, d_model, bias=False)  # W_R
        self.content_bias = nn.Parameter(torch.zeros(num_heads, self.head_size))  # u
        self.position_bias = nn.Parameter(torch.zeros(num_heads, self.head_size))  # v
        self.out = nn.Linear(d_model, d_model)  # W_o

    def forward(self, segment: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        seg_len, mem_len = segment.size(1), memory.size(1)
        context_len = mem_len + seg_len
        context = torch.cat([memory, segment], dim=1)
        q = self.query(segment).unflatten(-1, (self.num_heads, self.head_size))  # [B, T, heads, d_head]
        k, v = self.key_value(context).unflatten(-1, (2, self.num_heads, self.head_size)).permute(2, 0, 3, 1, 4)
        # R_δ for δ = 0 … M + T − 1, projected: [heads, M + T, d_head]
        distances = sinusoidal_positions(context_len, self.d_model, segment.device, segment.dtype)
        r = self.position(distances).unflatten(-1, (self.num_heads, self.head_size)).transpose(0, 1)
        content = (q + self.content_bias).transpose(1, 2) @ k.transpose(-1, -2)  # (a)+(c): [B, heads, T, M+T]
        by_distance = (q + self.position_bias).transpose(1, 2) @ r.transpose(-1, -2)  # column δ: [B, heads, T, M+T]
        # query i sits at M + i in the context; key j is δ = M + i − j behind it
        query_at = torch.arange(seg_len, device=segment.device).unsqueeze(1) + mem_len
        distance = query_at - torch.arange(context_len, device=segment.device).unsqueeze(0)  # [T, M+T]
        position = by_distance.gather(-1, distance.clamp(min=0).expand_as(by_distance))  # (b)+(d)
        scores = (content + position) / math.sqrt(self.head_size)
        scores = scores.masked_fill(distance < 0, float("-inf"))  # later keys: causal
        attended = self.dropout(torch.softmax(scores, dim=-1)) @ v  # [B, heads, T, d_head]
        return self.out(attended.transpose(1, 2).flatten(2))


class XLLayer(nn.Module):
    """``h ← h + Dropout(RelAttn(LN(h), LN(m)))``; ``h ← h + Dropout(FFN(LN(h)))``."""

    def __init__(self, d_model: int, num_heads: int, feedforward_size: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = RelativeSelfAttention(d_model, num_heads, dropout)
        self.feedforward_norm = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, feedforward_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(feedforward_size, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        h = h + self.dropout(self.attention(self.attention_norm(h), self.attention_norm(memory)))
        return h + self.dropout(self.feedforward(self.feedforward_norm(h)))


class TransformerXLEncoder(nn.Module):
    """Token ids ``[B, T]`` → ``steps`` ``[B, T, d_model]``, ``summary`` (last step), ``state`` (the
    memory, ``[num_layers, B, M, d_model]``)."""

    stateful = True
    bidirectional = False
    onnx_refusal = (
        "its state is a memory of past hidden states that grows up to mem_len positions, and its input "
        "is read segment by segment; a trace freezes the memory length and the number of segments at "
        "the traced ones, so neither the sequence nor the step graph would be right at other lengths. "
        "Serve the PyTorch model (rnnlab generate)"
    )

    def __init__(
        self,
        spec: SimpleNamespace,
        d_model: int,
        *,
        num_layers: int = 2,
        num_heads: int = DEFAULT_NUM_HEADS,
        feedforward_size: int | None = None,
        dropout: float = 0.0,
        segment_len: int | None = None,
        mem_len: int | None = None,
    ) -> None:
        super().__init__()
        self.d_model, self.num_layers = d_model, num_layers
        self.segment_len = int(segment_len or spec.seq_len or DEFAULT_SEGMENT_LEN)
        self.mem_len = self.segment_len if mem_len is None else int(mem_len)
        self.embedding = nn.Embedding(spec.vocab_size, d_model)
        self.scale_input = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            XLLayer(d_model, num_heads, feedforward_size or 4 * d_model, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.step_size = self.summary_size = d_model

    def empty_memory(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(self.num_layers, batch_size, 0, self.d_model, device=device, dtype=dtype)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, state: torch.Tensor | None = None
    ) -> EncoderOutput:
        batch_size, seq_len = x.shape
        if lengths is not None and not _exporting() and bool((lengths != seq_len).any()):
            raise ConfigError(
                f"transformer-xl reads contiguous text: every row of a batch must be a full segment "
                f"(its memory continues each row), but lengths run from {int(lengths.min())} to "
                f"{int(lengths.max())} in a batch of {seq_len} steps"
            )
        h = self.dropout(self.embedding(x) * self.scale_input)
        memory = self.empty_memory(batch_size, h.device, h.dtype) if state is None else state
        if not _exporting() and (
            memory.dim() != 4
            or memory.size(0) != self.num_layers
            or memory.size(1) != batch_size
            or memory.size(3) != self.d_model
        ):
            raise ConfigError(
                f"transformer-xl memory must be [num_layers={self.num_layers}, batch={batch_size}, M, "
                f"d_model={self.d_model}]; got shape {list(memory.shape)}"
            )
        outputs = []
        for segment in h.split(self.segment_len, dim=1):
            output, memory = self._read_segment(segment, memory)
            outputs.append(output)
        steps = torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]
        return EncoderOutput(steps, steps[:, -1], memory)

    def _read_segment(self, h: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new_memory = []
        for index, layer in enumerate(self.layers):
            layer_memory = memory[index]
            # SG(·): the cache is a constant to this segment's gradient (the paper's stop-gradient)
            new_memory.append(
                torch.cat([layer_memory, h], dim=1)[:, -self.mem_len :].detach()
                if self.mem_len > 0
                else layer_memory[:, :0]
            )
            h = layer(h, layer_memory.detach())
        return self.final_norm(h), torch.stack(new_memory)
