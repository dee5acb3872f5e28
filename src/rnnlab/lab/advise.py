"""The seeds' selection guide as rules, checked against measurements: ``advise(results, limits)``.

The guide (seeds 000 §5 and 001 §4.1, SPEC §6):

=================  ===========================================  ===============================
rule               when                                         the guide says
=================  ===========================================  ===============================
``short``          sequence length T < 20                       vanilla RNN, bidirectional
``medium``         20 ≤ T ≤ 100                                 GRU first
``long``           T > 100                                      LSTM with gradient clipping
``long-range``     the task needs long-range context            LSTM
``tight``          a latency or parameter limit is set          GRU with 8-bit quantisation
``memory``         memory under 4 GB                            be careful with a standard LSTM
=================  ===========================================  ===============================

The measurement decides: the models measured at the length nearest T are filtered by the user's
limits, the Pareto front over (metric, latency, parameters) is formed, and the pick is the most
accurate model on it — where several are equally accurate (within the larger of 1% and their
seeds' spread), the fastest of them. Each applicable rule is then said to agree or disagree with
the pick, with the measured numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.lab.claims import LONG_RANGE_TASKS
from rnnlab.lab.results import format_length, lengths_of, load, row, row_skill

#: Metrics within this relative distance of the best count as equally good.
EQUAL_METRIC = 0.01
#: Below this skill (0 chance … 1 perfect) the advice warns that nothing has learned the task well.
WEAK_SKILL = 0.5
GIB = 1024**3


@dataclass
class Limits:
    """The user's constraints; ``None`` means no limit."""

    max_latency_ms: float | None = None
    max_params: int | None = None
    min_accuracy: float | None = None
    max_error: float | None = None
    seq_len: int | None = None
    memory_gb: float | None = None
    #: the latency limit applies to one streaming step with carried state, not the whole sequence.
    streaming: bool = False

    def check(self) -> None:
        for name in ("max_latency_ms", "max_params", "memory_gb", "seq_len", "max_error"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{name} must be a positive number; got {value!r}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise ConfigError(f"min_accuracy is a fraction between 0 and 1; got {self.min_accuracy!r}")


@dataclass
class Rule:
    id: str
    when: str
    says: str
    models: list[str]
    applies: bool
    #: "agrees" / "disagrees" / "not measured" once checked against the pick
    verdict: str = ""
    because: str = ""


@dataclass
class Candidate:
    model: str
    length: int | None
    metric: float
    metric_std: float
    latency_ms: float
    num_parameters: int
    memory_mb: float | None
    feasible: bool = True
    excluded_by: list[str] = field(default_factory=list)
    on_front: bool = False
    #: its latency was timed while other processes held the CPU: never a reason to rule it out
    latency_flagged: bool = False
    not_ruled_out: list[str] = field(default_factory=list)


@dataclass
class Advice:
    seq_len: int | None
    length_measured: int | None
    metric: str
    higher_is_better: bool
    latency_kind: str
    limits: dict[str, Any]
    rules: list[Rule]
    candidates: list[Candidate]
    pick: str | None
    reasons: list[str]

    @property
    def front(self) -> list[str]:
        return [c.model for c in self.candidates if c.on_front]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["front"] = self.front
        return data

    def text(self) -> str:
        """The advice as a few lines of plain text (what ``rnnlab advise`` prints)."""
        lines = ["The selection guide (seeds 000, 001):"]
        for rule in self.rules:
            mark = "→" if rule.applies else " "
            lines.append(f"  {mark} [{rule.id}] {rule.when}: {rule.says}")
        lines.append("")
        lines.extend(self.reasons)
        return "\n".join(lines)


def advise(results: dict[str, Any] | str | Path, limits: Limits | None = None) -> Advice:
    """The measured recommendation for ``results`` (a results dict, or a path to results.json) under ``limits``."""
    if not isinstance(results, dict):
        results = load(results)
    limits = limits or Limits()
    limits.check()
    summary = results.get("summary") or []
    if not summary:
        raise ConfigError("the results hold no finished cell yet; run (or resume) `rnnlab compare` first")
    metric, higher = summary[0]["metric"], summary[0]["higher_is_better"]
    if limits.min_accuracy is not None and not higher:
        raise ConfigError(
            f"--min-accuracy applies to accuracy; this comparison's metric is {metric} (lower is better): "
            "use --max-error"
        )
    if limits.max_error is not None and higher:
        raise ConfigError(
            f"--max-error applies to error metrics; this comparison's metric is {metric}: use --min-accuracy"
        )

    lengths = lengths_of(results)
    measured = [length for length in lengths if length is not None]
    # a forecast's length is its lookback, the forecaster's own choice: the pick is over every one measured
    forecast = ((results.get("task") or {}).get("spec") or {}).get("head") == "forecast"
    any_lookback = forecast and limits.seq_len is None
    seq_len = limits.seq_len if limits.seq_len is not None else (measured[-1] if measured else None)
    length = _nearest(lengths, seq_len)
    latency_key = "latency_ms_step" if limits.streaming else "latency_ms_sequence"
    latency_kind = "one streaming step, batch 1" if limits.streaming else "whole sequence, batch 1"

    def at(length: int | None) -> tuple[list[Candidate], Candidate | None]:
        candidates = []
        for entry in summary:
            latency = entry["cost"].get(latency_key)
            if entry["length"] != length or latency is None:
                continue
            candidate = Candidate(
                model=entry["model"],
                length=length,
                metric=entry["metric_mean"],
                metric_std=entry["metric_std"],
                latency_ms=latency,
                num_parameters=entry["num_parameters"],
                memory_mb=entry["cost"].get("train_memory_mb"),
                latency_flagged=bool(entry.get("timing_contended")),
            )
            _apply_limits(candidate, limits, metric, higher)
            candidates.append(candidate)
        _mark_front(candidates, higher)
        return candidates, _pick(candidates, higher)

    if any_lookback and measured:  # the lookback whose pick scores best (ties: the shorter, cheaper one)
        length = measured[0]
    candidates, pick = at(length)
    if any_lookback:
        for other in measured[1:]:
            other_candidates, other_pick = at(other)
            if other_pick is not None and (
                pick is None or (other_pick.metric > pick.metric if higher else other_pick.metric < pick.metric)
            ):
                length, candidates, pick = other, other_candidates, other_pick

    task = (results.get("experiment") or {}).get("task", "")
    rules = guide_rules(seq_len, limits, task)
    reasons = _reasons(results, candidates, pick, rules, seq_len, length, metric, higher, latency_kind, limits)
    return Advice(
        seq_len=seq_len,
        length_measured=length,
        metric=metric,
        higher_is_better=higher,
        latency_kind=latency_kind,
        limits={key: value for key, value in asdict(limits).items() if value not in (None, False)},
        rules=rules,
        candidates=candidates,
        pick=pick.model if pick else None,
        reasons=reasons,
    )


def guide_rules(seq_len: int | None, limits: Limits, task: str = "") -> list[Rule]:
    """The guide's rules, each marked with whether it applies to this sequence length and these limits."""
    tight = limits.max_latency_ms is not None or limits.max_params is not None
    return [
        Rule(
            "short",
            "sequence length < 20 steps",
            "a vanilla RNN, bidirectional when the whole sequence is at hand",
            ["rnn"],
            seq_len is not None and seq_len < 20,
        ),
        Rule("medium", "20–100 steps", "GRU first", ["gru"], seq_len is not None and 20 <= seq_len <= 100),
        Rule(
            "long",
            "more than 100 steps",
            "LSTM with gradient clipping",
            ["lstm"],
            seq_len is not None and seq_len > 100,
        ),
        Rule(
            "long-range",
            "the task needs long-range context (e.g. named entities)",
            "LSTM",
            ["lstm"],
            task in LONG_RANGE_TASKS,
        ),
        Rule("tight", "tight latency or size budget", "GRU with 8-bit quantisation", ["gru"], tight),
        Rule(
            "memory",
            "less than 4 GB of (GPU) memory",
            "be careful with a standard LSTM",
            ["lstm"],
            limits.memory_gb is not None and limits.memory_gb < 4,
        ),
    ]


# --------------------------------------------------------------------------- selection
def _apply_limits(candidate: Candidate, limits: Limits, metric: str, higher: bool) -> None:
    if limits.max_latency_ms is not None and candidate.latency_ms > limits.max_latency_ms:
        over = f"latency {candidate.latency_ms:.2f} ms > {limits.max_latency_ms:g} ms"
        if candidate.latency_flagged:  # timed on a busy machine: the figure says nothing about the model
            candidate.not_ruled_out.append(over)
        else:
            candidate.excluded_by.append(over)
    if limits.max_params is not None and candidate.num_parameters > limits.max_params:
        candidate.excluded_by.append(f"{candidate.num_parameters:,} parameters > {limits.max_params:,}")
    if limits.min_accuracy is not None and candidate.metric < limits.min_accuracy:
        candidate.excluded_by.append(f"{metric} {candidate.metric:.3f} < {limits.min_accuracy:g}")
    if limits.max_error is not None and candidate.metric > limits.max_error:
        candidate.excluded_by.append(f"{metric} {candidate.metric:.3f} > {limits.max_error:g}")
    if (
        limits.memory_gb is not None
        and candidate.memory_mb is not None
        and candidate.memory_mb * 2**20 > limits.memory_gb * GIB
    ):
        candidate.excluded_by.append(f"training memory {candidate.memory_mb:.0f} MB > {limits.memory_gb:g} GB")
    candidate.feasible = not candidate.excluded_by


def _better_or_equal(a: Candidate, b: Candidate, higher: bool) -> bool:
    """``a`` is at least as good as ``b`` on every axis (metric, latency, parameters)."""
    metric_ok = a.metric >= b.metric if higher else a.metric <= b.metric
    return metric_ok and a.latency_ms <= b.latency_ms and a.num_parameters <= b.num_parameters


def _mark_front(candidates: list[Candidate], higher: bool) -> None:
    """The Pareto front of the feasible candidates: no other is as good on every axis and better on one."""
    feasible = [c for c in candidates if c.feasible]
    for candidate in feasible:
        dominated = any(
            other is not candidate
            and _better_or_equal(other, candidate, higher)
            and (other.metric, other.latency_ms, other.num_parameters)
            != (candidate.metric, candidate.latency_ms, candidate.num_parameters)
            for other in feasible
        )
        candidate.on_front = not dominated


def _pick(candidates: list[Candidate], higher: bool) -> Candidate | None:
    front = [c for c in candidates if c.on_front]
    if not front:
        return None
    best = max(front, key=lambda c: c.metric) if higher else min(front, key=lambda c: c.metric)
    equal = [c for c in front if _equally_good(c, best)]
    return min(equal, key=lambda c: (c.latency_ms, c.num_parameters))


def _equally_good(candidate: Candidate, best: Candidate) -> bool:
    tolerance = max(EQUAL_METRIC * abs(best.metric), candidate.metric_std, best.metric_std)
    return abs(candidate.metric - best.metric) <= tolerance


def _nearest(lengths: list[int | None], seq_len: int | None) -> int | None:
    measured = [length for length in lengths if length is not None]
    if seq_len is None or not measured:
        return lengths[-1] if lengths else None
    return min(measured, key=lambda length: (abs(math.log(length) - math.log(seq_len)), -length))


# --------------------------------------------------------------------------- explanation
def _reasons(results, candidates, pick, rules, seq_len, length, metric, higher, latency_kind, limits) -> list[str]:
    by_model = {c.model: c for c in candidates}
    reasons = []
    where = format_length(length)
    if seq_len is not None and length is not None and seq_len != length:
        reasons.append(f"You asked about T={seq_len}; the nearest measured length is {length}, used below.")
    excluded = [c for c in candidates if not c.feasible]
    for candidate in excluded:
        reasons.append(f"{candidate.model} is ruled out by your limits: {'; '.join(candidate.excluded_by)}.")
    for candidate in (c for c in candidates if c.not_ruled_out):
        reasons.append(
            f"{candidate.model}'s {'; '.join(candidate.not_ruled_out)} was timed while other processes held the "
            "CPU (flagged in results.json): it is not ruled out on that figure; re-time it on a quiet machine."
        )
    if pick is None:
        if candidates:
            reasons.append(
                f"No measured model meets every limit at {where}. Loosen a limit, or measure smaller models "
                "(`rnnlab compare --params N`)."
            )
        else:
            reasons.append(f"No model has cost measurements at {where}.")
    else:
        front = [c for c in candidates if c.on_front]
        others = ", ".join(c.model for c in front if c is not pick)
        reasons.append(
            f"Recommendation: {pick.model} — {metric} {pick.metric:.3f}"
            + (f" ± {pick.metric_std:.3f}" if pick.metric_std else "")
            + f" at {where}, latency {pick.latency_ms:.2f} ms ({latency_kind}), {pick.num_parameters:,} parameters."
        )
        best = max(front, key=lambda c: c.metric) if higher else min(front, key=lambda c: c.metric)
        if best is not pick:
            reasons.append(
                f"{best.model} scores {best.metric:.3f}, within noise of {pick.model}'s {pick.metric:.3f}, "
                f"and {pick.model} is faster ({pick.latency_ms:.2f} vs {best.latency_ms:.2f} ms)."
            )
        pick_skill = row_skill(results, row(results, pick.model, length))
        if pick_skill is not None and pick_skill < WEAK_SKILL:
            reasons.append(
                f"Caution: even the pick is far from solving the task at {where} (skill {pick_skill:.2f} on the 0 "
                "chance … 1 perfect scale); the models may need longer training (a larger --budget or "
                "--max-minutes), and the ranking may change with it."
            )
        reasons.append(
            "Pareto front (no other model is at least as good on metric, latency and size): "
            + (f"{pick.model}" + (f", {others}" if others else ""))
            + "."
        )
    for rule in rules:
        if not rule.applies:
            continue
        rule.verdict, rule.because = _judge_rule(rule, by_model, pick, metric, higher, results)
        reasons.append(f"Guide rule [{rule.id}] ({rule.when} → {rule.says}): {rule.verdict} — {rule.because}")
    if any(rule.id == "tight" and rule.applies for rule in rules):
        reasons.append(
            "Latencies here are float32; 8-bit quantisation (`rnnlab export RUN --out model.onnx --quantize int8`) "
            "is measured by the export tools, not by this comparison."
        )
    return reasons


def _judge_rule(
    rule: Rule,
    by_model: dict[str, Candidate],
    pick: Candidate | None,
    metric: str,
    higher: bool,
    results: dict[str, Any],
) -> tuple[str, str]:
    named = rule.models[0]
    candidate = by_model.get(named)
    if rule.id == "memory":
        if candidate is None or candidate.memory_mb is None:
            return "not measured", f"{named} has no memory measurement in this run"
        return (
            "agrees" if not candidate.feasible else "disagrees",
            f"{named} needs {candidate.memory_mb:.0f} MB to train at this size and batch "
            + (
                "— over your limit"
                if not candidate.feasible
                else "— well within your limit; the rule bites for larger models"
            ),
        )
    if candidate is None:
        return "not measured", f"{named} was not measured at this length"
    if pick is None:
        return "not measured", "no model meets the limits"
    if pick.model == named:
        return "agrees", f"{named} is the measured pick"
    if _equally_good(candidate, pick) and candidate.feasible:
        return "agrees", (
            f"{named} ({candidate.metric:.3f}) is as good as {pick.model} ({pick.metric:.3f}) within noise; "
            f"{pick.model} is preferred for latency {pick.latency_ms:.2f} vs {candidate.latency_ms:.2f} ms"
        )
    if not candidate.feasible:
        return "disagrees", f"{named} does not meet your limits ({'; '.join(candidate.excluded_by)})"
    gap = candidate.metric - pick.metric
    return "disagrees", (
        f"{named} reaches {metric} {candidate.metric:.3f} vs {pick.model}'s {pick.metric:.3f} "
        f"({'+' if gap >= 0 else ''}{gap:.3f}), latency {candidate.latency_ms:.2f} vs {pick.latency_ms:.2f} ms"
    )
