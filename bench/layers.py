"""rnnlab's layers against their torch.nn twins, measured in one run on this machine.

    python bench/layers.py [--quick]

Prints, as a Markdown table:

* forward + backward time of rnnlab.RNN / LSTM / GRU (fast path) divided by torch.nn's, at
  (batch, length, input, hidden) = (32, 100, 32, 128), (32, 1000, 32, 128), (256, 100, 64, 512);
  the two run on the same weights and input, interleaved (A B A B ...). The ratio is the median
  over pairs of adjacent runs of their ratio of *CPU time* (``time.process_time``): on a machine shared with other
  work, wall-clock time mostly measures the waits for a core (two identical kernels then differ by
  ±40%), while the CPU time a run consumes does not wait. Run with ``--threads 1`` on a busy
  machine (CPU time then is that one thread's work; with more threads it also counts OpenMP
  spin-waiting). The wall-clock ratio is printed beside it;
* the layer-norm variants (rnnlab's loop over cells) against torch.nn.LSTM / GRU without it;
* peak memory of forward + backward at length 4000 with and without gradient checkpointing.
  Each is measured in a fresh process as its peak resident set during the step (``VmHWM``, reset
  just before the step through ``/proc/self/clear_refs``) minus the resident set before it: what
  the step added to the process at its worst, the output and everything saved for backward
  included. The child runs with glibc's mmap
  threshold fixed at 64 KiB, so a freed tensor leaves the resident set at once and the peak
  reflects what was alive, not how the allocator's heap happened to fragment.

Acceptance (issue 3): standard layers ≤ 1.05× torch.nn; checkpointing cuts peak memory at
length 4000 by ≥ 3×.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

import rnnlab
from rnnlab.system import cpu_model

SIZES = [(32, 100, 32, 128), (32, 1000, 32, 128), (256, 100, 64, 512)]
TWINS = {"RNN": (rnnlab.RNN, nn.RNN), "LSTM": (rnnlab.LSTM, nn.LSTM), "GRU": (rnnlab.GRU, nn.GRU)}
MEMORY_SIZE = (32, 4000, 32, 128)
console = Console()


def forward_backward_seconds(layer: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(CPU seconds of the process, wall-clock seconds) of one forward + backward."""
    x = x.detach().requires_grad_(True)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    output, _ = layer(x)
    output.sum().backward()
    seconds = time.process_time() - cpu_start, time.perf_counter() - wall_start
    layer.zero_grad(set_to_none=True)
    return seconds


def interleaved_times(ours: nn.Module, reference: nn.Module, x: torch.Tensor, repeats: int) -> tuple[list, list]:
    forward_backward_seconds(ours, x)  # warm-up: oneDNN primitives, allocator
    forward_backward_seconds(reference, x)
    ours_times, reference_times = [], []
    for _ in range(repeats):
        ours_times.append(forward_backward_seconds(ours, x))
        reference_times.append(forward_backward_seconds(reference, x))
    return ours_times, reference_times


def repeats_for(size: tuple[int, int, int, int], quick: bool) -> int:
    batch, length, _, hidden = size
    work = batch * length * hidden * hidden
    return max(3, min(15, int(2e9 / work))) if quick else max(9, min(41, int(2e10 / work)))


