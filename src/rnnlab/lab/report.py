"""The comparison report: one self-contained HTML page written from a results document.

``write_report(results, out_dir)`` draws every figure with matplotlib (no pyplot: nothing global
is touched), writes each as ``out_dir/figures/<name>.png`` and embeds the same bytes in
``out_dir/report.html`` as base64, so the page can be mailed or opened offline. Every sentence
with a number in it is formatted from ``results``; nothing is written by hand.

Page order: what was run → the main figure (metric against length) → the seeds' claims with
verdicts → why (gradients, gates, attention) → cost → every number → the recommendation.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from rnnlab.io import atomic_write, atomic_write_text
from rnnlab.lab.results import chance_level, format_length, lengths_of, models_of, reference_error, row
from rnnlab.train.metrics import baselines_beside

#: One colour per model, the same in every figure.
MODEL_COLOURS = {
    "rnn": "#d62728",
    "lstm": "#1f77b4",
    "gru": "#2ca02c",
    "lstm+attn": "#9467bd",
    "gru+attn": "#17becf",
    "tcn": "#ff7f0e",
    "transformer": "#8c564b",
    "mingru": "#bcbd22",
    "minlstm": "#e377c2",
    "informer": "#393b79",
    "transformer-xl": "#637939",
}
_SPARE_COLOURS = ("#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5")
DPI = 110


@dataclass
class DrawnFigure:
    """A drawn figure: its file name, the caption under it, and its PNG bytes."""

    name: str
    caption: str
    png: bytes
    alt: str


def write_report(results: dict[str, Any], out_dir: str | Path) -> Path:
    """Draw the figures into ``out_dir/figures/`` and write ``out_dir/report.html``; returns the page's path."""
    out_dir = Path(out_dir)
    figures = draw_figures(results)
    for figure in figures:
        path = out_dir / "figures" / f"{figure.name}.png"

        def write(tmp: str, data: bytes = figure.png) -> None:  # a def: mypy types no lambda with a default
            Path(tmp).write_bytes(data)

        atomic_write(path, write)
    return atomic_write_text(out_dir / "report.html", render_html(results, figures))


# --------------------------------------------------------------------------- figures
def draw_figures(results: dict[str, Any]) -> list[DrawnFigure]:
    figures = []
    for draw in (
        _accuracy_against_length,
        _training_curves,
        _gradient_flow,
        _gates,
        _attention,
        _exact_match_by_source_length,
        _alignments,
        _cost_against_accuracy,
        _probe,
    ):
        drawn = draw(results)
        if drawn is not None:
            figures.append(drawn)
    return figures


def _colour(model: str, models: list[str]) -> str:
    if model in MODEL_COLOURS:
        return MODEL_COLOURS[model]
    others = [m for m in models if m not in MODEL_COLOURS]
    return _SPARE_COLOURS[others.index(model) % len(_SPARE_COLOURS)] if model in others else "#000000"


def _new_figure(width: float = 8.0, height: float = 4.6, columns: int = 1) -> tuple[Figure, list]:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _plain_log_axis(axis: Any, which: str = "x", ticks: list[float] | None = None) -> None:
    """A log axis labelled with plain numbers (1, 2, 5, 10, ...), or exactly at ``ticks``."""
    target = axis.xaxis if which == "x" else axis.yaxis
    (axis.set_xscale if which == "x" else axis.set_yscale)("log")
    if ticks:
        target.set_major_locator(FuncLocator(ticks))
    else:
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


class FuncLocator(LogLocator):
    """Ticks exactly at the given values (the measured lengths)."""

    def __init__(self, ticks: list[float]) -> None:
        super().__init__()
        self.ticks = sorted(ticks)

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        return self.ticks

    def __call__(self) -> list[float]:
        return self.ticks


def _metric_label(results: dict[str, Any]) -> str:
    task = results.get("task") or {}
    metric = task.get("metric") or "metric"
    direction = "higher is better" if task.get("higher_is_better", True) else "lower is better"
    units = {
        "accuracy": "fraction correct",
        "macro_f1": "0–1",
        "mae": "data units",
        "mse": "squared units",
        "bpc": "bits per character",
        "nll": "nats per frame",
        "rmse": "data units",
    }.get(metric, "")
    return f"test {metric}" + (f" ({units}; {direction})" if units else f" ({direction})")


#: Line styles of the baselines drawn beside the models (naive, seasonal naive, ETS, ARIMA, ...).
BASELINE_STYLES = (":", "--", "-.", (0, (1, 3)), (0, (5, 1)), (0, (3, 1, 1, 1)))


def is_forecast(results: dict[str, Any]) -> bool:
    return ((results.get("task") or {}).get("spec") or {}).get("head") == "forecast"


def drawn_baselines(task: dict[str, Any], metric: str) -> list[tuple[str, float]]:
    """Every baseline measured in ``metric`` (``naive_mae`` → ``("naive", value)``), for a lower-is-better
    metric; else the one reference error, if any."""
    if task.get("higher_is_better", True):
        return []
    paired = baselines_beside({metric: None}, task.get("baselines") or {}).get(metric, [])
    drawn = [(label, float(value)) for label, value in paired if isinstance(value, int | float) and value > 0]
    if drawn:
        return drawn
    reference = reference_error(task, metric)
    return [] if reference is None else [("baseline", reference)]


