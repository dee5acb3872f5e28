"""The ``rnnlab`` command line: parses arguments, calls the library, prints.

No logic lives here that the Python API lacks.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rnnlab.config_fields import given_fields, with_config_options
from rnnlab.lab.grid import DEFAULT_MODELS, CompareConfig
from rnnlab.train.config import TrainConfig, implied_task

app = typer.Typer(
    help="rnnlab: train, compare, explain and ship the recurrent network family.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a clear error on stderr, on one unbroken line, and exit without a traceback."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def info(
    params: bool = typer.Option(False, "--params", help="Print the parameter counts of RNN, LSTM and GRU."),
    input_size: int = typer.Option(32, "--input-size", min=1, help="Input features, for --params."),
    hidden_size: int = typer.Option(128, "--hidden-size", min=1, help="Hidden units, for --params."),
    num_layers: int = typer.Option(1, "--num-layers", min=1, help="Stacked layers, for --params."),
) -> None:
    """Versions, threads, which kernel paths are active; with --params, parameter counts."""
    from rnnlab.system import system_info

    table = Table(title="rnnlab", show_header=False)
    for key, value in system_info().items():
        table.add_row(key, str(value))
    console.print(table)
    if params:
        from rnnlab.layers import parameter_table

        rows = parameter_table(input_size, hidden_size, num_layers)
        counts = Table(title=f"parameters (input {input_size}, hidden {hidden_size}, layers {num_layers})")
        for column in ("layer", "parameters", "× RNN", "formula"):
            counts.add_column(column)
        for row in rows:
            counts.add_row(row["layer"], f"{row['parameters']:,}", f"{row['ratio_to_rnn']:.2f}", row["formula"])
        console.print(counts)


# --------------------------------------------------------------------------------------------- training
def _parse_pairs(pairs: list[str] | None, flag: str) -> dict:
    """``KEY=VALUE`` pairs into a dict; values read as JSON when they parse (numbers, true/false)."""
    import json

    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            options[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = value
    return options


def _print_metrics(title: str, metrics: dict, baselines: dict | None = None) -> None:
    from rnnlab.train.metrics import baselines_beside

    baselines = baselines if baselines is not None else {}
    shown = {name: value for name, value in metrics.items() if name not in baselines}
    beside = baselines_beside(shown, baselines)
    table = Table(title=title)
    for column in ("metric", "value", "baselines"):
        table.add_column(column)
    for name, value in shown.items():
        others = ", ".join(f"{label} {_number(v)}" for label, v in beside.get(name, []))
        table.add_row(name, _number(value), others)
    console.print(table)


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"
    return str(value)


@app.command()
def tasks() -> None:
    """Built-in tasks, the data each reads, their options, and the model names."""
    from rnnlab import models
    from rnnlab.data import TASKS

    console.print("[bold]Tasks[/] (rnnlab train --task T)")
    for name, info in TASKS.items():
        console.print(f"\n[bold cyan]{name}[/]  [dim]head {info.head}[/]  {info.description}", highlight=False)
        console.print(f"  data (--data): {escape(info.formats)}", highlight=False)
        for key, text in info.builtins.items():
            default = " [dim](default)[/]" if key == info.default_data else ""
            console.print(f"    built-in [bold]{key}[/]{default}: {escape(text)}", highlight=False)
        console.print(f"  --seq-len: {escape(str(info.seq_len))}", highlight=False)
        for key, option in info.options.items():
            default = f" [dim](default {escape(str(option.default))})[/]" if option.default is not None else ""
            console.print(f"  {key}: {escape(option.help)}{default}", highlight=False)
    console.print()
    model_table = Table(title="models (rnnlab train --model M)")
    model_table.add_column("model")
    model_table.add_column("what")
    model_table.add_column("tasks")
    model_table.add_column("options beyond the common ones (--model-option KEY=VALUE)")
    for name in models.model_names():
        heads = models.model_heads(name)
        fits = "all" if heads is None else ", ".join(task for task, info in TASKS.items() if info.head in heads)
        model_table.add_row(name, models.family(name).description, fits, ", ".join(models.model_options(name)) or "-")
    console.print(model_table)
    console.print("Task options not covered by a flag: --option KEY=VALUE (e.g. --option n_train=2000).")


# ``--option`` and ``--quiet`` are the same flag on train and compare
OPTION = typer.Option(None, "--option", help="Further task option KEY=VALUE (repeatable).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress display.")


@app.command()
@with_config_options(TrainConfig)
def train(
    option: list[str] = OPTION,
    model_option: list[str] = typer.Option(None, "--model-option", help="Model option KEY=VALUE (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last complete epoch."),
    quiet: bool = QUIET,
    **values: Any,
) -> None:
    """Train a model on a task; writes config.json, model.safetensors, metrics.csv, summary.json to --out."""
    from rnnlab.errors import RnnlabError, TrainingError
    from rnnlab.train import train as train_run

    fields = given_fields(TrainConfig, values)
    if not resume and (task := implied_task(fields)) is not None:
        fields["task"] = task  # forecast flags without --task
    if fields.get("patience") == 0:
        fields["patience"] = None  # --patience 0: no early stopping
    if option:
        fields["data_options"] = _parse_pairs(option, "--option")
    if model_option:
        fields["model_options"] = _parse_pairs(model_option, "--model-option")
    try:
        # the given flags as changes: a resume checks exactly these against the run's configuration
        result = train_run(resume=resume, progress=not quiet, **fields)
    except (RnnlabError, TrainingError) as error:
        fail(str(error))
    summary = result.summary
    _print_metrics(f"{summary['task']} · {summary['model']} · test", summary["test_metrics"], summary["baselines"])
    console.print(
        f"{summary['num_parameters']:,} parameters · {summary['epochs']} epochs (best {summary['best_epoch']}) · "
        f"{summary['train_seconds']:.1f} s · stopped: {escape(summary['stop_reason'])} · "
        f"run: {escape(str(result.dir))}",
        highlight=False,
    )
    for warning in summary.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


@app.command()
def evaluate(
    run_dir: str = typer.Argument(..., help="A run directory written by rnnlab train."),
    data: str = typer.Option(None, "--data", help="A new labelled file (default: the run's test split)."),
) -> None:
    """Test metrics of a trained run (baselines beside them); written to DIR/evaluation.json."""
    from rnnlab.errors import RnnlabError
    from rnnlab.train import evaluate_run

    try:
        result = evaluate_run(run_dir, data)
    except RnnlabError as error:
        fail(str(error))
    metrics = dict(result.items())
    import json
    from pathlib import Path

    baselines = json.loads((Path(run_dir) / "task.json").read_text(encoding="utf-8")).get("baselines", {})
    baselines = {name: result[name] for name in result if name in baselines} if data is None else {}
    _print_metrics(f"{run_dir} · {data or 'test split'}", metrics, baselines)


@app.command()
def predict(
    run_dir: str = typer.Argument(..., help="A classify or tag run directory."),
    data: str = typer.Option(..., "--data", help="CSV (classify) or CoNLL file (tag) to label."),
    out: str = typer.Option(..., "--out", "-o", help="Where to write predictions (CSV)."),
) -> None:
    """Labels (classify) or tags (tag) for a new file, with their probabilities."""
    from rnnlab.errors import RnnlabError
    from rnnlab.train import predict_run

    try:
        rows = predict_run(run_dir, data, out)
    except RnnlabError as error:
        fail(str(error))
    console.print(f"{len(rows)} predictions written to {escape(str(out))}", highlight=False)


@app.command()
def forecast(
    run_dir: str = typer.Argument(..., help="A forecast run directory."),
    data: str = typer.Option(..., "--data", help="CSV with the run's columns; forecasts follow its last row."),
    out: str = typer.Option(..., "--out", "-o", help="Where to write the forecasts (CSV)."),
    count: int = typer.Option(1, "--count", min=1, help="Forecast from each of the last COUNT windows."),
) -> None:
    """Forecast the horizon after the end of a series, in its original units."""
    from rnnlab.errors import RnnlabError
    from rnnlab.train import forecast_run

    try:
        rows = forecast_run(run_dir, data, out, count=count)
    except RnnlabError as error:
        fail(str(error))
    table = Table(title=f"forecast from {rows[0]['origin'] if rows else '-'}")
    for column in ("time", "target", "forecast"):
        table.add_column(column)
    for row in rows[:12]:
        table.add_row(str(row["time"]), row["target"], _number(row["forecast"]))
    console.print(table)
    console.print(f"{len(rows)} forecasts written to {escape(str(out))}", highlight=False)


# --------------------------------------------------------------------------------------------- the lab
@app.command()
@with_config_options(CompareConfig)
def compare(
    models: str = typer.Option(
        None, "--models", "-m", help=f"Comma-separated models (default: {','.join(DEFAULT_MODELS)})."
    ),
    lengths: str = typer.Option(
        None,
        "--lengths",
        help="Comma-separated sequence lengths (lookback of a "
        "forecast); default: the budget's for generated tasks, the data's own otherwise.",
    ),
    seeds: str = typer.Option(
        None, "--seeds", help="Number of seeds (3 → 0,1,2) or a list (0,4,7); default: the budget's."
    ),
    option: list[str] = OPTION,
    quiet: bool = QUIET,
    **values: Any,
) -> None:
    """Train the family side by side on one task and write results.json and report.html (the main job)."""
    from rnnlab.errors import RnnlabError
    from rnnlab.lab import compare as run_compare
    from rnnlab.lab.grid import parse_lengths, parse_models, parse_seeds

    fields = given_fields(CompareConfig, values)
    try:
        config = CompareConfig(**fields, data_options=_parse_pairs(option, "--option"))
        if models is not None:
            config.models = parse_models(models)
        if lengths is not None:
            config.lengths = parse_lengths(lengths)
        if seeds is not None:
            config.seeds = parse_seeds(seeds)
        outcome = run_compare(config, progress=not quiet)
    except RnnlabError as error:
        fail(str(error))
    if config.suite is not None:
        _print_suite(outcome)
    else:
        _print_comparison(outcome)
    if outcome.interrupted:
        raise typer.Exit(130)


def _print_suite(outcome) -> None:
    from rnnlab.lab.suites import render_markdown

    console.print(render_markdown(outcome.results), highlight=False, markup=False)
    console.print(f"report: {escape(str(outcome.report))}", highlight=False)


def _print_comparison(outcome) -> None:
    from rnnlab.lab.results import format_length

    results = outcome.results
    if outcome.interrupted:
        console.print(
            f"[yellow]interrupted[/]: {results['cells_done']} of {results['cells_expected']} cells done; "
            "results.json and report.html are written from them. Re-run the same command to finish.",
            highlight=False,
        )
    advice = results.get("advice")
    if advice:
        length = advice["length_measured"]
        table = Table(title=f"{results['experiment']['task']} at {format_length(length)}")
        for column in ("model", advice["metric"], "latency (ms)", "parameters", "Pareto front"):
            table.add_column(column)
        for candidate in advice["candidates"]:
            mark = " ★" if candidate["model"] == advice["pick"] else ""
            table.add_row(
                candidate["model"] + mark,
                f"{candidate['metric']:.4f}",
                f"{candidate['latency_ms']:.2f}",
                f"{candidate['num_parameters']:,}",
                "yes" if candidate["on_front"] else "",
            )
        console.print(table)
        for reason in advice["reasons"]:
            if reason.startswith(("Recommendation", "Caution")):
                console.print(reason, highlight=False, markup=False)
    verdicts = [claim["verdict"] for claim in results["claims"]]
    console.print(
        f"claims: {verdicts.count('holds')} hold, {verdicts.count('does not hold')} do not hold, "
        f"{verdicts.count('not measured')} not measured · {results['cells_done']}/{results['cells_expected']} cells "
        f"({outcome.skipped} already done) · report: {escape(str(outcome.report))}",
        highlight=False,
    )


@app.command()
def advise(
    results_file: str = typer.Argument(
        ..., metavar="RESULTS.json", help="results.json of `rnnlab compare` (or its folder)."
    ),
    max_latency_ms: float = typer.Option(
        None, "--max-latency-ms", help="Latency limit, ms (one sequence at batch 1; with --streaming one step)."
    ),
    max_params: int = typer.Option(None, "--max-params", help="Parameter limit."),
    min_accuracy: float = typer.Option(None, "--min-accuracy", help="Lowest acceptable accuracy (0–1)."),
    max_error: float = typer.Option(
        None, "--max-error", help="Highest acceptable error (metrics where lower is better, e.g. MAE)."
    ),
    seq_len: int = typer.Option(None, "--seq-len", help="Your sequence length (default: the longest measured)."),
    memory_gb: float = typer.Option(None, "--memory-gb", help="Memory available for training, GB."),
    streaming: bool = typer.Option(False, "--streaming", help="The latency limit is per streaming step."),
    as_json: bool = typer.Option(False, "--json", help="Print the advice as JSON."),
) -> None:
    """The seeds' selection guide as rules, and a pick from the measured Pareto front under your limits."""
    import json

    from rnnlab.errors import RnnlabError
    from rnnlab.lab import Limits
    from rnnlab.lab import advise as advise_results

    try:
        limits = Limits(
            max_latency_ms=max_latency_ms,
            max_params=max_params,
            min_accuracy=min_accuracy,
            max_error=max_error,
            seq_len=seq_len,
            memory_gb=memory_gb,
            streaming=streaming,
        )
        advice = advise_results(results_file, limits)
    except RnnlabError as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps(advice.to_dict(), indent=2))
        return
    console.print(advice.text(), highlight=False, markup=False)


