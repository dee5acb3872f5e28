"""rnnlab's compiled recurrent kernels against torch.nn and against rnnlab's own paths, in one run.

    python bench/kernels.py [--quick] [--threads N]

Prints Markdown tables of ratios measured in the same run, interleaved (every candidate of a
shape runs once per round, round after round); each ratio is the median over rounds of that
round's ratio, so a load change on the machine between rounds cancels. The ms columns are medians. Times are
CPU seconds of the process (``time.process_time``): on
a machine shared with other work, wall-clock time mostly measures waits for a core. With more
than one thread, CPU time also counts OpenMP threads spin-waiting, so on a busy machine run with
``--threads 1``; the wall-clock ratio is printed beside it. The streaming step is the exception:
its verdict is wall-clock time (the latency a real-time caller sees), CPU time beside it.

Acceptance (issue 8), at (batch, length, input, hidden) = (32, 100, 32, 128), (32, 1000, 32, 128)
and (256, 100, 64, 512), forward + backward:

* rnnlab.GRU ≤ 0.6× torch.nn.GRU; rnnlab.RNN ≤ 0.7× torch.nn.RNN; rnnlab.GRU ≤ 0.8× rnnlab.LSTM;
* rnnlab.LSTM(layer_norm=True) ≤ 1.3× torch.nn.LSTM and ≤ 0.5× its loop over cells;
* one streaming step at batch 1, hidden 128 (input 32) ≤ 0.3× torch.nn.LSTMCell in eager mode;
* minGRU at length 1000 trains ≥ 5× faster than rnnlab.GRU of the same width.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

import rnnlab
from rnnlab.kernels import build
from rnnlab.kernels.streaming import LayerStepper
from rnnlab.layers import reference_path
from rnnlab.system import cpu_model

SIZES = [(32, 100, 32, 128), (32, 1000, 32, 128), (256, 100, 64, 512)]
console = Console(soft_wrap=True)


def forward_backward(layer: nn.Module, *, loop: bool = False, **forward_options) -> Callable[[torch.Tensor], None]:
    def run(x: torch.Tensor) -> None:
        x = x.detach().requires_grad_(True)
        if loop:
            with reference_path():
                output, _ = layer(x, **forward_options)
        else:
            output, _ = layer(x, **forward_options)
        output.sum().backward()
        layer.zero_grad(set_to_none=True)

    return run


def gemms_alone(size: tuple[int, int, int, int], gates: int) -> Callable[[torch.Tensor], None]:
    """Only the matrix products a layer of ``gates`` gates needs for forward + backward, through MKL
    (``torch.mm``) at their shapes: the floor of any implementation that runs them the same way.

    Forward: the input projection ``[B·T, I] × [I, gH]`` and ``T`` recurrent products
    ``[B, H] × [H, gH]``; backward: ``T`` products ``[B, gH] × [gH, H]`` for ``dh_{t-1}``, then
    ``dW_hh``, ``dx`` and ``dW_ih``, each one product over all steps.
    """
    batch, length, input_size, hidden = size
    weight_ih, weight_hh = torch.randn(gates * hidden, input_size), torch.randn(gates * hidden, hidden)
    h, d_gates = torch.randn(batch, hidden), torch.randn(batch, gates * hidden)
    states, d_all = torch.randn(batch * length, hidden), torch.randn(batch * length, gates * hidden)
    step_out, step_back = torch.empty(batch, gates * hidden), torch.empty(batch, hidden)

    def run(x: torch.Tensor) -> None:
        inputs = x.reshape(batch * length, input_size)
        torch.mm(inputs, weight_ih.t())
        for _ in range(length):
            torch.mm(h, weight_hh.t(), out=step_out)
        for _ in range(length):
            torch.mm(d_gates, weight_hh, out=step_back)
        torch.mm(d_all.t(), states)
        torch.mm(d_all, weight_ih)
        torch.mm(d_all.t(), inputs)

    return run


def gemm_gflop(size: tuple[int, int, int, int], gates: int) -> float:
    """Floating-point operations of those products, in GFLOP (2 per multiply-add)."""
    batch, length, input_size, hidden = size
    rows, width = batch * length, gates * hidden
    return 2 * (3 * rows * input_size * width + 3 * rows * hidden * width) / 1e9


def square_gemm_rate(repeats: int = 5) -> float:
    """GFLOP per CPU-second of the friendliest product for MKL, a 2048³ sgemm (the best of ``repeats``)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    out = torch.mm(a, b)
    seconds = []
    for _ in range(repeats):
        cpu = time.process_time()
        torch.mm(a, b, out=out)
        seconds.append(time.process_time() - cpu)
    return 2 * 2048**3 / min(seconds) / 1e9


