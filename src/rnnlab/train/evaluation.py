"""Scoring a model on a data set: the task's metrics, batch by batch, in inference mode."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnlab.train.loaders import shard_loader
from rnnlab.train.metrics import metrics_for

EVALUATION_BATCH_SIZE = 256


def evaluate_model(
    model: torch.nn.Module, dataset: Any, spec: Any, meta: dict[str, Any], *, batch_size: int = EVALUATION_BATCH_SIZE
) -> dict[str, float]:
    """The task's metrics of ``model`` on ``dataset`` (in float32, without dropout); a text stream
    (charlm) is read whole with the recurrent state carried (``stateful.evaluate_stream``)."""
    from rnnlab.train.stateful import evaluate_stream, reads_stream

    if reads_stream(dataset):
        return evaluate_stream(model, dataset.tokens, spec, meta)
    metrics = metrics_for(spec, meta)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in shard_loader(dataset, batch_size, shuffle=False, bucket=False, seed=0):
            lengths = None if bool((batch.lengths == batch.x.size(1)).all()) else batch.lengths
            metrics.update(model(batch.x, lengths), batch.y)
    model.train(was_training)
    return metrics.compute()


def finite_or_none(value: Any) -> Any:
    """``value``, or None when it is a float that is not finite (JSON has no NaN or inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