def _task_title(results: dict[str, Any]) -> str:
    experiment = results.get("experiment") or {}
    data = experiment.get("data")
    return experiment.get("task", "") + (f" on {Path(str(data)).name}" if data else "")


def _accuracy_against_length(results: dict[str, Any]) -> DrawnFigure | None:
    summary = results.get("summary") or []
    if not summary:
        return None
    models, lengths = models_of(results), lengths_of(results)
    task = results.get("task") or {}
    metric = task.get("metric") or summary[0]["metric"]
    figure, (axes,) = _new_figure()
    seeds = max(entry["n"] for entry in summary)
    if all(length is not None for length in lengths) and len(lengths) > 1:
        for model in models:
            points = [(length, entry) for length in lengths if (entry := row(results, model, length))]
            # bars span the seeds' range (min–max): with two or three seeds a standard deviation says
            # little, and it would reach past the metric's bounds (accuracy above 1)
            means = [entry["metric_mean"] for _, entry in points]
            axes.errorbar(
                [length for length, _ in points],
                means,
                yerr=[
                    [m - entry["metric_min"] for m, (_, entry) in zip(means, points)],
                    [entry["metric_max"] - m for m, (_, entry) in zip(means, points)],
                ],
                marker="o",
                capsize=4,
                linewidth=1.8,
                label=model,
                color=_colour(model, models),
            )
        _plain_log_axis(axes, "x", cast("list[float]", lengths))  # every length set (checked above)
        if is_forecast(results):  # the length is a choice of the forecaster: how much history it reads
            axes.set_xlabel("lookback (past steps the model reads; log scale)")
            title = f"Test {metric} against lookback — {_task_title(results)}"
        else:
            axes.set_xlabel("sequence length T (steps the dependency must cross; log scale)")
            title = f"Test {metric} against sequence length — {_task_title(results)}"
    else:
        length = lengths[-1]
        # one length (or the native one): every model with a finished cell has it
        entries = cast("list[dict[str, Any]]", [row(results, model, length) for model in models])
        positions = range(len(models))
        axes.bar(
            positions,
            [e["metric_mean"] for e in entries],
            yerr=[
                [e["metric_mean"] - e["metric_min"] for e in entries],
                [e["metric_max"] - e["metric_mean"] for e in entries],
            ],
            color=[_colour(m, models) for m in models],
            capsize=4,
        )
        axes.set_xticks(list(positions), models)
        axes.set_xlabel(f"model ({format_length(length)})")
        title = f"Test {metric} by model — {_task_title(results)}"
    chance = chance_level(task) if metric == "accuracy" else None
    if chance is not None:
        axes.axhline(chance, color="#888888", linestyle=":", linewidth=1.2, label=f"chance ({chance:.3g})")
    references = drawn_baselines(task, metric)
    for (label, value), style in zip(references, BASELINE_STYLES):
        axes.axhline(value, color="#888888", linestyle=style, linewidth=1.2, label=f"{label} ({value:.3g})")
    axes.set_ylabel(_metric_label(results))
    if metric == "accuracy":
        axes.set_ylim(0, 1.04)
    axes.set_title(title, fontsize=11)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best", ncols=2)
    spread = (
        f"points are means over {seeds} seeds, bars their range (min–max)"
        if seeds > 1
        else "one seed per point (no spread)"
    )
    forecast = is_forecast(results)
    if len(lengths) > 1:
        where = "at each lookback" if forecast else "at each length"
    elif lengths[-1] is None:
        where = "at the data's own length"
    else:
        where = f"at {format_length(lengths[-1])}"
    return DrawnFigure(
        "accuracy_vs_length",
        f"Test {metric} of each model {where}, every model sized to about "
        f"{(results.get('experiment') or {}).get('params', 0):,} parameters; {spread}."
        + (
            f" Grey lines: the baselines on the same test split ({', '.join(label for label, _ in references)})."
            if references
            else ""
        ),
        _png(figure),
        f"{metric} against {'lookback' if forecast else 'sequence length'}",
    )


def _training_curves(results: dict[str, Any]) -> DrawnFigure | None:
    lengths = list(lengths_of(results))
    if not lengths:
        return None
    length = lengths[-1]
    cells = [
        c for c in results.get("cells", []) if c.get("status") == "done" and c["length"] == length and c["history"]
    ]
    if not cells:
        return None
    models = models_of(results)
    figure, (axes,) = _new_figure(8, 4.2)
    labelled = set()
    for cell in cells:
        epochs = [point["epoch"] for point in cell["history"] if point.get("val_metric") is not None]
        values = [point["val_metric"] for point in cell["history"] if point.get("val_metric") is not None]
        label = cell["model"] if cell["model"] not in labelled else None
        labelled.add(cell["model"])
        axes.plot(
            epochs, values, marker=".", linewidth=1.4, color=_colour(cell["model"], models), label=label, alpha=0.9
        )
    target = (results.get("task") or {}).get("target")
    if target:
        axes.axhline(
            target["value"], color="#444444", linestyle="--", linewidth=1, label=f"target {target['value']:.3g}"
        )
    metric = (results.get("task") or {}).get("metric") or "metric"
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"validation {metric}")
    axes.set_title(f"Training curves at {format_length(length)}: validation {metric} per epoch", fontsize=11)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, ncols=2)
    return DrawnFigure(
        "training_curves",
        f"Validation {metric} after each epoch at {format_length(length)} (one line per seed); the dashed line is the "
        "target used for epochs-to-target.",
        _png(figure),
        "validation metric per epoch",
    )