# Targets whose reference is fast enough that the products alone may not fit in the time they allow:
# (cell, gates, ours, reference, bound). "GFLOP/s needed" is the products' GFLOP over bound × the
# reference's CPU time; above the best product rate measured in the run (the 2048³ sgemm or the
# "GEMMs alone" of any size), no implementation doing those products through MKL meets it.
GEMM_BOUND_TARGETS = [
    ("GRU", 3, "rnnlab.GRU", "torch.nn.GRU", 0.6),
    ("RNN", 1, "rnnlab.RNN", "torch.nn.RNN", 0.7),
    ("LSTM (layer norm)", 4, "rnnlab.LSTM(layer_norm)", "rnnlab.LSTM(layer_norm), loop over cells", 0.5),
    ("LSTM (layer norm)", 4, "rnnlab.LSTM(layer_norm)", "torch.nn.LSTM", 1.3),
]


def candidates(size: tuple[int, int, int, int]) -> dict[str, Callable[[torch.Tensor], None]]:
    _, _, input_size, hidden = size
    torch.manual_seed(0)
    built = {
        "torch.nn.GRU": nn.GRU(input_size, hidden, batch_first=True),
        "torch.nn.RNN": nn.RNN(input_size, hidden, batch_first=True),
        "torch.nn.LSTM": nn.LSTM(input_size, hidden, batch_first=True),
        "rnnlab.GRU": rnnlab.GRU(input_size, hidden, batch_first=True),
        "rnnlab.RNN": rnnlab.RNN(input_size, hidden, batch_first=True),
        "rnnlab.LSTM": rnnlab.LSTM(input_size, hidden, batch_first=True),
        "rnnlab.LSTM(layer_norm)": rnnlab.LSTM(input_size, hidden, batch_first=True, layer_norm=True),
    }
    runs = {name: forward_backward(layer) for name, layer in built.items()}
    runs["rnnlab.LSTM(layer_norm), loop over cells"] = forward_backward(built["rnnlab.LSTM(layer_norm)"], loop=True)
    runs["GRU GEMMs alone (MKL)"] = gemms_alone(size, 3)
    runs["RNN GEMMs alone (MKL)"] = gemms_alone(size, 1)
    if size == SIZES[1]:
        runs["rnnlab.MinGRU"] = forward_backward(rnnlab.MinGRU(input_size, hidden, batch_first=True))
        runs["rnnlab.MinGRU, parallel scan"] = forward_backward(
            rnnlab.MinGRU(input_size, hidden, batch_first=True), mode="parallel"
        )
        runs["rnnlab.MinLSTM"] = forward_backward(rnnlab.MinLSTM(input_size, hidden, batch_first=True))
    return runs


# (ours, reference, bound, sense): "≤" rows give ours / reference (time ratio), "≥" rows give
# reference / ours (how many times faster ours trains); None: shown for information.
COMPARISONS = [
    ("rnnlab.GRU", "torch.nn.GRU", 0.6, "≤"),
    ("rnnlab.RNN", "torch.nn.RNN", 0.7, "≤"),
    ("rnnlab.GRU", "rnnlab.LSTM", 0.8, "≤"),
    ("rnnlab.LSTM(layer_norm)", "torch.nn.LSTM", 1.3, "≤"),
    ("rnnlab.LSTM(layer_norm)", "rnnlab.LSTM(layer_norm), loop over cells", 0.5, "≤"),
    ("rnnlab.LSTM", "torch.nn.LSTM", None, "≤"),
    ("GRU GEMMs alone (MKL)", "torch.nn.GRU", None, "≤"),
    ("RNN GEMMs alone (MKL)", "torch.nn.RNN", None, "≤"),
    ("rnnlab.MinGRU", "rnnlab.GRU", 5.0, "≥"),
    ("rnnlab.MinGRU, parallel scan", "rnnlab.GRU", None, "≥"),
    ("rnnlab.MinLSTM", "rnnlab.GRU", None, "≥"),
]


def repeats_for(size: tuple[int, int, int, int], quick: bool) -> int:
    batch, length, _, hidden = size
    return max(3 if quick else 7, min(21, int(4e9 / (batch * length * hidden * hidden))))


