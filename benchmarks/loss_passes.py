"""The exact T-step loss of one masking trajectory: one ARMD pass vs T passes.

For one sequence x (batch 1, N byte tokens) and one masking trajectory tau ~ linear schedule with
T steps (``masking.sample_mask_times``), the discrete-time masked-diffusion loss is the sum of T
per-step terms L_t = sum_{n: tau(n)=t} -log p(x_n | {x_i : tau(i) > t}). This script times three
ways of computing all of them, with torch.no_grad(), for T in {8, 32, 128}:

  (a) ARMD, single pass:  ``minarmd.armd_loss(model, x, order, blocks)`` -- one forward call;
  (b) ARMD, T-pass reference: ``minarmd.t_pass_loss(model, x, order, blocks)`` -- one call per
      non-empty block, each fed the tokens of blocks <= b only (so calls grow in length);
  (c) MDM: a same-size bidirectional ``minarmd.Transformer`` (vocab + 1 for the mask id), T calls,
      each on the full length-N input x_t (tokens with tau <= t replaced by the mask id,
      ``masking.noisy_sequence``), scoring the tokens with tau == t. All T steps are run, empty
      ones included, as an MDM evaluating every step of the trajectory would.

It also checks that (a) and (b) agree: in float32 on the benchmarked model, and in float64 on a
small copy of the architecture (where the difference should be at rounding level, ~1e-15).

Timing: one warm-up round, then the median of ``--repeats`` repeats; within a repeat the three
methods run one after the other (rotated order), so that noise on a shared machine hits all alike.

Run:  python benchmarks/loss_passes.py            (default, ~1.5-2 min on an idle 2-core CPU)
      python benchmarks/loss_passes.py --quick    (smoke run, a few seconds)
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

import minarmd
from minarmd import ARMD, ARMDConfig, Transformer, TransformerConfig
from minarmd.masking import alpha_schedule, noisy_sequence, sample_mask_times
from minarmd.permutation import order_from_mask_times

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import fmt_ms, load_average, machine_info, median_time  # noqa: E402


def mdm_trajectory_loss(mdm: Transformer, x: torch.Tensor, tau: torch.Tensor, T: int,
                        mask_id: int) -> torch.Tensor:
    """(c): T calls of a bidirectional model on full-length x_t; mean NLL per token of the trajectory."""
    total = x.new_zeros((), dtype=torch.float32)
    for t in range(1, T + 1):
        logits = mdm(noisy_sequence(x, tau, t, mask_id))  # (1, N, V+1)
        scored = tau == t  # (1, N): the tokens masked exactly at step t
        total = total + F.cross_entropy(logits[scored], x[scored], reduction="sum")
    return total / x.numel()


def float64_check(seed: int, quick: bool) -> float:
    """max |(a) - (b)| per token on a small float64 copy of the architecture."""
    n = 32 if quick else 64
    cfg = ARMDConfig(vocab_size=256, max_len=n, n_layer=2, n_head=2, n_embd=32, d_pe=16, pe_init="random")
    torch.manual_seed(seed)
    model = ARMD(cfg).double().eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (1, n), generator=gen)
    worst = 0.0
    with torch.no_grad():
        for T in (8, 32, 128):
            tau = sample_mask_times(alpha_schedule("linear", T), (1, n), gen)
            order, blocks = order_from_mask_times(tau, T)
            a = minarmd.armd_loss(model, x, order, blocks, per_token=True)
            b = minarmd.t_pass_loss(model, x, order, blocks, per_token=True)
            worst = max(worst, float((a - b).abs().max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small model and sequence: a smoke run")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, quick 2)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 7)
    if args.quick:
        size = dict(vocab_size=256, max_len=64, n_layer=2, n_head=2, n_embd=64)
    else:
        size = dict(vocab_size=256, max_len=256, n_layer=6, n_head=4, n_embd=256)
    N = size["max_len"]
    Ts = (8, 32, 128)

    print(machine_info())
    print(f"benchmark: loss_passes {'--quick' if args.quick else ''}  (torch.no_grad, batch 1, float32)")
    torch.manual_seed(args.seed)
    armd = ARMD(ARMDConfig(**size)).eval()  # attn_backend 'auto': dense masks for multi-token blocks
    mdm_cfg = TransformerConfig(**{**size, "vocab_size": size["vocab_size"] + 1})  # + the mask id
    mdm = Transformer(mdm_cfg, causal=False).eval()
    mask_id = size["vocab_size"]
    print(f"model:     n_layer={size['n_layer']} n_embd={size['n_embd']} n_head={size['n_head']} "
          f"N={N} vocab={size['vocab_size']}; ARMD n_two_stream={armd.cfg.n_two_stream} "
          f"d_pe={armd.cfg.d_pe}; params ARMD {armd.num_params():,}, MDM {mdm.num_params():,}")
    print(f"timing:    warm-up {args.warmup}, median of {repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads")
    print()

    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, size["vocab_size"], (1, N), generator=gen)  # random bytes: timing only
    rows, checks = [], []
    with torch.no_grad():
        for T in Ts:
            tau = sample_mask_times(alpha_schedule("linear", T), (1, N), gen)  # (1, N) in 1..T
            order, blocks = order_from_mask_times(tau, T)
            n_blocks = int(torch.unique(blocks).numel())
            fns = {
                "a": lambda: minarmd.armd_loss(armd, x, order, blocks),
                "b": lambda: minarmd.t_pass_loss(armd, x, order, blocks),
                "c": lambda: mdm_trajectory_loss(mdm, x, tau, T, mask_id),
            }
            res = median_time(fns, repeats=repeats, warmup=args.warmup)
            a_tok = minarmd.armd_loss(armd, x, order, blocks, per_token=True)
            b_tok = minarmd.t_pass_loss(armd, x, order, blocks, per_token=True)
            checks.append((T, float((a_tok.mean() - b_tok.mean()).abs()), float((a_tok - b_tok).abs().max()),
                           float(a_tok.mean()), float(fns["c"]())))
            ta, tb, tc = (res[k]["median"] for k in "abc")
            rows.append((T, n_blocks, ta, tb, tc, tb / ta, tc / ta,
                         max(res[k]["max"] / res[k]["min"] for k in "abc")))
            print(f"  T={T} done", flush=True)

    print()
    print("| T | non-empty blocks | (a) ARMD 1 pass [ms] | (b) ARMD T-pass [ms] | (c) MDM T calls [ms] "
          "| (b)/(a) | (c)/(a) | max/min spread |")
    print("|---|---|---|---|---|---|---|---|")
    for T, nb, ta, tb, tc, rb, rc, spread in rows:
        print(f"| {T} | {nb} | {fmt_ms(ta)} | {fmt_ms(tb)} | {fmt_ms(tc)} | {rb:.1f} | {rc:.1f} | {spread:.2f} |")
    print("(spread = the worst max/min ratio of the repeats among the three methods: machine noise)")
    print()
    print("Agreement of (a) single pass and (b) T-pass reference, float32, benchmarked model:")
    print("| T | abs diff of mean loss | max abs diff per token | mean NLL (a) [nats] | MDM (c) mean NLL [nats] |")
    print("|---|---|---|---|---|")
    for T, dmean, dmax, la, lc in checks:
        print(f"| {T} | {dmean:.2e} | {dmax:.2e} | {la:.4f} | {lc:.4f} |")
    print(f"float64, small copy (n_layer=2, n_embd=32), T in {Ts}: max abs diff per token "
          f"= {float64_check(args.seed, args.quick):.2e}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
