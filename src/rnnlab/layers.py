"""RNN / LSTM / GRU layers: a cell run over time, stacked, in both directions; drop-in for torch.nn.

``rnnlab.LSTM(...)`` takes the arguments of ``torch.nn.LSTM``, holds the same parameters under the
same ``state_dict`` keys (it subclasses ``torch.nn.LSTM``), and its ``forward(input, hx=None)``
takes a padded tensor or a ``PackedSequence`` and returns exactly what torch.nn returns. Each
layer has two paths behind the one module:

* **the reference path**: a plain loop over the cells of :mod:`rnnlab.cells`. Variable lengths
  are handled with masks (a finished sequence keeps its state, its padded outputs are zero) and
  the backward direction reverses each sequence within its own length. It is the ground truth in
  the tests, what a reader reads first, and the only path that can run the extras below or record
  the gates.
* **the fast path**: with nothing switched on that needs the loop, the fused torch.nn kernel
  (``torch._VF.lstm`` etc., as ``nn.LSTM`` calls it), on the same parameters.

``with rnnlab.layers.reference_path():`` forces the loop (for tests and for reading).

What torch.nn lacks, each one keyword of the same layers:

* ``layer_norm=True``: ``LN(W_ih x_t) + b_ih + LN(W_hh h_{t-1}) + b_hh`` and, in the LSTM,
  ``h_t = o_t ⊙ tanh(LN(c_t))`` (Ba et al. 2016; haste's LayerNormLSTM). Gains
  ``layer_norm_ih_l{k}``, ``layer_norm_hh_l{k}`` (and ``layer_norm_cell_weight_l{k}``,
  ``layer_norm_cell_bias_l{k}``), ``_reverse`` for the backward direction.
* ``recurrent_dropout=p``: variational dropout on ``h_{t-1}`` where it enters the recurrent
  matmul, one mask per sequence (Gal & Ghahramani 2016), only in training.
* ``zoneout=p`` (Krueger et al. 2016, on ``h`` as in haste): in training
  ``h_t = d ⊙ h_{t-1} + (1 − d) ⊙ h_t`` with ``d ~ Bernoulli(p)`` drawn at every step; in
  evaluation the expectation ``h_t = p h_{t-1} + (1 − p) h_t``.
* ``weight_norm=True`` (Salimans & Kingma 2016) on ``W_ih`` and ``W_hh``, row by row:
  ``W = g ⊙ v / ‖v‖``; ``weight_ih_l{k}`` holds the direction ``v`` and ``weight_ih_scale_l{k}`` the
  length ``g`` (initialised to ``‖v‖``, so the layer starts as it would without). Runs fused.
* ``init="orthogonal"``: each gate's block of ``W_hh`` orthogonal, ``W_ih`` blocks Glorot-uniform,
  biases 0 and, in the LSTM, forget-gate bias 1. ``init="chrono"`` (Tallec & Ollivier 2018) adds
  chrono biases for dependencies up to ``chrono_max_len`` steps: LSTM ``b_f ~ log U(1, T_max − 1)``,
  ``b_i = −b_f``; GRU the update gate's bias so that the keep probability matches (the vanilla RNN
  has no gate and gets the orthogonal init).
* ``gradient_checkpointing=True``: the sequence is cut into chunks of ``checkpoint_steps`` steps
  (default ``⌈√T⌉``), run under ``torch.utils.checkpoint``, so backward keeps the chunk
  boundaries' states and recomputes one chunk at a time. Runs fused when nothing else needs the loop.
* ``convention="cho"`` (GRU): the seeds' equations (see :mod:`rnnlab.cells.gru`).

``forward`` also takes ``lengths=`` with a padded input (valid steps per sequence): the outputs
past each length are zero and the final state is each sequence's last valid one, as if packed.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from torch.utils.checkpoint import checkpoint

from rnnlab.cells import CellWeights, gru_step, lstm_step, project_input, rnn_step
from rnnlab.cells.gru import CONVENTIONS
from rnnlab.cells.min_rnn import GATE_COUNTS, scan_min_rnn
from rnnlab.cells.min_rnn import MODES as MIN_RNN_CELL_MODES
from rnnlab.errors import ConfigError, RnnlabError, unknown_name
from rnnlab.kernels import (
    fuses_input_norm,
    kernel_applies,
    kernel_paths,
    min_rnn_kernel_applies,
    run_min_rnn,
    run_min_rnn_layer,
    run_recurrence,
)

INITS = ("orthogonal", "chrono")


class LayerInputError(RnnlabError, RuntimeError):
    """Bad input to a recurrent layer: names what was expected and what came.

    Also a ``RuntimeError``, the class torch.nn raises for the same mistakes, so code written for
    torch.nn that catches those still catches these.
    """


_FORCE_REFERENCE = contextvars.ContextVar("rnnlab_force_reference_path", default=False)


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """While active, every rnnlab layer runs its reference loop over cells instead of a fused kernel."""
    token = _FORCE_REFERENCE.set(True)
    try:
        yield
    finally:
        _FORCE_REFERENCE.reset(token)


# What runs, by case; `rnnlab info` prints it. A faster kernel registers its own line here.
KERNEL_PATHS: dict[str, str] = {
    "rnn": "torch.nn fused (_VF.rnn_tanh / _VF.rnn_relu)",
    "lstm": "torch.nn fused (_VF.lstm)",
    "gru": "torch.nn fused (_VF.gru)",
    "+weight_norm": "torch.nn fused, on the normalised weights",
    "+gradient_checkpointing": "torch.nn fused per chunk of time, under torch.utils.checkpoint",
    "+layer_norm/zoneout/recurrent_dropout": "rnnlab loop over cells",
    "gru convention='cho'": "rnnlab loop over cells",
    "record_gates": "rnnlab loop over cells",
}


def active_kernel_paths() -> dict[str, str]:
    """Which implementation runs in each case (name → short description); the compiled kernels of
    :mod:`rnnlab.kernels` override the cases they serve."""
    return {**KERNEL_PATHS, **kernel_paths()}


# torch.nn's fused kernels by RNNBase.mode, looked up once (each _VF attribute access costs a call)
_FUSED_KERNELS: dict[str, Callable[..., Any]]  # their overloads differ: inferred, they join to "function"
_FUSED_KERNELS = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}


@dataclass
class _Batch:
    """The input of one forward call, validated, with a batch dimension."""

    packed: PackedSequence | None  # the input as given, when packed
    padded: Tensor | None  # the input as given (batch dimension added if it had none), when padded
    lengths: Tensor | None  # valid steps per sequence, CPU int64 [B], original order; None: all full
    hx: tuple[Tensor, ...] | None  # initial state, each [num_layers·directions, B, size]
    unbatched: bool
    batch_size: int
    seq_len: int


if TYPE_CHECKING:  # the mixin only ever sits before a torch.nn recurrent layer, whose attributes it reads
    _LayerBase = nn.RNNBase
else:
    _LayerBase = object


class _RecurrentLayer(_LayerBase):
    """What rnnlab.RNN, LSTM and GRU add to their torch.nn parents: the loop, the extras, checks."""

    cell_kind: str  # "rnn" | "lstm" | "gru"
    gate_count: int

    # ----------------------------------------------------------------------------------- set-up
    def _init_extras(
        self,
        *,
        layer_norm: bool,
        recurrent_dropout: float,
        zoneout: float,
        weight_norm: bool,
        init: str | None,
        chrono_max_len: int | None,
        gradient_checkpointing: bool,
        checkpoint_steps: int | None,
        convention: str = "torch",
    ) -> None:
        for name, p in (("recurrent_dropout", recurrent_dropout), ("zoneout", zoneout)):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1); got {p!r}")
        if init is not None and init not in INITS:
            raise unknown_name("init", init, INITS)
        if init == "chrono":
            if (
                chrono_max_len is None
                or isinstance(chrono_max_len, bool)
                or not isinstance(chrono_max_len, int)
                or chrono_max_len < 3
            ):
                raise ConfigError(
                    "init='chrono' needs chrono_max_len, the longest dependency to remember in steps "
                    f"(an integer ≥ 3, as b_f ~ log U(1, chrono_max_len − 1)); got {chrono_max_len!r}"
                )
            if not self.bias and self.cell_kind != "rnn":
                raise ConfigError("init='chrono' sets the gate biases, but the layer was built with bias=False")
        if convention not in CONVENTIONS:
            raise unknown_name("GRU convention", convention, CONVENTIONS)
        if checkpoint_steps is not None and (not isinstance(checkpoint_steps, int) or checkpoint_steps < 1):
            raise ConfigError(f"checkpoint_steps must be a positive integer; got {checkpoint_steps!r}")
        self.layer_norm = bool(layer_norm)
        self.recurrent_dropout = float(recurrent_dropout)
        self.zoneout = float(zoneout)
        self.weight_norm = bool(weight_norm)
        self.init = init
        self.chrono_max_len = chrono_max_len
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.checkpoint_steps = checkpoint_steps
        self.convention = convention
        self._gate_recorder: tuple[GateRecord, str] | None = None

        factory: dict[str, Any] = {"device": self.weight_ih_l0.device, "dtype": self.weight_ih_l0.dtype}
        gate_rows = self.gate_count * self.hidden_size
        for suffix in self._suffixes():
            if self.layer_norm:
                self.register_parameter(f"layer_norm_ih{suffix}", nn.Parameter(torch.empty(gate_rows, **factory)))
                self.register_parameter(f"layer_norm_hh{suffix}", nn.Parameter(torch.empty(gate_rows, **factory)))
                if self.cell_kind == "lstm":
                    for name in ("layer_norm_cell_weight", "layer_norm_cell_bias"):
                        self.register_parameter(name + suffix, nn.Parameter(torch.empty(self.hidden_size, **factory)))
            if self.weight_norm:
                for name in ("weight_ih_scale", "weight_hh_scale"):
                    self.register_parameter(name + suffix, nn.Parameter(torch.empty(gate_rows, **factory)))
        self._extras_ready = True
        self._init_extra_parameters()

    def _suffixes(self) -> list[str]:
        """``_l0``, ``_l0_reverse``, ``_l1``, ...: torch.nn's name suffix of each layer and direction."""
        directions = ("", "_reverse") if self.bidirectional else ("",)
        return [f"_l{layer}{direction}" for layer in range(self.num_layers) for direction in directions]

    def reset_parameters(self) -> None:
        """torch.nn's init (uniform ±1/√H, in its order, so a seed gives torch's weights), then the extras'."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_weights_names:
            nn.init.uniform_(getattr(self, name), -bound, bound)
        if self.__dict__.get("_extras_ready"):  # torch.nn's __init__ calls us before the extras exist
            self._init_extra_parameters()

    @torch.no_grad()
    def _init_extra_parameters(self) -> None:
        for suffix in self._suffixes():
            if self.init is not None:
                self._init_orthogonal(suffix)
                if self.init == "chrono" and self.cell_kind != "rnn":
                    self._init_chrono(suffix)
            if self.layer_norm:
                getattr(self, f"layer_norm_ih{suffix}").fill_(1.0)
                getattr(self, f"layer_norm_hh{suffix}").fill_(1.0)
                if self.cell_kind == "lstm":
                    getattr(self, f"layer_norm_cell_weight{suffix}").fill_(1.0)
                    getattr(self, f"layer_norm_cell_bias{suffix}").zero_()
            if self.weight_norm:
                for name in ("weight_ih", "weight_hh"):
                    getattr(self, f"{name}_scale{suffix}").copy_(getattr(self, name + suffix).norm(dim=1))

    def _init_orthogonal(self, suffix: str) -> None:
        for block in getattr(self, f"weight_hh{suffix}").chunk(self.gate_count, dim=0):
            nn.init.orthogonal_(block)
        for block in getattr(self, f"weight_ih{suffix}").chunk(self.gate_count, dim=0):
            nn.init.xavier_uniform_(block)
        if self.proj_size > 0:
            nn.init.orthogonal_(getattr(self, f"weight_hr{suffix}"))
        if self.bias:
            getattr(self, f"bias_ih{suffix}").zero_()
            getattr(self, f"bias_hh{suffix}").zero_()
            if self.cell_kind == "lstm":  # forget gate open at the start (Gers et al. 2000; Jozefowicz et al. 2015)
                getattr(self, f"bias_ih{suffix}")[self.hidden_size : 2 * self.hidden_size].fill_(1.0)

    def _init_chrono(self, suffix: str) -> None:
        hidden_size = self.hidden_size
        bias_ih = getattr(self, f"bias_ih{suffix}")
        assert self.chrono_max_len is not None  # _init_extras requires it for init="chrono"
        # A gate that keeps a fraction u/(1+u) per step remembers for about 1+u steps; spreading u
        # over [1, T_max − 1] covers the time scales up to T_max (Tallec & Ollivier 2018, eq. 9).
        log_u = torch.empty(hidden_size, device=bias_ih.device).uniform_(1.0, self.chrono_max_len - 1).log()
        log_u = log_u.to(bias_ih.dtype)
        if self.cell_kind == "lstm":
            bias_ih[hidden_size : 2 * hidden_size] = log_u  # b_f
            bias_ih[:hidden_size] = -log_u  # b_i = −b_f
        else:
            # torch convention: h_t = (1 − z) n + z h_{t-1}, z keeps; cho: z writes, so the sign flips.
            bias_ih[hidden_size : 2 * hidden_size] = log_u if self.convention == "torch" else -log_u

    def extra_repr(self) -> str:
        text = super().extra_repr()
        for name, default in (
            ("layer_norm", False),
            ("recurrent_dropout", 0.0),
            ("zoneout", 0.0),
            ("weight_norm", False),
            ("init", None),
            ("chrono_max_len", None),
            ("gradient_checkpointing", False),
            ("checkpoint_steps", None),
            ("convention", "torch"),
        ):
            value = getattr(self, name, default)
            if value != default:
                text += f", {name}={value!r}"
        return text

    # ------------------------------------------------------------------------------- weights
    def _cell_weights(self, layer: int, direction: int) -> CellWeights:
        """The tensors the cell of one layer and direction uses (weight norm applied)."""
        suffix = f"_l{layer}{'_reverse' if direction else ''}"
        found: dict[str, Any] = {name: getattr(self, name + suffix, None) for name in CellWeights._fields}
        if self.weight_norm:
            for name in ("weight_ih", "weight_hh"):
                found[name] = _normalise_rows(found[name], getattr(self, f"{name}_scale{suffix}"))
        return CellWeights(**found)

    def _fused_weights(self) -> list[Tensor]:
        """The flat weight list the fused kernel takes, in torch.nn's order."""
        if not self.weight_norm:
            return cast(list[Tensor], self._flat_weights)  # torch lists the weights it registered: no None
        weights = []
        for name in self._flat_weights_names:
            tensor = getattr(self, name)
            if name.startswith(("weight_ih", "weight_hh")):
                tensor = _normalise_rows(tensor, getattr(self, name[:9] + "_scale" + name[9:]))
            weights.append(tensor)
        return weights

    # ------------------------------------------------------------------------------- forward
    def forward(self, input, hx=None, lengths=None):
        """Run the layer; see the torch.nn class for ``input`` and ``hx``. Returns what torch.nn returns.

        ``lengths`` (optional, padded input only): valid steps of each sequence, ``[batch]``.
        """
        self._update_flat_weights()
        batch = self._read_input(input, hx, lengths)
        if self._runs_kernel(batch):
            return self._forward_over_time(batch, self._run_direction_kernel)
        if self._runs_fused():
            if self.gradient_checkpointing and torch.is_grad_enabled():
                return self._forward_over_time(batch, self._run_direction_fused)
            return self._forward_fused(batch)
        return self._forward_over_time(batch, self._run_direction_reference)

    def _runs_kernel(self, batch: _Batch) -> bool:
        if _FORCE_REFERENCE.get() or self._gate_recorder is not None:
            return False
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return False
        data = batch.packed.data if batch.packed is not None else batch.padded
        assert data is not None  # a batch is packed or padded
        return kernel_applies(self, data.dtype, data.device)

    def _runs_fused(self) -> bool:
        if _FORCE_REFERENCE.get() or self._gate_recorder is not None:
            return False
        needs_loop = (
            self.layer_norm
            or self.convention == "cho"
            or self.zoneout > 0
            or (self.training and self.recurrent_dropout > 0)
        )
        return not needs_loop

    @property
    def _state_sizes(self) -> tuple[int, ...]:
        """Feature size of each tensor of the carried state: ``(H,)``, or the LSTM's ``(P or H, H)``."""
        output_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        return (output_size, self.hidden_size) if self.cell_kind == "lstm" else (output_size,)

    def _zero_state(self, like: Tensor, batch_size: int) -> tuple[Tensor, ...]:
        directions = 2 if self.bidirectional else 1
        return tuple(like.new_zeros(self.num_layers * directions, batch_size, size) for size in self._state_sizes)

    def _public_state(self, state: tuple[Tensor, ...], unbatched: bool):
        if unbatched:
            state = tuple(s.squeeze(1) for s in state)
        return state if self.cell_kind == "lstm" else state[0]

    # ---- the fused kernel, whole sequence
    def _fused_call(
        self,
        data: Tensor,
        batch_sizes: Tensor | None,
        hx: tuple[Tensor, ...],
        weights: Sequence[Tensor],
        *,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        batch_first: bool,
    ):
        kernel = _FUSED_KERNELS[self.mode]
        hx_arg = hx if self.cell_kind == "lstm" else hx[0]
        if batch_sizes is None:
            result = kernel(
                data, hx_arg, weights, self.bias, num_layers, dropout, self.training, bidirectional, batch_first
            )
        else:
            result = kernel(
                data, batch_sizes, hx_arg, weights, self.bias, num_layers, dropout, self.training, bidirectional
            )
        return result[0], tuple(result[1:])

    def _fused_packed(self, packed: PackedSequence, hx: tuple[Tensor, ...] | None, weights: Sequence[Tensor], **run):
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        if hx is None:
            hx = self._zero_state(data, int(batch_sizes[0]))
        elif sorted_indices is not None:
            hx = tuple(s.index_select(1, sorted_indices) for s in hx)
        run = run or {"num_layers": self.num_layers, "bidirectional": self.bidirectional, "dropout": self.dropout}
        output, state = self._fused_call(data, batch_sizes, hx, weights, batch_first=False, **run)
        if unsorted_indices is not None:
            state = tuple(s.index_select(1, unsorted_indices) for s in state)
        return PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices), state

    def _forward_fused(self, batch: _Batch):
        weights = self._fused_weights()
        if batch.packed is not None:
            output, state = self._fused_packed(batch.packed, batch.hx, weights)
            return output, self._public_state(state, False)
        x = batch.padded
        assert x is not None  # not packed, so padded
        if batch.lengths is not None:
            packed = pack_padded_sequence(x, batch.lengths, batch_first=self.batch_first, enforce_sorted=False)
            packed_output, state = self._fused_packed(packed, batch.hx, weights)
            output, _ = pad_packed_sequence(packed_output, batch_first=self.batch_first, total_length=batch.seq_len)
        else:
            hx = batch.hx if batch.hx is not None else self._zero_state(x, batch.batch_size)
            output, state = self._fused_call(
                x,
                None,
                hx,
                weights,
                num_layers=self.num_layers,
                bidirectional=self.bidirectional,
                dropout=self.dropout,
                batch_first=self.batch_first,
            )
        if batch.unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
        return output, self._public_state(state, batch.unbatched)

    # ---- layer by layer, direction by direction (the loop, or the fused kernel chunk by chunk)
    def _forward_over_time(self, batch: _Batch, run_direction):
        lengths: Tensor | None
        if batch.packed is not None:
            x, lengths = pad_packed_sequence(batch.packed)  # [T, B, I] in the caller's batch order
        else:
            assert batch.padded is not None  # not packed, so padded
            x = batch.padded.transpose(0, 1) if self.batch_first else batch.padded
            lengths = batch.lengths
        seq_len, batch_size = x.shape[0], x.shape[1]
        if lengths is not None and bool((lengths == seq_len).all()):
            lengths = None
        hx = batch.hx if batch.hx is not None else self._zero_state(x, batch_size)
        reverse_index = None if lengths is None else reversal_index(lengths, seq_len).to(x.device)
        directions = 2 if self.bidirectional else 1
        layer_input, finals = x, []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                sequence = layer_input if direction == 0 else reverse_time(layer_input, reverse_index)
                state = tuple(s[index] for s in hx)
                output, final = run_direction(sequence, state, layer, direction, lengths)
                outputs.append(output if direction == 0 else reverse_time(output, reverse_index))
                finals.append(final)
            layer_input = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        state = tuple(torch.stack(parts) for parts in zip(*finals))
        output = layer_input
        if batch.packed is not None:
            return _repack(output, lengths, batch.packed), self._public_state(state, False)
        if self.batch_first:
            output = output.transpose(0, 1)
        if batch.unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
        return output, self._public_state(state, batch.unbatched)

    def _chunk_steps(self, seq_len: int) -> int:
        # √T steps per chunk balance the two costs: T/k saved boundary states and k steps of
        # activations alive while one chunk is recomputed (Chen et al. 2016).
        return self.checkpoint_steps or max(1, math.ceil(math.sqrt(seq_len)))

    def _run_direction_fused(
        self, sequence: Tensor, state: tuple[Tensor, ...], layer: int, direction: int, lengths: Tensor | None
    ):
        """One layer and direction on the fused kernel, chunk by chunk, keeping only boundary states."""
        per_direction = len(self._all_weights[0])
        index = layer * (2 if self.bidirectional else 1) + direction
        weights = self._fused_weights()[index * per_direction : (index + 1) * per_direction]

        def run_chunk(start: int, chunk: Tensor, state: tuple[Tensor, ...], weights: Sequence[Tensor]):
            chunk_lengths = None if lengths is None else (lengths - start).clamp(0, chunk.shape[0])
            if chunk_lengths is not None and not bool(chunk_lengths.any()):
                return None, state  # every sequence ended before this chunk
            output, *state = self._fused_chunk(chunk, chunk_lengths, weights, *state)
            return output, tuple(state)

        output, *final = _ChunkCheckpoint.apply(
            run_chunk,
            self._chunk_steps(sequence.shape[0]),
            len(state),
            sequence,
            *(s.unsqueeze(0) for s in state),
            *weights,
        )
        return output, tuple(s.squeeze(0) for s in final)

    def _fused_chunk(self, chunk: Tensor, chunk_lengths: Tensor | None, weights: Sequence[Tensor], *state: Tensor):
        run: dict[str, Any] = {"num_layers": 1, "bidirectional": False, "dropout": 0.0}
        if chunk_lengths is None or bool((chunk_lengths == chunk.shape[0]).all()):
            output, state = self._fused_call(chunk, None, state, weights, batch_first=False, **run)
            return (output, *state)
        # Sequences that ended before this chunk sit out; the others run packed, so each stops at
        # its own length and the state it leaves with is its last valid one.
        active = chunk_lengths.nonzero().squeeze(1)
        active_on_device = active.to(chunk.device)
        packed = pack_padded_sequence(
            chunk.index_select(1, active_on_device), chunk_lengths[active], enforce_sorted=False
        )
        active_state = tuple(s.index_select(1, active_on_device) for s in state)
        packed_output, new_state = self._fused_packed(packed, active_state, weights, **run)
        output, _ = pad_packed_sequence(packed_output, total_length=chunk.shape[0])
        output = chunk.new_zeros(chunk.shape[0], chunk.shape[1], output.shape[-1]).index_copy(
            1, active_on_device, output
        )
        state = tuple(s.index_copy(1, active_on_device, n) for s, n in zip(state, new_state))
        return (output, *state)

    def _run_direction_reference(
        self, sequence: Tensor, state: tuple[Tensor, ...], layer: int, direction: int, lengths: Tensor | None
    ):
        """One layer and direction as a loop over the cell (checkpointed in chunks when asked)."""
        weights = self._cell_weights(layer, direction)
        seq_len, _batch_size = sequence.shape[:2]
        valid = None
        if lengths is not None:
            steps = torch.arange(seq_len, device=sequence.device).unsqueeze(1)
            valid = (steps < lengths.to(sequence.device).unsqueeze(0)).unsqueeze(-1)  # [T, B, 1]
        recurrent_mask = self._recurrent_mask(sequence)
        recording: list | None = [] if self._gate_recorder is not None else None
        if self.gradient_checkpointing and torch.is_grad_enabled() and recording is None:
            steps_per_chunk = self._chunk_steps(seq_len)
            outputs = []
            for start in range(0, seq_len, steps_per_chunk):
                chunk_valid = None if valid is None else valid[start : start + steps_per_chunk]
                output, *state = checkpoint(
                    self._scan,
                    sequence[start : start + steps_per_chunk],
                    chunk_valid,
                    weights,
                    recurrent_mask,
                    None,
                    *state,
                    use_reentrant=False,
                )
                outputs.append(output)
            return torch.cat(outputs), tuple(state)
        output, *state = self._scan(sequence, valid, weights, recurrent_mask, recording, *state)
        if recording is not None:
            assert self._gate_recorder is not None  # recording is made only when it is set
            record, module_name = self._gate_recorder
            record._add(
                module_name,
                layer,
                direction,
                recording,
                valid,
                lengths,
                None if direction == 0 or lengths is None else reversal_index(lengths, seq_len),
            )
        return output, tuple(state)

    def _recurrent_mask(self, sequence: Tensor) -> Tensor | None:
        if not (self.training and self.recurrent_dropout > 0):
            return None
        # One mask per sequence, the same at every step (Gal & Ghahramani 2016): a fresh mask
        # per step would inject noise the recurrence amplifies over long sequences.
        keep = 1.0 - self.recurrent_dropout
        return sequence.new_empty(sequence.shape[1], self._state_sizes[0]).bernoulli_(keep) / keep

    def _run_direction_kernel(
        self, sequence: Tensor, state: tuple[Tensor, ...], layer: int, direction: int, lengths: Tensor | None
    ):
        """One layer and direction on the compiled kernel (:mod:`rnnlab.kernels`): same equations."""
        weights = self._cell_weights(layer, direction)
        recurrent_mask = self._recurrent_mask(sequence)
        # the LSTM kernel normalises the raw projection itself, row by row in cache
        projection = (
            F.linear(sequence, weights.weight_ih)
            if fuses_input_norm(self.cell_kind, weights)
            else project_input(sequence, weights)
        )
        return run_recurrence(
            self.cell_kind,
            projection,
            state,
            weights,
            nonlinearity=getattr(self, "nonlinearity", "tanh"),
            convention=self.convention,
            recurrent_mask=recurrent_mask,
            lengths=lengths,
        )

    def _scan(
        self,
        sequence: Tensor,
        valid: Tensor | None,
        weights: CellWeights,
        recurrent_mask: Tensor | None,
        recording: list | None,
        *state: Tensor,
    ):
        """The loop: ``carry -> (carry, y)`` at every step; masks keep finished sequences' state."""
        step = self._step
        x_projection = project_input(sequence, weights)  # every step's W_ih x_t + b_ih in one matmul
        valid_steps = [None] * sequence.shape[0] if valid is None else valid.unbind(0)
        outputs = []
        # Iterate over unbind(0), not x[t] in a loop: each slice's backward would write a full-size
        # zero gradient, making backward O(T²).
        for x_projection_t, valid_t in zip(x_projection.unbind(0), valid_steps):
            new_state, gates = step(x_projection_t, state, weights, recurrent_mask=recurrent_mask)
            if self.zoneout > 0:
                new_state = (self._zone_out(state[0], new_state[0]), *new_state[1:])
            if valid_t is not None:
                new_state = tuple(torch.where(valid_t, new, old) for new, old in zip(new_state, state))
                outputs.append(torch.where(valid_t, new_state[0], 0.0))
            else:
                outputs.append(new_state[0])
            state = new_state
            if recording is not None:
                recording.append((gates, state))
        return (torch.stack(outputs), *state)

    def _zone_out(self, h_prev: Tensor, h_new: Tensor) -> Tensor:
        if self.training:
            keep_previous = torch.empty_like(h_new, dtype=torch.bool).bernoulli_(self.zoneout)
            return torch.where(keep_previous, h_prev, h_new)
        return self.zoneout * h_prev + (1.0 - self.zoneout) * h_new

    @property
    def _step(self):
        if self.cell_kind == "lstm":
            return lstm_step
        if self.cell_kind == "gru":
            convention = self.convention
            return lambda x, state, weights, **kw: gru_step(x, state, weights, convention=convention, **kw)
        nonlinearity = self.nonlinearity
        return lambda x, state, weights, **kw: rnn_step(x, state, weights, nonlinearity=nonlinearity, **kw)

    # ------------------------------------------------------------------------------- checks
    def _read_input(self, input, hx, lengths) -> _Batch:
        """Validate a forward call's arguments at the edge, with errors naming expected and got."""
        name = f"rnnlab.{type(self).__name__}"
        if isinstance(input, PackedSequence):
            data, batch_sizes, sorted_indices, _ = input
            if lengths is not None:
                raise LayerInputError(f"{name}: lengths= is for a padded input; a PackedSequence carries its own")
            if data.dim() != 2:
                raise LayerInputError(
                    f"{name}: a packed input's data must be 2-D [steps, input_size]; got shape {list(data.shape)}"
                )
            self._check_values(data, name)
            if batch_sizes.numel() == 0 or bool((batch_sizes <= 0).any()):
                raise LayerInputError(
                    f"{name}: a packed batch needs every time step to hold at least one sequence; "
                    f"got batch_sizes {batch_sizes.tolist()}"
                )
            batch_size = int(batch_sizes[0])
            if sorted_indices is not None and sorted_indices.numel() != batch_size:
                empty = sorted_indices.numel() - batch_size
                raise LayerInputError(
                    f"{name}: the packed batch holds {sorted_indices.numel()} sequences but only "
                    f"{batch_size} have a first step: {empty} sequence(s) of length 0 (expected "
                    "every length ≥ 1)"
                )
            batch = _Batch(input, None, None, None, False, batch_size, int(batch_sizes.numel()))
        elif isinstance(input, Tensor):
            if input.dim() not in (2, 3):
                raise LayerInputError(
                    f"{name}: expected input of 3 dimensions ({self._layout()}) or 2 (unbatched "
                    f"[seq_len, input_size]); got {input.dim()}-D, shape {list(input.shape)}"
                )
            self._check_values(input, name)
            unbatched = input.dim() == 2
            if unbatched:
                if lengths is not None:
                    raise LayerInputError(
                        f"{name}: lengths= needs a batched input ({self._layout()}); "
                        f"got an unbatched one of shape {list(input.shape)}"
                    )
                input = input.unsqueeze(0 if self.batch_first else 1)
            batch_size, seq_len = (
                (input.shape[0], input.shape[1]) if self.batch_first else (input.shape[1], input.shape[0])
            )
            batch = _Batch(
                None,
                input,
                self._read_lengths(lengths, batch_size, seq_len, name),
                None,
                unbatched,
                batch_size,
                seq_len,
            )
        else:
            raise LayerInputError(f"{name}: expected a Tensor or a PackedSequence as input; got {type(input).__name__}")
        if hx is not None:
            batch.hx = self._read_state(hx, batch, name)
        return batch

    def _layout(self) -> str:
        return "[batch, seq_len, input_size]" if self.batch_first else "[seq_len, batch, input_size]"

    def _check_values(self, data: Tensor, name: str) -> None:
        if not data.is_floating_point():
            raise LayerInputError(
                f"{name}: expected a floating-point input; got {data.dtype} (token ids go through "
                "an nn.Embedding first)"
            )
        weight_dtype = self.weight_ih_l0.dtype
        if data.dtype != weight_dtype and not torch.is_autocast_enabled(data.device.type):
            raise LayerInputError(
                f"{name}: input dtype {data.dtype} does not match the weights' {weight_dtype}; "
                f"convert the input (input.to({weight_dtype})) or the layer (layer.to({data.dtype}))"
            )
        if data.size(-1) != self.input_size:
            raise LayerInputError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {data.size(-1)}"
            )

    def _read_lengths(self, lengths, batch_size: int, seq_len: int, name: str) -> Tensor | None:
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths).detach().to("cpu")
        if lengths.dim() != 1 or lengths.numel() != batch_size or lengths.is_floating_point() or lengths.is_complex():
            raise LayerInputError(
                f"{name}: lengths must be integers of shape [{batch_size}] (one per sequence); "
                f"got {lengths.dtype} of shape {list(lengths.shape)}"
            )
        lengths = lengths.long()
        bad = ((lengths < 1) | (lengths > seq_len)).nonzero()
        if bad.numel():
            first = int(bad[0])
            raise LayerInputError(
                f"{name}: lengths[{first}] is {int(lengths[first])}; expected every length in "
                f"1..{seq_len} (a sequence needs at least one step, and at most the padded length)"
            )
        return lengths

    def _read_state(self, hx, batch: _Batch, name: str) -> tuple[Tensor, ...]:
        names = ("h_0", "c_0") if self.cell_kind == "lstm" else ("h_0",)
        if self.cell_kind == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2 or not all(isinstance(s, Tensor) for s in hx):
                raise LayerInputError(f"{name}: expected hx = (h_0, c_0), a pair of tensors; got {_describe(hx)}")
            hx = tuple(hx)
        else:
            if not isinstance(hx, Tensor):
                raise LayerInputError(f"{name}: expected hx to be a tensor h_0; got {_describe(hx)}")
            hx = (hx,)
        directions = 2 if self.bidirectional else 1
        weight_dtype = self.weight_ih_l0.dtype
        checked = []
        for state_name, state, size in zip(names, hx, self._state_sizes):
            expected = (
                (self.num_layers * directions, size)
                if batch.unbatched
                else (self.num_layers * directions, batch.batch_size, size)
            )
            if tuple(state.shape) != expected:
                width = "proj_size" if size != self.hidden_size else "hidden_size"
                raise LayerInputError(
                    f"{name}: expected {state_name} of shape {list(expected)} (num_layers·directions"
                    f"{'' if batch.unbatched else ', batch'}, {width}); "
                    f"got {list(state.shape)}"
                )
            if state.dtype != weight_dtype and not torch.is_autocast_enabled(state.device.type):
                raise LayerInputError(
                    f"{name}: {state_name} dtype {state.dtype} does not match the weights' {weight_dtype}"
                )
            checked.append(state.unsqueeze(1) if batch.unbatched else state)
        return tuple(checked)


