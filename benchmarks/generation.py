"""Generation speed on the CPU: KV cache, strided block-parallel (SBP) streams, AR and MDM baselines.

For each model size and batch size, one run times (untrained weights: speed does not depend on them):

  * ARMD sequential, left to right, **without** the cache (``generate(cache=False)``: every call
    re-runs the network on the whole prefix) and **with** it;
  * ARMD SBP with S = 2 and S = 4 streams, with the cache (S + N/S - 1 calls);
  * ARMD with a prompt of N/2 tokens (the first call commits it and predicts its rows, then N/2
    calls), with and without the cache;
  * the AR baseline (GPT) with its KV cache (N calls);
  * the MDM baseline, ancestral sampling with T = N, N/2, N/4 steps (at most T calls, each a full
    bidirectional pass over N positions).

Sizes: ``tiny`` = L 4, L2s 2, width 128, 4 heads (0.8M parameters, the tiny preset);
``small`` = L 6, L2s 3, width 256, 8 heads (4.8M, the small-cpu preset); vocabulary 65; N = 256.
All methods of one size and batch run interleaved (rotated order, median of ``--repeats``), so
the ratios printed are measured in one run on the same machine state.

Targets: cache >= 5x faster than no cache, without and with a prompt of N/2 tokens; S = 2 >= 1.8x
and S = 4 >= 3.2x faster than S = 1; ARMD sequential within 1.5x of AR per token.

``--profile`` adds, per size and batch, where one cached call's time goes at S = 1, 2, 4
(torch.profiler: matrix products, attention, other tensor ops, and the Python between them), to
show why fewer calls do not buy the same factor of wall time on a CPU.

Run:  python benchmarks/generation.py            (~13 min on an idle 2-core CPU)
      python benchmarks/generation.py --profile  (+ the per-call profile, ~1 min more)
      python benchmarks/generation.py --quick    (smoke run: N = 32, seconds)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from minarmd import ARMD, ARMDConfig, GPT, MDM, TransformerConfig
from minarmd.sampler import generate, make_template, sample_ar, sample_mdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import machine_info, median_time  # noqa: E402

SIZES = {"tiny": dict(n_layer=4, n_head=4, n_embd=128, n_two_stream=2),
         "small": dict(n_layer=6, n_head=8, n_embd=256, n_two_stream=3)}
VOCAB = 65  # characters of the embedded Shakespeare


def build(size: str, n: int):
    shape = dict(SIZES[size])
    l2s = shape.pop("n_two_stream")
    torch.manual_seed(0)
    armd = ARMD(ARMDConfig(vocab_size=VOCAB, max_len=n, n_two_stream=l2s, **shape)).eval()
    ar = GPT(TransformerConfig(vocab_size=VOCAB, max_len=n, **shape)).eval()
    mdm = MDM(TransformerConfig(vocab_size=VOCAB, max_len=n, **shape)).eval()
    return armd, ar, mdm


def methods(armd, ar, mdm, n: int, batch: int) -> dict:
    """name -> callable returning a Generation."""
    def gen():
        return torch.Generator().manual_seed(0)
    prompted = make_template(n, batch, prompt=torch.randint(0, VOCAB, (n // 2,), generator=gen()))
    return {
        "ARMD S=1, no cache": lambda: generate(armd, n, batch, cache=False, generator=gen()),
        "ARMD S=1": lambda: generate(armd, n, batch, generator=gen()),
        "ARMD S=2": lambda: generate(armd, n, batch, streams=2, generator=gen()),
        "ARMD S=4": lambda: generate(armd, n, batch, streams=4, generator=gen()),
        "ARMD S=1, prompt N/2, no cache": lambda: generate(armd, template=prompted, cache=False, generator=gen()),
        "ARMD S=1, prompt N/2": lambda: generate(armd, template=prompted, generator=gen()),
        "AR (cache)": lambda: sample_ar(ar, n, batch, generator=gen()),
        f"MDM T={n}": lambda: sample_mdm(mdm, n, batch, steps=n, generator=gen()),
        f"MDM T={n // 2}": lambda: sample_mdm(mdm, n, batch, steps=n // 2, generator=gen()),
        f"MDM T={n // 4}": lambda: sample_mdm(mdm, n, batch, steps=n // 4, generator=gen()),
    }


def run(size: str, n: int, batch: int, repeats: int) -> dict:
    armd, ar, mdm = build(size, n)
    fns = methods(armd, ar, mdm, n, batch)
    calls = {name: fn().calls for name, fn in fns.items()}  # also the warm-up
    times = median_time(fns, repeats=repeats, warmup=0)
    t = {name: times[name]["median"] for name in fns}
    print(f"\n### {size}: {armd.num_params() / 1e6:.2f}M parameters (ARMD), N = {n}, batch {batch}\n")
    print("| method | network calls | seconds (median) | tokens/s | speed-up vs ARMD S=1 |")
    print("|---|---:|---:|---:|---:|")
    for name in fns:
        print(f"| {name} | {calls[name]} | {t[name]:.3f} | {batch * n / t[name]:,.0f} | "
              f"{t['ARMD S=1'] / t[name]:.2f}x |")
    ratios = {
        "cache speed-up (no cache / cache), target >= 5": t["ARMD S=1, no cache"] / t["ARMD S=1"],
        "cache speed-up with a prompt of N/2, target >= 5":
            t["ARMD S=1, prompt N/2, no cache"] / t["ARMD S=1, prompt N/2"],
        "S=2 speed-up over S=1, target >= 1.8": t["ARMD S=1"] / t["ARMD S=2"],
        "S=4 speed-up over S=1, target >= 3.2": t["ARMD S=1"] / t["ARMD S=4"],
        "ARMD S=1 / AR time per token, target <= 1.5": t["ARMD S=1"] / t["AR (cache)"],
    }
    print()
    for name, value in ratios.items():
        target = float(name.rsplit(" ", 1)[1])
        ok = value <= target if "<=" in name else value >= target
        print(f"- {name}: **{value:.2f}** {'(met)' if ok else '(NOT met)'}")
    return {"times": t, "calls": calls, "ratios": ratios}


def profile(size: str, n: int, batch: int) -> None:
    """Where one cached ARMD call's time goes at S = 1, 2, 4 (self CPU time of the tensor ops)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    armd, _, _ = build(size, n)
    groups = {"matrix products": ("aten::mm", "aten::addmm", "aten::bmm"),
              "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                            "aten::_scaled_dot_product_attention_math", "aten::_softmax")}
    print(f"\n### where a cached call's time goes: {size}, N = {n}, batch {batch}\n")
    print("| S | calls | ms per call | profiled: ms per call | matrix products | attention | other tensor ops |"
          " Python, dispatch, profiler | tensor ops per call |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for streams in (1, 2, 4):
        def run_once():
            return generate(armd, n, batch, streams=streams, generator=torch.Generator().manual_seed(0))
        plain = median_time({"run": run_once}, repeats=3, warmup=1)["run"]["median"]
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            out = run_once()
            wall = time.perf_counter() - t0
        events = prof.key_averages()
        self_us = {e.key: e.self_cpu_time_total for e in events}  # microseconds inside each op
        total = sum(self_us.values())
        parts = {name: sum(self_us.get(op, 0) for op in ops) for name, ops in groups.items()}

        def ms(us):
            return us / out.calls / 1e3  # microseconds in all -> milliseconds per call
        ops = sum(e.count for e in events) / out.calls
        print(f"| {streams} | {out.calls} | {plain * 1e3 / out.calls:.2f} | {wall * 1e3 / out.calls:.2f} | "
              f"{ms(parts['matrix products']):.2f} | {ms(parts['attention']):.2f} | "
              f"{ms(total - sum(parts.values())):.2f} | {ms(max(wall * 1e6 - total, 0.0)):.2f} | {ops:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--n", type=int, default=256, help="sequence length N")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N = 32, one repeat, tiny only")
    parser.add_argument("--profile", action="store_true", help="also profile one cached call at S = 1, 2, 4")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats, args.sizes, args.batches = 32, 1, ["tiny"], [2]
    print(machine_info())
    for size in args.sizes:
        for batch in args.batches:
            run(size, args.n, batch, args.repeats)
            if args.profile:
                profile(size, args.n, batch)


if __name__ == "__main__":
    main()
