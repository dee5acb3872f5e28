"""Transformer-XL's effective context, measured (run by hand, not in CI).

1. Trains ``transformer-xl`` on ``charlm`` (the built-in corpus unless ``--data``) with the stateful
   TBPTT of ``rnnlab train``: segments of ``--seq-len`` characters, memory ``--train-mem`` (default:
   one segment), an epoch budget (``--epochs``), so the result does not depend on the machine's load.
2. Evaluates that one trained model on the held-out test text, read as one stream segment by
   segment, with the memory set to 0, 1, 2 and 4 segments (``--mems``): if bpc falls as the memory
   grows, the model uses context beyond its segment.
3. Trains the stateful ``lstm`` at the same parameter budget and epochs, and prints its test bpc
   beside (the seeds' claim: recurrence carries context; here both carry it, one as a state, one as
   a cache of hidden states).

    OMP_NUM_THREADS=1 python bench/transformer_xl.py                    # 300K parameters, 6 epochs
    OMP_NUM_THREADS=1 python bench/transformer_xl.py --epochs 1 --params 60000   # a quick look

Prints a table and writes it as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="charlm text file (default: the built-in corpus)")
    parser.add_argument("--params", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seq-len", type=int, default=100, help="segment length (TBPTT window)")
    parser.add_argument("--train-mem", type=int, default=None, help="memory while training (default: one segment)")
    parser.add_argument("--mems", default="0,1,2,4", help="evaluation memories, in segments")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--no-lstm", action="store_true", help="skip the LSTM reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="write the figures here")
    return parser.parse_args()


def train_model(model: str, args: argparse.Namespace, out: Path, model_options: dict) -> object:
    from rnnlab.train import TrainConfig, train

    config = TrainConfig(
        task="charlm",
        model=model,
        data=args.data,
        seq_len=args.seq_len,
        params=args.params,
        num_layers=args.layers,
        epochs=args.epochs,
        patience=None,
        seed=args.seed,
        out=str(out / model),
        model_options=model_options,
    )
    started = time.perf_counter()
    result = train(config, progress=True)
    print(
        f"{model}: {result.summary['num_parameters']:,} parameters, {result.summary['epochs']} epochs, "
        f"{time.perf_counter() - started:.0f} s wall (shared machine)"
    )
    return result


def evaluate_with_memory(result, mem_len: int) -> float:
    from rnnlab.train.stateful import evaluate_stream

    model, task = result.model, result.task_data
    model.encoder.mem_len = mem_len
    return evaluate_stream(
        model, task.test.tokens, task.spec.to_dict() if hasattr(task.spec, "to_dict") else vars(task.spec), task.meta
    )["bpc"]


def main() -> None:
    args = parse_arguments()
    torch.manual_seed(args.seed)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-txl-"))
    train_mem = args.seq_len if args.train_mem is None else args.train_mem
    xl = train_model("transformer-xl", args, out, {"mem_len": train_mem, "segment_len": args.seq_len})
    rows = []
    for segments in [float(part) for part in args.mems.split(",")]:
        mem_len = round(segments * args.seq_len)
        rows.append({"mem_len": mem_len, "segments": segments, "bpc": evaluate_with_memory(xl, mem_len)})
    figures = {
        "params": args.params,
        "epochs": args.epochs,
        "seq_len": args.seq_len,
        "train_mem": train_mem,
        "transformer_xl_parameters": xl.summary["num_parameters"],
        "memory": rows,
        "baselines": xl.summary.get("baselines") or xl.task_data.baselines,
    }
    if not args.no_lstm:
        lstm = train_model("lstm", args, out, {})
        figures["lstm"] = {"parameters": lstm.summary["num_parameters"], "bpc": lstm.summary["test_metrics"]["bpc"]}

    print(
        f"\ntransformer-xl, {xl.summary['num_parameters']:,} parameters, segment {args.seq_len}, trained with "
        f"memory {train_mem}, {args.epochs} epochs; test bpc by evaluation memory:"
    )
    reference = rows[0]["bpc"]
    for row in rows:
        print(
            f"  mem_len {row['mem_len']:5d} ({row['segments']:g} segments)  bpc {row['bpc']:.4f}  "
            f"({row['bpc'] / reference:.3f}× memory 0)"
        )
    if "lstm" in figures:
        print(
            f"stateful lstm, {figures['lstm']['parameters']:,} parameters, same epochs: test bpc "
            f"{figures['lstm']['bpc']:.4f}"
        )
    print(f"baselines: {figures['baselines']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
