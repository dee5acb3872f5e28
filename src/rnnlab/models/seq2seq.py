"""Encoder–decoder with attention (``lstm+attn`` / ``gru+attn`` on the ``seq2seq`` head), and the
same encoder–decoder without attention (``lstm`` / ``gru`` / ``rnn``).

The encoder (``SourceEncoder``) is an embedding and stacked ``rnnlab`` layers, bidirectional by
default, read with the source lengths so padding never enters it. With ``h_s`` its output at source
step ``s`` (``[→h_s ; ←h_s]``, size ``M``) and ``s_t`` the top layer of the decoder (an ``rnnlab``
layer of the same cell, ``H`` units) at output step ``t``, ``E`` the target embedding and
``y_0 = <bos>``:

* **start**: the decoder starts from the encoder's final state, layer by layer: with ``→h`` the
  forward direction's output after the last valid source step and ``←h`` the backward one's after
  the first, ``s_0 = tanh(W_b [→h ; ←h])`` (and ``c_0 = W_b' [→h ; ←h]`` for an LSTM).
* **no attention** (Sutskever et al. 2014): ``s_t = RNN(E y_{t−1}, s_{t−1})``,
  ``logits_t = W_y s_t``. Everything the decoder learns of the source passes through ``s_0``.
* **Bahdanau** (additive, Bahdanau et al. 2015), the score read from the previous state:

      e_{t,s} = v_aᵀ tanh(W_a s_{t−1} + U_a h_s)
      α_{t,s} = softmax over the valid source steps s
      c_t     = Σ_s α_{t,s} h_s
      s_t     = RNN([E y_{t−1} ; c_t], s_{t−1})
      logits_t = W_y tanh(W_o [s_t ; c_t])

* **Luong** (multiplicative "general", Luong et al. 2015), the score read from the new state:

      s_t     = RNN(E y_{t−1}, s_{t−1})
      e_{t,s} = s_tᵀ W_a h_s
      α_{t,s} = softmax over the valid source steps s;   c_t = Σ_s α_{t,s} h_s
      h̃_t     = tanh(W_c [c_t ; s_t]);                   logits_t = W_y h̃_t

  Without Luong's input feeding, a teacher-forced pass runs the decoder layer over the whole target
  at once (the fused kernel) and scores every step in one batched product, several times faster
  to train on a CPU than the step loop Bahdanau's order of operations forces.

Padded source steps get weight 0 (their scores are ``−inf`` before the softmax), so outputs do not
depend on padding. Training is teacher-forced: ``forward(x, lengths, target=y)`` returns logits
``[B, T_out, V]`` for the targets ``y`` (``<eos>``-terminated, ``-100`` padded). Without a target,
``forward`` decodes: greedy (``beam_size=1``) or beam search, batched, each sequence stopping at its
``<eos>``, at most ``max_output_len`` tokens, and returns ``LongTensor[B, T_out]`` token ids (the
``<eos>`` included, ``<pad>`` after it). ``model.attention_weights`` then holds ``α`` of the last
call, ``[B, T_out, T_in]`` (0 on padding and after ``<eos>``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.errors import ConfigError
from rnnlab.layers import reversal_index
from rnnlab.models.recurrent import LAYER_CLASSES
from rnnlab.models.task_model import EncoderOutput, TaskModel, _exporting, valid_mask

ATTENTIONS = ("bahdanau", "luong")
PAD_INDEX, BOS_INDEX, EOS_INDEX = 0, 2, 3  # rnnlab.data.seq2seq's special tokens
SEQ2SEQ_CELLS = ("rnn", "lstm", "gru")
IGNORE_INDEX = -100


class Memory(NamedTuple):
    """The encoded source, what every decoder step reads: outputs ``h_s`` ``[N, T_in, M]``, their
    projection for the score (``U_a h_s`` or ``W_a h_s``; ``None`` without attention), valid steps."""

    outputs: torch.Tensor
    keys: torch.Tensor | None
    valid: torch.Tensor


class SourceEncoder(nn.Module):
    """An embedding, then ``num_layers`` recurrent layers, each direction one unidirectional rnnlab
    layer (``encoder.rnn``, layer-major, forward then backward).

    Every layer runs on the whole padded batch at once (the fused kernel, not a packed sequence):
    the backward one on each source reversed within its own length. Padding then follows the valid
    steps in both directions, so no valid output reads it, and the result is that of a packed
    bidirectional layer at the price of the unpacked kernel (a packed batch of sources of 10–70
    characters runs 3.3× slower on this CPU: a bidirectional 96-unit LSTM, batch 64, 70 steps, forward and
    backward, 838 ms packed against 250 ms unpacked, measured on the shared 2-core machine).
    ``state``: the top output ``h`` of each layer and direction after its last valid step,
    ``[num_layers · directions, B, H]``.
    """

    stateful = False
    #: Read by ``rnnlab.export.export_onnx``: why this model is refused.
    onnx_refusal = (
        "an encoder–decoder writes its output in a loop whose length depends on the data (greedy or beam "
        "search until <eos>), and rnnlab's ONNX files are one traced graph (x, lengths) -> output of fixed "
        "form; a separate encoder graph and decoder-step graph are not written yet. Use the PyTorch model "
        "(rnnlab predict RUN --data FILE) to decode"
    )

    def __init__(
        self,
        spec: SimpleNamespace,
        cell: str,
        hidden_size: int,
        *,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        embedding_dim: int | None,
        **layer_options: Any,
    ) -> None:
        super().__init__()
        self.hidden_size, self.num_layers, self.bidirectional = hidden_size, num_layers, bidirectional
        self.directions = 2 if bidirectional else 1
        self.dropout = dropout
        embedding_dim = embedding_dim or hidden_size
        self.embedding = nn.Embedding(spec.vocab_size, embedding_dim)
        self.rnn = nn.ModuleList(
            LAYER_CLASSES[cell](
                embedding_dim if layer == 0 else hidden_size * self.directions,
                hidden_size,
                batch_first=True,
                **layer_options,
            )
            for layer in range(num_layers)
            for _ in range(self.directions)
        )
        self.step_size = self.summary_size = hidden_size * self.directions

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        batch_size, seq_len = x.shape
        if lengths is None:
            lengths = torch.full((batch_size,), seq_len, dtype=torch.long)
        lengths = lengths.to(x.device)
        reverse = reversal_index(lengths, seq_len).t()  # [B, T]: each source reversed within its length
        last = lengths - 1
        rows = torch.arange(batch_size, device=x.device)
        layer_input, finals = self.embedding(x), []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                sequence = layer_input if direction == 0 else _gather_time(layer_input, reverse)
                output, _ = self.rnn[layer * self.directions + direction](sequence)
                finals.append(output[rows, last])  # h after the last valid step of this direction
                outputs.append(output if direction == 0 else _gather_time(output, reverse))
            layer_input = torch.cat(outputs, dim=-1) if self.directions == 2 else outputs[0]
            if self.dropout > 0 and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=self.training)
        valid = valid_mask(lengths, batch_size, seq_len, x.device)
        steps = layer_input * valid.unsqueeze(-1).to(layer_input.dtype)
        return EncoderOutput(steps, steps[rows, last], torch.stack(finals))


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for ``x`` ``[B, T, F]`` and ``index`` ``[B, T]``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class Attention(nn.Module):
    """Additive (Bahdanau) or multiplicative "general" (Luong) attention of a decoder state over the
    encoder outputs; equations in the module docstring."""

    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            attention_size = attention_size or query_size
            self.query = nn.Linear(query_size, attention_size, bias=False)  # W_a
            self.key = nn.Linear(memory_size, attention_size)  # U_a (its bias is the score's bias)
            self.score = nn.Linear(attention_size, 1, bias=False)  # v_a
        else:
            self.key = nn.Linear(memory_size, query_size, bias=False)  # W_a

    def keys(self, outputs: torch.Tensor) -> torch.Tensor:
        """The query-independent half of the score, computed once per source."""
        return self.key(outputs)

    def forward(self, queries: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """``queries`` ``[N, T_q, H]`` → contexts ``c`` ``[N, T_q, M]`` and weights ``α`` ``[N, T_q, T_in]``."""
        assert memory.keys is not None  # encode() projects the keys when there is attention
        if self.kind == "bahdanau":
            # [N, T_q, 1, A] + [N, 1, T_in, A]: one tanh per (query, source step) pair
            scores = self.score(torch.tanh(self.query(queries).unsqueeze(2) + memory.keys.unsqueeze(1))).squeeze(-1)
        else:
            scores = torch.bmm(queries, memory.keys.transpose(1, 2))  # s_tᵀ W_a h_s
        # Every source has at least one valid step, so no row is all -inf (no NaN).
        weights = torch.softmax(scores.masked_fill(~memory.valid.unsqueeze(1), float("-inf")), dim=-1)
        return torch.bmm(weights, memory.outputs), weights


class Seq2SeqModel(TaskModel):
    """Encoder–decoder for the ``seq2seq`` head; see the module docstring. Build it with
    ``rnnlab.models.build_model(name, spec, ...)``; ``attention`` is ``None``, ``"bahdanau"`` or
    ``"luong"``."""

    encoder: SourceEncoder
    attention: Attention | None

    def __init__(
        self,
        name: str,
        spec: SimpleNamespace,
        cell: str,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        embedding_dim: int | None = None,
        attention: str | None = "luong",
        attention_size: int | None = None,
        beam_size: int = 1,
        max_output_len: int | None = None,
        **layer_options: Any,
    ) -> None:
        encoder = SourceEncoder(
            spec,
            cell,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            embedding_dim=embedding_dim,
            **layer_options,
        )
        vocab_size = int(spec.num_classes)
        head_input = hidden_size
        super().__init__(name, spec, encoder, nn.Linear(head_input, vocab_size), dropout=dropout)
        self.cell = cell
        self.attention_kind = attention
        self.beam_size = int(beam_size)
        self.max_output_len = int(max_output_len or 2 * spec.output_shape[0])
        self.memory_size = encoder.step_size
        embedding_dim = embedding_dim or hidden_size
        self.target_embedding = nn.Embedding(vocab_size, embedding_dim)
        decoder_input = embedding_dim + (self.memory_size if attention == "bahdanau" else 0)
        self.decoder = LAYER_CLASSES[cell](
            decoder_input,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            **layer_options,
        )
        state_count = 2 if cell == "lstm" else 1
        # one bridge per decoder state tensor (h, and c for an LSTM), shared by the layers
        self.bridges = nn.ModuleList(nn.Linear(self.memory_size, hidden_size) for _ in range(state_count))
        self.attention = Attention(attention, hidden_size, self.memory_size, attention_size) if attention else None
        self.combine = nn.Linear(hidden_size + self.memory_size, hidden_size) if attention else None  # W_o / W_c
        self._last_weights: torch.Tensor | None = None
        self._never_output = torch.tensor([PAD_INDEX, BOS_INDEX])

    # ----------------------------------------------------------------- properties
    @property
    def streamable(self) -> bool:
        return False  # an output sequence needs the whole source first

    @property
    def attention_weights(self) -> torch.Tensor | None:
        """``α`` of the last forward or decode, ``[B, T_out, T_in]`` (detached); ``None`` without attention."""
        return None if self.attention is None else self._last_weights

    # ----------------------------------------------------------------- forward
    # target comes third (callers pass it by name), where TaskModel.forward has state: a real mismatch, kept
    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        state: Any = None,
        return_state: bool = False,
    ):
        """With ``target`` (``LongTensor[B, T_out]``, ``<eos>``-terminated, ``-100`` padded): teacher-forced
        logits ``[B, T_out, V]``. Without: the decoded ids ``LongTensor[B, T_out']`` (greedy or beam
        search as ``beam_size`` says)."""
        if state is not None:
            raise ConfigError(
                f"model {self.name!r} (seq2seq) starts its decoder from the encoder; it takes no state to start from"
            )
        if target is None:
            decoded = self.decode(x, lengths)
            return (decoded, None) if return_state else decoded
        if not _exporting():
            self._check_inputs(x, lengths, None)
            if target.dim() != 2 or target.size(0) != x.size(0):
                raise ConfigError(
                    f"target must be LongTensor[{x.size(0)}, T_out] (one row per source); got "
                    f"shape {list(target.shape)}"
                )
        memory, decoder_state = self.encode(x, lengths)
        previous = target[:, :-1].clamp(min=0)  # -100 padding → <pad>: those steps are not scored anyway
        inputs = torch.cat([torch.full_like(target[:, :1], BOS_INDEX), previous], dim=1)  # y_0 = <bos>
        embedded = self.target_embedding(inputs)
        weights: torch.Tensor | None
        if self.attention_kind == "bahdanau":
            steps, step_weights = [], []
            for embedded_t in embedded.unbind(1):  # unbind, not x[:, t]: slicing in a loop makes backward O(T²)
                logits_t, decoder_state, weights_t = self._bahdanau_step(embedded_t, decoder_state, memory)
                steps.append(logits_t)
                step_weights.append(weights_t)
            logits, weights = torch.stack(steps, 1), torch.stack(step_weights, 1)
        else:
            states, _ = self.decoder(embedded, decoder_state)  # s_t for every t at once
            logits, weights = self._read_out(states, memory)
        valid_out = (target != IGNORE_INDEX).unsqueeze(-1)
        self._last_weights = None if weights is None else (weights * valid_out).detach()
        return (logits, None) if return_state else logits

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[Memory, Any]:
        """The source's ``Memory`` and the decoder's initial state ``s_0``."""
        encoded = self.encoder(x, lengths)
        outputs = encoded.steps
        valid = valid_mask(lengths, x.size(0), x.size(1), x.device)
        keys = self.attention.keys(outputs) if self.attention is not None else None
        return Memory(outputs, keys, valid), self._bridge(encoded.state)

    def _bridge(self, finals: torch.Tensor) -> Any:
        """``s_0`` per layer: ``tanh(W_b [→h ; ←h])`` (and ``c_0 = W_b' [→h ; ←h]`` for an LSTM)."""
        layers, batch, size = finals.shape  # [L·directions, B, H]: layer-major, forward then backward
        directions = self.encoder.directions
        joined = finals.view(layers // directions, directions, batch, size).permute(0, 2, 1, 3)
        joined = joined.reshape(layers // directions, batch, directions * size)
        h_0 = torch.tanh(self.bridges[0](joined))
        return (h_0, self.bridges[1](joined)) if self.cell == "lstm" else h_0

    def _read_out(self, states: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (and ``α``) from decoder states ``[N, T, H]``: no attention, or Luong's."""
        if self.attention is None:
            return self.head(self.head_dropout(states)), None
        context, weights = self.attention(states, memory)
        assert self.combine is not None  # built with the attention
        combined = torch.tanh(self.combine(torch.cat([context, states], dim=-1)))  # h̃_t
        return self.head(self.head_dropout(combined)), weights

    def _bahdanau_step(self, embedded_t: torch.Tensor, state: Any, memory: Memory):
        top = (state[0] if isinstance(state, tuple) else state)[-1]  # s_{t-1}, top layer
        assert self.attention is not None and self.combine is not None  # Bahdanau attention is on
        context, weights = self.attention(top.unsqueeze(1), memory)
        output, state = self.decoder(torch.cat([embedded_t.unsqueeze(1), context], dim=-1), state)
        combined = torch.tanh(self.combine(torch.cat([output, context], dim=-1)))
        return self.head(self.head_dropout(combined)).squeeze(1), state, weights.squeeze(1)

    def decode_step(self, tokens: torch.Tensor, state: Any, memory: Memory):
        """One output step for ``N`` running sequences: previous tokens ``[N]`` → log-probabilities
        ``[N, V]``, the new decoder state and ``α`` ``[N, T_in]`` (``None`` without attention)."""
        embedded = self.target_embedding(tokens)
        if self.attention_kind == "bahdanau":
            logits, state, weights = self._bahdanau_step(embedded, state, memory)
        else:
            output, state = self.decoder(embedded.unsqueeze(1), state)
            logits, weights = self._read_out(output, memory)
            logits, weights = logits.squeeze(1), None if weights is None else weights.squeeze(1)
        # <pad> and <bos> are never outputs: a decoder must not pick them while it is still learning
        logits = logits.float().index_fill(-1, self._never_output.to(logits.device), float("-inf"))
        return F.log_softmax(logits, dim=-1), state, weights

    # ----------------------------------------------------------------- decoding
    @torch.no_grad()
    def decode(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        beam_size: int | None = None,
        max_output_len: int | None = None,
        return_scores: bool = False,
    ):
        """Decoded ids ``LongTensor[B, T_out]`` (``<eos>`` included, ``<pad>`` after it); with
        ``return_scores`` also the summed log-probability of each (``FloatTensor[B]``)."""
        beam_size = self.beam_size if beam_size is None else int(beam_size)
        max_output_len = self.max_output_len if max_output_len is None else int(max_output_len)
        if beam_size < 1 or max_output_len < 1:
            raise ConfigError(f"beam_size and max_output_len must be at least 1; got {beam_size} and {max_output_len}")
        if not _exporting():
            self._check_inputs(x, lengths, None)
        memory, state = self.encode(x, lengths)
        tokens, scores, weights = beam_search(
            self.decode_step, state, memory, batch_size=x.size(0), beam_size=beam_size, max_len=max_output_len
        )
        self._last_weights = weights
        return (tokens, scores) if return_scores else tokens


def reorder_state(state: Any, index: torch.Tensor) -> Any:
    """A decoder state (tensor or tuple of ``[layers, N, H]`` tensors) with its rows picked by ``index``."""
    if isinstance(state, tuple):
        return tuple(tensor.index_select(1, index) for tensor in state)
    return state.index_select(1, index)


def beam_search(step, state: Any, memory: Memory, *, batch_size: int, beam_size: int, max_len: int):
    """Batched beam search; ``beam_size=1`` is greedy decoding.

    ``step(tokens [N], state, memory) -> (log_probs [N, V], state, weights [N, T_in] | None)`` with
    ``N = batch_size · beam_size`` (rows ``b·K … b·K + K − 1`` are the beams of sequence ``b``). Each
    beam's score is the summed log-probability of its tokens. A beam that emits ``<eos>`` is
    finished: it keeps its score and is extended by ``<pad>`` at no cost. Decoding stops when every
    beam is finished or after ``max_len`` tokens; the best finished beam of each sequence wins (the
    best unfinished one where none finished). Returns ids ``[B, T]``, scores ``[B]`` and the
    attention of the chosen beams ``[B, T, T_in]`` (0 after ``<eos>``; ``None`` without attention).
    """
    K = beam_size
    keys = None if memory.keys is None else memory.keys.repeat_interleave(K, 0)
    memory = Memory(memory.outputs.repeat_interleave(K, 0), keys, memory.valid.repeat_interleave(K, 0))
    state = reorder_state(state, torch.arange(batch_size, device=memory.outputs.device).repeat_interleave(K))
    device = memory.outputs.device
    scores = torch.zeros(batch_size, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start equal: keep one, or the top K would be K copies
    tokens = torch.full((batch_size * K,), BOS_INDEX, dtype=torch.long, device=device)
    finished = torch.zeros(batch_size, K, dtype=torch.bool, device=device)
    history = torch.zeros(batch_size, K, 0, dtype=torch.long, device=device)
    attention: torch.Tensor | None = None
    base = (torch.arange(batch_size, device=device) * K).unsqueeze(1)
    for _ in range(max_len):
        log_probs, state, weights = step(tokens, state, memory)
        vocab_size = log_probs.size(-1)
        log_probs = log_probs.view(batch_size, K, vocab_size)
        # a finished beam may only continue with <pad>, at log-probability 0
        after_end = torch.full_like(log_probs, float("-inf"))
        after_end[..., PAD_INDEX] = 0.0
        log_probs = torch.where(finished.unsqueeze(-1), after_end, log_probs)
        candidates = (scores.unsqueeze(-1) + log_probs).view(batch_size, K * vocab_size)
        scores, chosen = candidates.topk(K, dim=1)  # [B, K]
        beam, token = chosen // vocab_size, chosen % vocab_size
        rows = (base + beam).view(-1)
        state = reorder_state(state, rows)
        history = torch.cat(
            [history.gather(1, beam.unsqueeze(-1).expand(-1, -1, history.size(2))), token.unsqueeze(-1)], dim=2
        )
        if weights is not None:
            weights = weights.view(batch_size, K, 1, -1) * (~finished).unsqueeze(-1).unsqueeze(-1)
            if attention is None:
                attention = weights.new_zeros(batch_size, K, 0, weights.size(-1))
            attention = torch.cat([attention, weights], dim=2)
            attention = attention.gather(1, beam.view(batch_size, K, 1, 1).expand(-1, -1, *attention.shape[2:]))
        finished = finished.gather(1, beam) | (token == EOS_INDEX)
        tokens = token.view(-1)
        if bool(finished.all()):
            break
    # prefer finished beams: an unfinished one's score only looks better because it is shorter
    ranked = torch.where(finished, scores, scores - 1e9)
    best = ranked.argmax(1)
    pick = torch.arange(batch_size, device=device)
    best_attention = None if attention is None else attention[pick, best]
    return history[pick, best], scores[pick, best], best_attention


class TeacherForced(nn.Module):
    """``model`` with its targets bound: ``forward(x, lengths)`` gives the teacher-forced logits, so
    code written for ``output = model(x, lengths); loss(output, y)`` (the lab's timings, memory and
    gradient measures) runs a seq2seq model as it trains."""

    def __init__(self, model: Seq2SeqModel, target: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.target = target
        self.encoder = model.encoder

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, lengths, target=self.target)