def _gradient_flow(results: dict[str, Any]) -> DrawnFigure | None:
    cells = [c for c in results.get("cells", []) if c.get("status") == "done" and c.get("gradient_flow")]
    if not cells:
        return None
    length = max(c["length"] or 0 for c in cells)
    cells = [c for c in cells if (c["length"] or 0) == length]
    # one seed per model: the lowest
    chosen: dict[str, dict[str, Any]] = {}
    for cell in sorted(cells, key=lambda c: c["seed"]):
        chosen.setdefault(cell["model"], cell)
    models = models_of(results)
    figure, axes = _new_figure(10, 4.4, columns=2)
    for axis, phase, heading in ((axes[0], "init", "at initialisation"), (axes[1], "trained", "after training")):
        for model, cell in chosen.items():
            flow = cell["gradient_flow"]
            measured = flow.get(phase) or {}
            colour = _colour(model, models)
            if measured.get("h"):
                axis.plot(
                    flow["steps"], _positive(measured["h"]), color=colour, linewidth=1.6, label=f"{model} ‖∂L/∂h_t‖"
                )
            if measured.get("c"):
                axis.plot(
                    flow["steps"],
                    _positive(measured["c"]),
                    color=colour,
                    linewidth=1.6,
                    linestyle="--",
                    label=f"{model} ‖∂L/∂c_t‖ (cell state)",
                )
        axis.set_yscale("log")
        axis.set_xlabel("time step t (the loss is read after the last step)")
        axis.set_ylabel("gradient norm ‖∂L/∂state_t‖ (log scale)")
        axis.set_title(f"Gradient flow through time {heading}", fontsize=11)
        axis.grid(True, alpha=0.3, which="both")
    axes[1].legend(fontsize=7, loc="best")
    return DrawnFigure(
        "gradient_flow",
        f"Norm of the loss gradient with respect to the top layer's state at each step, T={length}, mean over "
        "test samples. A line falling to the left means the loss cannot reach early steps: the vanishing "
        "gradient the articles describe.",
        _png(figure),
        "gradient norm against time step",
    )


def _positive(values: list[float]) -> list[float]:
    return [value if value > 0 else math.nan for value in values]


def _gates(results: dict[str, Any]) -> DrawnFigure | None:
    cells = [c for c in results.get("cells", []) if c.get("status") == "done" and c.get("gates")]
    if not cells:
        return None
    models = [m for m in models_of(results) if any(c["model"] == m for c in cells)]
    lengths = sorted({c["length"] or 0 for c in cells})
    figure, axes = _new_figure(10, 4.2, columns=2)
    for model in models:
        means, lows, highs = [], [], []
        for length in lengths:
            group = [c for c in cells if c["model"] == model and (c["length"] or 0) == length]
            if not group:
                means.append(math.nan)
                lows.append(math.nan)
                highs.append(math.nan)
                continue
            means.append(sum(c["gates"]["retention"]["mean"] for c in group) / len(group))
            saturation = [
                c["gates"]["retention"]["saturated_low"] + c["gates"]["retention"]["saturated_high"] for c in group
            ]
            lows.append(sum(saturation) / len(saturation))
        colour = _colour(model, models)
        axes[0].plot(lengths, means, marker="o", color=colour, label=f"{model} mean")
        axes[0].plot(lengths, lows, marker="s", color=colour, linestyle="--", label=f"{model} saturated")
    if all(lengths) and len(lengths) > 1:
        _plain_log_axis(axes[0], "x", lengths)
    axes[0].set_xlabel("sequence length T (log scale)")
    axes[0].set_ylabel("fraction (0–1)")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_title("Retention gate: mean, and share saturated (<0.1 or >0.9)", fontsize=10)
    axes[0].grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, ncols=2)
    longest = lengths[-1]
    for model in models:
        group = [c for c in cells if c["model"] == model and (c["length"] or 0) == longest]
        if group:
            over_time = group[0]["gates"]["over_time"]
            axes[1].plot(over_time["steps"], over_time["mean"], color=_colour(model, models), label=model)
    axes[1].set_xlabel("time step t")
    axes[1].set_ylabel("mean retention gate (0 forget … 1 keep)")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title(f"Retention gate over time at T={longest} (trained)", fontsize=10)
    axes[1].grid(True, alpha=0.3)
    axes[1].legend(fontsize=8)
    return DrawnFigure(
        "gates",
        "Gate statistics of the trained gated models on the test set. Retention gate: the LSTM's forget gate f_t; "
        "for the GRU, the share of h_{t-1} kept. Saturated gates act as switches.",
        _png(figure),
        "gate statistics",
    )


