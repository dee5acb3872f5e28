"""Generation speed at batch 1, measured in one run (run by hand, not in CI): characters per second of

* stateful generation (``rnnlab.generate``): the prompt read once, then one step of
  ``model.step_runner()`` (the compiled stacked-layer step) per new character with the recurrent
  state carried;
* the reference: re-running the model over a window of the last ``--window`` characters (100 by
  default) for every new character, as the seed's generator does and as a model without a state
  must.

Both sample the same way (temperature 1, a fixed seed) from the same model; the ratio is printed.
Times are this thread's CPU time (``time.thread_time``, not inflated by preemption on a busy machine;
one thread) with the wall clock beside; each figure is the median of ``--repeats`` runs.

    python bench/generate.py                       # 2×256 LSTM on the built-in corpus's vocabulary
    python bench/generate.py --run runs/charlm-lstm --chars 300
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnlab.generate import generate_stream


def model_and_vocab(args: argparse.Namespace):
    if args.run:
        from rnnlab.train import load_run

        run = load_run(args.run)
        return run.model, run.task["meta"]["vocab"], f"the run in {args.run}"
    from rnnlab.data import load_task
    from rnnlab.models import build_model

    task = load_task("charlm", seq_len=args.window)
    torch.manual_seed(0)
    model = build_model(args.model, task.spec, hidden_size=args.hidden, num_layers=args.layers).eval()
    return (
        model,
        task.meta["vocab"],
        f"an untrained {args.layers}×{args.hidden} {args.model} (speed does not depend on training)",
    )


def measure(model, vocab, prompt: str, chars: int, *, stateful: bool, repeats: int) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) per generated character."""
    cpu, wall = [], []
    for repeat in range(repeats):
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        text = "".join(
            generate_stream(model, prompt, chars, temperature=1.0, seed=repeat, vocab=vocab, stateful=stateful)
        )
        cpu.append((time.thread_time() - start_cpu) / len(text))
        wall.append((time.perf_counter() - start_wall) / len(text))
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a charlm run directory (default: an untrained model)")
    parser.add_argument("--model", default="lstm", choices=["lstm", "gru", "rnn"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--window", type=int, default=100, help="characters re-read per step by the reference")
    parser.add_argument("--chars", type=int, default=200, help="characters generated per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, vocab, what = model_and_vocab(args)
    model.spec["seq_len"] = args.window  # the reference re-reads this many characters
    # a prompt as long as the window, so the reference re-reads a full window from the first character
    prompt = ("The quick brown fox jumps over the lazy dog. " * 4)[: args.window]
    prompt = "".join(c if c in vocab else " " for c in prompt)
    with torch.inference_mode():
        "".join(generate_stream(model, prompt, 5, seed=0, vocab=vocab))  # warm-up
    stateful = measure(model, vocab, prompt, args.chars, stateful=True, repeats=args.repeats)
    window = measure(model, vocab, prompt, args.chars, stateful=False, repeats=args.repeats)

    print(f"generation at batch 1 · {what} · {args.threads} thread(s) · {args.chars} characters × {args.repeats}")
    print(f"{'method':<40}{'chars/s (CPU)':>15}{'chars/s (wall)':>16}{'ratio':>8}")
    print(
        f"{'stateful: one step per character':<40}{1 / stateful[0]:>15,.0f}{1 / stateful[1]:>16,.0f}"
        f"{window[0] / stateful[0]:>7.1f}×"
    )
    print(f"{f're-run a {args.window}-character window':<40}{1 / window[0]:>15,.0f}{1 / window[1]:>16,.0f}{1.0:>7.1f}×")
    print(
        f"stateful generation is {window[0] / stateful[0]:.1f}× faster per character (CPU time; "
        f"{window[1] / stateful[1]:.1f}× by the wall clock)"
    )


if __name__ == "__main__":
    main()
