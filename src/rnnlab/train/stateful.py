"""Stateful training over long contiguous streams: truncated back-propagation through time (TBPTT).

A language model reads text as one long stream, so cutting it into independent windows (each
starting from a zero state) wastes what the model could carry from the window before. Here the
training stream ``tokens[0 : N]`` is cut into ``B`` (``batch_size``) parallel streams of equal
length ``S``; batch ``k`` holds window ``k`` of every stream, so row ``b`` of batch ``k + 1``
continues row ``b`` of batch ``k`` and the recurrent state is carried from one batch to the next:

    offset o        ∈ [0, T)  drawn per epoch from (seed, epoch), so windows start somewhere new
    S               = (N − 1 − o) // B                      characters per stream
    x[k][b]         = tokens[o + b·S + k·T : o + b·S + (k + 1)·T]
    y[k][b]         = tokens[o + b·S + k·T + 1 : o + b·S + (k + 1)·T + 1]
    state_{k+1}     = detach(state after batch k)            (gradients stop at the window edge)

``K = S // T`` batches per epoch (each stream's tail shorter than ``T`` is left out of that epoch;
the next epoch's offset moves it). The state starts at zero at each epoch's start. Under
data-parallel training process ``r`` of ``R`` takes streams ``r·B … (r+1)·B − 1`` of ``R·B``.

Models without a recurrent state (transformer as a causal decoder, TCN) read the same windows
independently. Evaluation reads the whole held-out stream as one stream with the state carried
from window to window, which equals one pass over the whole stream (``evaluate_stream``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rnnlab.data import collate

#: Window length of stateful evaluation: the state is carried, so it only sets the work per call.
EVALUATION_WINDOW = 1000


def reads_stream(dataset: Any) -> bool:
    """Whether ``dataset`` is a split of one contiguous token stream (``charlm``: ``dataset.tokens``)."""
    return isinstance(getattr(dataset, "tokens", None), torch.Tensor)


class StreamWindows(Dataset):
    """``(x, y)`` for a window start: ``x = tokens[s : s + T]``, ``y = tokens[s + 1 : s + T + 1]``
    (shorter at the end of the stream). Indexed by the start position ``s``."""

    def __init__(self, tokens: torch.Tensor, seq_len: int) -> None:
        self.tokens, self.seq_len = tokens, seq_len

    def __len__(self) -> int:
        return max(0, len(self.tokens) - 1)

    def __getitem__(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        stop = min(start + self.seq_len, len(self.tokens) - 1)
        return self.tokens[start:stop], self.tokens[start + 1 : stop + 1]


class StreamBatchSampler(Sampler[list[int]]):
    """Window starts of each TBPTT batch (see the module docstring for the layout).

    ``shuffle_offset``: draw the offset ``o`` from ``(seed, epoch)`` (training); otherwise ``o = 0``.
    ``complete_only=False`` (evaluation) keeps the last, shorter window of each stream.
    ``set_epoch`` is found by Lightning through ``batch_sampler.sampler``, which is this object.
    """

    def __init__(
        self,
        num_tokens: int,
        seq_len: int,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle_offset: bool = True,
        complete_only: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_tokens - seq_len < 1:
            raise ValueError(
                f"a stream of {num_tokens} tokens is shorter than one window of seq_len + 1 = {seq_len + 1}"
            )
        self.num_tokens, self.seq_len, self.batch_size = num_tokens, seq_len, batch_size
        self.seed, self.shuffle_offset, self.complete_only = seed, shuffle_offset, complete_only
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.sampler = self  # Lightning calls batch_sampler.sampler.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def offset(self) -> int:
        """``o`` of this epoch: a pure function of ``(seed, epoch)``."""
        if not self.shuffle_offset:
            return 0
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        # never so far that a stream is left without one complete window
        room = min(self.seq_len, self.num_tokens - 1 - self.seq_len * self.streams)
        return int(torch.randint(0, max(1, room + 1), (1,), generator=generator))

    @property
    def streams(self) -> int:
        """Parallel streams over all processes, at most one per window of text."""
        return max(1, min(self.batch_size * self.world_size, (self.num_tokens - 1) // self.seq_len))

    def layout(self) -> tuple[int, int, int]:
        """``(offset o, stream length S, windows per stream K)`` for this epoch."""
        offset = self.offset()
        stream_length = (self.num_tokens - 1 - offset) // self.streams
        windows = stream_length // self.seq_len if self.complete_only else -(-stream_length // self.seq_len)
        return offset, stream_length, windows

    def _my_streams(self) -> range:
        per_process = -(-self.streams // self.world_size)
        return range(self.rank * per_process, min(self.streams, (self.rank + 1) * per_process))

    def __iter__(self) -> Iterator[list[int]]:
        offset, stream_length, windows = self.layout()
        for k in range(windows):
            yield [offset + b * stream_length + k * self.seq_len for b in self._my_streams()]

    def __len__(self) -> int:
        return self.layout()[2]


def stream_loader(
    tokens: torch.Tensor,
    seq_len: int,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """``Batch`` es of TBPTT windows over ``tokens`` (training: ``batch_size`` streams per process,
    a fresh offset per epoch; evaluation: pass ``batch_size=1`` for one whole stream).

    In evaluation the last window of each stream may be shorter, and is then a batch of its own
    length: every row of a batch has the same length, as the carried state needs."""
    if not training:  # a held-out part may be shorter than one window
        seq_len = max(1, min(seq_len, len(tokens) - 1))
    sampler = StreamBatchSampler(
        len(tokens),
        seq_len,
        batch_size,
        seed=seed,
        shuffle_offset=training,
        complete_only=training,
        rank=rank,
        world_size=world_size,
    )
    # its own generator: DataLoader would otherwise draw its base seed from the global RNG at each
    # epoch's start, so a resumed run's dropout masks would be one draw away from the uninterrupted run's
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(StreamWindows(tokens, seq_len), batch_sampler=sampler, collate_fn=collate, generator=generator)


def detach_state(state: Any) -> Any:
    """The state with every tensor detached (a tensor, or a tuple/list of them, e.g. LSTM ``(h, c)``)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(part) for part in state)