def _attention(results: dict[str, Any]) -> DrawnFigure | None:
    cells = [c for c in results.get("cells", []) if c.get("status") == "done" and c.get("attention")]
    if not cells:
        return None
    length = max(c["length"] or 0 for c in cells)
    chosen: dict[str, dict[str, Any]] = {}
    for cell in sorted((c for c in cells if (c["length"] or 0) == length), key=lambda c: c["seed"]):
        chosen.setdefault(cell["model"], cell)
    figure = Figure(figsize=(10, 1.2 + 2.4 * len(chosen)), dpi=DPI, layout="constrained")
    axes = list(figure.subplots(len(chosen), 1, squeeze=False)[:, 0])
    for axis, (model, cell) in zip(axes, chosen.items()):
        attention = cell["attention"]
        weights = attention["weights"]
        steps = attention["steps"]
        image = axis.imshow(
            weights,
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            extent=(steps[0] - 0.5, steps[-1] + 0.5, len(weights) - 0.5, -0.5),
        )
        axis.set_ylabel("test sample")
        axis.set_xlabel("time step t")
        axis.set_title(f"{model}: {attention['kind']} at T={length}", fontsize=10)
        figure.colorbar(image, ax=axis, label="attention weight (sums to 1 per sample)")
    return DrawnFigure(
        "attention",
        f"Attention weights over the input steps for test samples at T={length}: where the attention models look.",
        _png(figure),
        "attention heatmap",
    )


def _exact_match_by_source_length(results: dict[str, Any]) -> DrawnFigure | None:
    """seq2seq: exact match against the source length (bucketed), one line per model (mean over seeds)."""
    cells = [c for c in results.get("cells", []) if c.get("status") == "done" and c.get("by_source_length")]
    if not cells:
        return None
    models = list(dict.fromkeys(c["model"] for c in cells))
    figure, (axis,) = _new_figure()
    for model in models:
        rows: dict[tuple[int, int], list[float]] = {}
        for cell in (c for c in cells if c["model"] == model):
            for bucket in cell["by_source_length"]["buckets"]:
                if bucket["exact_match"] is not None:
                    rows.setdefault((bucket["min"], bucket["max"]), []).append(bucket["exact_match"])
        spans = sorted(rows)
        axis.plot(
            [(low + high) / 2 for low, high in spans],
            [100 * sum(rows[s]) / len(rows[s]) for s in spans],
            marker="o",
            color=_colour(model, models),
            label=model,
        )
    axis.set_xlabel("source length (characters, bucket midpoint)")
    axis.set_ylabel("exact match on test (%)")
    axis.set_title(f"{_task_title(results)}: exact match against source length", fontsize=11)
    axis.grid(alpha=0.3)
    axis.legend()
    return DrawnFigure(
        "exact_match_vs_source_length",
        "Exact match of the decoded test targets by source length. Without attention the decoder reads the "
        "source only through the encoder's final state, which has to hold more as sources grow.",
        _png(figure),
        "exact match against source length",
    )


