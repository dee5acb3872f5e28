"""The training engine: a Lightning module, callbacks, and run directories.

    from rnnlab.train import TrainConfig, train
    result = train(TrainConfig(task="recall", model="lstm", seq_len=100, out="runs/recall"))
    result.summary["test_metrics"]      # {"accuracy": ..., "macro_f1": ..., "chance_accuracy": ...}

``train(config) -> RunResult`` (``.dir``, ``.summary``, ``.model``, ``.task_data``, ``.config``);
``load_run(dir) -> LoadedRun(config, model, task)``; ``evaluate_run(dir, data=None) -> dict``;
``predict_run(dir, data, out)`` (classify, tag) and ``forecast_run(dir, data, out)`` (forecast).
See ``run.py`` for the run directory's files, ``inference.py`` for what uses a finished run.
"""

from rnnlab.train.config import TASK_DEFAULTS, TrainConfig
from rnnlab.train.evaluation import evaluate_model
from rnnlab.train.inference import LoadedRun, evaluate_run, forecast_run, load_run, predict_run
from rnnlab.train.metrics import PRIMARY_METRIC, metrics_for, primary_metric
from rnnlab.train.run import RunResult, load_task_data, train

__all__ = [
    "PRIMARY_METRIC",
    "TASK_DEFAULTS",
    "LoadedRun",
    "RunResult",
    "TrainConfig",
    "evaluate_model",
    "evaluate_run",
    "forecast_run",
    "load_run",
    "load_task_data",
    "metrics_for",
    "predict_run",
    "primary_metric",
    "train",
]
