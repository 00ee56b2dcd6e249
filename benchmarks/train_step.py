"""Training-step time of ARMD vs a plain causal transformer of the same size (CPU, float32).

One step = zero_grad, forward, cross-entropy loss, backward. No optimiser step by default
(``--adamw`` adds an AdamW step to every model, so the comparison stays like for like).

  * plain: ``minarmd.Transformer(TransformerConfig(...), causal=True)`` on N tokens, next-token CE
    (input x[:, :N], targets x[:, 1:N+1]: N scored tokens per row);
  * ARMD:  ``minarmd.ARMD(ARMDConfig(same fields, n_two_stream=L2s))`` with ``minarmd.armd_loss`` on
    N tokens (N scored tokens per row) in a k-shuffled order (``permutation.shuffle_k``, singleton
    blocks, passed explicitly), measured twice with identical weights:
      - ``attn_backend='auto'``  -> the fused causal SDPA path (singleton blocks, no mask built);
      - ``attn_backend='dense'`` -> SDPA with dense bool masks built from the block ids.

Default size: L=12, L2s=6, n_embd=256, n_head=4, N=256, batch 8, vocab 256 (bytes).
The target is ARMD/plain <= 1.5; the FLOP bound (L + L2s - 1)/L (17/12 = 1.417 here) is what the
extra query-stream layers cost if everything else is free. Timing: warm-up rounds, then the
median of ``--repeats`` repeats; in each repeat the three models run one after the other (rotated
order), so that noise on a shared machine hits all alike. ``--profile`` adds a torch.profiler
breakdown of one step of each model.

Run:  python benchmarks/train_step.py             (default, ~1.5 min on an idle 2-core CPU)
      python benchmarks/train_step.py --quick     (smoke run, a few seconds)
      python benchmarks/train_step.py --tiny --l2s 1 --adamw   (the tiny preset's shape and batch, L2s = 1:
                                                  the speed side of compare's L2s ablation)
      python benchmarks/train_step.py --profile   (also print where the time goes)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
import torch.nn.functional as F

import minarmd
from minarmd import ARMD, ARMDConfig, Transformer, TransformerConfig
from minarmd.data import load_data
from minarmd.permutation import shuffle_k
from minarmd.train_config import TrainConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import fmt_ms, load_average, machine_info, median_time  # noqa: E402


def make_step(model, loss_fn, opt):
    def step():
        model.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        if opt is not None:
            opt.step()
        return loss.detach()
    return step


def forward_flops(cfg, N: int, armd: bool) -> float:
    """Forward FLOPs per sequence of length N, counted for this implementation (matmuls only).

    Linear layers: 2 FLOPs per weight per token; a full block is (4 + 2 * mlp_ratio) d^2 weights.
    Attention: 4 d FLOPs (QK^T and AV) per visible (query, key) pair -- the fused causal kernels skip
    masked tiles, so visible pairs are what they compute (roughly). LM head: 2 d V per token.
    ARMD: the query stream G of a two-stream layer has no K/V projections of its own (keys and
    values come from X), the X stream runs L2s - 1 full layers plus K/V only in the last one and
    has N + 1 rows (BOS); prefix aggregation is two dense (N x N+1) matmuls.
    """
    d, L, V, r = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.mlp_ratio
    block = 2 * (4 + 2 * r) * d * d  # per token, a full layer's linear maps
    qkv_kv = 2 * 2 * d * d  # per token, the K and V projections
    tri = lambda n: n * (n + 1) // 2  # visible pairs of an n x n causal pattern
    head = 2 * d * V * N
    if not armd:
        return L * (N * block + 4 * d * tri(N)) + head
    L2s, M = cfg.n_two_stream, N + 1
    g_two = L2s * (N * (block - qkv_kv) + 4 * d * (tri(N) + N))  # query stream vs [BOS, x]
    x_two = (L2s - 1) * (M * block + 4 * d * tri(M)) + (M * qkv_kv if L2s else 0)
    stack = (L - L2s) * (N * block + 4 * d * tri(N))
    prefix = 2 * N * M * (cfg.d_pe + d)
    return g_two + x_two + stack + prefix + head


def profile_steps(steps: dict, rows: int = 14) -> None:
    """One profiled step per model: the most expensive ops (self CPU time)."""
    from torch.profiler import ProfilerActivity, profile, record_function
    for name, step in steps.items():
        step()  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with record_function(f"step[{name}]"):
                step()
        print(f"\n--- profile: {name} (one step, ops sorted by self CPU time) ---")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows,
                                        max_name_column_width=48))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small model and batch: a smoke run")
    ap.add_argument("--tiny", action="store_true", help="the tiny preset's shape and batch (L 4, d 128, 4 heads, N 128, batch 32)")
    ap.add_argument("--l2s", type=int, default=None, help="ARMD's two-stream layers (default L/2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 15, quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 2, quick 1)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--k", type=int, default=None, help="shuffled tokens (default N/32: the paper's rho/N)")
    ap.add_argument("--adamw", action="store_true", help="include an AdamW step for every model")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        size = dict(vocab_size=256, max_len=64, n_layer=4, n_head=2, n_embd=64)
        L2s, batch, repeats, warmup = 2, 4, 2, 1
    elif args.tiny:  # the tiny preset's shape and batch, on character-level Shakespeare's vocabulary
        tiny = TrainConfig.from_preset("tiny")
        size = dict(vocab_size=load_data("shakespeare").vocab_size, max_len=tiny.seq_len, n_layer=tiny.n_layer,
                    n_head=tiny.n_head, n_embd=tiny.n_embd)
        L2s, batch, repeats, warmup = tiny.n_layer // 2, tiny.batch_size, 15, 2  # L2s: ARMD's default L/2
    else:
        size = dict(vocab_size=256, max_len=256, n_layer=12, n_head=4, n_embd=256)
        L2s, batch, repeats, warmup = 6, 8, 15, 2
    batch = args.batch if args.batch is not None else batch
    L2s = args.l2s if args.l2s is not None else L2s
    repeats = args.repeats if args.repeats is not None else repeats
    warmup = args.warmup if args.warmup is not None else warmup
    N, L = size["max_len"], size["n_layer"]
    k = args.k if args.k is not None else max(1, N // 32)

    print(machine_info())
    print(f"benchmark: train_step {' '.join(sys.argv[1:])}  (float32, forward + backward"
          f"{' + AdamW' if args.adamw else ', no optimiser step'})")
    print(f"torch.set_num_threads({args.threads}) -> torch.get_num_threads() = {torch.get_num_threads()}")

    torch.manual_seed(args.seed)
    plain = Transformer(TransformerConfig(**size), causal=True).train()
    armd_auto = ARMD(ARMDConfig(**size, n_two_stream=L2s, attn_backend="auto")).train()
    armd_dense = ARMD(ARMDConfig(**size, n_two_stream=L2s, attn_backend="dense")).train()
    armd_dense.load_state_dict(armd_auto.state_dict())  # same weights: only the backend differs

    gen = torch.Generator().manual_seed(args.seed)
    data = torch.randint(0, size["vocab_size"], (batch, N + 1), generator=gen)  # random bytes
    order, blocks = shuffle_k(batch, N, k, gen)  # (batch, N) each; singleton blocks
    x = data[:, :N].contiguous()
    inp, tgt = data[:, :N].contiguous(), data[:, 1:].contiguous()

    def plain_loss():
        logits = plain(inp)  # (B, N, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))

    models = {"plain": plain, "ARMD auto": armd_auto, "ARMD dense": armd_dense}
    losses = {"plain": plain_loss,
              "ARMD auto": lambda: minarmd.armd_loss(armd_auto, x, order, blocks),
              "ARMD dense": lambda: minarmd.armd_loss(armd_dense, x, order, blocks)}
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-12) if args.adamw else None  # tiny lr: weights stay put
            for name, m in models.items()}
    steps = {name: make_step(models[name], losses[name], opts[name]) for name in models}

    # the fused causal path must compute what the dense masks compute
    la, ld = steps["ARMD auto"](), steps["ARMD dense"]()
    gdiff = max(float((pa.grad - pd.grad).abs().max()) for pa, pd in
                zip(armd_auto.parameters(), armd_dense.parameters()) if pa.grad is not None)

    n_plain, n_armd = plain.num_params(), armd_auto.num_params()
    bound = (L + L2s - 1) / L
    print(f"config:    n_layer L={L}, n_two_stream L2s={L2s}, n_embd={size['n_embd']}, "
          f"n_head={size['n_head']}, N={N}, batch={batch}, vocab={size['vocab_size']}, "
          f"d_pe={armd_auto.cfg.d_pe}")
    print(f"order:     shuffle_k(k={k}) (k/N = {k / N:.1%}), singleton blocks passed explicitly")
    print(f"params:    plain {n_plain:,}   ARMD {n_armd:,}   (ARMD/plain {n_armd / n_plain:.4f})")
    print(f"check:     |loss auto - loss dense| = {abs(float(la) - float(ld)):.2e}, "
          f"max |grad auto - grad dense| = {gdiff:.2e}")
    f_plain, f_armd = forward_flops(plain.cfg, N, False), forward_flops(armd_auto.cfg, N, True)
    print(f"FLOPs:     forward per sequence, counted for this implementation: plain {f_plain / 1e9:.3f} G, "
          f"ARMD {f_armd / 1e9:.3f} G, ratio {f_armd / f_plain:.3f} "
          f"(layer-count bound (L+L2s-1)/L = {bound:.3f}; backward ~2x forward in both)")
    print(f"timing:    warm-up {warmup}, median of {repeats} interleaved repeats")
    print(flush=True)

    res = median_time(steps, repeats=repeats, warmup=warmup)
    tokens = batch * N
    t_plain = res["plain"]["median"]
    print("| model | median step [ms] | min–max [ms] | tokens/s | ARMD/plain | target | FLOP bound (L+L2s-1)/L |")
    print("|---|---|---|---|---|---|---|")
    for name in steps:
        r = res[name]
        ratio = "1 (ref.)" if name == "plain" else f"{r['median'] / t_plain:.3f}"
        target = "" if name == "plain" else "<= 1.5"
        fb = "" if name == "plain" else f"{L + L2s - 1}/{L} = {bound:.3f}"
        print(f"| {name} | {fmt_ms(r['median'])} | {fmt_ms(r['min'])}–{fmt_ms(r['max'])} | "
              f"{tokens / r['median']:,.0f} | {ratio} | {target} | {fb} |")
    # ratios within each repeat (same moment of machine noise), as a robustness check
    for name in ("ARMD auto", "ARMD dense"):
        per = [a / p for a, p in zip(res[name]["samples"], res["plain"]["samples"])]
        print(f"per-repeat ratio {name}/plain: median {statistics.median(per):.3f}, "
              f"range {min(per):.3f}–{max(per):.3f}")
    print(f"load average at the end: {load_average()}")
    if args.profile:
        profile_steps(steps)


if __name__ == "__main__":
    main()
