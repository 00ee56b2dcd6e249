"""GPT-2 small into an ARMD on one GPU: the ``gpt2-small-adapt`` recipe, short, through ``training.train_model``.

    python benchmarks/gpu_adapt.py --steps 40 --json out.json      # a CUDA machine (part of gpu_check.sh)
    python benchmarks/gpu_adapt.py --smoke                         # CPU: a tiny random GPT-2, 3 steps

The source is Hugging Face's pretrained ``gpt2`` where the hub (or its cache) is reachable; otherwise a
randomly initialised ``GPT2LMHeadModel`` of GPT-2 small's shape (then the loss check says only that
training works, not what the warm start buys). It is saved with ``save_pretrained`` and trained with
``init_from_hf=<that folder>`` on the embedded Shakespeare in GPT-2 BPE (offline), bf16 + compile:
the same path as ``python -m minarmd.train --preset gpt2-small-adapt``. Printed: tokens/s (median
after the first ``--skip`` steps), MFU (GPT-equivalent, as gpu_train.py), the first and last losses,
whether the loss went down, and the peak memory. Without a GPU (and without ``--smoke``) it says so
and exits 0; without ``transformers`` it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_train import peak_flops  # noqa: E402  (this GPU's bf16 peak, or None)
from minarmd.train_config import TrainConfig  # noqa: E402
from minarmd.training import train_model  # noqa: E402


def source_model(smoke: bool):
    """(a GPT2LMHeadModel, 'pretrained gpt2' or 'random ...')."""
    import transformers
    if smoke:
        config = transformers.GPT2Config(vocab_size=50257, n_positions=65, n_embd=32, n_layer=2, n_head=2)
        return transformers.GPT2LMHeadModel(config), "random tiny GPT-2 (smoke)"
    try:
        return transformers.GPT2LMHeadModel.from_pretrained("gpt2"), "pretrained gpt2 (124M)"
    except OSError:
        return transformers.GPT2LMHeadModel(transformers.GPT2Config()), "random GPT-2 small (no hub: throughput only)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=10, help="steps left out of the median (compilation)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--smoke", action="store_true", help="CPU, a tiny random GPT-2: checks the script runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.smoke:
        print("gpu_adapt: no CUDA GPU visible to torch: skipped (run with --smoke for the CPU check)")
        return 0
    try:
        hf, what = source_model(args.smoke)
    except ImportError:
        print("gpu_adapt: transformers is not installed (pip install transformers): skipped")
        return 0
    work = Path(tempfile.mkdtemp())
    hf.save_pretrained(work / "source")
    shape = dict(n_layer=2, n_head=2, n_embd=32, seq_len=64, compile=False, bf16=False) if args.smoke else {}
    steps, skip = (3, 1) if args.smoke else (args.steps, args.skip)
    cfg = TrainConfig.from_preset("gpt2-small-adapt", data="shakespeare", init_from_hf=str(work / "source"),
                                  max_steps=steps, batch_size=args.batch, grad_accum=1, warmup=min(10, steps),
                                  i_ar=steps // 3, i_perm=3 * steps // 4, eval_every=0, eval_windows=4,
                                  ckpt_every=10 ** 9, out=str(work / "run"), **shape)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    summary = train_model(cfg, overwrite=True)
    wall = time.perf_counter() - t0
    recs = [r for r in map(json.loads, open(work / "run" / "metrics.jsonl")) if "dt" in r]
    dts = [r["dt"] for r in recs][skip:] or [recs[-1]["dt"]]
    tok_s = cfg.batch_size * cfg.seq_len / statistics.median(dts)
    peak = peak_flops()
    flops = 6 * summary["num_params"] + 12 * cfg.n_layer * cfg.n_embd * cfg.seq_len
    first, last = statistics.fmean(r["loss"] for r in recs[:3]), statistics.fmean(r["loss"] for r in recs[-3:])
    row = {"source": what, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           "params": summary["num_params"], "steps": steps, "batch": cfg.batch_size, "seq_len": cfg.seq_len,
           "tokens_per_s": tok_s, "mfu_gpt_equivalent": flops * tok_s / peak if peak else None,
           "loss_first3": first, "loss_last3": last, "loss_went_down": last < first, "wall_s": wall,
           "max_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None}
    print(json.dumps(row))
    mfu = f"{100 * row['mfu_gpt_equivalent']:.1f} %" if row["mfu_gpt_equivalent"] else "n/a"
    print(f"gpt2 -> ARMD ({what}) on {row['device']}: {tok_s:.0f} tokens/s, MFU (GPT-equiv.) {mfu}, "
          f"loss {first:.3f} -> {last:.3f} over {steps} steps ({'down' if last < first else 'NOT down'}), "
          f"wall {wall:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