@app.command("export")
def export_command(
    run_dir: str = typer.Argument(..., help="A run directory written by rnnlab train."),
    out: str = typer.Option(..., "--out", "-o", help="The file to write, e.g. model.onnx."),
    format: str = typer.Option("onnx", "--format", help="Output format: onnx."),
    step: bool = typer.Option(
        False,
        "--step",
        help="The single-step model: one input step and the state in, "
        "output and new state out (unidirectional recurrent models).",
    ),
    quantize: str = typer.Option(
        None, "--quantize", help="int8: dynamic quantisation of the recurrent and linear weights."
    ),
    prune: float = typer.Option(
        None, "--prune", help="Zero this share of the weights, smallest magnitude first (0 ≤ FRACTION < 1)."
    ),
    prune_scope: str = typer.Option(
        "global", "--prune-scope", help="global: one threshold over all matrices; layer: the same share from each."
    ),
    finetune_epochs: int = typer.Option(
        0, "--finetune-epochs", help="Train the pruned model this many epochs (pruned weights stay zero)."
    ),
    recurrence: str = typer.Option(
        "auto",
        "--recurrence",
        help="Recurrent layers as ONNX operators (native), as loops over the cell equations (loop), or auto.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Measure the test metric of each variant."),
) -> None:
    """Export a run to ONNX, checked by onnxruntime; int8, pruning; size, latency and metric side by side."""
    from rnnlab.errors import RnnlabError
    from rnnlab.export.runs import export_run

    try:
        report = export_run(
            run_dir,
            out,
            format=format,
            step=step,
            quantize=quantize,
            prune=prune,
            prune_scope=prune_scope,
            finetune_epochs=finetune_epochs,
            recurrence=recurrence,
            force=force,
            evaluate=evaluate,
        )
    except RnnlabError as error:
        fail(str(error))
    checked = report.float_export or report.export
    console.print(
        f"onnxruntime check: max |onnxruntime − PyTorch| = {checked.max_abs_diff:.2e} "
        f"(tolerance {checked.tolerance:.0e}) over {'; '.join(checked.checked)}",
        highlight=False,
    )
    if report.float_export is not None:
        console.print(
            f"int8 file: max |int8 − float| = {report.export.max_abs_diff:.2e} on the same inputs "
            "(int8 rounding; the test metric below is what it costs)",
            highlight=False,
        )
    rows = report.rows()
    table = Table(title=f"{report.export.mode} model · latency of {report.latency_unit} · test split")
    for column in rows[0]:
        table.add_column(column, justify="left" if column in ("variant", "runtime") else "right", overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    for line in report.export.recurrence + report.notes:
        console.print(f"· {escape(line)}", highlight=False)
    console.print(
        f"wrote {escape(str(report.export.path))} ({report.export.file_bytes / 1024:,.1f} KiB)", highlight=False
    )


@app.command()
def generate(
    run_dir: str = typer.Argument(..., help="A charlm run directory written by rnnlab train --task charlm."),
    prompt: str = typer.Option(..., "--prompt", help="Text to start from (its characters must be in the vocabulary)."),
    length: int = typer.Option(200, "--length", help="Characters to generate after the prompt."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature; 0 is greedy."),
    top_k: int = typer.Option(None, "--top-k", help="Sample among the K most likely characters."),
    top_p: float = typer.Option(None, "--top-p", help="Sample from the smallest set holding probability P."),
    seed: int = typer.Option(None, "--seed", help="Seed for reproducible samples."),
) -> None:
    """Generate text from a character-level run, printing characters as they are produced."""
    import sys

    from rnnlab.errors import RnnlabError
    from rnnlab.generate import generate_stream

    try:
        characters = generate_stream(
            run_dir, prompt, length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed
        )
        sys.stdout.write(prompt)
        for character in characters:
            sys.stdout.write(character)
            sys.stdout.flush()
        sys.stdout.write("\n")
    except RnnlabError as error:
        fail(str(error))


if __name__ == "__main__":  # pragma: no cover
    app()
