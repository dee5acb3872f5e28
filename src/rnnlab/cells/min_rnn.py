r"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"), trained with a parallel scan.

Both drop the previous state from their gates, so that the recurrence becomes *linear* in ``h``:

.. math::
    \text{minGRU:}\quad z_t &= \sigma(W_z x_t + b_z), \quad \tilde h_t = g(W_h x_t + b_h),
        \quad h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t \\
    \text{minLSTM:}\quad f_t &= \sigma(W_f x_t + b_f), \quad i_t = \sigma(W_i x_t + b_i),
        \quad \tilde h_t = g(W_h x_t + b_h), \\
        f'_t &= \frac{f_t}{f_t + i_t}, \quad i'_t = \frac{i_t}{f_t + i_t},
        \quad h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

with ``g(x) = x + 0.5`` for ``x ≥ 0`` and ``σ(x)`` otherwise (the paper's positive activation, so
that ``h~_t > 0`` and its logarithm exists). Each is ``h_t = a_t ⊙ h_{t-1} + b_t`` with ``a_t``,
``b_t`` known for every step before the recurrence runs, so all ``T`` states come from cumulative
sums instead of ``T`` dependent steps (:func:`scan_linear_recurrence`); the step functions are
the same equations one step at a time (the streaming mode), and the tests hold the two equal.