def time_size(size, quick: bool, progress: Progress, task) -> dict[str, list[tuple[float, float]]]:
    """(CPU seconds, wall seconds) of each candidate at one size, one entry per round (round-robin)."""
    batch, length, input_size, _ = size
    runs = candidates(size)
    x = torch.randn(batch, length, input_size)
    for run in runs.values():  # warm-up: oneDNN primitives, the allocator, the kernels' build
        run(x)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats_for(size, quick)):
        for name, run in runs.items():
            cpu, wall = time.process_time(), time.perf_counter()
            run(x)
            times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
        progress.advance(task)
    return times


def streaming_rows(quick: bool) -> list[dict]:
    """One step at batch 1, hidden 128: LayerStepper of rnnlab.LSTM/GRU against nn.LSTMCell in eager mode."""
    torch.manual_seed(0)
    cell = nn.LSTMCell(32, 128)
    lstm, gru = rnnlab.LSTM(32, 128), rnnlab.GRU(32, 128)
    steppers = {"rnnlab LayerStepper(LSTM)": LayerStepper(lstm), "rnnlab LayerStepper(GRU)": LayerStepper(gru)}
    x = torch.randn(1, 32)
    state_cell = (torch.zeros(1, 128), torch.zeros(1, 128))
    states = {name: stepper.initial_state(1) for name, stepper in steppers.items()}
    steps = 500 if quick else 2000

    def per_step(run) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(steps):
            run()
        return (time.process_time() - cpu) / steps, (time.perf_counter() - wall) / steps

    runs = {"torch.nn.LSTMCell (eager)": lambda: cell(x, state_cell)}
    runs.update({name: (lambda s=stepper, n=name: s(x, states[n])) for name, stepper in steppers.items()})
    measured: dict[str, list] = {name: [] for name in runs}
    with torch.inference_mode():
        for run in runs.values():
            per_step(run)
        for _ in range(5 if quick else 11):
            for name, run in runs.items():
                measured[name].append(per_step(run))
    reference = measured["torch.nn.LSTMCell (eager)"]
    # The verdict is wall-clock time, the latency a real-time caller sees; CPU time beside it (it
    # also counts torch.nn's worker threads, which a step at batch 1 wakes for nothing).
    return [
        {
            "ours": name,
            "reference": "torch.nn.LSTMCell (eager)",
            "ours_us": 1e6 * statistics.median(t[1] for t in measured[name]),
            "reference_us": 1e6 * statistics.median(t[1] for t in reference),
            "wall_ratio": statistics.median(o[1] / r[1] for o, r in zip(measured[name], reference)),
            "cpu_ratio": statistics.median(o[0] / r[0] for o, r in zip(measured[name], reference)),
            "bound": 0.3 if "LSTM" in name else None,
        }
        for name in steppers
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="first size only, fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if build.load() is None:
        console.print(f"[red]The compiled kernels are {build.status()}: nothing to measure.[/red]")
        raise SystemExit(1)
    sizes = SIZES[:1] if args.quick else SIZES
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    medians = {}
    with Progress(*columns, console=console, transient=True) as progress:
        for size in sizes:
            task = progress.add_task(f"forward + backward at {size}", total=repeats_for(size, args.quick))
            medians[size] = time_size(size, args.quick, progress, task)
        progress.add_task("streaming step", total=None)
        streaming = streaming_rows(args.quick)
        gemm_rate = square_gemm_rate()

    with open("/proc/loadavg") as loadavg:
        load = " ".join(loadavg.read().split()[:3])
    console.print(
        f"Machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}; load average at the end {load}.\n",
        highlight=False,
    )
    console.print("Forward + backward, ratio of median CPU times (wall-clock ratio beside):\n", highlight=False)
    console.print(
        "| rnnlab | vs | (batch, length, input, hidden) | ours ms | reference ms | ratio | wall ratio | target |",
        highlight=False,
    )
    console.print("|---|---|---|---:|---:|---:|---:|---|", highlight=False)
    for ours, reference, bound, sense in COMPARISONS:
        for size in sizes:
            if ours not in medians[size] or reference not in medians[size]:
                continue
            ours_times, reference_times = medians[size][ours], medians[size][reference]
            ours_cpu = statistics.median(t[0] for t in ours_times)
            ref_cpu = statistics.median(t[0] for t in reference_times)
            # the median over rounds of each round's ratio: a load change between rounds cancels
            pairs = list(zip(ours_times, reference_times))
            ratio = statistics.median(o[0] / r[0] for o, r in pairs)
            wall_ratio = statistics.median(o[1] / r[1] for o, r in pairs)
            shown = ours
            if sense == "≥":
                ratio, wall_ratio, shown = 1 / ratio, 1 / wall_ratio, f"{ours} (speed-up)"
            met = bound is None or (ratio <= bound if sense == "≤" else ratio >= bound)
            verdict = "" if bound is None else f"{sense} {bound}: " + ("met" if met else "**not met**")
            console.print(
                f"| {shown} | {reference} | {size} | {1e3 * ours_cpu:.1f} | {1e3 * ref_cpu:.1f} | "
                f"{ratio:.2f}× | {wall_ratio:.2f}× | {verdict} |",
                highlight=False,
            )
    console.print(
        "\nThe GEMMs alone: how fast this CPU runs the products of forward + backward through MKL "
        '("GEMMs alone" rows above are the lowest ratio to torch.nn that any implementation doing '
        "the same products through MKL can reach):\n",
        highlight=False,
    )
    console.print(
        "| cell | (batch, length, input, hidden) | GFLOP | GEMMs ms | GFLOP/s | torch.nn ms | torch.nn GFLOP/s "
        "| rnnlab ms | rnnlab GFLOP/s |",
        highlight=False,
    )
    console.print("|---|---|---:|---:|---:|---:|---:|---:|---:|", highlight=False)
    for cell, gates in (("GRU", 3), ("RNN", 1)):
        for size in sizes:
            gflop = gemm_gflop(size, gates)
            times = {
                name: statistics.median(t[0] for t in medians[size][name])
                for name in (f"{cell} GEMMs alone (MKL)", f"torch.nn.{cell}", f"rnnlab.{cell}")
            }
            cells = " | ".join(f"{1e3 * t:.1f} | {gflop / t:.1f}" for t in times.values())
            console.print(f"| {cell} | {size} | {gflop:.1f} | {cells} |", highlight=False)
    alone_rates = [
        gemm_gflop(size, gates) / statistics.median(t[0] for t in medians[size][f"{cell} GEMMs alone (MKL)"])
        for cell, gates in (("GRU", 3), ("RNN", 1))
        for size in sizes
    ]
    best_rate = max(gemm_rate, *alone_rates)
    console.print(
        f"\nWhat each target asks of the products: the best product rate measured in this run is "
        f'{best_rate:.1f} GFLOP per CPU-second (2048³ sgemm {gemm_rate:.1f}; the "GEMMs alone" above up to '
        f"{max(alone_rates):.1f}); a target needing more cannot be met by an implementation doing these "
        "products through MKL:\n",
        highlight=False,
    )
    console.print(
        "| cell | (batch, length, input, hidden) | target | GFLOP | time allowed ms | GFLOP/s needed | "
        "ours GFLOP/s | possible |",
        highlight=False,
    )
    console.print("|---|---|---|---:|---:|---:|---:|---|", highlight=False)
    for cell, gates, ours, reference, bound in GEMM_BOUND_TARGETS:
        for size in sizes:
            gflop = gemm_gflop(size, gates)
            allowed = bound * statistics.median(t[0] for t in medians[size][reference])
            ours_time = statistics.median(t[0] for t in medians[size][ours])
            needed = gflop / allowed
            console.print(
                f"| {cell} | {size} | ≤ {bound}× {reference} | {gflop:.1f} | {1e3 * allowed:.1f} | "
                f"{needed:.1f} | {gflop / ours_time:.1f} | {'yes' if needed < best_rate else '**no**'} |",
                highlight=False,
            )
    console.print(
        "\nOne streaming step, batch 1, input 32, hidden 128 (inference), median wall-clock time "
        "(the verdict; the ratio of CPU times beside):\n",
        highlight=False,
    )
    console.print("| rnnlab | vs | ours µs | reference µs | wall ratio | CPU ratio | target |", highlight=False)
    console.print("|---|---|---:|---:|---:|---:|---|", highlight=False)
    for row in streaming:
        verdict = (
            ""
            if row["bound"] is None
            else f"≤ {row['bound']}: " + ("met" if row["wall_ratio"] <= row["bound"] else "**not met**")
        )
        console.print(
            f"| {row['ours']} | {row['reference']} | {row['ours_us']:.1f} | {row['reference_us']:.1f} | "
            f"{row['wall_ratio']:.2f}× | {row['cpu_ratio']:.2f}× | {verdict} |",
            highlight=False,
        )


if __name__ == "__main__":
    main()
