"""``python -m minarmd``: train a tiny ARMD on the embedded Shakespeare, evaluate it, sample from it.

Everything runs offline on the CPU (2 to 4 minutes on 2 cores):

1. train the ``quickstart`` preset (the ``tiny`` shape: 4 layers, width 128, character level, N = 128;
   8 windows a step, lr 3e-3, 2200 steps, the most held-out likelihood we found for the time) with the
   progressive permutation schedule — a progress bar shows loss and tokens/s;
2. evaluate on held-out texts under three protocols: exact left-to-right NLL, NELBO under random
   orders, NELBO under T = 8 masking trajectories (nats/token and bits/char);
3. print samples with the KV cache: left to right (S = 1), strided block-parallel with S = 2 and 4
   (S + N/S - 1 network calls instead of N) and in a random order, each with its calls and wall
   time, beside S = 1 without the cache; then text in, text out (a prompt string, ``generate_text``);
   then one infilling example: a held-out passage with its middle removed, filled in given the text
   on both sides.

The run directory (``--out``, default ``runs/quickstart``) keeps the checkpoint, the metrics log and
the loss curve. ``python -m minarmd.demo`` is the earlier one-sentence walk-through of the method.
"""
from __future__ import annotations

import argparse
import time

import torch

from .data import load_data
from .evaluate import evaluate
from .sampler import FREE, generate
from .textgen import generate_text
from .checkpoint import load_model
from .cli import run_cli
from .validation import check_int
from .train_config import TrainConfig
from .training import train_model

QUICK = TrainConfig.from_preset("quickstart")  # the tiny shape, tuned for this job's time (train_config.py)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m minarmd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=QUICK.max_steps,
                        help="training steps (quickstart preset: 8 windows of 128 characters each)")
    parser.add_argument("--out", default="runs/quickstart", help="run directory (overwritten)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-windows", type=int, default=64, help="validation windows of 128 characters")
    parser.add_argument("--sample-len", type=int, default=128, help="characters per sample")
    return run_cli(parser, argv, _run)


def _run(args: argparse.Namespace) -> dict:
    check_int("--sample-len", args.sample_len, minimum=3)
    if args.sample_len > TrainConfig().seq_len:  # before minutes of training, not after
        raise ValueError(f"--sample-len {args.sample_len} exceeds the tiny model's {TrainConfig().seq_len} positions: "
                         f"pass --sample-len {TrainConfig().seq_len} or less")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    print("1. Training a tiny ARMD (preset 'quickstart', character-level Shakespeare, embedded; CPU)")
    # the preset's 50 warm-up steps, fewer for a shorter run (a warm-up longer than the run is refused)
    warmup = min(QUICK.warmup, max(args.max_steps, 0))
    cfg = TrainConfig.from_preset("quickstart", model="armd", data="shakespeare", max_steps=args.max_steps,
                                  out=args.out, seed=args.seed, eval_every=0, eval_windows=args.eval_windows,
                                  warmup=warmup)
    summary = train_model(cfg, overwrite=True)
    print(f"   {summary['num_params'] / 1e6:.2f}M parameters, {cfg.max_steps} steps in "
          f"{summary['train_time_s']:.0f} s ({summary['tokens_per_s']:.0f} tokens/s); "
          f"final train loss {summary['final_train_loss']:.3f} nats/char")

    print("\n2. Validation (held-out texts), every number with its protocol")
    model, _, tok = load_model(f"{args.out}/ckpt.pt")
    data = load_data("shakespeare")
    windows = data.eval_windows(cfg.seq_len, args.eval_windows)
    results = evaluate(model, windows, draws=4, T=8, seed=args.seed)
    for est in results.values():
        print(f"   {est.describe()}, {est.bits_per_char(data.chars_per_token):.3f} bits/char")

    print("\n3. Samples (KV cache; strided block-parallel with S streams: S + N/S - 1 calls)")
    n, gen = args.sample_len, torch.Generator().manual_seed(args.seed)
    runs = {"left to right, S=1": dict(), "strided, S=2": dict(streams=2), "strided, S=4": dict(streams=4),
            "random order, S=1": dict(order="random"), "left to right, S=1, no KV cache": dict(cache=False)}
    samples = {}
    for name, kwargs in runs.items():
        t0 = time.perf_counter()
        out = generate(model, n, generator=gen, **kwargs)
        dt = time.perf_counter() - t0
        samples[name] = tok.decode(out.tokens[0].tolist())
        print(f"--- {name}: {out.calls} network calls, {dt:.2f} s ---\n{samples[name]}\n")

    print("4. Text in, text out: a prompt string, S = 2 streams (generate_text)")
    text = generate_text(model, tok, prompt="ROMEO:\n", max_new_tokens=n - 7, streams=2, seed=args.seed)
    samples["prompted"] = text.texts[0]
    print(f"--- {text.calls} network calls, {text.seconds:.2f} s ---\n{text.texts[0]}\n")
    print(f"   the same from the shell: python -m minarmd.sample --ckpt {args.out}/ckpt.pt --prompt \"ROMEO:\" "
          f"--streams 2 --n 3\n")

    print("5. Infilling: a held-out passage with its middle removed (marked [...]), filled in by ARMD")
    passage = data.eval_windows(n, 100)[-1]  # (n,) ids: the 100th held-out window (a dialogue)
    keep = n // 3  # given on each side; the middle third is generated
    template = passage.clone()[None]
    template[:, keep:n - keep] = FREE
    filled = generate(model, template=template, generator=gen).tokens[0]
    left, right = tok.decode(passage[:keep].tolist()), tok.decode(passage[n - keep:].tolist())
    print(f"--- given ---\n{left}[...]{right}\n--- original middle ---\n{tok.decode(passage[keep:n - keep].tolist())}")
    print(f"--- ARMD's middle ---\n{tok.decode(filled[keep:n - keep].tolist())}\n")
    assert torch.equal(filled[:keep], passage[:keep]) and torch.equal(filled[n - keep:], passage[n - keep:])
    samples["infilling"] = tok.decode(filled.tolist())
    print(f"Checkpoint, metrics and loss curve: {args.out}/ (ckpt.pt, metrics.jsonl, loss.png)")
    return {"summary": summary, "results": results, "samples": samples}


if __name__ == "__main__":
    main()
