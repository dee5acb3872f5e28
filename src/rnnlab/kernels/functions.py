"""The compiled loops as autograd Functions: one layer, one direction, a whole sequence.

Each Function takes the input projection of every step, ``x_projection = W_ih x_t + b_ih`` (or
``LN(W_ih x_t) + b_ih``) as ``[T, B, gates·H]``, computed outside in one matmul under ordinary
autograd, and runs the recurrence over it in C++ (``rnn.cpp``, ``lstm.cpp``, ``gru.cpp`` on the BPTT loop of
``recurrent.h``): the forward pass saves the
gates, the backward pass is back-propagation through time written out. The results are those of
the cells in :mod:`rnnlab.cells` step by step (the tests hold them to it), including variable
lengths (``lengths``: steps ``t >= lengths[b]`` leave row ``b``'s state as it was and output 0),
layer norm and recurrent dropout (``recurrent_mask``: ``h_{t-1} ⊙ m`` enters the recurrent
matmul). Second derivatives are not supported (``once_differentiable``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnlab.cells import CellWeights
from rnnlab.kernels import build


def _module():
    module = build.load()
    if module is None:
        raise RuntimeError(f"rnnlab's compiled kernels are not available ({build.status()})")
    return module


def _needs_saving(ctx) -> bool:
    return any(ctx.needs_input_grad)


class RNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_projection, h0, weight_hh, bias_hh, layer_norm_hh, recurrent_mask, lengths, relu):
        output, h_last, hh_hat, hh_rstd = _module().rnn_forward(
            x_projection, h0, weight_hh, bias_hh, layer_norm_hh, recurrent_mask, lengths, relu, _needs_saving(ctx)
        )
        ctx.relu = relu
        ctx.save_for_backward(
            x_projection, h0, weight_hh, bias_hh, layer_norm_hh, recurrent_mask, lengths, output, hh_hat, hh_rstd
        )
        return output, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, grad_h_last):
        x_projection, h0, weight_hh, bias_hh, layer_norm_hh, mask, lengths, output, hh_hat, hh_rstd = ctx.saved_tensors
        d_x, d_h0, d_weight, d_bias, d_gain = _module().rnn_backward(
            grad_output,
            grad_h_last,
            x_projection,
            h0,
            weight_hh,
            bias_hh,
            layer_norm_hh,
            mask,
            lengths,
            ctx.relu,
            output,
            hh_hat,
            hh_rstd,
        )
        return d_x, d_h0, d_weight, d_bias, d_gain, None, None, None


class LSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        x_projection,
        h0,
        c0,
        weight_hh,
        bias_hh,
        layer_norm_hh,
        cell_weight,
        cell_bias,
        recurrent_mask,
        lengths,
        layer_norm_ih,
        bias_ih,
    ):
        # with layer_norm_ih, x_projection is the raw W_ih x and the kernel adds LN(·) γ_ih + b_ih itself
        output, h_last, c_last, *saved = _module().lstm_forward(
            x_projection,
            h0,
            c0,
            weight_hh,
            bias_hh,
            layer_norm_hh,
            cell_weight,
            cell_bias,
            recurrent_mask,
            lengths,
            _needs_saving(ctx),
            layer_norm_ih,
            bias_ih,
        )
        ctx.save_for_backward(
            x_projection,
            h0,
            c0,
            weight_hh,
            bias_hh,
            layer_norm_hh,
            cell_weight,
            cell_bias,
            recurrent_mask,
            lengths,
            layer_norm_ih,
            bias_ih,
            output,
            *saved,
        )
        return output, h_last, c_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, grad_h_last, grad_c_last):
        (
            x_projection,
            h0,
            c0,
            weight_hh,
            bias_hh,
            layer_norm_hh,
            cell_weight,
            cell_bias,
            mask,
            lengths,
            layer_norm_ih,
            bias_ih,
            output,
            gates,
            cells,
            hh_hat,
            hh_rstd,
            c_mean,
            c_rstd,
            x_mean,
            x_rstd,
        ) = ctx.saved_tensors
        (d_x, d_h0, d_c0, d_weight, d_bias, d_gain, d_cell_weight, d_cell_bias, d_input_gain, d_input_bias) = (
            _module().lstm_backward(
                grad_output,
                grad_h_last,
                grad_c_last,
                x_projection,
                h0,
                c0,
                weight_hh,
                bias_hh,
                layer_norm_hh,
                cell_weight,
                cell_bias,
                mask,
                lengths,
                output,
                gates,
                cells,
                hh_hat,
                hh_rstd,
                c_mean,
                c_rstd,
                layer_norm_ih,
                bias_ih,
                x_mean,
                x_rstd,
            )
        )
        return (
            d_x,
            d_h0,
            d_c0,
            d_weight,
            d_bias,
            d_gain,
            d_cell_weight,
            d_cell_bias,
            None,
            None,
            d_input_gain,
            d_input_bias,
        )


class GRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_projection, h0, weight_hh, bias_hh, layer_norm_hh, recurrent_mask, lengths, cho):
        output, h_last, gates, hh_hat, hh_rstd = _module().gru_forward(
            x_projection, h0, weight_hh, bias_hh, layer_norm_hh, recurrent_mask, lengths, cho, _needs_saving(ctx)
        )
        ctx.cho = cho
        ctx.save_for_backward(
            x_projection, h0, weight_hh, bias_hh, layer_norm_hh, recurrent_mask, lengths, output, gates, hh_hat, hh_rstd
        )
        return output, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, grad_h_last):
        x_projection, h0, weight_hh, bias_hh, layer_norm_hh, mask, lengths, output, gates, hh_hat, hh_rstd = (
            ctx.saved_tensors
        )
        d_x, d_h0, d_weight, d_bias, d_gain = _module().gru_backward(
            grad_output,
            grad_h_last,
            x_projection,
            h0,
            weight_hh,
            bias_hh,
            layer_norm_hh,
            mask,
            lengths,
            ctx.cho,
            output,
            gates,
            hh_hat,
            hh_rstd,
        )
        return d_x, d_h0, d_weight, d_bias, d_gain, None, None, None


def fuses_input_norm(cell_kind: str, weights: CellWeights) -> bool:
    """Whether the kernel applies the input projection's layer norm and bias itself (the LSTM's does)."""
    return cell_kind == "lstm" and weights.layer_norm_ih is not None


def run_recurrence(
    cell_kind: str,
    x_projection: Tensor,
    state: tuple[Tensor, ...],
    weights: CellWeights,
    *,
    nonlinearity: str = "tanh",
    convention: str = "torch",
    recurrent_mask: Tensor | None = None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run one direction of one layer: ``x_projection`` ``[T, B, gates·H]`` → ``(output [T, B, H], state)``.

    ``x_projection`` is ``W_ih x_t + b_ih`` (``LN(W_ih x_t) γ_ih + b_ih``) of every step, except for an
    LSTM with layer norm (:func:`fuses_input_norm`): there it is the raw ``W_ih x_t`` and the kernel
    normalises it and adds ``b_ih`` itself. ``state`` is ``(h_0,)`` or ``(h_0, c_0)``, each ``[B, H]``;
    ``lengths`` a CPU int64 ``[B]`` or None.
    """
    if lengths is not None:
        lengths = lengths.to(torch.int64).contiguous()
    if cell_kind == "lstm":
        fused = fuses_input_norm(cell_kind, weights)
        output, h_last, c_last = LSTMFunction.apply(
            x_projection,
            state[0],
            state[1],
            weights.weight_hh,
            weights.bias_hh,
            weights.layer_norm_hh,
            weights.layer_norm_cell_weight,
            weights.layer_norm_cell_bias,
            recurrent_mask,
            lengths,
            weights.layer_norm_ih if fused else None,
            weights.bias_ih if fused else None,
        )
        return output, (h_last, c_last)
    if cell_kind == "gru":
        output, h_last = GRUFunction.apply(
            x_projection,
            state[0],
            weights.weight_hh,
            weights.bias_hh,
            weights.layer_norm_hh,
            recurrent_mask,
            lengths,
            convention == "cho",
        )
        return output, (h_last,)
    output, h_last = RNNFunction.apply(
        x_projection,
        state[0],
        weights.weight_hh,
        weights.bias_hh,
        weights.layer_norm_hh,
        recurrent_mask,
        lengths,
        nonlinearity == "relu",
    )
    return output, (h_last,)


