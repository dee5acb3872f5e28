"""One head per task: the last linear layer, shaped by what the task predicts.

Sequence-level heads read the encoder's summary ``s`` ``[B, D]``; per-step heads read every step
``o_t`` ``[B, T, D]``:

    classify    y = W s + b                      [B, num_classes]   (logits)
    regress     y = w·s + b                      [B]
    forecast    y = reshape(W s + b)             [B, horizon, n_targets]
                (direct multi-horizon: every future step from the one summary, no feedback of
                 predictions, so errors do not compound over the horizon)
    tag, lm     y_t = W o_t + b                  [B, T, num_classes] (logits per step)
    multilabel  y_t = W o_t + b                  [B, T, num_classes] (independent logits per
                 label and step, for a sigmoid / binary cross-entropy loss, e.g. 88 piano keys)

The language model is seed 004's ``TextLSTM`` applied at every step: embedding → stacked LSTM →
dropout → linear (the dropout is ``TaskModel.head_dropout``).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from rnnlab.models.task_model import PER_STEP_HEADS


class SequenceHead(nn.Module):
    """A linear map of the summary reshaped to ``output_shape`` (``[]`` gives ``[B]``)."""

    def __init__(self, in_features: int, output_shape: list[int]) -> None:
        super().__init__()
        self.output_shape = list(output_shape)
        out_features = 1
        for size in self.output_shape:
            out_features *= size
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, summary: torch.Tensor) -> torch.Tensor:
        return self.linear(summary).reshape(summary.size(0), *self.output_shape)


class StepHead(nn.Module):
    """The same linear map at every step."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        return self.linear(steps)


def start_at_label_rates(head: StepHead, rates: list[float]) -> None:
    """Start a multilabel head at the labels' training rates ``q_k``: ``b_k = log(q_k / (1 − q_k))``, so
    the untrained model predicts each label's marginal rate instead of ``p = 0.5`` for every one.

    On 88 piano keys that is the difference between starting at the marginal NLL (~11 nats per frame on
    JSB Chorales) and at 88·ln 2 ≈ 61; from p = 0.5 a GRU or a two-layer LSTM spends its first epochs
    learning the rates and can stall on that plateau (docs/bai2018.md).
    """
    q = torch.as_tensor(rates, dtype=head.linear.bias.dtype).clamp(1e-6, 1 - 1e-6)
    if q.shape != head.linear.bias.shape:
        raise ValueError(f"{len(q)} label rates for a head of {head.linear.bias.shape[0]} labels")
    with torch.no_grad():
        head.linear.bias.copy_(torch.log(q / (1 - q)))


def build_head(spec: SimpleNamespace, in_features: int) -> nn.Module:
    """The head for ``spec.head`` reading ``in_features`` per sequence (or per step)."""
    if spec.head in PER_STEP_HEADS:
        return StepHead(in_features, spec.num_classes)
    if spec.head == "classify":
        return SequenceHead(in_features, [spec.num_classes])
    if spec.head == "forecast":
        return SequenceHead(in_features, list(spec.output_shape))
    return SequenceHead(in_features, [])  # regress
