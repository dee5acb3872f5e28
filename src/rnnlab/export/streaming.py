"""Streaming inference: one step (or a short chunk) at a time, for many independent streams.

A real-time system (a sensor per machine, a user per chat session) sees each stream one sample at a
time and wants an answer at every sample without re-reading the past. A unidirectional recurrent
model needs only its state for that: ``h_t`` (and ``c_t``) summarise everything before ``t``.
:class:`StreamingPredictor` keeps one state per stream id, batches the streams that have a new
sample into one call, and gives each stream the output the whole-sequence model would give at that
step (per-step heads: that step's output; sequence heads: the output as if the sequence ended here).

It runs on PyTorch (a ``TaskModel``) or on an ONNX file written by
``export_onnx(model, path, mode="step")`` / ``rnnlab export RUN --step``.

>>> predictor = StreamingPredictor(model)                       # doctest: +SKIP
>>> predictor.step({"machine-7": x_t, "machine-9": y_t})        # doctest: +SKIP
{'machine-7': array([...]), 'machine-9': array([...])}
>>> predictor.reset("machine-7")                                # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rnnlab.errors import ConfigError
from rnnlab.export.onnx import OnnxModel, state_layout, step_refusal

if TYPE_CHECKING:
    from rnnlab.models.task_model import TaskModel


class _TorchBackend:
    """A ``TaskModel`` run with PyTorch; states are lists of tensors ``[layers, batch, hidden]``."""

    def __init__(self, model: TaskModel) -> None:
        refusal = step_refusal(model)
        if refusal:
            raise ConfigError(
                f"model {getattr(model, 'name', type(model).__name__)!r} cannot stream one step at a time: {refusal}"
            )
        self.model = model.eval()
        self.spec = dict(model.spec)
        self.per_step = bool(model.per_step)
        self.layout = state_layout(model)
        self.name = f"PyTorch ({model.name})"

    def zero_state(self) -> list[torch.Tensor]:
        return [torch.zeros(item["shape"][0], 1, item["shape"][2]) for item in self.layout]

    def stack(self, states: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        return [torch.cat(parts, dim=1) for parts in zip(*states)]

    def split(self, state: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        return [list(parts) for parts in zip(*(tensor.split(1, dim=1) for tensor in state))]

    def _model_state(self, state: list[torch.Tensor]):
        return tuple(state) if len(state) == 2 else state[0]

    def _listed(self, state) -> list[torch.Tensor]:
        return list(state) if isinstance(state, tuple) else [state]

    def step(self, x: np.ndarray, state: list[torch.Tensor]) -> tuple[np.ndarray, list[torch.Tensor]]:
        with torch.inference_mode():
            output, new_state = self.model.step(torch.from_numpy(x), self._model_state(state))
        return output.numpy(), self._listed(new_state)

    def chunk(self, x: np.ndarray, state: list[torch.Tensor]) -> tuple[np.ndarray, list[torch.Tensor]]:
        """``x`` ``[1, T, ...]`` → outputs ``[T, ...]`` at every step, and the state after the last."""
        inputs = torch.from_numpy(x)
        with torch.inference_mode():
            if self.per_step:  # one call: the head reads every step
                output, new_state = self.model(inputs, None, self._model_state(state), return_state=True)
                return output[0].numpy(), self._listed(new_state)
            outputs = []
            model_state = self._model_state(state)
            for t in range(inputs.shape[1]):
                output, model_state = self.model.step(inputs[:, t], model_state)
                outputs.append(output[0].numpy())
        return np.stack(outputs), self._listed(model_state)

    def whole(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()


class _OnnxBackend:
    """An rnnlab step-mode ONNX file in onnxruntime; states are lists of arrays ``[layers, batch, hidden]``."""

    def __init__(self, path: str | os.PathLike, threads: int | None) -> None:
        self.onnx_model = OnnxModel(path, threads=threads)
        if self.onnx_model.mode != "step":
            raise ConfigError(
                f"{path} is a {self.onnx_model.mode}-mode export; streaming needs the single-step model "
                "(export_onnx(..., mode='step'), or `rnnlab export RUN --step`)"
            )
        self.spec = self.onnx_model.spec
        self.per_step = self.onnx_model.per_step
        self.layout = self.onnx_model.state
        self.name = f"onnxruntime ({Path(path).name})"

    def zero_state(self) -> list[np.ndarray]:
        return self.onnx_model.zero_state(1)

    def stack(self, states: list[list[np.ndarray]]) -> list[np.ndarray]:
        return [np.concatenate(parts, axis=1) for parts in zip(*states)]

    def split(self, state: list[np.ndarray]) -> list[list[np.ndarray]]:
        batch_size = state[0].shape[1]
        return [[tensor[:, b : b + 1] for tensor in state] for b in range(batch_size)]

    def step(self, x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.onnx_model.run_step(x, state)

    def chunk(self, x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        outputs = []
        for t in range(x.shape[1]):
            output, state = self.onnx_model.run_step(x[:, t], state)
            outputs.append(output[0])
        return np.stack(outputs), state

    def whole(self, x: np.ndarray) -> np.ndarray:
        state, outputs = self.onnx_model.zero_state(x.shape[0]), []
        for t in range(x.shape[1]):
            output, state = self.onnx_model.run_step(x[:, t], state)
            outputs.append(output)
        return np.stack(outputs, axis=1) if self.per_step else outputs[-1]


class StreamingPredictor:
    """Carry one recurrent state per stream and answer one step (or chunk) at a time.

    ``model``: a streamable ``TaskModel`` (unidirectional recurrent, no attention) or the path of
    a step-mode ONNX file. ``threads``: onnxruntime's intra-op threads (ONNX files only).

    * ``step({stream_id: x_t, ...}) -> {stream_id: output}``: one new sample for each named stream,
      run as one batch; a stream seen for the first time starts from a zero state. ``x_t`` is a
      token id (int) or a feature vector ``[input_size]``.
    * ``feed(stream_id, chunk) -> outputs``: several samples ``[T]`` / ``[T, input_size]`` of one
      stream at once; outputs ``[T, ...]``, one per sample.
    * ``reset(stream_id)`` forgets a stream (``reset()`` forgets all); ``streams`` lists those held.
    * ``predict(window) -> output``: the whole-sequence output for a window ``[T(, F)]`` (or a batch
      ``[B, T(, F)]``), touching no stream's state.

    Outputs are numpy arrays shaped as one sample of the model's head (``[num_classes]`` for
    classify/tag/lm, ``[horizon, n_targets]`` for forecast, ``[]`` for regress).
    """

    def __init__(self, model: TaskModel | str | os.PathLike, *, threads: int | None = None) -> None:
        if isinstance(model, (str, os.PathLike)):
            self.backend: Any = _OnnxBackend(model, threads)
        elif isinstance(model, nn.Module):
            self.backend = _TorchBackend(model)
        else:
            raise ConfigError(
                f"StreamingPredictor takes a TaskModel or the path of a step-mode ONNX file; got {type(model).__name__}"
            )
        self.spec: dict[str, Any] = self.backend.spec
        self.per_step: bool = self.backend.per_step
        self._states: dict[Hashable, list] = {}

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike) -> StreamingPredictor:
        """A predictor on the model of a finished training run (PyTorch)."""
        from rnnlab.train import load_run

        return cls(load_run(run_dir).model)

    def __repr__(self) -> str:
        return f"StreamingPredictor({self.backend.name}, {len(self._states)} stream(s))"

    @property
    def streams(self) -> list[Hashable]:
        return list(self._states)

    # ------------------------------------------------------------------------------- input checks
    def _sample(self, value: Any, where: str) -> np.ndarray:
        """One step's input as the model wants it, or an error naming the stream and what was wrong."""
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        return self._checked(array, 0, where)

    def _checked(self, array: np.ndarray, time_dims: int, where: str) -> np.ndarray:
        """``array`` with ``time_dims`` leading dimensions before one sample (none, or T, or B×T)."""
        vocab_size = self.spec.get("vocab_size")
        if vocab_size is not None:
            expected = "token ids (integers)" + ("" if time_dims == 0 else f" of shape {['T', 'B, T'][time_dims - 1]}")
            if array.ndim != time_dims or array.dtype.kind not in "iu":
                raise ConfigError(f"{where}: expected {expected}; got {array.dtype} of shape {list(array.shape)}")
            if array.size and (array.min() < 0 or array.max() >= vocab_size):
                raise ConfigError(
                    f"{where}: token ids must lie in [0, {vocab_size - 1}]; got values from "
                    f"{array.min()} to {array.max()}"
                )
            return array.astype(np.int64, copy=False)
        input_size = self.spec["input_size"]
        if array.ndim != time_dims + 1 or array.shape[-1] != input_size or array.dtype.kind not in "fiu":
            lead = ["", "T, ", "B, T, "][time_dims]
            raise ConfigError(
                f"{where}: expected numbers of shape [{lead}{input_size}] (input_size {input_size}); "
                f"got {array.dtype} of shape {list(array.shape)}"
            )
        array = array.astype(np.float32, copy=False)
        if not np.isfinite(array).all():
            raise ConfigError(f"{where}: the input holds NaN or infinite values")
        return array

    # ------------------------------------------------------------------------------- streaming
    def step(self, inputs: Mapping[Hashable, Any]) -> dict[Hashable, np.ndarray]:
        """One new sample per named stream, all run as one batch; returns each stream's output."""
        if not isinstance(inputs, Mapping):
            raise ConfigError(
                f"step takes a mapping stream id → one sample; got {type(inputs).__name__} "
                "(use feed(stream_id, chunk) for several samples of one stream)"
            )
        if not inputs:
            return {}
        ids = list(inputs)
        batch = np.stack([self._sample(inputs[stream_id], f"stream {stream_id!r}") for stream_id in ids])
        states = [self._states.get(stream_id) or self.backend.zero_state() for stream_id in ids]
        outputs, new_state = self.backend.step(batch, self.backend.stack(states))
        for stream_id, state in zip(ids, self.backend.split(new_state)):
            self._states[stream_id] = state
        return {stream_id: outputs[index] for index, stream_id in enumerate(ids)}

    def feed(self, stream_id: Hashable, chunk: Any) -> np.ndarray:
        """Several consecutive samples of one stream; returns one output per sample ``[T, ...]``."""
        array = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
        array = self._checked(array, 1, f"stream {stream_id!r}")
        if array.shape[0] == 0:
            raise ConfigError(f"stream {stream_id!r}: the chunk holds no sample")
        state = self._states.get(stream_id) or self.backend.zero_state()
        outputs, new_state = self.backend.chunk(array[None], state)
        self._states[stream_id] = new_state
        return outputs

    def reset(self, stream_id: Hashable | None = None) -> None:
        """Forget a stream's state (its next sample starts a new sequence); without an id, all."""
        if stream_id is None:
            self._states.clear()
        elif stream_id not in self._states:
            known = ", ".join(repr(s) for s in list(self._states)[:10]) or "none"
            raise ConfigError(f"no stream {stream_id!r} to reset (streams held: {known})")
        else:
            del self._states[stream_id]

    def predict(self, window: Any) -> np.ndarray:
        """The whole-sequence output for one window ``[T(, F)]`` or a batch ``[B, T(, F)]``."""
        array = window.detach().cpu().numpy() if isinstance(window, torch.Tensor) else np.asarray(window)
        sample_dims = 0 if self.spec.get("vocab_size") is not None else 1
        batched = array.ndim == sample_dims + 2
        array = self._checked(array if batched else array[None], 2, "predict")
        output = self.backend.whole(array)
        return output if batched else output[0]
