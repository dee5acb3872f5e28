"""Checkpoints: tensors in safetensors, the rest in JSON; exact round trip; nothing unpickled."""

import json
import pickle
import random

import numpy as np
import pytest
import torch

from rnnlab.errors import ConfigError
from rnnlab.train.checkpoint import decode, encode, load_checkpoint, save_checkpoint


def test_encode_decode_keeps_types_json_lacks():
    state = {
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3)}},
            "param_groups": [{"betas": (0.9, 0.999), "params": [0]}],
        },
        "plateau": {"best": float("inf"), "mode_worse": float("-inf")},
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
        "dtype": torch.bfloat16,
    }
    tensors: dict = {}
    structure = encode(state, tensors)
    text = json.dumps(structure, allow_nan=False)  # plain JSON, no NaN/inf literals
    restored = decode(json.loads(text), tensors)
    assert list(restored["optimizer"]["state"]) == [0]  # an integer key stays an integer
    assert torch.equal(restored["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert restored["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert restored["plateau"] == {"best": float("inf"), "mode_worse": float("-inf")}
    assert restored["numpy_rng"][1].dtype == np.uint32
    assert np.array_equal(restored["numpy_rng"][1], state["numpy_rng"][1])
    assert restored["python_rng"] == state["python_rng"]
    assert restored["dtype"] is torch.bfloat16


def test_objects_that_json_cannot_hold_are_refused_with_their_path():
    with pytest.raises(TypeError, match=r"cannot store a builtins.object at /a/b"):
        encode({"a": {"b": object()}}, {})


def test_checkpoint_loads_without_unpickling(tmp_path, monkeypatch):
    weights = {"layer.weight": torch.randn(4, 4)}
    save_checkpoint({"epoch": 2, "global_step": 10, "state_dict": weights}, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint must load without pickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    restored = load_checkpoint(tmp_path)
    assert torch.equal(restored["state_dict"]["layer.weight"], weights["layer.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "train-e0002-s00000010.safetensors"]


def test_a_newer_checkpoint_replaces_the_older_tensor_file(tmp_path):
    save_checkpoint({"epoch": 0, "global_step": 5, "w": torch.zeros(1)}, tmp_path)
    save_checkpoint({"epoch": 1, "global_step": 9, "w": torch.ones(1)}, tmp_path)
    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["train-e0001-s00000009.safetensors"]
    assert float(load_checkpoint(tmp_path)["w"]) == 1.0


def test_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint at"):
        load_checkpoint(tmp_path)
    (tmp_path / "last.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="expected format 'rnnlab-checkpoint-1', got 'something else'"):
        load_checkpoint(tmp_path)