def _alignments(results: dict[str, Any]) -> DrawnFigure | None:
    """seq2seq: the decoder's attention over the source characters for a few test examples (first seed)."""
    cells = [c for c in results.get("cells", []) if c.get("status") == "done" and c.get("alignments")]
    if not cells:
        return None
    cell = min(cells, key=lambda c: c["seed"])
    maps = cell["alignments"]
    columns = min(2, len(maps))
    rows = -(-len(maps) // columns)
    figure = Figure(figsize=(11, 4.2 * rows), dpi=DPI, layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for axis, example in zip(axes, maps):
        weights = example["weights"]
        image = axis.imshow(weights, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
        axis.set_xticks(range(len(example["source"])), list(example["source"]), fontsize=7, family="monospace")
        axis.set_yticks(
            range(len(weights)), [*example["output"], "<eos>"][: len(weights)], fontsize=7, family="monospace"
        )
        axis.set_xlabel("source character")
        axis.set_ylabel("output character")
        mark = "✓" if example["output"] == example["target"] else f"✗ (target {example['target']})"
        axis.set_title(
            f"{example['source'][:34]}{'…' if len(example['source']) > 34 else ''}\n→ {example['output']} {mark}",
            fontsize=8,
        )
    figure.colorbar(image, ax=axes, label="attention weight α (each row sums to 1)")
    return DrawnFigure(
        "alignments",
        f"{cell['model']}: where the decoder looks in the source while it writes each output character "
        "(greedy decoding of test examples).",
        _png(figure),
        "attention alignment heatmaps",
    )


def _cost_against_accuracy(results: dict[str, Any]) -> DrawnFigure | None:
    lengths = lengths_of(results)
    if not lengths:
        return None
    length = lengths[-1]
    models = models_of(results)
    entries = {model: entry for model in models if (entry := row(results, model, length))}
    if not entries:
        return None
    metric = (results.get("task") or {}).get("metric") or "metric"
    figure, axes = _new_figure(10, 4.2, columns=2)
    panels = (
        (axes[0], "train_ms_per_step", "training step: forward + backward (ms per batch, log scale)"),
        (axes[1], "latency_ms_sequence", "inference latency: one sequence, batch 1 (ms, log scale)"),
    )
    for axis, key, label in panels:
        for model, entry in entries.items():
            x = entry["cost"].get(key)
            if x is None:
                continue
            axis.errorbar(
                [x],
                [entry["metric_mean"]],
                yerr=[entry["metric_std"]],
                marker="o",
                markersize=8,
                color=_colour(model, models),
                capsize=3,
            )
            axis.annotate(model, (x, entry["metric_mean"]), textcoords="offset points", xytext=(6, 5), fontsize=8)
        _plain_log_axis(axis, "x")
        axis.set_xlabel(label)
        axis.set_ylabel(f"test {metric}")
        axis.grid(True, alpha=0.3, which="both")
    axes[0].set_title(f"Training cost against {metric} at {format_length(length)}", fontsize=10)
    axes[1].set_title(f"Inference cost against {metric} at {format_length(length)}", fontsize=10)
    return DrawnFigure(
        "cost_vs_accuracy",
        f"Cost against {metric} at {format_length(length)}, every model at the same parameter budget; "
        "up and to the left is better.",
        _png(figure),
        "cost against accuracy",
    )


def _probe(results: dict[str, Any]) -> DrawnFigure | None:
    probe = results.get("probe")
    if not probe or not probe.get("layers"):
        return None
    layers = probe["layers"]
    names = list(layers)
    figure, axes = _new_figure(8, 3.6, columns=2)
    for axis, key, label in ((axes[0], "train_ms", "training step (ms)"), (axes[1], "infer_ms", "inference (ms)")):
        values = [layers[name][key] for name in names]
        bars = axis.bar(names, values, color=[_colour(name, names) for name in names])
        for bar, value in zip(bars, values):
            axis.annotate(
                f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8
            )
        axis.set_ylabel(f"{label}, fastest of the rounds")
        axis.set_xlabel("layer (same hidden size)")
        axis.grid(True, axis="y", alpha=0.3)
    axes[0].set_title("Forward + backward of one layer", fontsize=10)
    axes[1].set_title("Forward only, no gradients", fontsize=10)
    return DrawnFigure(
        "layer_cost",
        f"One recurrent layer each at the same sizes (input {probe['input_size']}, hidden {probe['hidden_size']}, "
        f"T={probe['seq_len']}, batch {probe['batch_size']}), timed interleaved in one process, fastest of "
        f"{probe['repeats']} rounds: the premise of the seeds' cost claims.",
        _png(figure),
        "per-layer cost",
    )


# --------------------------------------------------------------------------- page
PAGE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC","Source Han Sans SC","PingFang SC",
"Microsoft YaHei",sans-serif;margin:0;color:#1b1f24;background:#f6f7f9;line-height:1.45}
main{max-width:1080px;margin:0 auto;padding:24px 28px 60px;background:#fff;box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:1.6em;margin:.2em 0 .1em} h2{font-size:1.25em;margin-top:2em;border-bottom:2px solid #e4e7eb;
padding-bottom:.2em}
.sub{color:#57606a;margin:0 0 1em}
.status{display:inline-block;padding:2px 10px;border-radius:12px;font-size:.85em;font-weight:600}
.complete{background:#dafbe1;color:#116329}.partial{background:#fff8c5;color:#7d4e00}
.headline{background:#f0f6ff;border-left:4px solid #1f77b4;padding:10px 14px;margin:12px 0;font-size:1.05em}
figure{margin:18px 0} figure img{max-width:100%;border:1px solid #e4e7eb} figcaption{color:#57606a;font-size:.9em}
table{border-collapse:collapse;font-size:.86em;margin:8px 0;width:100%}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{font-weight:600;white-space:nowrap;padding:1px 8px;border-radius:10px}
.holds{background:#dafbe1;color:#116329}.fails{background:#ffebe9;color:#a40e26}.unmeasured{background:#eaeef2;color:#57606a}
.chips span{margin-right:8px} .small{font-size:.85em;color:#57606a}
details{margin:8px 0} summary{cursor:pointer;color:#0969da}
ul.reasons li{margin:4px 0} code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def render_html(results: dict[str, Any], figures: list[DrawnFigure]) -> str:
    by_name = {figure.name: figure for figure in figures}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rnnlab compare — {escape(_task_title(results))}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{PAGE_CSS}</style></head><body><main>",
        _header(results),
        _figure(by_name.get("accuracy_vs_length")),
        _figure(by_name.get("exact_match_vs_source_length")),
        "<h2>The seeds' claims, measured</h2>",
        '<p class="small">Each claim of the five articles checked against this run. The verdict is '
        "computed from the numbers below; the criterion is given with it.</p>",
        _claims_table(results),
        "<h2>Why: gradients, gates and attention</h2>",
        _figure(by_name.get("gradient_flow"))
        or '<p class="small">No recurrent model in this run: no gradient flow to show.</p>',
        _figure(by_name.get("gates")) or '<p class="small">No gated recurrent model (LSTM, GRU) in this run.</p>',
        _figure(by_name.get("attention"))
        or ("" if "alignments" in by_name else '<p class="small">No attention model in this run.</p>'),
        _figure(by_name.get("alignments")),
        _figure(by_name.get("training_curves")),
        "<h2>Cost</h2>",
        _figure(by_name.get("cost_vs_accuracy")),
        _figure(by_name.get("layer_cost")),
        _memory_note(results),
        "<h2>Every number</h2>",
        _summary_table(results),
        _cells_table(results),
        "<h2>Recommendation</h2>",
        _advice_section(results),
        _footer(results),
        "</main></body></html>",
    ]
    return "\n".join(part for part in parts if part)


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _header(results: dict[str, Any]) -> str:
    experiment = results.get("experiment") or {}
    machine = results.get("machine") or {}
    timing = results.get("timing") or {}
    lengths = experiment.get("lengths") or []
    length_text = ", ".join("native" if length is None else str(length) for length in lengths)
    status = results.get("status", "partial")
    done, expected, failed = (
        results.get("cells_done", 0),
        results.get("cells_expected", 0),
        results.get("cells_failed", 0),
    )
    status_text = (
        "complete"
        if status == "complete"
        else f"partial: {done} of {expected} cells" + (f", {failed} failed" if failed else "")
    )
    advice = results.get("advice") or {}
    headline = ""
    if advice.get("pick"):
        pick = next((c for c in advice.get("candidates", []) if c["model"] == advice["pick"]), None)
        if pick:
            headline = (
                f'<div class="headline">At {format_length(advice.get("length_measured"))} the measured pick is '
                f"<b>{escape(advice['pick'])}</b>: {escape(advice['metric'])} {pick['metric']:.3f}, "
                f"{pick['latency_ms']:.2f} ms per sequence, {pick['num_parameters']:,} parameters. "
                '<a href="#recommendation">Why ↓</a></div>'
            )
    counts = {"holds": 0, "does not hold": 0, "not measured": 0}
    for claim in results.get("claims", []):
        counts[claim["verdict"]] = counts.get(claim["verdict"], 0) + 1
    chips = (
        '<p class="chips">Claims: '
        f'<span class="verdict holds">{counts["holds"]} hold</span>'
        f'<span class="verdict fails">{counts["does not hold"]} do not hold</span>'
        f'<span class="verdict unmeasured">{counts["not measured"]} not measured</span></p>'
    )
    wall = timing.get("cells_seconds")
    rows = [
        (
            "task",
            _task_title(results)
            + (f" — data options {experiment.get('data_options')}" if experiment.get("data_options") else ""),
        ),
        ("models", ", ".join(experiment.get("models", []))),
        ("lengths", length_text),
        ("seeds", ", ".join(str(s) for s in experiment.get("seeds", []))),
        (
            "budget",
            f"{experiment.get('budget')} — about {experiment.get('params', 0):,} parameters per model, "
            f"{experiment.get('num_layers')} layers, up to {experiment.get('epochs')} epochs or "
            f"{experiment.get('max_minutes')} min per cell, batch {experiment.get('batch_size')}, lr "
            f"{experiment.get('lr')}, clipping {experiment.get('clip')}"
            + (f", {experiment['train_samples']:,} training samples" if experiment.get("train_samples") else ""),
        ),
        (
            "machine",
            f"{machine.get('platform', '')}; {machine.get('cpu_cores', '?')} cores; torch {machine.get('torch', '?')}; "
            f"executor {machine.get('executor')} with {machine.get('workers')} workers × "
            f"{machine.get('threads_per_worker', '?')} threads",
        ),
    ]
    if wall is not None:
        rows.append(
            (
                "time",
                f"{_duration(wall)} of cell time in total, {_duration(timing.get('wall_seconds'))} "
                "of wall time in the last invocation",
            )
        )
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return (
        f"<h1>rnnlab compare: {escape(_task_title(results))}</h1>"
        f'<p class="sub">{escape(_count(len(experiment.get("models", [])), "model"))} × '
        f"{escape(_count(len(lengths), 'length'))} × {escape(_count(len(experiment.get('seeds', [])), 'seed'))} "
        f'<span class="status {"complete" if status == "complete" else "partial"}">{escape(status_text)}</span></p>'
        + headline
        + chips
        + (
            '<p class="small">This report covers the cells finished so far. Re-run the same command to finish '
            "the rest; finished cells are kept.</p>"
            if status != "complete"
            else ""
        )
        + f"<details><summary>What was run</summary><table>{table}</table></details>"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _figure(figure: DrawnFigure | None) -> str:
    if figure is None:
        return ""
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure id="fig-{escape(figure.name)}"><img src="data:image/png;base64,{data}" alt="{escape(figure.alt)}">'
        f'<figcaption>{escape(figure.caption)} <span class="small">(figures/{escape(figure.name)}.png)</span>'
        "</figcaption></figure>"
    )


_NUMERIC = ' class="n"'
_VERDICT_CLASS = {"holds": "holds", "does not hold": "fails", "not measured": "unmeasured"}


def _claims_table(results: dict[str, Any]) -> str:
    claims = results.get("claims") or []
    if not claims:
        return '<p class="small">No claims checked yet.</p>'
    rows = []
    for claim in claims:
        why = claim["why"]
        rows.append(
            f'<tr><td>{escape(claim["claim"])}<div class="small">{escape(claim["source"])}</div></td>'
            f"<td>{escape(claim['measured']) or '—'}</td>"
            f'<td><span class="verdict {_VERDICT_CLASS[claim["verdict"]]}">{escape(claim["verdict"])}</span>'
            f'<div class="small">{escape(why)}</div></td></tr>'
        )
    return (
        '<table><thead><tr><th style="width:30%">the documents say</th><th style="width:38%">this run measured</th>'
        "<th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``digits`` decimals, thousands separated, tiny values in scientific form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and abs(value) < 10**-digits:
        return f"{value:.2e}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _summary_table(results: dict[str, Any]) -> str:
    summary = results.get("summary") or []
    if not summary:
        return '<p class="small">No cell has finished yet.</p>'
    metric = summary[0]["metric"]
    target = (results.get("task") or {}).get("target")
    target_text = (
        f" (target: {metric} {'≥' if target['higher_is_better'] else '≤'} {target['value']:.3g})" if target else ""
    )
    quality = _table(
        [
            "model",
            "T",
            "seeds",
            f"{metric} mean",
            "± s.d.",
            "min–max",
            "parameters",
            "hidden",
            "epochs run",
            "reached target",
            "epochs to target",
            "s to target",
            "training time (s)",
        ],
        [
            [
                entry["model"],
                _length_cell(entry["length"]),
                entry["n"],
                _fmt(entry["metric_mean"], 4),
                _fmt(entry["metric_std"], 4),
                f"{_fmt(entry['metric_min'], 3)}–{_fmt(entry['metric_max'], 3)}",
                entry["num_parameters"],
                entry["hidden_size"],
                _fmt(entry["epochs"], 1),
                f"{entry['reached_target']}/{entry['n']}",
                _fmt(entry["epochs_to_target"], 1),
                _fmt(entry["seconds_to_target"], 1),
                _fmt(entry["train_seconds"], 1),
            ]
            for entry in summary
        ],
    )
    cost = _table(
        [
            "model",
            "T",
            "train step, fwd + bwd (ms)",
            "trainer's step incl. optimiser (ms)",
            "latency, sequence at batch 1 (ms)",
            "latency, one streaming step (ms)",
            "train memory (MiB)",
            "process peak RSS (MiB)",
            "timed on",
        ],
        [
            [
                entry["model"],
                _length_cell(entry["length"]),
                _fmt(entry["cost"].get("train_ms_per_step"), 2),
                _fmt(entry["cost"].get("loop_ms_per_step"), 2),
                _fmt(entry["cost"].get("latency_ms_sequence"), 3),
                _fmt(entry["cost"].get("latency_ms_step"), 3),
                _fmt(entry["cost"].get("train_memory_mb"), 2),
                _fmt(entry["cost"].get("peak_rss_mb"), 0),
                "a busy machine: re-time" if entry.get("timing_contended") else "a quiet machine",
            ]
            for entry in summary
        ],
    )
    return (
        f"<h3>Quality, per model and length (means over seeds){escape(target_text)}</h3>{quality}"
        + _receptive_fields(results)
        + f"<h3>Cost, per model and length (means over seeds; batch {escape(_batch_size(results))} for training)</h3>"
        f"{cost}" + _probe_table(results)
    )


def _receptive_fields(results: dict[str, Any]) -> str:
    """The steps each convolutional cell's output sees, beside the length it had to cover."""
    fields = {
        (cell["model"], cell["length"]): cell["receptive_field"]
        for cell in results.get("cells", [])
        if cell.get("status") == "done" and cell.get("receptive_field") is not None
    }
    if not fields:
        return ""
    items = [
        f"{model} at T={_length_cell(length)}: {field}" + ("" if length is None or field >= length else " (short of T)")
        for (model, length), field in sorted(fields.items(), key=lambda item: (item[0][0], item[0][1] or math.inf))
    ]
    return f'<p class="small">Receptive field (steps one output sees): {escape("; ".join(items))}.</p>'


def _length_cell(length: int | None) -> str:
    return "native" if length is None else str(length)


def _batch_size(results: dict[str, Any]) -> Any:
    return (results.get("experiment") or {}).get("batch_size", "?")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """A table whose first column is text and the others numbers (right-aligned)."""
    body = "".join(
        "<tr>"
        + "".join(f"<td{_NUMERIC if i > 0 else ''}>{escape(_fmt(value))}</td>" for i, value in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return (
        '<div style="overflow-x:auto"><table><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in header)
        + f"</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _probe_table(results: dict[str, Any]) -> str:
    probe = results.get("probe")
    if not probe or not probe.get("layers"):
        return ""
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="n">{probe["parameters"].get(name, 0):,}</td>'
        f'<td class="n">{_fmt(values["train_ms"], 3)}</td><td class="n">{_fmt(values["infer_ms"], 3)}</td></tr>'
        for name, values in probe["layers"].items()
    )
    return (
        f"<h3>One layer of each at the same sizes (input {probe['input_size']}, hidden {probe['hidden_size']}, "
        f"T={probe['seq_len']}, batch {probe['batch_size']}, {_count(probe['threads'], 'thread')})</h3>"
        "<table><thead><tr><th>layer</th><th>parameters</th><th>forward + backward (ms, fastest)</th>"
        "<th>forward, no gradients (ms, fastest)</th></tr></thead><tbody>" + rows + "</tbody></table>"
    )


def _cells_table(results: dict[str, Any]) -> str:
    cells = results.get("cells") or []
    if not cells:
        return ""
    rows = []
    for cell in cells:
        if cell["status"] == "done":
            gates = cell.get("gates") or {}
            retention = gates.get("retention") or {}
            saturated = retention.get("saturated_low", 0) + retention.get("saturated_high", 0) if retention else None
            stream_mode = cell["cost"].get("stream_mode", "")
            rows.append(
                f"<tr><td>{escape(cell['key'])}</td><td>done</td>"
                f'<td class="n">{escape(_fmt(cell["metric"]["value"], 4))}</td>'
                f'<td class="n">{escape(cell["epochs"])}</td><td>{escape(cell.get("stopped") or "")}</td>'
                f'<td class="n">{escape(_fmt(retention.get("mean"), 3))}</td>'
                f'<td class="n">{escape(_fmt(saturated, 3))}</td>'
                f"<td>{escape(stream_mode)}</td>"
                f'<td class="n">{escape(_fmt(cell["timing"]["wall_seconds"], 1))}</td></tr>'
            )
        else:
            rows.append(
                f"<tr><td>{escape(cell['key'])}</td><td>failed</td>"
                f'<td colspan="7">{escape(cell.get("error", ""))}</td></tr>'
            )
    return (
        f"<details><summary>Every cell ({len(cells)})</summary><table><thead><tr><th>cell</th><th>status</th>"
        "<th>test metric</th><th>epochs</th><th>stopped by</th><th>retention gate mean</th><th>saturated share</th>"
        "<th>streaming step measured as</th><th>cell wall time (s)</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></details>"
    )


def _memory_note(results: dict[str, Any]) -> str:
    return (
        '<p class="small">Memory: <b>train memory</b> counts the bytes a training step holds — parameters, their '
        "gradients, Adam's two moments, and every tensor autograd saves for the backward pass (counted with "
        "<code>torch.autograd.graph.saved_tensors_hooks</code>, each storage once) — the quantity that must fit on a "
        "GPU. <b>Process peak RSS</b> is the peak resident memory of the worker process while it ran the cell "
        "(Linux <code>VmHWM</code>, reset at the start of each cell), Python and PyTorch included. Each timing is the "
        "fastest of repeated runs after warm-up, in the cell's own process (on a shared machine the slower runs "
        "measure the other processes, not the code), while other cells run on the other workers.</p>"
    )


def _advice_section(results: dict[str, Any]) -> str:
    advice = results.get("advice")
    if not advice:
        return '<p id="recommendation" class="small">No recommendation: no cell finished.</p>'
    rules = "".join(
        f"<tr><td>{escape(rule['id'])}</td><td>{escape(rule['when'])}</td><td>{escape(rule['says'])}</td>"
        f"<td>{'applies' if rule['applies'] else '—'}</td><td>{escape(rule.get('verdict') or '')}"
        f'<div class="small">{escape(rule.get("because") or "")}</div></td></tr>'
        for rule in advice["rules"]
    )
    candidates = "".join(
        f"<tr><td>{escape(c['model'])}{' ★' if c['model'] == advice.get('pick') else ''}</td>"
        f'<td class="n">{_fmt(c["metric"], 4)}</td><td class="n">{_fmt(c["latency_ms"], 2)}</td>'
        f'<td class="n">{c["num_parameters"]:,}</td><td>{"yes" if c["on_front"] else "no"}</td></tr>'
        for c in advice["candidates"]
    )
    reasons = "".join(f"<li>{escape(reason)}</li>" for reason in advice["reasons"])
    return (
        f'<div id="recommendation"><ul class="reasons">{reasons}</ul>'
        "<h3>The seeds' selection guide, as rules</h3><table><thead><tr><th>rule</th><th>when</th>"
        f"<th>the guide says</th><th>here</th><th>the measurement</th></tr></thead><tbody>{rules}</tbody></table>"
        f"<h3>Candidates at {escape(format_length(advice.get('length_measured')))}</h3><table><thead><tr><th>model</th>"
        f"<th>{escape(advice['metric'])}</th><th>latency (ms, {escape(advice['latency_kind'])})</th><th>parameters</th>"
        f"<th>on the Pareto front</th></tr></thead><tbody>{candidates}</tbody></table>"
        '<p class="small">For your own limits: <code>rnnlab advise results.json --max-latency-ms 5 --max-params 50000 '
        "--seq-len 200</code>.</p></div>"
    )


def _footer(results: dict[str, Any]) -> str:
    timing = results.get("timing") or {}
    return (
        f'<p class="small" style="margin-top:3em">Written by rnnlab {escape(results.get("rnnlab_version", ""))} '
        f"on {escape(timing.get('finished', ''))} from results.json (schema {escape(results.get('schema'))} "
        f"v{escape(results.get('schema_version'))}).</p>"
    )