def dispatch_overhead_us(calls: int = 2000, rounds: int = 7) -> dict[str, tuple[float, float]]:
    """CPU µs per call of rnnlab's layer and torch.nn's on a one-step, one-sequence input.

    The fast path runs the same kernel as torch.nn, so what rnnlab adds is the Python around it
    (checks, dispatch); on an input this small that is all there is to see.
    """
    overhead = {}
    for name, (ours_class, torch_class) in TWINS.items():
        reference, ours = torch_class(8, 8), ours_class(8, 8)
        ours.load_state_dict(reference.state_dict())
        x = torch.randn(1, 1, 8)
        per_call = {"ours": [], "reference": []}
        with torch.no_grad():
            for _ in range(rounds):
                for label, layer in (("ours", ours), ("reference", reference)):
                    start = time.process_time()
                    for _ in range(calls):
                        layer(x)
                    per_call[label].append(1e6 * (time.process_time() - start) / calls)
        overhead[name] = (statistics.median(per_call["ours"]), statistics.median(per_call["reference"]))
    return overhead


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
        ours_times, reference_times = interleaved_times(ours, reference, x, repeats_for(size, quick or bool(extras)))
        # the ratio within each adjacent pair, then the median: a pair shares the machine's load of its moment
        ours_cpu, reference_cpu = (statistics.median(t[0] for t in times) for times in (ours_times, reference_times))
        rows.append(
            {
                "layer": f"rnnlab.{name}" + (" (layer_norm=True)" if extras else ""),
                "reference": f"torch.nn.{name}",
                "size": size,
                "repeats": len(ours_times),
                "ours_ms": 1e3 * ours_cpu,
                "reference_ms": 1e3 * reference_cpu,
                "ratio": statistics.median(a[0] / b[0] for a, b in zip(ours_times, reference_times)),
                "wall_ratio": statistics.median(a[1] / b[1] for a, b in zip(ours_times, reference_times)),
            }
        )
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
    # ru_maxrss would not do: Linux carries it over from the parent across exec. VmHWM belongs to
    # this process's memory map, and writing 5 to clear_refs resets it to the current RSS.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    resident_before = _status_bytes("VmRSS")
    start = time.process_time()
    output, _ = layer(x)
    output.sum().backward()
    seconds = time.process_time() - start
    peak = _status_bytes("VmHWM")
    print(
        json.dumps(
            {"peak_growth_bytes": peak - resident_before, "resident_before_bytes": resident_before, "seconds": seconds}
        )
    )


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field} line")


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
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            completed = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            measured[checkpointing] = json.loads(completed.stdout.strip().splitlines()[-1])
            progress.advance(task)
        rows.append(
            {
                "layer": f"rnnlab.{layer_name}",
                "plain_mb": measured[False]["peak_growth_bytes"] / 2**20,
                "checkpointed_mb": measured[True]["peak_growth_bytes"] / 2**20,
                "cut": measured[False]["peak_growth_bytes"] / measured[True]["peak_growth_bytes"],
                "time_ratio": measured[True]["seconds"] / measured[False]["seconds"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="first size only, fewer repeats")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice); on a machine busy with other work, 1 "
        "avoids OpenMP threads spin-waiting for each other, which distorts every figure",
    )
    parser.add_argument("--memory-child", nargs=2, metavar=("LAYER", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child[0], bool(int(args.memory_child[1])))
        return

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        timings = time_rows(args.quick, progress)
        overhead = dispatch_overhead_us()
        memory = memory_rows(progress, args.threads)

    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    # plain print: the Markdown rows must not be wrapped to the terminal's width
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}, Python {platform.python_version()}; load average at the end {' '.join(load)}.\n"
    )
    paths = "; ".join(f"{name}: {path}" for name, path in rnnlab.layers.active_kernel_paths().items())
    print(f"Paths: {paths}.\n")
    print(
        "Forward + backward: median CPU time of N interleaved runs each, and the median of the N pairs' "
        "ratios (of CPU time; of wall-clock time beside it):\n"
    )
    print("| layer | vs | (batch, length, input, hidden) | N | rnnlab ms | torch.nn ms | ratio | wall-clock ratio |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in timings:
        print(
            f"| {row['layer']} | {row['reference']} | {row['size']} | {row['repeats']} | {row['ours_ms']:.1f} | "
            f"{row['reference_ms']:.1f} | {row['ratio']:.2f}× | {row['wall_ratio']:.2f}× |"
        )
    print(
        "\nPer call on a one-step, one-sequence input (median CPU µs; what rnnlab adds around the same kernel): "
        + "; ".join(
            f"{name} {ours:.0f} vs {reference:.0f} (+{ours - reference:.0f})"
            for name, (ours, reference) in overhead.items()
        )
        + "."
    )
    batch, length, input_size, hidden = MEMORY_SIZE
    print(
        f"\nPeak memory of forward + backward at (batch, length, input, hidden) = "
        f"({batch}, {length}, {input_size}, {hidden}), growth of the peak RSS in a fresh process:\n"
    )
    print("| layer | plain MB | gradient_checkpointing MB | memory cut | CPU time with / without |")
    print("|---|---:|---:|---:|---:|")
    for row in memory:
        print(
            f"| {row['layer']} | {row['plain_mb']:.0f} | {row['checkpointed_mb']:.0f} | {row['cut']:.1f}× | "
            f"{row['time_ratio']:.2f}× |"
        )


if __name__ == "__main__":
    main()
