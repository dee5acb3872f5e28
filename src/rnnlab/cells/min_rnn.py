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
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

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


MODES = ("auto", "kernel", "parallel", "sequential")


def scan_min_rnn(
    kind: str,
    x_projection: Tensor,
    h0: Tensor,
    lengths: Tensor | None = None,
    *,
    mode: str = "auto",
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One direction over a whole sequence: ``x_projection`` ``[T, B, gates·H]`` → ``(h [T, B, H], h_last)``.

    ``x_projection + bias`` (``bias`` ``[gates·H]`` or None) is ``W x_t + b`` of every step.

    Steps ``t >= lengths[b]`` leave row ``b``'s state unchanged and output 0. ``mode``:
    ``"parallel"`` the blocked scan above, ``"sequential"`` the step functions in a loop (the
    streaming mode), ``"kernel"`` the compiled scan of :mod:`rnnlab.kernels` (one fused pass over
    time per row, parallel over rows: on a CPU's few cores that beats both), ``"auto"`` the kernel
    where it applies (CPU, float32/64, no autocast, kernels built), else the parallel scan. All
    four give the same result (tests/cells/test_min_rnn.py).
    """
    if mode not in MODES:
        raise ConfigError(f"min-RNN mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode in ("auto", "kernel"):
        from rnnlab.kernels import min_rnn_kernel_applies, run_min_rnn  # lazy: kernels import cells

        if min_rnn_kernel_applies(x_projection) or mode == "kernel":
            return run_min_rnn(kind, x_projection, h0, lengths, bias)
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


def _project(sequence: Tensor, weight: Tensor) -> Tensor:
    """``W x`` of every step of a ``[T, B, I]`` sequence, in the memory order the sequence has.

    ``F.linear`` on the time-major view of a batch-first tensor would first copy it time-major;
    projecting the batch-first tensor itself and viewing the result time-major copies nothing, and
    the compiled scan reads either order (so its output and gradients stay batch-first too).
    """
    if not sequence.is_contiguous() and sequence.transpose(0, 1).is_contiguous():
        return F.linear(sequence.transpose(0, 1), weight).transpose(0, 1)
    return F.linear(sequence, weight)


def _reverse_within_lengths(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse time (dim 0) of each sequence within its own length; padding stays where it is."""
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(x.shape[0]).unsqueeze(1)
    index = torch.where(steps < lengths.unsqueeze(0), lengths.unsqueeze(0) - 1 - steps, steps).to(x.device)
    return x.gather(0, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class _MinRNN(nn.Module):
    """A stack of minGRU / minLSTM layers with the interface of ``torch.nn.GRU``.

    ``forward(input, hx=None, lengths=None, *, mode="auto") -> (output, h_n)`` with ``input``
    ``[T, B, I]`` (``[B, T, I]`` with ``batch_first``), ``[T, I]`` unbatched, or a
    ``PackedSequence``; ``h_n`` ``[num_layers·directions, B, H]``. Parameters ``weight_l{k}``
    ``[gates·H, I]`` and ``bias_l{k}`` (``_reverse`` for the backward direction), initialised as
    ``nn.Linear`` does (uniform ±1/√fan_in). ``mode`` picks how time is scanned (see
    :func:`scan_min_rnn`); with ``"kernel"`` (and ``"auto"`` where the kernels apply) the compiled
    kernel also takes over the input projection, block by block in cache; feeding one step at a time (``T =
    1`` with the last ``h_n``) equals
    the whole sequence, so the layer streams.
    """

    kind: str

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{type(self).__name__}: {name} must be a positive integer; got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{type(self).__name__}: dropout must lie in [0, 1); got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        factory = {"device": device, "dtype": dtype}
        gate_rows = GATE_COUNTS[self.kind] * hidden_size
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in self._suffixes(layer):
                self.register_parameter(f"weight{suffix}", nn.Parameter(torch.empty(gate_rows, layer_input, **factory)))
                bias_parameter = nn.Parameter(torch.empty(gate_rows, **factory)) if bias else None
                self.register_parameter(f"bias{suffix}", bias_parameter)
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}"] + ([f"_l{layer}_reverse"] if self.bidirectional else [])

    def reset_parameters(self) -> None:
        for layer in range(self.num_layers):
            for suffix in self._suffixes(layer):
                weight, bias = getattr(self, f"weight{suffix}"), getattr(self, f"bias{suffix}")
                bound = 1.0 / math.sqrt(weight.shape[1])  # 1/√fan_in
                nn.init.uniform_(weight, -bound, bound)
                if bias is not None:
                    nn.init.uniform_(bias, -bound, bound)

    def forward(self, input, hx: Tensor | None = None, lengths: Tensor | None = None, *, mode: str = "auto"):
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        unbatched = False
        if packed:
            if lengths is not None:
                raise ConfigError(f"{name}: lengths= is for a padded input; a PackedSequence carries its own")
            x, lengths = pad_packed_sequence(input)
        else:
            if not isinstance(input, Tensor) or input.dim() not in (2, 3):
                shape = list(input.shape) if isinstance(input, Tensor) else type(input).__name__
                raise ConfigError(
                    f"{name}: expected input [seq_len, batch, {self.input_size}] (batch first if "
                    f"batch_first), [seq_len, {self.input_size}] or a PackedSequence; got {shape}"
                )
            unbatched = input.dim() == 2
            x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[-1] != self.input_size:
            raise ConfigError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}"
            )
        batch_size = x.shape[1]
        if lengths is not None:
            lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
            if lengths.shape != (batch_size,) or bool((lengths < 1).any()) or bool((lengths > x.shape[0]).any()):
                raise ConfigError(
                    f"{name}: lengths must be {batch_size} integers in 1..{x.shape[0]}; got {lengths.tolist()}"
                )
            if bool((lengths == x.shape[0]).all()):
                lengths = None
        directions = 2 if self.bidirectional else 1
        expected_state = (self.num_layers * directions, batch_size, self.hidden_size)
        if hx is None:
            hx = x.new_zeros(expected_state)
        elif unbatched:
            hx = hx.unsqueeze(1)
        if tuple(hx.shape) != expected_state:
            raise ConfigError(
                f"{name}: expected h_0 of shape {list(expected_state)} (num_layers·directions, "
                f"batch, hidden_size); got {list(hx.shape)}"
            )
        if mode not in MODES:
            raise ConfigError(f"min-RNN mode must be one of {', '.join(MODES)}; got {mode!r}")
        use_kernel = False
        if mode in ("auto", "kernel"):
            from rnnlab.kernels import min_rnn_kernel_applies, run_min_rnn_layer  # lazy: kernels import cells

            use_kernel = mode == "kernel" or min_rnn_kernel_applies(x)
        layer_input, finals = x, []
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                sequence = layer_input if direction == 0 else _reverse_within_lengths(layer_input, lengths)
                weight, bias, h0 = (
                    getattr(self, f"weight{suffix}"),
                    getattr(self, f"bias{suffix}"),
                    hx[layer * directions + direction],
                )
                if use_kernel:  # projection and scan fused, block by block in cache
                    output, last = run_min_rnn_layer(self.kind, sequence, weight, h0, lengths, bias)
                else:
                    output, last = scan_min_rnn(
                        self.kind, _project(sequence, weight), h0, lengths, mode=mode, bias=bias
                    )
                outputs.append(output if direction == 0 else _reverse_within_lengths(output, lengths))
                finals.append(last)
            layer_input = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        h_n = torch.stack(finals)
        output = layer_input
        if packed:
            _, batch_sizes, sorted_indices, unsorted_indices = input
            full = lengths if lengths is not None else torch.full((batch_size,), output.shape[0], dtype=torch.long)
            data = pack_padded_sequence(
                output.index_select(1, sorted_indices) if sorted_indices is not None else output,
                full.index_select(0, sorted_indices.cpu()) if sorted_indices is not None else full,
                enforce_sorted=True,
            ).data
            return PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices), h_n
        if unbatched:
            return output.squeeze(1), h_n.squeeze(1)
        return (output.transpose(0, 1) if self.batch_first else output), h_n

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        for name, default in (
            ("num_layers", 1),
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
        ):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)!r}"
        return text


class MinGRU(_MinRNN):
    __doc__ = """minGRU layer (Feng et al. 2024): ``h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ g(W_h x_t + b_h)``,
    ``z_t = σ(W_z x_t + b_z)``, trained with a parallel scan over time (see :mod:`rnnlab.cells.min_rnn`).
    """ + (_MinRNN.__doc__ or "")
    kind = "gru"


class MinLSTM(_MinRNN):
    __doc__ = """minLSTM layer (Feng et al. 2024): ``h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ g(W_h x_t + b_h)`` with
    ``f'_t, i'_t`` the forget and input gates normalised to sum to 1, trained with a parallel scan.
    """ + (_MinRNN.__doc__ or "")
    kind = "lstm"