class StateCarrier:
    """Runs a model on consecutive TBPTT batches, carrying its state (detached) between them.

    ``output(model, x)`` returns the model's output for batch ``x`` started from the state the
    previous batch left; models without a state (``model.stateful`` false) read each batch alone.
    ``reset()`` starts again from zero (each epoch, each evaluation pass).
    """

    def __init__(self) -> None:
        self.state: Any = None

    def reset(self) -> None:
        self.state = None

    def output(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not getattr(model, "stateful", False):
            return model(x)
        state = self.state
        if state is not None and _batch_size(state) != x.size(0):
            state = None  # a differently shaped batch (e.g. after a resume) starts a new stream
        output, new_state = model(x, None, state, return_state=True)
        self.state = detach_state(new_state)
        return output


def _batch_size(state: Any) -> int:
    tensor = state
    while not isinstance(tensor, torch.Tensor):
        tensor = tensor[0]
    return tensor.size(1)


def evaluate_stream(
    model: torch.nn.Module, tokens: torch.Tensor, spec: Any, meta: dict[str, Any], *, window: int = EVALUATION_WINDOW
) -> dict[str, float]:
    """The language-model metrics (bpc, perplexity, ...) of ``model`` over the whole stream ``tokens``,
    read as one stream with the state carried from window to window (``window`` characters per call;
    models without a state read each window alone, so use their training ``seq_len``)."""
    from rnnlab.train.metrics import metrics_for

    if not getattr(model, "stateful", False):
        window = int((spec.get("seq_len") if isinstance(spec, dict) else spec.seq_len) or window)
    metrics = metrics_for(spec, meta)
    carrier = StateCarrier()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in stream_loader(tokens, window, 1, training=False):
                metrics.update(carrier.output(model, batch.x), batch.y)
    finally:
        model.train(was_training)
    return metrics.compute()
