"""The five articles' claims (``ARTICLES``) as functions of a results document: measured figure → verdict.

Each ``check_*`` function reads only ``results`` (the finished cells' summary, the layer cost
probe, the task) and returns a ``Claim``: what the documents say, what this run measured, and a
verdict — ``holds``, ``does not hold``, or ``not measured`` with the reason (a missing model, a
length the run did not reach, a task the claim is not about) and the command that would measure it.

The criteria are stated in each verdict's ``why``, with their tolerances; "about 30%" is read as
30 ± 10 points, a range "30–50%" as the range ± 5 points.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from rnnlab.lab.results import format_length, lengths_of, row, row_skill

HOLDS = "holds"
FAILS = "does not hold"
NOT_MEASURED = "not measured"
VERDICTS = (HOLDS, FAILS, NOT_MEASURED)

#: Tasks whose dependency spans the whole sequence, so the length is the distance to bridge.
LONG_RANGE_TASKS = ("recall", "copy", "adding")
#: A model "uses" the dependency when its skill (0 chance … 1 perfect) reaches this …
USES_DEPENDENCY = 0.5
#: … and has collapsed when its skill stays below this.
COLLAPSED = 0.1
#: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ outside [1e-3, 1e3]: the gradient vanished (or exploded) through time.
VANISHED, EXPLODED = 1e-3, 1e3
#: Two models' skills within this are a match.
MATCH = 0.02


#: The five articles the claims come from (``../shared/seeds/``), by the title a reader can search for:
#: the article's own title, or for the three that open without one, what they are about. A claim's
#: ``source`` cites one as “title” §section (the quoted words).
ARTICLES = {
    "000": "RNN与LSTM的核心定位与历史背景",
    "001": "循环神经网络家族技术全解析:RNN、LSTM与GRU对比与实战",
    "002": "长短期记忆网络(LSTM)的前身、创新与替代方案",
    "003": "LSTM 为何优于简单 RNN",
    "004": "从RNN到LSTM:深入理解循环神经网络与长短期记忆网络",
}


def cite(article: str) -> str:
    """An article as a claim cites it: its title in quotes (``ARTICLES``)."""
    return f"“{ARTICLES[article]}”"


@dataclass
class Claim:
    """A claim starts ``not measured``; its check fills in what it measured and the verdict."""

    id: str
    claim: str
    source: str
    verdict: str = NOT_MEASURED
    measured: str = ""
    why: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_claims(results: dict[str, Any]) -> list[Claim]:
    """Every claim of the five articles, checked against ``results``."""
    return [check(results) for check in CHECKS]


# --------------------------------------------------------------------------- long range
def check_rnn_short_memory(results: dict[str, Any]) -> Claim:
    claim = Claim(
        id="rnn-short-memory",
        claim="A vanilla RNN cannot use dependencies beyond about 5–10 steps.",
        source=f"{cite('001')} §1.1 (无法有效捕捉超过5-10个时间步的依赖关系)",
    )
    task = _task_name(results)
    if task not in LONG_RANGE_TASKS:
        claim.why = (
            f"the task is {task!r}, whose dependency distance is not set by the sequence length; "
            "run `rnnlab compare --task recall`"
        )
        return claim
    lengths = [length for length in lengths_of(results) if row(results, "rnn", length) is not None]
    if not lengths:
        claim.why = "no finished rnn cell in this run; add rnn to --models"
        return claim
    skills = {length: row_skill(results, row(results, "rnn", length)) for length in lengths}
    if any(value is None for value in skills.values()):
        claim.why = "the task reports no chance level or baseline to put the metric on a 0–1 skill scale"
        return claim
    claim.figures = {"rnn_skill": {str(length): skills[length] for length in lengths}}
    claim.measured = "RNN skill (0 chance, 1 perfect): " + ", ".join(
        f"{format_length(length)} {skills[length]:.2f}" for length in lengths
    )
    long = [length for length in lengths if length is not None and length > 20]  # long-range: every length set
    if not long:
        claim.why = f"the longest length with an rnn cell is {lengths[-1]}; the claim needs lengths above 20"
        return claim
    known = cast("dict[int | None, float]", skills)  # no None (checked above)
    bridged = [length for length in long if known[length] >= USES_DEPENDENCY]
    if bridged:
        claim.verdict = FAILS
        claim.why = (
            f"the RNN bridges {max(bridged)} steps with skill {skills[max(bridged)]:.2f} "
            f"(criterion: skill ≥ {USES_DEPENDENCY} at a length above 20 refutes the claim)"
        )
    else:
        claim.verdict = HOLDS
        claim.why = (
            f"the RNN's skill stays below {USES_DEPENDENCY} at every length above 20 "
            f"({', '.join(format_length(length) for length in long)})"
        )
    return claim


def check_rnn_collapses_lstm_holds(results: dict[str, Any]) -> Claim:
    claim = Claim(
        id="long-sequence-1000",
        claim="On a length-1000 task the RNN's accuracy collapses while the LSTM's drops by under 5%.",
        source=f"{cite('000')} §3.1 (准确率下降幅度不足5%)",
    )
    task = _task_name(results)
    if task not in LONG_RANGE_TASKS:
        claim.why = f"the task is {task!r}; the claim is about a long-range task: run `rnnlab compare --task recall`"
        return claim
    missing = [model for model in ("rnn", "lstm") if not any(r["model"] == model for r in results.get("summary", []))]
    if missing:
        claim.why = f"no finished {' or '.join(missing)} cell in this run; add it to --models"
        return claim
    lengths = [
        length
        for length in lengths_of(results)
        if row(results, "rnn", length) is not None and row(results, "lstm", length) is not None
    ]
    if not lengths or (lengths[-1] or 0) < 1000:  # a long-range task sets every length
        longest = lengths[-1] if lengths else None
        claim.why = (
            f"the longest length measured for both is {longest}; the claim is about T=1000 — "
            "run `rnnlab compare` (budget standard reaches T=1000)"
        )
        if lengths:
            claim.measured = _long_range_text(results, lengths[0], lengths[-1])
        return claim
    short, long = lengths[0], 1000
    rnn_skill = row_skill(results, row(results, "rnn", long))
    lstm_short = _row(results, "lstm", short)["metric_mean"]
    lstm_long = _row(results, "lstm", long)["metric_mean"]
    if rnn_skill is None or not _row(results, "lstm", long)["higher_is_better"]:
        claim.why = "the task's metric is not an accuracy with a known chance level"
        return claim
    drop = (lstm_short - lstm_long) / lstm_short if lstm_short > 0 else math.inf
    claim.figures = {"rnn_skill_1000": rnn_skill, "lstm_drop": drop, "lstm_1000": lstm_long, "lstm_short": lstm_short}
    claim.measured = _long_range_text(results, short, long)
    collapsed = rnn_skill < COLLAPSED
    kept = drop < 0.05
    claim.verdict = HOLDS if collapsed and kept else FAILS
    parts = [
        f"RNN {'collapsed' if collapsed else 'did not collapse'} (skill {rnn_skill:.2f} at T=1000; "
        f"collapse means skill < {COLLAPSED})",
        f"LSTM {'lost' if drop >= 0 else 'gained'} {abs(drop) * 100:.1f}% from {format_length(short)} to T=1000 "
        f"({lstm_short:.3f} → {lstm_long:.3f}; the claim needs a loss under 5%)",
    ]
    short_cut = still_learning(results, "lstm", long)
    if short_cut and not kept:
        parts.append(
            f"the time cap stopped {len(short_cut)} of the LSTM's T=1000 runs while validation accuracy was still "
            f"rising ({', '.join(short_cut)}): give them longer (`--max-minutes`, or budget full) to see where it ends"
        )
    claim.why = "; ".join(parts)
    return claim


def still_learning(results: dict[str, Any], model: str, length: int | None) -> list[str]:
    """Cells of ``model`` at ``length`` that the time cap stopped while the validation metric was improving.

    Each is described as "seed S: v₁ → v₂ in its last two epochs"."""
    found = []
    for cell in results.get("cells", []):
        if cell.get("status") != "done" or cell["model"] != model or cell["length"] != length:
            continue
        values = [row["val_metric"] for row in cell.get("history", []) if row.get("val_metric") is not None]
        if cell.get("stopped") != "time budget" or len(values) < 2:
            continue
        better = values[-1] > values[-2] if cell["metric"]["higher_is_better"] else values[-1] < values[-2]
        if better:
            found.append(f"seed {cell['seed']}: {values[-2]:.3f} → {values[-1]:.3f} in its last two epochs")
    return found


def _long_range_text(results: dict[str, Any], short: int | None, long: int | None) -> str:
    texts = []
    for model in ("rnn", "lstm"):
        first, last = _row(results, model, short), _row(results, model, long)
        texts.append(
            f"{model.upper()} {first['metric']} {first['metric_mean']:.3f} at {format_length(short)} → "
            f"{last['metric_mean']:.3f} at {format_length(long)}"
        )
    return "; ".join(texts)


# --------------------------------------------------------------------------- gradients
def check_gradient_flow(results: dict[str, Any]) -> Claim:
    claim = Claim(
        id="vanishing-gradient",
        claim="Gradients vanish (or explode) through time in the RNN, not through the LSTM's cell state.",
        source=f"{cite('001')} §1.1, {cite('003')} (单元状态 … 更不容易消失或爆炸), {cite('004')} §3.1, §4.4",
    )
    flows = {model: _flow_ratios(results, model) for model in ("rnn", "lstm")}
    missing = [model for model, flow in flows.items() if flow is None]
    if missing:
        claim.why = f"no gradient-flow measurement of {' or '.join(missing)} in this run; add it to --models"
        return claim
    length = min(cast(dict, flows["rnn"])["length"], cast(dict, flows["lstm"])["length"])  # none missing
    rnn = _flow_ratios(results, "rnn", length)
    lstm = _flow_ratios(results, "lstm", length)
    assert rnn is not None and lstm is not None  # both measured at the shorter of their longest lengths
    rnn_ratio = rnn["init"]["h"]
    lstm_ratio = lstm["init"].get("c")
    if lstm_ratio is None:
        claim.why = "the LSTM cells carry no cell-state gradient (‖∂L/∂c_t‖) measurement"
        return claim
    claim.figures = {"length": length, "rnn": rnn, "lstm": lstm}
    trained_text = ""
    if rnn.get("trained") and lstm.get("trained", {}).get("c") is not None:
        trained_text = (
            f"; after training: RNN {_sci(rnn['trained']['h'])}, LSTM cell state {_sci(lstm['trained']['c'])}"
        )
    claim.measured = (
        f"‖∂L/∂state_1‖ / ‖∂L/∂state_T‖ at T={length}, at initialisation: RNN h {_sci(rnn_ratio)}, "
        f"LSTM c {_sci(lstm_ratio)} (LSTM h {_sci(lstm['init']['h'])})" + trained_text
    )
    rnn_lost = rnn_ratio < VANISHED or rnn_ratio > EXPLODED
    lstm_kept = VANISHED <= lstm_ratio <= EXPLODED
    claim.verdict = HOLDS if rnn_lost and lstm_kept else FAILS
    rnn_word = "vanished" if rnn_ratio < VANISHED else "exploded" if rnn_ratio > EXPLODED else "survived"
    lstm_word = "survived" if lstm_kept else ("vanished" if lstm_ratio < VANISHED else "exploded")
    claim.why = (
        f"over {length} steps the RNN's gradient {rnn_word} and the LSTM cell state's {lstm_word} "
        f"(criterion: a ratio outside [{VANISHED:g}, {EXPLODED:g}] has vanished or exploded)"
    )
    return claim


def _flow_ratios(results: dict[str, Any], model: str, length: int | None = None) -> dict[str, Any] | None:
    """Geometric means over seeds of ‖∂L/∂x_1‖/‖∂L/∂x_T‖ for x = h (and c), at init and trained."""
    cells = [
        c
        for c in results.get("cells", [])
        if c.get("status") == "done" and c["model"] == model and c.get("gradient_flow")
    ]
    if not cells:
        return None
    if length is None:
        length = max(c["length"] or 0 for c in cells)
    cells = [c for c in cells if (c["length"] or 0) == length]
    if not cells:
        return None
    out: dict[str, Any] = {"length": length}
    for phase in ("init", "trained"):
        ratios: dict[str, list[float]] = {}
        for cell in cells:
            measured = cell["gradient_flow"].get(phase) or {}
            for state in ("h", "c"):
                norms = measured.get(state)
                if norms and norms[-1] > 0:
                    ratios.setdefault(state, []).append(max(norms[0], 1e-300) / norms[-1])
        out[phase] = {
            state: math.exp(statistics.fmean(math.log(v) for v in values)) for state, values in ratios.items()
        }
    return out


# --------------------------------------------------------------------------- cost
def check_parameter_ratio(results: dict[str, Any]) -> Claim:
    claim = Claim(
        id="parameter-count",
        claim="At the same sizes an LSTM has about 4× and a GRU about 3× the parameters of a vanilla RNN.",
        source=f"{cite('000')} §3.2 (参数量约为传统RNN的4倍), {cite('001')} §3.1 (减少33%)",
    )
    probe = results.get("probe")
    if not probe or not all(name in probe.get("parameters", {}) for name in ("rnn", "lstm", "gru")):
        claim.why = "the layer cost probe did not run (it runs with every comparison that includes rnn, lstm or gru)"
        return claim
    counts = probe["parameters"]
    lstm_ratio, gru_ratio = counts["lstm"] / counts["rnn"], counts["gru"] / counts["rnn"]
    claim.figures = {"lstm_over_rnn": lstm_ratio, "gru_over_rnn": gru_ratio, "counts": counts}
    claim.measured = (
        f"one layer, input {probe['input_size']}, hidden {probe['hidden_size']}: RNN {counts['rnn']:,}, "
        f"LSTM {counts['lstm']:,} ({lstm_ratio:.2f}×), GRU {counts['gru']:,} ({gru_ratio:.2f}×)"
    )
    ok = abs(lstm_ratio - 4) <= 0.2 and abs(gru_ratio - 3) <= 0.15
    claim.verdict = HOLDS if ok else FAILS
    claim.why = "criterion: within 5% of 4× and 3×"
    return claim


@dataclass(frozen=True)
class ProbeRatio:
    """A claim that ``slow`` takes ``low``…``high`` longer than ``fast`` on the layer cost probe's
    ``measure`` (``train_ms`` or ``infer_ms``): ``t_slow / t_fast − 1``, same hidden size."""

    id: str
    claim: str
    source: str
    slow: str
    fast: str
    measure: str
    low: float
    high: float
    stated: str

    def __call__(self, results: dict[str, Any]) -> Claim:
        result = Claim(id=self.id, claim=self.claim, source=self.source)
        slow, fast, measure = self.slow, self.fast, self.measure
        probe = results.get("probe")
        layers = (probe or {}).get("layers", {})
        if slow not in layers or fast not in layers:
            result.why = (
                "the layer cost probe did not run (it runs with every comparison that includes rnn, lstm and gru)"
            )
            return result
        assert probe is not None  # it has the layers
        ratio = layers[slow][measure] / layers[fast][measure]
        excess = ratio - 1
        result.figures = {"ratio": ratio, slow: layers[slow][measure], fast: layers[fast][measure]}
        what = "training step (forward + backward)" if measure == "train_ms" else "inference (forward, no gradients)"
        comparison = (
            f"the {slow.upper()} takes {excess * 100:.0f}% longer than the {fast.upper()}"
            if excess >= 0
            else f"the {slow.upper()} takes {-excess * 100:.0f}% less time than the {fast.upper()}"
        )
        result.measured = (
            f"{slow.upper()} {layers[slow][measure]:.2f} ms, {fast.upper()} {layers[fast][measure]:.2f} ms per {what} "
            f"at hidden {probe['hidden_size']}, T={probe['seq_len']}, batch {probe['batch_size']} (same hidden size): "
            + comparison
        )
        result.verdict = HOLDS if self.low <= excess <= self.high else FAILS
        result.why = f"measured {excess * 100:+.0f}%; the documents say {self.stated}"
        return result


check_lstm_step_cost = ProbeRatio(
    id="lstm-step-cost",
    claim="An LSTM step costs 30–50% more than an RNN step (training).",
    source=f"{cite('000')} §3.2 (单步训练时间增加30%~50%)",
    slow="lstm",
    fast="rnn",
    measure="train_ms",
    low=0.25,
    high=0.55,
    stated="30–50% (range ± 5 points)",
)
check_gru_train_speed = ProbeRatio(
    id="gru-train-speed",
    claim="A GRU trains about 30% faster than an LSTM.",
    source=f"{cite('001')} §3.2 (训练速度 较快(约提升30%))",
    slow="lstm",
    fast="gru",
    measure="train_ms",
    low=0.20,
    high=0.40,
    stated="about 30% (30 ± 10 points)",
)
check_gru_inference_speed = ProbeRatio(
    id="gru-inference-speed",
    claim="A GRU infers about 22% faster than an LSTM.",
    source=f"{cite('001')} §6 (推理速度提升22%)",
    slow="lstm",
    fast="gru",
    measure="infer_ms",
    low=0.12,
    high=0.32,
    stated="about 22% (22 ± 10 points)",
)


def check_lstm_converges_faster(results: dict[str, Any]) -> Claim:
    claim = Claim(
        id="lstm-converges-faster",
        claim="An LSTM converges in fewer epochs than a vanilla RNN.",
        source=f"{cite('000')} §3.2 (LSTM 20个epoch内收敛, RNN 需50个epoch以上)",
    )
    target = (results.get("task") or {}).get("target")
    lengths = [
        length
        for length in lengths_of(results)
        if row(results, "rnn", length) is not None and row(results, "lstm", length) is not None
    ]
    if not lengths:
        claim.why = "needs finished rnn and lstm cells at the same length; add both to --models"
        return claim
    compared, lstm_wins, parts = 0, 0, []
    for length in lengths:
        rnn, lstm = _row(results, "rnn", length), _row(results, "lstm", length)
        rnn_epochs = rnn["epochs_to_target"] if rnn["reached_target"] == rnn["n"] else None
        lstm_epochs = lstm["epochs_to_target"] if lstm["reached_target"] == lstm["n"] else None
        parts.append(
            f"{format_length(length)}: LSTM {_epochs_text(lstm_epochs, lstm)}, RNN {_epochs_text(rnn_epochs, rnn)}"
        )
        if rnn_epochs is None and lstm_epochs is None:
            continue
        compared += 1
        if lstm_epochs is not None and (rnn_epochs is None or lstm_epochs < rnn_epochs):
            lstm_wins += 1
    claim.measured = f"epochs to reach the target {_target_text(target)} — " + "; ".join(parts)
    claim.figures = {"compared_lengths": compared, "lstm_fewer": lstm_wins}
    if compared == 0:
        claim.why = "neither model reached the target at any length, so there is no convergence to compare"
        return claim
    claim.verdict = HOLDS if lstm_wins * 2 > compared else FAILS
    claim.why = (
        f"the LSTM needed fewer epochs at {lstm_wins} of the {compared} lengths where either reached the target "
        "(criterion: a majority)"
    )
    return claim


def _epochs_text(epochs: float | None, entry: dict[str, Any]) -> str:
    if epochs is None:
        return f"not reached in {entry['epochs']:.0f} epochs"
    return f"{epochs:.1f}"


def _target_text(target: Any) -> str:
    if isinstance(target, dict):
        return f"({target.get('metric')} {'≥' if target.get('higher_is_better') else '≤'} {target.get('value'):.3g})"
    return ""


# --------------------------------------------------------------------------- forecast case
def check_traffic_case(results: dict[str, Any]) -> Claim:
    claim = Claim(
        id="traffic-forecast",
        claim="On traffic forecasting: RNN MAE 2.3, LSTM 1.8, GRU 1.9 (the LSTM best, the GRU close, the RNN last).",
        source=f"{cite('001')} §6 (智能交通预测系统)",
    )
    task = _task_name(results)
    if task != "forecast":
        claim.why = f"the task is {task!r}; run `rnnlab compare --task forecast --data traffic`"
        return claim
    maes = {}
    for model in ("rnn", "lstm", "gru"):
        entries = [r for r in results.get("summary", []) if r["model"] == model and r["metric"] == "mae"]
        if entries:
            maes[model] = statistics.fmean(entry["metric_mean"] for entry in entries)
    if len(maes) < 3:
        missing = [m for m in ("rnn", "lstm", "gru") if m not in maes]
        claim.why = f"needs MAE of rnn, lstm and gru; missing {', '.join(missing)}"
        return claim
    data = (results.get("experiment") or {}).get("data")
    claim.figures = {"mae": maes, "ratio_to_rnn": {m: maes[m] / maes["rnn"] for m in maes}}
    claim.measured = (
        f"MAE on {data or 'the default data'} (scaled units): RNN {maes['rnn']:.3f}, LSTM {maes['lstm']:.3f} "
        f"({maes['lstm'] / maes['rnn']:.2f}× RNN; theirs 0.78×), GRU {maes['gru']:.3f} "
        f"({maes['gru'] / maes['rnn']:.2f}× RNN; theirs 0.83×)"
    )
    ordered = maes["lstm"] <= maes["gru"] < maes["rnn"]
    claim.verdict = HOLDS if ordered else FAILS
    claim.why = (
        "absolute MAEs depend on the data's units; the claim checked is the ordering LSTM ≤ GRU < RNN, "
        f"which {'holds' if ordered else 'does not hold'} here"
        + ("" if data and "traffic" in str(data) else " (on other data than their traffic case)")
    )
    return claim


# --------------------------------------------------------------------------- challengers
def check_challengers_train_faster(results: dict[str, Any]) -> Claim:
    claim = Claim(
        id="challengers-train-faster",
        claim="TCN and Transformer train faster than an LSTM (they run in parallel over time).",
        source=f"{cite('002')} §4 (训练速度远快于LSTM)",
    )
    length = _longest_common(results, ("lstm", "tcn", "transformer"))
    if length is False:
        claim.why = "needs finished lstm, tcn and transformer cells at a common length; add them to --models"
        return claim
    steps = {m: _row(results, m, length)["cost"].get("train_ms_per_step") for m in ("lstm", "tcn", "transformer")}
    if any(value is None for value in steps.values()):
        claim.why = "the cells carry no training step time"
        return claim
    claim.figures = {"length": length, "train_ms_per_step": steps}
    claim.measured = (
        f"training step (forward + backward) at {format_length(length)}, same parameter budget: "
        + ", ".join(f"{m.upper() if m != 'transformer' else 'Transformer'} {steps[m]:.1f} ms" for m in steps)
    )
    faster = [m for m in ("tcn", "transformer") if steps[m] < steps["lstm"]]
    claim.verdict = HOLDS if len(faster) == 2 else FAILS
    claim.why = (
        f"{', '.join(faster) if faster else 'neither'} faster than the LSTM per step at the longest common length"
    )
    return claim


def check_challengers_match_lstm(results: dict[str, Any]) -> Claim:
    claim = Claim(
        id="challengers-long-sequences",
        claim="TCN and Transformer match or beat the LSTM on long sequences.",
        source=f"{cite('002')} §4 (TCN在长序列任务上的速度和精度都不输LSTM)",
    )
    length = _longest_common(results, ("lstm", "tcn", "transformer"))
    if length is False:
        claim.why = "needs finished lstm, tcn and transformer cells at a common length; add them to --models"
        return claim
    if length is not None and length < 100:
        claim.why = f"the longest common length is {length}; long sequences start above 100 steps (budget standard)"
        return claim
    entries = {m: _row(results, m, length) for m in ("lstm", "tcn", "transformer")}
    skills = {m: row_skill(results, entries[m]) for m in entries}
    if any(value is None for value in skills.values()):
        claim.why = "the task reports no chance level or baseline to compare skills on"
        return claim
    claim.figures = {"length": length, "skill": skills}
    claim.measured = f"{entries['lstm']['metric']} at {format_length(length)}: " + ", ".join(
        f"{m} {entries[m]['metric_mean']:.3f} (skill {skills[m]:.2f})" for m in entries
    )
    known = cast("dict[str, float]", skills)  # no None (checked above)
    matching = [m for m in ("tcn", "transformer") if known[m] >= known["lstm"] - MATCH]
    claim.verdict = HOLDS if len(matching) == 2 else FAILS
    claim.why = (
        f"{' and '.join(matching) if matching else 'neither'} within {MATCH} skill of the LSTM or above "
        f"(criterion: both)"
    )
    return claim


def check_small_data(results: dict[str, Any]) -> Claim:
    return Claim(
        id="small-data-small-machines",
        claim="LSTM/GRU remain better than TCN/Transformer on small data and small machines.",
        source=f"{cite('002')} §5 (小数据场景 / 低算力场景)",
        measured="",
        why=(
            "a comparison trains every model on one data size; the claim needs a sweep over training-set "
            "sizes (run `rnnlab compare --train-samples N` for several N and compare the reports)"
        ),
    )


def _longest_common(results: dict[str, Any], models: tuple[str, ...]) -> int | bool | None:
    """The longest length where every model finished; ``False`` if there is none."""
    common = [length for length in lengths_of(results) if all(row(results, m, length) for m in models)]
    return common[-1] if common else False


def _row(results: dict[str, Any], model: str, length: int | None) -> dict[str, Any]:
    """The summary row of a cell the caller found finished."""
    entry = row(results, model, length)
    assert entry is not None, f"no summary row of {model} at {format_length(length)}"
    return entry


def _task_name(results: dict[str, Any]) -> str:
    return (results.get("experiment") or {}).get("task", "")


def _sci(value: float) -> str:
    # float32 gradients underflow near 1e-38; ratios below 1e-30 mean "nothing arrives"
    return f"{value:.1e}" if value >= 1e-30 else "< 1e-30 (underflow)"


CHECKS = (
    check_rnn_short_memory,
    check_rnn_collapses_lstm_holds,
    check_gradient_flow,
    check_parameter_ratio,
    check_lstm_step_cost,
    check_gru_train_speed,
    check_gru_inference_speed,
    check_lstm_converges_faster,
    check_traffic_case,
    check_challengers_train_faster,
    check_challengers_match_lstm,
    check_small_data,
)