class MinRNNFunction(torch.autograd.Function):
    """minGRU / minLSTM over a whole sequence (see :mod:`rnnlab.cells.min_rnn`): one pass over time.

    ``x_projection`` is ``W x`` without the bias, which the kernel adds itself (``addmm`` would
    first copy the bias into every row of the output).
    """

    @staticmethod
    def forward(ctx, x_projection, bias, h0, lengths, lstm):
        output, h_last = _module().min_rnn_forward(x_projection, bias, h0, lengths, lstm)
        ctx.lstm = lstm
        ctx.save_for_backward(x_projection, bias, h0, output, lengths)
        return output, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, grad_h_last):
        x_projection, bias, h0, output, lengths = ctx.saved_tensors
        d_x, d_h0 = _module().min_rnn_backward(
            grad_output, grad_h_last, x_projection, bias, h0, output, lengths, ctx.lstm
        )
        d_bias = d_x.sum((0, 1)) if bias is not None and ctx.needs_input_grad[1] else None
        return d_x, d_bias, d_h0, None, None


def run_min_rnn(
    kind: str, x_projection: Tensor, h0: Tensor, lengths: Tensor | None = None, bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One direction of a minGRU (``kind="gru"``) or minLSTM (``"lstm"``) layer on the compiled scan;
    ``x_projection + bias`` is ``W x_t + b`` of every step."""
    if lengths is not None:
        lengths = lengths.to(torch.int64).contiguous()
    return MinRNNFunction.apply(x_projection, bias, h0, lengths, kind == "lstm")


class MinRNNLayerFunction(torch.autograd.Function):
    """One direction of a minGRU / minLSTM layer from its input: ``x`` ``[T, B, I]`` → ``h``.

    The input projection ``W x_t + b`` happens inside the kernel, tile by tile in cache; the
    forward pass saves the gate values its backward needs (2H per step and row for the minGRU, 3H
    for the minLSTM; ``min_rnn.cpp`` says why). ``x`` may be the time-major view of a batch-first
    tensor; the output and ``dx`` keep that memory order.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, h0, lengths, lstm):
        output, h_last, saved = _module().min_rnn_layer_forward(x, weight, bias, h0, lengths, lstm, _needs_saving(ctx))
        ctx.lstm = lstm
        ctx.save_for_backward(x, weight, h0, output, saved, lengths)
        return output, h_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output, grad_h_last):
        x, weight, h0, output, saved, lengths = ctx.saved_tensors
        d_x, d_h0, d_weight, d_bias = _module().min_rnn_layer_backward(
            grad_output, grad_h_last, x, weight, h0, output, saved, lengths, ctx.lstm
        )
        return d_x, d_weight, d_bias if ctx.needs_input_grad[2] else None, d_h0, None, None


def run_min_rnn_layer(
    kind: str, x: Tensor, weight: Tensor, h0: Tensor, lengths: Tensor | None = None, bias: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One direction of a minGRU (``kind="gru"``) or minLSTM (``"lstm"``) layer on ``x`` ``[T, B, I]``
    with ``weight`` ``[gates·H, I]`` and ``bias`` ``[gates·H]``: ``(output [T, B, H], h_last)``."""
    if lengths is not None:
        lengths = lengths.to(torch.int64).contiguous()
    return MinRNNLayerFunction.apply(x, weight, bias, h0, lengths, kind == "lstm")