In the code: ``z_t, h_tilde, f_t, i_t``; the gate rows of ``W`` come in the order above
(minGRU ``[z, h~]``, minLSTM ``[f, i, h~]``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnlab.errors import ConfigError

GATE_COUNTS = {"gru": 2, "lstm": 3}


def g(x: Tensor) -> Tensor:
    """The paper's positive activation: ``x + 0.5`` for ``x ≥ 0``, ``σ(x)`` below (continuous at 0)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def min_gru_step(x_projection_t: Tensor, h_prev: Tensor) -> Tensor:
    """One minGRU step from ``W x_t + b`` = ``[k_z, k_h]`` (the sequential, streaming mode)."""
    k_z, k_h = x_projection_t.chunk(2, dim=-1)
    z_t = torch.sigmoid(k_z)
    h_tilde = g(k_h)
    return (1 - z_t) * h_prev + z_t * h_tilde


def min_lstm_step(x_projection_t: Tensor, h_prev: Tensor) -> Tensor:
    """One minLSTM step from ``W x_t + b`` = ``[k_f, k_i, k_h]`` (the sequential, streaming mode)."""
    k_f, k_i, k_h = x_projection_t.chunk(3, dim=-1)
    f_t = torch.sigmoid(k_f)
    i_t = torch.sigmoid(k_i)
    h_tilde = g(k_h)
    return f_t / (f_t + i_t) * h_prev + i_t / (f_t + i_t) * h_tilde


def recurrence_coefficients(kind: str, x_projection: Tensor) -> tuple[Tensor, Tensor]:
    """``(a_t, b_t)`` of ``h_t = a_t ⊙ h_{t-1} + b_t`` for every step at once (``kind`` gru | lstm).

    minGRU: ``a = 1 − z = σ(−k_z)``, ``b = z ⊙ g(k_h)``; minLSTM: ``a = f'``, ``b = i' ⊙ g(k_h)``.
    """
    if kind == "gru":
        k_z, k_h = x_projection.chunk(2, dim=-1)
        return torch.sigmoid(-k_z), torch.sigmoid(k_z) * g(k_h)
    k_f, k_i, k_h = x_projection.chunk(3, dim=-1)
    f_t, i_t = torch.sigmoid(k_f), torch.sigmoid(k_i)
    return f_t / (f_t + i_t), i_t / (f_t + i_t) * g(k_h)


def scan_linear_recurrence(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    r"""All states of ``h_t = a_t ⊙ h_{t-1} + b_t`` for ``t = 1..T`` (time on dim 0): a blocked scan.

    The ``T`` steps are cut into about ``√T`` blocks of about ``√T`` steps. First every block runs
    from a zero state, *all blocks at once* (``√T`` steps, each over every block, batch row and
    unit), giving ``u`` and the block's decay ``A_t = Π a``; then the blocks' start states follow
    one after the other, ``s_{n+1} = A_{end} ⊙ s_n + u_{end}`` (``√T`` small steps), and
    ``h_t = u_t + A_t ⊙ s_n`` everywhere at once. That is a parallel scan (Blelloch's two-level
    form) with ``2√T`` dependent steps instead of ``T``.

    Feng et al. scan in log space (``log h_t = a*_t + logcumsumexp(log b − a*)``), which a GPU's
    single long scan needs; here the blocks are short and every step is a convex combination
    (``0 < a_t < 1``), so linear space is exact and stable, computes the very operations of the
    step mode, and avoids ``logcumsumexp``, which on the CPU costs ~100 ns per element. ``h0`` may be
    any real tensor.
    """
    seq_len = a.shape[0]
    block = max(1, math.isqrt(seq_len - 1) + 1) if seq_len > 1 else 1
    blocks = -(-seq_len // block)
    padding = blocks * block - seq_len
    if padding:  # a = 1, b = 0 past the end: the padded steps change nothing
        a = torch.cat([a, a.new_ones(padding, *a.shape[1:])])
        b = torch.cat([b, b.new_zeros(padding, *b.shape[1:])])
    shape = (blocks, block, *a.shape[1:])
    a, b = a.reshape(shape), b.reshape(shape)
    u, steps = torch.zeros_like(b[:, 0]), []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):  # unbind, not a[:, t]: slices make backward O(T²)
        u = a_t * u + b_t
        steps.append(u)
    from_zero = torch.stack(steps, dim=1)  # [blocks, block, ...]
    decay = a.cumprod(dim=1)
    starts, state = [], h0
    for decay_end, from_zero_end in zip(decay[:, -1].unbind(0), from_zero[:, -1].unbind(0)):
        starts.append(state)
        state = decay_end * state + from_zero_end
    h = from_zero + decay * torch.stack(starts).unsqueeze(1)
    return h.reshape(blocks * block, *h.shape[2:])[:seq_len]


MODES = ("parallel", "sequential")


def scan_min_rnn(
    kind: str,
    x_projection: Tensor,
    h0: Tensor,
    lengths: Tensor | None = None,
    *,
    mode: str = "parallel",
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One direction over a whole sequence: ``x_projection`` ``[T, B, gates·H]`` → ``(h [T, B, H], h_last)``.

    ``x_projection + bias`` (``bias`` ``[gates·H]`` or None) is ``W x_t + b`` of every step.

    Steps ``t >= lengths[b]`` leave row ``b``'s state unchanged and output 0. ``mode``:
    ``"parallel"`` the blocked scan above, ``"sequential"`` the step functions in a loop (the
    streaming mode); the two give the same result, and so does the compiled scan the layers
    dispatch to (:func:`rnnlab.layers.min_rnn_scan`; tests/cells/test_min_rnn.py).
    """
    if mode not in MODES:
        raise ConfigError(f"min-RNN mode must be one of {', '.join(MODES)}; got {mode!r}")
    if bias is not None:
        x_projection = x_projection + bias
    sequential = mode == "sequential"
    seq_len = x_projection.shape[0]
    valid = None
    if lengths is not None:
        steps = torch.arange(seq_len, device=x_projection.device).unsqueeze(1)
        valid = (steps < lengths.to(x_projection.device).unsqueeze(0)).unsqueeze(-1)  # [T, B, 1]
    if sequential:
        step = min_gru_step if kind == "gru" else min_lstm_step
        outputs, h = [], h0
        for t, x_projection_t in enumerate(x_projection.unbind(0)):
            h_t = step(x_projection_t, h)
            h = h_t if valid is None else torch.where(valid[t], h_t, h)
            outputs.append(h)
        output = torch.stack(outputs)
    else:
        a, b = recurrence_coefficients(kind, x_projection)
        if valid is not None:  # past the end: a = 1, b = 0, so the state stays as it was
            a = torch.where(valid, a, 1.0)
            b = torch.where(valid, b, 0.0)
        output = scan_linear_recurrence(a, b, h0)
    last = output[-1]
    if valid is not None:
        output = torch.where(valid, output, 0.0)
    return output, last
