"""The ``rnnlab`` command line: parses arguments, calls the library, prints.

No logic lives here that the Python API lacks.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="rnnlab: train, compare, explain and ship the recurrent network family.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def fail(message: str, code: int = 2) -> None:
    """Print a clear error and exit without a traceback."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
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


if __name__ == "__main__":  # pragma: no cover
    app()
