"""Inference speed of the deployment paths, measured in one run (run by hand, not in CI):

* one streaming step at batch 1 (latency) and at batch 64 (throughput, steps per second) for
  PyTorch eager, PyTorch int8, the exported ONNX step model in onnxruntime and its int8 twin;
* the fixed cost of one ``StreamingPredictor.predict`` call on a single window: the call's time
  minus the bare model's time on the same window, so what remains is the Python API's own cost.

Every figure is printed with its ratio to PyTorch eager float measured in the same run.

    python bench/inference.py                       # LSTM and GRU, hidden 128, 2 layers, 1 thread
    python bench/inference.py --hidden 64 --threads 2 --json bench-inference.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnlab.export import OnnxModel, StreamingPredictor, export_onnx, quantize_model
from rnnlab.models import build_model


def spec_for(input_size: int, window: int) -> dict:
    """A forecast task: ``input_size`` features per step, 12 steps ahead of one target."""
    return {
        "task": "forecast",
        "head": "forecast",
        "input_size": input_size,
        "vocab_size": None,
        "num_classes": None,
        "output_shape": [12, 1],
        "seq_len": window,
        "causal": False,
    }


# The clock: "cpu" reads this thread's CPU time (time.thread_time), which a busy machine's
# preemptions do not inflate; right for one thread, where torch and onnxruntime compute on the
# calling thread. "wall" reads the wall clock (time.perf_counter), needed with more threads.
CLOCK = {"cpu": time.thread_time, "wall": time.perf_counter}
clock = time.thread_time


def timed(call, repeats: int) -> tuple[float, float, float]:
    """Median, 25th and 75th percentile of ``call``'s time in milliseconds, after warm-up."""
    for _ in range(max(5, repeats // 10)):
        call()
    times = []
    for _ in range(repeats):
        start = clock()
        call()
        times.append(1000.0 * (clock() - start))
    quartiles = statistics.quantiles(times, n=4)
    return statistics.median(times), quartiles[0], quartiles[2]


def step_callers(model, onnx_float: OnnxModel, onnx_int8: OnnxModel, quantized, batch: int, input_size: int):
    """One streaming step of each runtime at ``batch``, from a state that has already seen a few steps."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, input_size, generator=generator)
    x_numpy = x.numpy()
    with torch.inference_mode():
        _, torch_state = model.step(x)
        _, int8_state = quantized.step(x)
    _, float_state = onnx_float.run_step(x_numpy)
    _, onnx_int8_state = onnx_int8.run_step(x_numpy)

    def torch_step(module, state):
        def call():
            with torch.inference_mode():
                module.step(x, state)

        return call

    return {
        "PyTorch eager": torch_step(model, torch_state),
        "PyTorch int8": torch_step(quantized, int8_state),
        "onnxruntime": lambda: onnx_float.run_step(x_numpy, float_state),
        "onnxruntime int8": lambda: onnx_int8.run_step(x_numpy, onnx_int8_state),
    }


def bench_family(name: str, args, scratch: Path) -> dict:
    torch.manual_seed(0)
    model = build_model(
        name, spec_for(args.features, args.window), hidden_size=args.hidden, num_layers=args.layers
    ).eval()
    quantized, _ = quantize_model(model)
    float_path, int8_path = scratch / f"{name}-step.onnx", scratch / f"{name}-step-int8.onnx"
    check = export_onnx(model, float_path, mode="step")
    export_onnx(model, int8_path, mode="step", quantize="int8")
    onnx_float = OnnxModel(float_path, threads=args.threads)
    onnx_int8 = OnnxModel(int8_path, threads=args.threads)
    result = {
        "parameters": model.num_parameters,
        "onnx_check_max_abs_diff": check.max_abs_diff,
        "file_bytes": {"float": float_path.stat().st_size, "int8": int8_path.stat().st_size},
    }

    for batch, key in ((1, "step_latency_ms"), (64, "step_throughput")):
        rows = {}
        for runtime, call in step_callers(model, onnx_float, onnx_int8, quantized, batch, args.features).items():
            median, low, high = timed(call, args.repeats)
            rows[runtime] = {
                "median_ms": median,
                "q1_ms": low,
                "q3_ms": high,
                "steps_per_second": batch * 1000.0 / median,
            }
        result[key] = rows

    # The Python API's fixed cost: predict on one window, minus the bare model on the same window.
    window = np.random.default_rng(0).standard_normal((args.window, args.features)).astype(np.float32)
    window_tensor = torch.from_numpy(window)[None]
    predictor = StreamingPredictor(model)

    def bare():
        with torch.inference_mode():
            model(window_tensor)

    bare_ms, predict_ms, fixed = paired(bare, lambda: predictor.predict(window), args.repeats)
    onnx_predictor = StreamingPredictor(float_path, threads=args.threads)
    onnx_predict_ms, _, _ = timed(lambda: onnx_predictor.predict(window), max(20, args.repeats // 5))
    result["predict"] = {
        "window_steps": args.window,
        "predict_ms": predict_ms,
        "bare_model_ms": bare_ms,
        "fixed_cost_ms": fixed[0],
        "fixed_cost_q1_ms": fixed[1],
        "fixed_cost_q3_ms": fixed[2],
        "onnx_step_file_predict_ms": onnx_predict_ms,
    }
    return result


def paired(reference, call, repeats: int) -> tuple[float, float, tuple[float, float, float]]:
    """Median times of ``reference`` and ``call`` run alternately, and the median, 25th and 75th
    percentile of their per-pair difference: on a busy machine a slow moment hits both calls of a
    pair, so the difference keeps only what ``call`` adds."""
    for _ in range(max(5, repeats // 10)):
        reference()
        call()
    first, second = [], []
    for _ in range(repeats):
        start = clock()
        reference()
        middle = clock()
        call()
        end = clock()
        first.append(1000.0 * (middle - start))
        second.append(1000.0 * (end - middle))
    differences = [b - a for a, b in zip(first, second)]
    quartiles = statistics.quantiles(differences, n=4)
    return (
        statistics.median(first),
        statistics.median(second),
        (statistics.median(differences), quartiles[0], quartiles[2]),
    )


def print_family(name: str, result: dict, args) -> None:
    print(
        f"\n{name.upper()}  hidden {args.hidden}, {args.layers} layers, {args.features} features "
        f"({result['parameters']:,} parameters); onnx check max |ORT − PyTorch| = "
        f"{result['onnx_check_max_abs_diff']:.1e}; step file {result['file_bytes']['float'] / 1024:.0f} KiB, "
        f"int8 {result['file_bytes']['int8'] / 1024:.0f} KiB"
    )
    latency, throughput = result["step_latency_ms"], result["step_throughput"]
    reference_latency = latency["PyTorch eager"]["median_ms"]
    reference_throughput = throughput["PyTorch eager"]["steps_per_second"]
    print(f"  {'runtime':<18}{'step, batch 1':>22}{'× eager':>9}{'batch 64, steps/s':>22}{'× eager':>9}")
    for runtime in latency:
        one, many = latency[runtime], throughput[runtime]
        print(
            f"  {runtime:<18}{one['median_ms']:>10.4f} ms [{one['q1_ms']:.3f}–{one['q3_ms']:.3f}]"
            f"{reference_latency / one['median_ms']:>8.2f}×"
            f"{many['steps_per_second']:>22,.0f}{many['steps_per_second'] / reference_throughput:>8.2f}×"
        )
    predict = result["predict"]
    print(
        f"  predict(one window of {predict['window_steps']} steps): {predict['predict_ms']:.3f} ms, bare model "
        f"{predict['bare_model_ms']:.3f} ms → fixed cost of the API {predict['fixed_cost_ms']:.3f} ms "
        f"[{predict['fixed_cost_q1_ms']:.3f}–{predict['fixed_cost_q3_ms']:.3f}] (goal < 5 ms); "
        f"on the ONNX step file {predict['onnx_step_file_predict_ms']:.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="lstm,gru", help="comma-separated recurrent families (rnn, lstm, gru)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--window", type=int, default=48, help="steps in the predict window")
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and onnxruntime alike")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCK),
        help="cpu: this thread's CPU time (default with one thread); wall: elapsed time (default with more)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)  # a benchmark script: both runtimes get the same threads
    global clock
    args.clock = args.clock or ("cpu" if args.threads == 1 else "wall")
    clock = CLOCK[args.clock]
    import onnxruntime

    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {platform.machine()}, "
        f"{args.threads} thread(s), {args.clock} clock; medians over {args.repeats} calls [quartiles]"
    )
    figures = {"settings": vars(args) | {"json": str(args.json) if args.json else None}, "families": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.families.split(","):
            figures["families"][name] = result = bench_family(name, args, Path(scratch))
            print_family(name, result, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
