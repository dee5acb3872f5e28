"""Metrics of a split, accumulated batch by batch, with the task's baselines beside them.

Each head has an accumulator that keeps sums (a confusion matrix, summed errors, summed
log-likelihoods), never per-sample lists, so a split of any size costs constant memory, and the sums
of several processes add up to the sums of the whole split (data-parallel evaluation reduces them
with one ``all_reduce``). ``compute`` turns the sums into the metrics:

classification (``classify``, ``tag``; ``-100`` targets are not scored), with ``N_cc'`` the confusion
counts (true ``c``, predicted ``c'``):
    accuracy      = Σ_c N_cc / Σ N
    macro_f1      = mean over classes present (in truth or prediction) of 2·TP_c / (2·TP_c + FP_c + FN_c)
    cross_entropy = mean of −ln p(y) over scored steps (nats)
    the copy task scores ``accuracy``/``macro_f1`` on its answer steps and ``cross_entropy`` on all steps.
language model (``lm``): cross_entropy in nats per character, ``bpc = cross_entropy / ln 2``,
    ``perplexity = exp(cross_entropy)``.
forecast, in the data's original units (``y = y_scaled · std + mean`` per target), ``e = ŷ − y``:
    mae = mean |e|,  rmse = sqrt(mean e²),  smape = 100 · mean 2|e| / (|y| + |ŷ|)  (0/0 counts 0),
    mase = mean over targets of mae_target / mase_scale_target, where mase_scale is the in-sample
    seasonal-naive MAE on the training part (Hyndman & Koehler 2006).
regression (``regress``): mse = mean e², mae = mean |e|.
multilabel (``music``): nll = Σ_keys binary cross-entropy, averaged over frames (Boulanger-Lewandowski 2012).
sequence to sequence (``seq2seq``), from the decoded output (greedy or beam search, not teacher-forced),
    both cut at their first ``<eos>``:
    exact_match = share of sequences decoded exactly,
    cer         = Σ Levenshtein(decoded, reference) / Σ len(reference)   (character error rate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

#: The metric each task is judged by (early stopping, ``target``, the lab), and whether more is better.
PRIMARY_METRIC: dict[str, tuple[str, Literal["max", "min"]]] = {
    "recall": ("accuracy", "max"),
    "adding": ("mse", "min"),
    "copy": ("accuracy", "max"),
    "forecast": ("mae", "min"),
    "classify": ("accuracy", "max"),
    "tag": ("macro_f1", "max"),
    "charlm": ("bpc", "min"),
    "music": ("nll", "min"),
    "seq2seq": ("exact_match", "max"),
}
#: When a task is not listed above, its head decides.
HEAD_PRIMARY_METRIC: dict[str, tuple[str, Literal["max", "min"]]] = {
    "classify": ("accuracy", "max"),
    "tag": ("macro_f1", "max"),
    "lm": ("bpc", "min"),
    "forecast": ("mae", "min"),
    "regress": ("mse", "min"),
    "multilabel": ("nll", "min"),
    "seq2seq": ("exact_match", "max"),
}


#: Scores that cannot be beaten: training stops once the validation metric reaches one.
PERFECT_SCORE: dict[str, float] = {"accuracy": 1.0, "macro_f1": 1.0, "exact_match": 1.0}


def primary_metric(task: str, head: str) -> tuple[str, Literal["max", "min"]]:
    """``(metric name, "max" | "min")`` for a task."""
    return PRIMARY_METRIC.get(task) or HEAD_PRIMARY_METRIC[head]


class Metrics:
    """Sums over one split. ``update(output, y)`` per batch; ``compute()`` at the end."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def _add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().to("cpu", torch.float64)
        self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()

    def update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self, sums: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """The metrics from ``sums`` (default: this accumulator's own, e.g. replaced by reduced ones)."""
        raise NotImplementedError

    def reset(self) -> None:
        self.sums = {}