class _ChunkCheckpoint(torch.autograd.Function):
    """Gradient checkpointing over time for a deterministic scan (the fused kernel).

    Forward runs the chunks without a graph, writing every output into one buffer and keeping only
    the state at each chunk boundary; backward recomputes one chunk at a time, newest first, from
    its boundary state and writes the input's gradient into one buffer (Chen et al. 2016). Unlike
    ``torch.utils.checkpoint`` per chunk, nothing sequence-long is held twice: no concatenation of
    chunk outputs, no full-size zero gradient per chunk slice. ``run_chunk(start, chunk, state,
    weights) -> (output or None, state)`` must be deterministic; the loop path, which may draw
    random masks, uses ``torch.utils.checkpoint`` (it replays the random generator) instead.
    """

    @staticmethod
    def forward(ctx, run_chunk, steps: int, state_count: int, sequence: Tensor, *tensors: Tensor):
        state, weights = tuple(tensors[:state_count]), list(tensors[state_count:])
        seq_len, boundaries, output = sequence.shape[0], [], None
        for start in range(0, seq_len, steps):
            boundaries.append(state)
            chunk_output, state = run_chunk(start, sequence[start : start + steps], state, weights)
            if output is None:
                size = chunk_output.shape[-1] if chunk_output is not None else state[0].shape[-1]
                output = sequence.new_zeros(seq_len, sequence.shape[1], size)
            if chunk_output is not None:
                output[start : start + steps] = chunk_output
        ctx.run_chunk, ctx.steps, ctx.boundaries = run_chunk, steps, boundaries
        ctx.save_for_backward(sequence, *weights)
        return (output, *state)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor, *grad_state: Tensor):
        sequence, *weights = ctx.saved_tensors
        weights = [w.detach().requires_grad_(True) for w in weights]
        grad_sequence = torch.zeros_like(sequence)
        grad_weights = [torch.zeros_like(w) for w in weights]
        grad_state = tuple(grad_state)
        for start in reversed(range(0, sequence.shape[0], ctx.steps)):
            state = tuple(s.detach().requires_grad_(True) for s in ctx.boundaries[start // ctx.steps])
            chunk = sequence[start : start + ctx.steps].detach().requires_grad_(True)
            with torch.enable_grad():
                chunk_output, new_state = ctx.run_chunk(start, chunk, state, weights)
            if chunk_output is None:
                continue  # nothing ran: the state passed through unchanged, and so does its gradient
            grads = torch.autograd.grad(
                (chunk_output, *new_state),
                (chunk, *state, *weights),
                (grad_output[start : start + ctx.steps], *grad_state),
            )
            grad_sequence[start : start + ctx.steps] = grads[0]
            grad_state = grads[1 : 1 + len(state)]
            for total, grad in zip(grad_weights, grads[1 + len(state) :]):
                total += grad
        del ctx.boundaries
        return (None, None, None, grad_sequence, *grad_state, *grad_weights)


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}: ({', '.join(_describe(v) for v in value)})"
    return type(value).__name__


def _normalise_rows(direction: Tensor, scale: Tensor) -> Tensor:
    """``g ⊙ v / ‖v‖`` row by row: weight normalisation (Salimans & Kingma 2016)."""
    return direction * (scale / direction.norm(dim=1)).unsqueeze(1)


def reversal_index(lengths: Tensor, seq_len: int) -> Tensor:
    """``[T, B]`` time index that reverses each sequence within its length and leaves padding in place."""
    steps = torch.arange(seq_len).unsqueeze(1)
    return torch.where(steps < lengths.unsqueeze(0), lengths.unsqueeze(0) - 1 - steps, steps)


def reverse_time(x: Tensor, reverse_index: Tensor | None) -> Tensor:
    """``x`` ``[T, B, F]`` read in the order of ``reverse_index`` (``reversal_index``; ``None``: all
    of time flipped)."""
    if reverse_index is None:
        return x.flip(0)
    return x.gather(0, reverse_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def reverse_within_lengths(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse time (dim 0) of each sequence of ``x`` ``[T, B, F]`` within its own length; padding
    stays where it is (``lengths`` ``None``: every sequence is ``T`` long)."""
    index = None if lengths is None else reversal_index(lengths, x.shape[0]).to(x.device)
    return reverse_time(x, index)


def _repack(output: Tensor, lengths: Tensor | None, like: PackedSequence) -> PackedSequence:
    """Pack a time-major padded output ``[T, B, H]`` the way ``like`` was packed."""
    _, batch_sizes, sorted_indices, unsorted_indices = like
    if lengths is None:
        lengths = torch.full((output.shape[1],), output.shape[0], dtype=torch.long)
    if sorted_indices is not None:
        output = output.index_select(1, sorted_indices)
        lengths = lengths.index_select(0, sorted_indices.cpu())
    data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
    return PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices)


_EXTRAS_DOC = """
    Extras (keyword-only; see :mod:`rnnlab.layers`): ``layer_norm``, ``recurrent_dropout``,
    ``zoneout``, ``weight_norm``, ``init`` (``"orthogonal"`` | ``"chrono"``, with
    ``chrono_max_len``), ``gradient_checkpointing`` (with ``checkpoint_steps``){convention}.
    With none of them on, the parameters and ``state_dict`` keys are exactly torch.nn's and the
    layer runs torch.nn's fused kernel.
"""


class RNN(_RecurrentLayer, nn.RNN):
    __doc__ = """Vanilla RNN layer (cells: :class:`rnnlab.cells.RNNCell`), a drop-in for ``torch.nn.RNN``.
    """ + _EXTRAS_DOC.format(convention="")

    cell_kind = "rnn"
    gate_count = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        weight_norm: bool = False,
        init: str | None = None,
        chrono_max_len: int | None = None,
        gradient_checkpointing: bool = False,
        checkpoint_steps: int | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise unknown_name("nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            nonlinearity,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
        )
        self._init_extras(
            layer_norm=layer_norm,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            weight_norm=weight_norm,
            init=init,
            chrono_max_len=chrono_max_len,
            gradient_checkpointing=gradient_checkpointing,
            checkpoint_steps=checkpoint_steps,
        )


class LSTM(_RecurrentLayer, nn.LSTM):
    __doc__ = """LSTM layer (cells: :class:`rnnlab.cells.LSTMCell`), a drop-in for ``torch.nn.LSTM``.

    ``proj_size`` works as in torch.nn (``h_t = W_hr (o_t ⊙ tanh(c_t))``).
    """ + _EXTRAS_DOC.format(convention="")

    cell_kind = "lstm"
    gate_count = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        weight_norm: bool = False,
        init: str | None = None,
        chrono_max_len: int | None = None,
        gradient_checkpointing: bool = False,
        checkpoint_steps: int | None = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device=device,
            dtype=dtype,
        )
        self._init_extras(
            layer_norm=layer_norm,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            weight_norm=weight_norm,
            init=init,
            chrono_max_len=chrono_max_len,
            gradient_checkpointing=gradient_checkpointing,
            checkpoint_steps=checkpoint_steps,
        )


class GRU(_RecurrentLayer, nn.GRU):
    __doc__ = """GRU layer (cells: :class:`rnnlab.cells.GRUCell`), a drop-in for ``torch.nn.GRU``.

    ``convention="torch"`` (default) is torch.nn's GRU; ``convention="cho"`` runs the seeds'
    equations (Cho et al. 2014) on the same parameter shapes, on the loop path.
    """ + _EXTRAS_DOC.format(convention=", ``convention``")

    cell_kind = "gru"
    gate_count = 3

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
        *,
        convention: str = "torch",
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        weight_norm: bool = False,
        init: str | None = None,
        chrono_max_len: int | None = None,
        gradient_checkpointing: bool = False,
        checkpoint_steps: int | None = None,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device=device, dtype=dtype
        )
        self._init_extras(
            layer_norm=layer_norm,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            weight_norm=weight_norm,
            init=init,
            chrono_max_len=chrono_max_len,
            gradient_checkpointing=gradient_checkpointing,
            checkpoint_steps=checkpoint_steps,
            convention=convention,
        )


RECURRENT_LAYERS = (RNN, LSTM, GRU)


# ----------------------------------------------------------------------------- gates you can see
@dataclass
class GateRecord:
    """What :func:`record_gates` saw, per ``(module name, layer index, direction)``.

    ``record[name, layer, direction]`` (``direction`` ``"forward"`` or ``"backward"``) is a dict of
    ``[batch, time, hidden]`` tensors in the sequence's own time order (also for the backward
    direction): the gates (LSTM ``i, f, o, c_tilde``; GRU ``z, r`` and ``n`` (torch) or ``h_tilde``
    (cho); the RNN has none), the states ``h`` (and LSTM ``c``), and ``lengths``; steps past a
    sequence's length are zero. With ``detach=False`` it also holds ``h_steps`` (and ``c_steps``):
    the list of per-step state tensors ``[batch, hidden]`` the recurrence really used, in the order
    the direction ran them, still in the graph; call ``retain_grad()`` on them before
    ``backward()`` to read ``∂L/∂h_t``. ``calls`` keeps every forward call; indexing reads the last.
    """

    detach: bool = True
    calls: list[dict[tuple[str, int, str], dict[str, object]]] = field(default_factory=list)

    def __getitem__(self, key: tuple[str, int, str]) -> dict[str, object]:
        for call in reversed(self.calls):
            if key in call:
                return call[key]
        raise KeyError(f"nothing recorded for {key!r}; recorded: {self.keys()}")

    def keys(self) -> list[tuple[str, int, str]]:
        return sorted({key for call in self.calls for key in call})

    def __iter__(self) -> Iterator[tuple[str, int, str]]:
        """The recorded keys, as a mapping iterates (``for key in record``)."""
        return iter(self.keys())

    def _add(
        self,
        module_name: str,
        layer: int,
        direction: int,
        recording: list,
        valid: Tensor | None,
        lengths: Tensor | None,
        reverse_index: Tensor | None,
    ) -> None:
        key = (module_name, layer, "backward" if direction else "forward")
        if not self.calls or key in self.calls[-1]:
            self.calls.append({})  # a layer seen again: a new forward call of the model began
        gates = [gates for gates, _ in recording]
        states = [state for _, state in recording]
        entry: dict[str, object] = {"lengths": lengths}
        tensors = {name: torch.stack([g[name] for g in gates]) for name in (gates[0] if gates else {})}
        tensors["h"] = torch.stack([s[0] for s in states])
        if len(states[0]) == 2:
            tensors["c"] = torch.stack([s[1] for s in states])
        for name, stacked in tensors.items():  # [T, B, H] in the order the direction ran
            if valid is not None:
                stacked = torch.where(valid, stacked, 0.0)
            if reverse_index is not None:
                stacked = reverse_time(stacked, reverse_index.to(stacked.device))
            elif direction:
                stacked = stacked.flip(0)
            stacked = stacked.transpose(0, 1)
            entry[name] = stacked.detach() if self.detach else stacked
        if not self.detach:
            entry["h_steps"] = [s[0] for s in states]
            if len(states[0]) == 2:
                entry["c_steps"] = [s[1] for s in states]
        self.calls[-1][key] = entry


@contextlib.contextmanager
def record_gates(model: nn.Module, *, detach: bool = True) -> Iterator[GateRecord]:
    """Record the gates and states of every rnnlab layer inside ``model`` while the block runs.

    >>> lstm = LSTM(3, 8, num_layers=2)
    >>> with record_gates(lstm) as record:
    ...     _ = lstm(torch.randn(20, 4, 3))
    >>> record["", 1, "forward"]["f"].shape   # forget gate of layer 1: [batch, time, hidden]
    torch.Size([4, 20, 8])

    The layers run their reference loop while recording (the fused kernels expose no gates);
    gradient checkpointing is paused. ``detach=False`` keeps the recorded tensors in the graph (see
    :class:`GateRecord`). Module names are those of ``model.named_modules()`` (``""`` for ``model``
    itself).
    """
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, _RecurrentLayer)]
    if not layers:
        raise ConfigError(
            f"record_gates: {type(model).__name__} contains no rnnlab RNN/LSTM/GRU layer "
            "(torch.nn layers run a fused kernel that exposes no gates; use rnnlab.LSTM etc.)"
        )
    record = GateRecord(detach=detach)
    previous = [module._gate_recorder for _, module in layers]
    for name, module in layers:
        module._gate_recorder = (record, name)
    try:
        yield record
    finally:
        for (_, module), before in zip(layers, previous):
            module._gate_recorder = before


# ----------------------------------------------------------------------------- parameter counts
def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_table(input_size: int, hidden_size: int, num_layers: int = 1) -> list[dict]:
    """Parameter counts of RNN, LSTM and GRU of the same sizes, side by side (SPEC §1).

    Rows ``{"layer", "parameters", "ratio_to_rnn", "formula"}``; counts come from building each
    layer (on the meta device, so nothing is allocated), the formula shows where they come from:
    each gate has an input matrix ``H·I``, a recurrent matrix ``H·H`` and torch.nn's two biases
    ``2H``, so LSTM is 4× and GRU 3× a vanilla RNN exactly.
    """
    rows: list[dict[str, Any]] = []
    for gates, layer_class in ((1, RNN), (4, LSTM), (3, GRU)):
        layer = layer_class(input_size, hidden_size, num_layers, device="meta")
        rows.append(
            {
                "layer": layer_class.__name__,
                "parameters": count_parameters(layer),
                "formula": _count_formula(gates, num_layers),
            }
        )
    for row in rows:
        row["ratio_to_rnn"] = row["parameters"] / rows[0]["parameters"]
    return rows


def _count_formula(gates: int, num_layers: int) -> str:
    first, later = (
        ("H·I + H·H + 2H", "(2·H·H + 2H)") if gates == 1 else (f"{gates}·(H·I + H·H + 2H)", f"{gates}·(2·H·H + 2H)")
    )
    if num_layers == 1:
        return first
    return f"{first} + {later}" if num_layers == 2 else f"{first} + {num_layers - 1}·{later}"


# ----------------------------------------------------------------------------- minGRU / minLSTM
#: How a min-RNN layer scans time: the compiled kernel where it applies (``auto``), always
#: (``kernel``), or the pure-PyTorch scans of :mod:`rnnlab.cells.min_rnn`.
MIN_RNN_MODES = ("auto", "kernel", *MIN_RNN_CELL_MODES)


def min_rnn_scan(
    kind: str,
    x_projection: Tensor,
    h0: Tensor,
    lengths: Tensor | None = None,
    *,
    mode: str = "auto",
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`rnnlab.cells.min_rnn.scan_min_rnn` (``mode`` ``"parallel"`` or ``"sequential"``), or the
    compiled scan of :mod:`rnnlab.kernels` (``"kernel"``: one fused pass over time per row, parallel
    over rows, which on a CPU's few cores beats both; ``"auto"``: the kernel where it applies (CPU,
    float32/64, no autocast, kernels built), else the parallel scan). All give the same result."""
    if mode not in MIN_RNN_MODES:
        raise ConfigError(f"min-RNN mode must be one of {', '.join(MIN_RNN_MODES)}; got {mode!r}")
    if mode == "kernel" or (mode == "auto" and min_rnn_kernel_applies(x_projection)):
        return run_min_rnn(kind, x_projection, h0, lengths, bias)
    return scan_min_rnn(kind, x_projection, h0, lengths, mode="parallel" if mode == "auto" else mode, bias=bias)


def _project(sequence: Tensor, weight: Tensor) -> Tensor:
    """``W x`` of every step of a ``[T, B, I]`` sequence, in the memory order the sequence has.

    ``F.linear`` on the time-major view of a batch-first tensor would first copy it time-major;
    projecting the batch-first tensor itself and viewing the result time-major copies nothing, and
    the compiled scan reads either order (so its output and gradients stay batch-first too).
    """
    if not sequence.is_contiguous() and sequence.transpose(0, 1).is_contiguous():
        return F.linear(sequence.transpose(0, 1), weight).transpose(0, 1)
    return F.linear(sequence, weight)


class _MinRNN(nn.Module):
    """A stack of minGRU / minLSTM layers with the interface of ``torch.nn.GRU``.

    ``forward(input, hx=None, lengths=None, *, mode="auto") -> (output, h_n)`` with ``input``
    ``[T, B, I]`` (``[B, T, I]`` with ``batch_first``), ``[T, I]`` unbatched, or a
    ``PackedSequence``; ``h_n`` ``[num_layers·directions, B, H]``. Parameters ``weight_l{k}``
    ``[gates·H, I]`` and ``bias_l{k}`` (``_reverse`` for the backward direction), initialised as
    ``nn.Linear`` does (uniform ±1/√fan_in). ``mode`` picks how time is scanned (see
    :func:`min_rnn_scan`); with ``"kernel"`` (and ``"auto"`` where the kernels apply) the compiled
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
        if mode not in MIN_RNN_MODES:
            raise ConfigError(f"min-RNN mode must be one of {', '.join(MIN_RNN_MODES)}; got {mode!r}")
        use_kernel = mode == "kernel" or (mode == "auto" and min_rnn_kernel_applies(x))
        layer_input, finals = x, []
        for layer in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate(self._suffixes(layer)):
                sequence = layer_input if direction == 0 else reverse_within_lengths(layer_input, lengths)
                weight, bias, h0 = (
                    getattr(self, f"weight{suffix}"),
                    getattr(self, f"bias{suffix}"),
                    hx[layer * directions + direction],
                )
                if use_kernel:  # projection and scan fused, block by block in cache
                    output, last = run_min_rnn_layer(self.kind, sequence, weight, h0, lengths, bias)
                else:
                    output, last = min_rnn_scan(
                        self.kind, _project(sequence, weight), h0, lengths, mode=mode, bias=bias
                    )
                outputs.append(output if direction == 0 else reverse_within_lengths(output, lengths))
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
