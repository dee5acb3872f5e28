"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A Lightning checkpoint is a nested dict of model weights, optimizer and scheduler states, loop
progress, callback states and RNG states. ``encode`` walks it once: every tensor goes into a flat
``name -> tensor`` map (saved with safetensors), and the structure around the tensors becomes JSON
that refers to them by name. Python types JSON lacks are tagged so ``decode`` gives back exactly the
same objects (a tuple stays a tuple, an integer dict key stays an integer, ``inf`` stays ``inf``).
Nothing is unpickled when a checkpoint is loaded, so a checkpoint from someone else cannot run code.

A checkpoint is two files: ``train-NNNN.safetensors`` first, then ``last.json`` (the commit point,
written atomically) naming it. A kill between the two leaves the previous ``last.json`` valid.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.errors import ConfigError
from rnnlab.io import atomic_save_safetensors, atomic_write_json

CHECKPOINT_DIR = "checkpoint"  # inside a run directory, while the run trains
CHECKPOINT_FILE = "last.json"
RECORD_FILE = "record.json"  # the finished training's record, read by train() in the main process
FORMAT = "rnnlab-checkpoint-1"
TENSOR_FILE = re.compile(r"train-e\d{4,}-s\d{8,}\.safetensors")


def encode(value: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """``value`` as JSON-able data; its tensors are moved into ``tensors`` under their path."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):
        # Unsigned integers (numpy's Mersenne Twister state is uint32) are stored widened to int64,
        # which every safetensors version reads; the dtype tag narrows them back.
        stored = value.astype(np.int64) if value.dtype.kind == "u" else value
        tensors[path] = torch.from_numpy(np.ascontiguousarray(stored))
        return {"__ndarray__": path, "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return encode(value.item(), tensors, path)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: encode(item, tensors, f"{path}/{key}") for key, item in value.items()}
        return {
            "__dict__": [
                [encode(key, tensors, f"{path}/#k{i}"), encode(item, tensors, f"{path}/#v{i}")]
                for i, (key, item) in enumerate(value.items())
            ]
        }
    if isinstance(value, tuple):
        return {"__tuple__": [encode(item, tensors, f"{path}/{i}") for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [encode(item, tensors, f"{path}/{i}") for i, item in enumerate(value)]
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    raise TypeError(
        f"cannot store a {type(value).__module__}.{type(value).__qualname__} at {path or '/'} "
        "in a checkpoint (only tensors, arrays, numbers, strings and containers of them)"
    )


def decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of ``encode``."""
    if isinstance(value, list):
        return [decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].numpy().astype(np.dtype(value["dtype"]))
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(decode(item, tensors) for item in value["__tuple__"])
    if "__dict__" in value:
        return {decode(key, tensors): decode(item, tensors) for key, item in value["__dict__"]}
    if "__dtype__" in value:
        return getattr(torch, value["__dtype__"])
    return {key: decode(item, tensors) for key, item in value.items()}


def save_checkpoint(checkpoint: dict[str, Any], folder: str | os.PathLike) -> Path:
    """Write ``checkpoint`` into ``folder`` atomically; older tensor files are removed afterwards."""
    from safetensors.torch import save_file  # noqa: F401  (fail early when safetensors is missing)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    structure = encode(checkpoint, tensors)
    # Tensors that share storage (tied weights, views) must be separate copies for safetensors.
    tensors = {name: tensor.detach().cpu().clone() for name, tensor in tensors.items()}
    step = int(checkpoint.get("global_step", 0))
    epoch = int(checkpoint.get("epoch", 0))
    tensor_file = f"train-e{epoch:04d}-s{step:08d}.safetensors"
    atomic_save_safetensors(folder / tensor_file, tensors)
    atomic_write_json(folder / CHECKPOINT_FILE, {"format": FORMAT, "tensors": tensor_file, "state": structure})
    for stale in folder.glob("train-*.safetensors"):
        if stale.name != tensor_file:
            stale.unlink(missing_ok=True)
    return folder / CHECKPOINT_FILE


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (``path``: its folder or its ``last.json``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}: expected the {CHECKPOINT_FILE} that training writes each epoch")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"checkpoint {path} is not valid JSON: {error}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ConfigError(
            f"checkpoint {path}: expected format {FORMAT!r}, "
            f"got {index.get('format') if isinstance(index, dict) else type(index).__name__!r}"
        )
    name = index.get("tensors")
    if not isinstance(name, str) or not TENSOR_FILE.fullmatch(name):
        # a bare train-*.safetensors name: a path that leaves the checkpoint folder is never followed
        raise ConfigError(f"checkpoint {path} names tensors {name!r}; expected a train-*.safetensors file beside it")
    tensor_path = path.parent / name
    if not tensor_path.is_file():
        raise ConfigError(f"checkpoint {path} names {name}, which is missing")
    try:
        tensors = load_file(tensor_path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(f"checkpoint tensors {tensor_path} are not readable ({error}); was it truncated?") from None
    if "state" not in index:
        raise ConfigError(f"checkpoint {path} holds no state")
    return decode(index["state"], tensors)
