"""Training throughput of AR, MDM and ARMD at GPT-2-small shape on one GPU, through ``training.train_model``.

    python benchmarks/gpu_train.py --steps 30 --batch 16 --json out.json     # on a CUDA machine
    python benchmarks/gpu_train.py --smoke                                  # CPU: tiny shapes, 3 steps

Runs the real training loop (bf16 autocast, ``torch.compile``, AdamW, grad clipping, EMA) on the
embedded Shakespeare with GPT-2 BPE (OpenWebText needs a download; the model cannot tell the
difference in speed), then reads the per-step times from each run's metrics log. Tokens/s is the
median over the steps after the first ``--skip`` (compilation). MFU follows nanoGPT:
(6 P + 12 L d N) FLOPs per token / peak, with P the parameter count — the FLOPs of a plain
transformer of that size, so ARMD's figure is "GPT-equivalent" (its own forward does about
(L + L2s - 1) / L times more matmul work, see benchmarks/train_step.py).
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
from minarmd import throughput  # noqa: E402
from minarmd.train_config import TrainConfig  # noqa: E402
from minarmd.training import train_model  # noqa: E402

def peak_flops() -> float | None:
    """This GPU's dense bf16 peak (``throughput.PEAKS``), or None on a CPU or an unknown GPU."""
    if not torch.cuda.is_available():
        return None
    try:
        return throughput.peak_flops(torch.cuda.get_device_name())
    except ValueError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=8, help="steps left out of the median (compilation)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: checks the script runs")
    ap.add_argument("--runs", default="ar,armd,armd-sbp,mdm")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    shape = dict(n_layer=2, n_head=2, n_embd=32, seq_len=64, compile=False, bf16=False) if args.smoke else {}
    steps, skip = (3, 1) if args.smoke else (args.steps, args.skip)
    specs = {"ar": dict(model="ar"), "armd": dict(model="armd"), "mdm": dict(model="mdm"),
             "armd-sbp": dict(model="armd", order="sbp")}
    rows = []
    for name in args.runs.split(","):
        out = Path(tempfile.mkdtemp()) / name
        cfg = TrainConfig.from_preset("gpt2-small", data="shakespeare", tokenizer="gpt2", max_steps=steps,
                                      batch_size=args.batch, grad_accum=1, warmup=10, eval_every=0, eval_windows=4,
                                      ckpt_every=10 ** 9, out=str(out), i_ar=0, i_perm=1, **{**specs[name], **shape})
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        summary = train_model(cfg, overwrite=True)
        wall = time.perf_counter() - t0
        dts = [r["dt"] for r in map(json.loads, open(out / "metrics.jsonl")) if "dt" in r][skip:]
        tok_s = cfg.batch_size * cfg.seq_len / statistics.median(dts)
        flops_per_token = 6 * summary["num_params"] + 12 * cfg.n_layer * cfg.n_embd * cfg.seq_len
        peak = peak_flops()
        row = {"run": name, "params": summary["num_params"], "tokens_per_s": tok_s,
               "mfu_gpt_equivalent": flops_per_token * tok_s / peak if peak else None,
               "first_step_s": json.loads(open(out / "metrics.jsonl").readline())["dt"],
               "wall_s": wall, "final_loss": summary["final_train_loss"],
               "max_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None}
        rows.append(row)
        print(json.dumps(row), flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    base = next((r["tokens_per_s"] for r in rows if r["run"] == "ar"), None)
    print(f"\ndevice: {device}, torch {torch.__version__}, batch {args.batch} x {1024 if not args.smoke else 64}")
    for r in rows:
        mfu = f"{100 * r['mfu_gpt_equivalent']:.1f} %" if r["mfu_gpt_equivalent"] else "n/a"
        ratio = f"{base / r['tokens_per_s']:.2f}x AR's time per token" if base else ""
        print(f"{r['run']:>9}: {r['tokens_per_s']:>9.0f} tokens/s  MFU(GPT-equiv) {mfu:>7}  {ratio}  "
              f"first step {r['first_step_s']:.1f} s  peak mem {r['max_mem_gib'] or 0:.1f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
