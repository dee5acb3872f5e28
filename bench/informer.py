"""Informer's memory and time against full attention, lookback 96 to 1536 (run by hand, not in CI).

One training step (forward + backward of the MSE against a random target) of each model, at each
lookback, every measurement in a fresh process so no allocator cache carries over:

* ``informer``       ProbSparse self-attention, distilling, generative decoder (``models/informer.py``);
* ``informer-full``  the same skeleton with canonical softmax attention (its ``L × L`` weights
                     written out and kept for backward): the baseline of the paper's Table 4/Fig. 4;
* ``transformer``    rnnlab's ``transformer`` model with the same parameter count, whose attention is
                     PyTorch's fused ``scaled_dot_product_attention`` (on the CPU a flash-attention
                     kernel that never holds the ``L × L`` weights either).

Memory is reported two ways: the peak resident set size the step adds to the process (``VmHWM``
after a reset, minus the resident size before the step), and the bytes autograd saves for backward
(plus 4× the parameters, the Adam step's holding; ``rnnlab.lab.measures.train_memory_bytes``),
which does not depend on the allocator. Time is the median thread CPU time of ``--repeats`` steps
(one thread), so a loaded machine slows it less than the wall clock. Ratios are printed against
both references, all measured in this run.

    OMP_NUM_THREADS=1 python bench/informer.py
    OMP_NUM_THREADS=1 python bench/informer.py --lookbacks 96,384 --batch 4 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

VARIANTS = ("informer", "informer-full", "transformer")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookbacks", default="96,192,384,768,1536")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=64, help="d_model of the informer")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--features", type=int, default=7, help="input features per step (the paper's ETT has 7)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--label-len",
        type=int,
        default=None,
        help="the decoder's start token (default: the model's, half the lookback)",
    )
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "LOOKBACK"), help=argparse.SUPPRESS)
    return parser.parse_args()


def build(variant: str, lookback: int, args: argparse.Namespace):
    import torch

    from rnnlab.models import build_model, count_parameters

    spec = dict(
        task="forecast", head="forecast", input_size=args.features, output_shape=[args.horizon, 1], seq_len=lookback
    )
    torch.manual_seed(0)
    informer = build_model(
        "informer",
        spec,
        hidden_size=args.width,
        label_len=args.label_len,
        attention="full" if variant == "informer-full" else "prob",
    )
    if variant != "transformer":
        return informer
    # the same parameter count (the informer's decoder and distilling layers count too)
    return build_model("transformer", spec, params=count_parameters(informer), num_layers=2)


def child(variant: str, lookback: int, args: argparse.Namespace) -> None:
    import torch

    from rnnlab.lab.measures import peak_rss_mb, reset_peak_rss, train_memory_bytes
    from rnnlab.models import count_parameters

    torch.set_num_threads(1)
    model = build(variant, int(lookback), args).train()
    x = torch.randn(args.batch, int(lookback), args.features)
    y = torch.randn(args.batch, args.horizon, 1)
    loss_fn = torch.nn.functional.mse_loss

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    resident_before = _resident_mb()
    reset_peak_rss()
    step()
    peak_added = peak_rss_mb() - resident_before
    times = []
    for _ in range(args.repeats):
        started = time.thread_time()
        step()
        times.append(time.thread_time() - started)
    saved = train_memory_bytes(model, x, y, loss_fn) / 2**20
    print(
        json.dumps(
            {
                "variant": variant,
                "lookback": int(lookback),
                "parameters": count_parameters(model),
                "peak_mb": peak_added,
                "saved_mb": saved,
                "seconds": statistics.median(times),
            }
        )
    )


def _resident_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def measure(variant: str, lookback: int, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        str(lookback),
        "--batch",
        str(args.batch),
        "--width",
        str(args.width),
        "--horizon",
        str(args.horizon),
        "--features",
        str(args.features),
        "--repeats",
        str(args.repeats),
    ] + ([] if args.label_len is None else ["--label-len", str(args.label_len)])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} at lookback {lookback} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_arguments()
    if args.child:
        child(args.child[0], int(args.child[1]), args)
        return
    lookbacks = [int(part) for part in args.lookbacks.split(",")]
    rows = []
    for lookback in lookbacks:
        row = {"lookback": lookback}
        for variant in VARIANTS:
            row[variant] = measure(variant, lookback, args)
            print(f"  measured {variant} at lookback {lookback}: {row[variant]}", file=sys.stderr)
        rows.append(row)
    parameters = {variant: rows[0][variant]["parameters"] for variant in VARIANTS}
    start = "half the lookback" if args.label_len is None else args.label_len
    print(
        f"batch {args.batch}, d_model {args.width}, horizon {args.horizon}, {args.features} features, "
        f"start token {start}; "
        f"parameters: " + ", ".join(f"{v} {n:,}" for v, n in parameters.items())
    )
    print("one training step (forward + backward); memory in MiB; × = informer / reference")
    header = f"{'lookback':>8} | {'peak RSS added':^34} | {'saved for backward':^34} | {'CPU seconds':^34}"
    print(header)
    print(
        f"{'':>8} | "
        + " | ".join(f"{'informer':>8} {'full':>7} {'transf.':>7} {'×full':>5} {'×tr.':>4}" for _ in range(3))
    )
    for row in rows:
        cells = []
        for key in ("peak_mb", "saved_mb", "seconds"):
            mine, full, transformer = (row[v][key] for v in VARIANTS)
            cells.append(f"{mine:8.2f} {full:7.2f} {transformer:7.2f} {mine / full:5.2f} {mine / transformer:4.2f}")
        print(f"{row['lookback']:>8} | " + " | ".join(cells))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"arguments": {k: v for k, v in vars(args).items() if k != "child"}, "rows": rows}, handle, indent=2
            )


if __name__ == "__main__":
    main()
