"""rnnlab's layers against their torch.nn twins, measured in one run on this machine.

    python bench/layers.py [--quick]

Prints, as a Markdown table:

* forward + backward time of rnnlab.RNN / LSTM / GRU (fast path) divided by torch.nn's, at
  (batch, length, input, hidden) = (32, 100, 32, 128), (32, 1000, 32, 128), (256, 100, 64, 512);
  the two run on the same weights and input, interleaved (A B A B ...), and the ratio is of the
  medians, so a load change on the machine hits both alike;
* the layer-norm variants (rnnlab's loop over cells) against torch.nn.LSTM / GRU without it;
* peak memory of forward + backward at length 4000 with and without gradient checkpointing.
  Each is measured in a fresh process as the growth of its peak resident set (``ru_maxrss``)
  over the resident set just before the step: what the step added to the process at its worst,
  activations saved for backward included, allocator slack included.

Acceptance (issue 3): standard layers ≤ 1.05× torch.nn; checkpointing cuts peak memory at
length 4000 by ≥ 3×.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

import rnnlab

SIZES = [(32, 100, 32, 128), (32, 1000, 32, 128), (256, 100, 64, 512)]
TWINS = {"RNN": (rnnlab.RNN, nn.RNN), "LSTM": (rnnlab.LSTM, nn.LSTM), "GRU": (rnnlab.GRU, nn.GRU)}
MEMORY_SIZE = (32, 4000, 32, 128)
console = Console()


def forward_backward_seconds(layer: nn.Module, x: torch.Tensor) -> float:
    x = x.detach().requires_grad_(True)
    start = time.perf_counter()
    output, _ = layer(x)
    output.sum().backward()
    seconds = time.perf_counter() - start
    layer.zero_grad(set_to_none=True)
    return seconds


def interleaved_medians(ours: nn.Module, reference: nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    forward_backward_seconds(ours, x)  # warm-up: oneDNN primitives, allocator
    forward_backward_seconds(reference, x)
    ours_times, reference_times = [], []
    for _ in range(repeats):
        ours_times.append(forward_backward_seconds(ours, x))
        reference_times.append(forward_backward_seconds(reference, x))
    return statistics.median(ours_times), statistics.median(reference_times)


def repeats_for(size: tuple[int, int, int, int], quick: bool) -> int:
    batch, length, _, hidden = size
    work = batch * length * hidden * hidden
    return max(3 if quick else 5, min(30, int(4e9 / work)))


def time_rows(quick: bool, progress: Progress) -> list[dict]:
    sizes = SIZES[:1] if quick else SIZES
    cases = [(name, size, {}) for size in sizes for name in TWINS]
    cases += [(name, size, {"layer_norm": True}) for size in sizes for name in ("LSTM", "GRU")]
    task = progress.add_task("timing", total=len(cases))
    rows = []
    for name, size, extras in cases:
        batch, length, input_size, hidden = size
        ours_class, torch_class = TWINS[name]
        torch.manual_seed(0)
        reference = torch_class(input_size, hidden, batch_first=True)
        ours = ours_class(input_size, hidden, batch_first=True, **extras)
        ours.load_state_dict(reference.state_dict(), strict=not extras)
        x = torch.randn(batch, length, input_size)
        progress.update(task, description=f"{name}{' layer_norm' if extras else ''} {size}")
        ours_seconds, reference_seconds = interleaved_medians(ours, reference, x, repeats_for(size, quick or bool(extras)))
        rows.append({"layer": f"rnnlab.{name}" + (" (layer_norm=True)" if extras else ""),
                     "reference": f"torch.nn.{name}", "size": size, "ours_ms": 1e3 * ours_seconds,
                     "reference_ms": 1e3 * reference_seconds, "ratio": ours_seconds / reference_seconds})
        progress.advance(task)
    return rows


def memory_child(layer_name: str, checkpointing: bool) -> None:
    """Run in a fresh process: print the peak RSS growth of one forward + backward, as JSON."""
    batch, length, input_size, hidden = MEMORY_SIZE
    torch.manual_seed(0)
    layer = TWINS[layer_name][0](input_size, hidden, batch_first=True, gradient_checkpointing=checkpointing)
    x = torch.randn(batch, length, input_size, requires_grad=True)
    with torch.no_grad():  # warm the kernels up without keeping anything for backward
        layer(x[:, :50])
    with open("/proc/self/statm") as statm:
        resident_before = int(statm.read().split()[1]) * resource.getpagesize()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    output, _ = layer(x)
    output.sum().backward()
    seconds = time.perf_counter() - start
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_growth_bytes": peak_after - resident_before, "peak_before_bytes": peak_before,
                      "resident_before_bytes": resident_before, "seconds": seconds}))


def memory_rows(progress: Progress, threads: int | None) -> list[dict]:
    task = progress.add_task("peak memory", total=6)
    rows = []
    for layer_name in TWINS:
        measured = {}
        for checkpointing in (False, True):
            progress.update(task, description=f"peak memory {layer_name} checkpointing={checkpointing}")
            command = [sys.executable, __file__, "--memory-child", layer_name, str(int(checkpointing))]
            if threads:
                command += ["--threads", str(threads)]
            completed = subprocess.run(command, capture_output=True, text=True, check=True)
            measured[checkpointing] = json.loads(completed.stdout.strip().splitlines()[-1])
            progress.advance(task)
        rows.append({"layer": f"rnnlab.{layer_name}", "plain_mb": measured[False]["peak_growth_bytes"] / 2**20,
                     "checkpointed_mb": measured[True]["peak_growth_bytes"] / 2**20,
                     "cut": measured[False]["peak_growth_bytes"] / measured[True]["peak_growth_bytes"],
                     "time_ratio": measured[True]["seconds"] / measured[False]["seconds"]})
    return rows


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="first size only, fewer repeats")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice); on a machine busy with other work, 1 "
                             "avoids OpenMP threads spin-waiting for each other, which distorts every figure")
    parser.add_argument("--memory-child", nargs=2, metavar=("LAYER", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child[0], bool(int(args.memory_child[1])))
        return

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        timings = time_rows(args.quick, progress)
        memory = memory_rows(progress, args.threads)

    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    console.print(f"Machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
                  f"Python {platform.python_version()}; load average at the end {' '.join(load)}.\n", highlight=False)
    console.print("| layer | vs | (batch, length, input, hidden) | rnnlab ms | torch.nn ms | ratio |", highlight=False)
    console.print("|---|---|---|---:|---:|---:|", highlight=False)
    for row in timings:
        console.print(f"| {row['layer']} | {row['reference']} | {row['size']} | {row['ours_ms']:.1f} | "
                      f"{row['reference_ms']:.1f} | {row['ratio']:.2f}× |", highlight=False)
    batch, length, input_size, hidden = MEMORY_SIZE
    console.print(f"\nPeak memory of forward + backward at (batch, length, input, hidden) = "
                  f"({batch}, {length}, {input_size}, {hidden}) (growth of peak RSS in a fresh process):\n",
                  highlight=False)
    console.print("| layer | plain MB | gradient_checkpointing MB | memory cut | time with / without |", highlight=False)
    console.print("|---|---:|---:|---:|---:|", highlight=False)
    for row in memory:
        console.print(f"| {row['layer']} | {row['plain_mb']:.0f} | {row['checkpointed_mb']:.0f} | {row['cut']:.1f}× | "
                      f"{row['time_ratio']:.2f}× |", highlight=False)


if __name__ == "__main__":
    main()