class ClassificationMetrics(Metrics):
    """``classify`` (output ``[B, C]``, y ``[B]``) and ``tag`` (output ``[B, T, C]``, y ``[B, T]``).

    ``answer_positions``: ``[start, stop)`` of the steps scored by accuracy and F1 (copy memory);
    cross-entropy is then still over every step.
    """

    def __init__(self, num_classes: int, answer_positions: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.answer_positions = tuple(answer_positions) if answer_positions is not None else None

    def update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        logits = output.detach().float()
        scored = y != IGNORE_INDEX
        log_probabilities = F.log_softmax(logits, dim=-1)
        safe_targets = y.clamp(min=0).unsqueeze(-1)
        nll = -log_probabilities.gather(-1, safe_targets).squeeze(-1)
        self._add("nll", nll[scored].sum())
        self._add("steps", scored.sum())
        predicted = logits.argmax(-1)
        if self.answer_positions is not None:
            start, stop = self.answer_positions
            predicted, y, scored = predicted[:, start:stop], y[:, start:stop], scored[:, start:stop]
        truth, guess = y[scored], predicted[scored]
        confusion = torch.bincount(truth * self.num_classes + guess, minlength=self.num_classes**2)
        self._add("confusion", confusion.view(self.num_classes, self.num_classes))

    def compute(self, sums: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        sums = self.sums if sums is None else sums
        confusion = sums["confusion"]
        return {
            "accuracy": _ratio(confusion.diagonal().sum(), confusion.sum()),
            "macro_f1": macro_f1_from_confusion(confusion),
            "cross_entropy": _ratio(sums["nll"], sums["steps"]),
        }


def macro_f1_from_confusion(confusion: torch.Tensor) -> float:
    """Mean F1 over the classes that occur as truth or prediction (scikit-learn's ``average="macro"``)."""
    true_positives = confusion.diagonal()
    predicted = confusion.sum(0)
    actual = confusion.sum(1)
    present = (predicted + actual) > 0
    if not bool(present.any()):
        return float("nan")
    f1 = 2 * true_positives[present] / (predicted[present] + actual[present])
    return float(f1.mean())


class LanguageModelMetrics(Metrics):
    """``lm``: output ``[B, T, V]`` logits, y ``[B, T]`` next-character ids (``-100`` not scored)."""

    def update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        logits = output.detach().float()
        scored = y != IGNORE_INDEX
        nll = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum", ignore_index=IGNORE_INDEX
        )
        self._add("nll", nll)
        self._add("steps", scored.sum())
        self._add("correct", ((logits.argmax(-1) == y) & scored).sum())

    def compute(self, sums: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        sums = self.sums if sums is None else sums
        nats = _ratio(sums["nll"], sums["steps"])
        return {
            "bpc": nats / math.log(2),
            "perplexity": math.exp(nats) if nats < 700 else float("inf"),
            "cross_entropy": nats,
            "accuracy": _ratio(sums["correct"], sums["steps"]),
        }


class ForecastMetrics(Metrics):
    """``forecast``: output and y ``[B, horizon, n_targets]`` in scaled units; metrics in original units.

    ``mean``/``std``: the targets' scaler (``y = y_scaled · std + mean``, then ``exp y`` for the targets
    in ``logged``); ``mase_scale``: per target, the in-sample seasonal-naive MAE on the training part
    (``None``: no MASE).
    """

    def __init__(
        self,
        mean: list[float],
        std: list[float],
        mase_scale: list[float] | None = None,
        logged: list[bool] | None = None,
    ) -> None:
        super().__init__()
        self.mean = torch.tensor(mean, dtype=torch.float64)
        self.std = torch.tensor(std, dtype=torch.float64)
        self.mase_scale = torch.tensor(mase_scale, dtype=torch.float64) if mase_scale is not None else None
        self.logged = torch.tensor(logged or [False] * len(mean))

    def unscale(self, values: torch.Tensor) -> torch.Tensor:
        values = values.detach().to(torch.float64) * self.std + self.mean
        return torch.where(self.logged, values.exp(), values) if bool(self.logged.any()) else values

    def update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        predicted, actual = self.unscale(output.cpu()), self.unscale(y.cpu())
        error = predicted - actual
        denominator = actual.abs() + predicted.abs()
        smape_terms = torch.where(
            denominator > 0, 2 * error.abs() / denominator.clamp(min=1e-300), torch.zeros_like(error)
        )
        self._add("abs_error", error.abs().sum((0, 1)))  # per target
        self._add("squared_error", error.pow(2).sum())
        self._add("smape", smape_terms.sum())
        self._add("values_per_target", torch.tensor(float(error.shape[0] * error.shape[1])))

    def compute(self, sums: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        sums = self.sums if sums is None else sums
        per_target = sums["values_per_target"]
        count = per_target * sums["abs_error"].numel()
        metrics = {
            "mae": _ratio(sums["abs_error"].sum(), count),
            "rmse": math.sqrt(_ratio(sums["squared_error"], count)),
            "smape": 100.0 * _ratio(sums["smape"], count),
        }
        if self.mase_scale is not None:
            mae_per_target = sums["abs_error"] / per_target
            metrics["mase"] = float((mae_per_target / self.mase_scale).mean())
        return metrics


class RegressionMetrics(Metrics):
    """``regress``: output and y ``[B]``."""

    def update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        error = output.detach().to(torch.float64).reshape(-1) - y.to(torch.float64).reshape(-1)
        self._add("squared_error", error.pow(2).sum())
        self._add("abs_error", error.abs().sum())
        self._add("count", torch.tensor(float(error.numel())))

    def compute(self, sums: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        sums = self.sums if sums is None else sums
        return {"mse": _ratio(sums["squared_error"], sums["count"]), "mae": _ratio(sums["abs_error"], sums["count"])}


class MultilabelMetrics(Metrics):
    """``multilabel``: output ``[B, T, K]`` logits, y ``[B, T, K]`` in {0, 1} (``-100`` on padded frames)."""

    def update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        frames = (y != IGNORE_INDEX).all(-1)
        logits, targets = output.detach().float()[frames], y[frames].float()
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
        self._add("nll", bce)
        self._add("frames", frames.sum())

    def compute(self, sums: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        sums = self.sums if sums is None else sums
        return {"nll": _ratio(sums["nll"], sums["frames"])}


class Seq2SeqMetrics(Metrics):
    """``seq2seq``: output = decoded ids ``[B, T_out]``, y = reference ids ``[B, T_y]`` (``<eos>`` then ``-100``)."""

    def __init__(self, eos_index: int) -> None:
        super().__init__()
        self.eos_index = int(eos_index)

    def update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        decoded = [_until(row, self.eos_index) for row in output.detach().cpu().tolist()]
        references = [_until(row, self.eos_index) for row in y.detach().cpu().tolist()]
        self._add("exact", torch.tensor(float(sum(d == r for d, r in zip(decoded, references)))))
        self._add("edits", torch.tensor(float(sum(levenshtein(d, r) for d, r in zip(decoded, references)))))
        self._add("reference_length", torch.tensor(float(sum(len(r) for r in references))))
        self._add("sequences", torch.tensor(float(len(references))))

    def compute(self, sums: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        sums = self.sums if sums is None else sums
        return {
            "exact_match": _ratio(sums["exact"], sums["sequences"]),
            "cer": _ratio(sums["edits"], sums["reference_length"]),
        }


def _until(ids: list[int], eos_index: int) -> list[int]:
    """The tokens before the first ``<eos>`` (or ``-100`` padding)."""
    for position, token in enumerate(ids):
        if token in (eos_index, IGNORE_INDEX):
            return ids[:position]
    return ids


def levenshtein(a: Any, b: Any) -> int:
    """Edit distance (insertions, deletions, substitutions, each 1) between two sequences."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, item in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item != other)))
        previous = current
    return previous[-1]


def metrics_for(spec: Any, meta: dict[str, Any]) -> Metrics:
    """A fresh accumulator for a task (``spec``: a ``TaskSpec`` or its dict; ``meta``: the task's meta)."""
    head = _field(spec, "head")
    task = _field(spec, "task")
    if head in ("classify", "tag"):
        positions = meta.get("answer_positions") if task == "copy" else None
        return ClassificationMetrics(_field(spec, "num_classes"), positions)
    if head == "lm":
        return LanguageModelMetrics()
    if head == "forecast":
        scaler = meta["scaler"]
        targets = meta["targets"]
        index = [scaler["columns"].index(name) for name in targets]
        mase_scale = meta.get("mase_scale")
        if isinstance(mase_scale, dict):
            mase_scale = [mase_scale[name] for name in targets]
        return ForecastMetrics(
            [scaler["mean"][i] for i in index],
            [scaler["std"][i] for i in index],
            mase_scale,
            [name in scaler.get("log", []) for name in targets],
        )
    if head == "regress":
        return RegressionMetrics()
    if head == "multilabel":
        return MultilabelMetrics()
    if head == "seq2seq":
        return Seq2SeqMetrics(meta.get("eos_index", 3))
    raise ValueError(f"no metrics for head {head!r}")


def loss_function(head: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of a head: a mean over scored targets, in float32 even under bf16 autocast."""
    if head in ("classify", "tag", "lm", "seq2seq"):  # seq2seq: token cross-entropy under teacher forcing

        def cross_entropy(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(
                output.float().reshape(-1, output.size(-1)), y.reshape(-1), ignore_index=IGNORE_INDEX
            )

        return cross_entropy
    if head in ("forecast", "regress"):

        def mean_squared_error(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.mse_loss(output.float().reshape(y.shape), y.float())

        return mean_squared_error
    if head == "multilabel":

        def frame_nll(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            frames = (y != IGNORE_INDEX).all(-1)
            bce = F.binary_cross_entropy_with_logits(output.float()[frames], y[frames].float(), reduction="sum")
            return bce / frames.sum().clamp(min=1)

        return frame_nll
    raise ValueError(f"no loss for head {head!r}")


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor | float) -> float:
    denominator = float(denominator)
    return float(numerator) / denominator if denominator > 0 else float("nan")


def _field(spec: Any, name: str) -> Any:
    return spec[name] if isinstance(spec, dict) else getattr(spec, name)


def baselines_beside(metrics: dict[str, Any], baselines: dict[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """Each baseline next to the metric it is measured in: a baseline named ``<label>_<metric>``
    (``seasonal_naive_mae``, ``trivial_mse``, ``unigram_bpc``, ``chance_accuracy``) goes with
    ``<metric>`` under the label ``"seasonal naive"``; baselines of no reported metric are left out.

    >>> baselines_beside({"mae": 1.8, "rmse": 2.0}, {"naive_mae": 2.3, "seasonal_naive_mae": 2.1})
    {'mae': [('naive', 2.3), ('seasonal naive', 2.1)]}
    """
    paired: dict[str, list[tuple[str, Any]]] = {}
    for name, value in baselines.items():
        matches = [metric for metric in metrics if name.endswith("_" + metric)]
        if matches:
            metric = max(matches, key=len)
            paired.setdefault(metric, []).append((name[: -len(metric) - 1].replace("_", " "), value))
    return paired


#: A training loss this many times its first epoch's, or a test metric this many times worse than
#: the best baseline of the same metric, is reported as a divergence.
DIVERGED_FACTOR = 100.0


def divergence_warnings(
    history: list[dict[str, Any]], metrics: dict[str, Any], baselines: dict[str, Any], mode: str
) -> list[str]:
    """What says a finished run diverged though its numbers are finite: a training loss that grew by
    orders of magnitude (``DIVERGED_FACTOR``) over its first epoch's, and a test metric worse than
    every trivial baseline of it by that factor (lower-is-better metrics) or below the majority class
    (accuracy).

    >>> divergence_warnings([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 3e9}], {}, {}, "min")
    ['the training loss grew from 0.5 (epoch 1) to 3e+09 (epoch 2): the run diverged; try a lower lr or clip']
    """
    warnings = []
    losses = [(row["epoch"], row["train_loss"]) for row in history if math.isfinite(row.get("train_loss", math.nan))]
    if len(losses) >= 2:
        (first_epoch, first), (worst_epoch, worst) = losses[0], max(losses[1:], key=lambda pair: pair[1])
        if first > 0 and worst > DIVERGED_FACTOR * first:
            warnings.append(
                f"the training loss grew from {first:.4g} (epoch {first_epoch}) to {worst:.4g} (epoch {worst_epoch}): "
                "the run diverged; try a lower lr or clip"
            )
    for metric, references in baselines_beside(metrics, baselines).items():
        value = metrics.get(metric)
        known = [(label, ref) for label, ref in references if isinstance(ref, int | float) and math.isfinite(ref)]
        if not isinstance(value, int | float) or not math.isfinite(value) or not known:
            continue
        if metric == "accuracy" and mode == "max":
            majority = dict(known).get("majority")
            if majority is not None and value < majority:
                warnings.append(f"test accuracy {value:.4g} is below the majority class's {majority:.4g}")
        elif mode == "min":
            label, best = min(known, key=lambda pair: pair[1])
            if best > 0 and value > DIVERGED_FACTOR * best:
                warnings.append(
                    f"test {metric} {value:.4g} is {value / best:.3g}× the {label} baseline's {best:.4g}: "
                    "the model is far worse than the trivial forecast"
                )
    return warnings
