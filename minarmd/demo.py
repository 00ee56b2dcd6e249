"""``python -m minarmd.demo``: ARMD end to end on one English sentence, on the CPU, in seconds.

1. tokenise the sentence byte-level (vocab 256, no tokenizer needed);
2. run the masking forward process for T steps and print x_0..x_T;
3. read the generation order off the masking times (masked last = generated first);
4. draw the two attention masks M^c and M^sc;
5. score the sentence with a tiny untrained ARMD in ONE forward pass and check that this equals
   the T-pass sum that masked diffusion would need one network call per step for.

Each step is one function, so later demos (train, then generate) can reuse them.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from . import ARMD, ARMDConfig, armd_loss, t_pass_loss
from .masking import alpha_schedule, noisy_sequence, sample_mask_times
from .masks import block_causal_mask, strictly_causal_mask, to_original_order
from .permutation import order_from_mask_times, random_order

DEFAULT_SENTENCE = "The quick brown fox jumps over the lazy dog."
MASK = -1  # sentinel id for [mask]; only used for printing, ARMD itself never sees a mask token
MAX_BYTES = 256  # keeps the T = N check (N forward calls) quick
TOLERANCE = 1e-10  # float64: single pass and T-pass must agree to rounding


def heading(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 72 - len(title)))


def render(ids) -> str:
    """Token ids -> one printable character each ('_' for [mask], '?' for non-printable bytes)."""
    return "".join("_" if i == MASK else chr(i) if 32 <= i < 127 else "?" for i in ids)


def digit_rows(values, width: int) -> list[str]:
    """Integers written vertically, one character per column (tens row above units row, ...)."""
    text = [str(v).rjust(width) for v in values]
    return ["".join(t[d] for t in text) for d in range(width)]


def tokenize(sentence: str) -> torch.Tensor:
    """Byte-level tokens, shape (1, N): token id = byte value."""
    return torch.tensor([list(sentence.encode())], dtype=torch.long)


def show_trajectory(x: torch.Tensor, T: int, gen: torch.Generator) -> torch.Tensor:
    """Sample masking times tau (1, N) and print x_t for t = 0..T."""
    alpha = alpha_schedule("linear", T)
    tau = sample_mask_times(alpha, tuple(x.shape), generator=gen)  # (1, N) in 1..T
    heading(f"2. Masking trajectory, T = {T}, linear schedule alpha_t = 1 - t/T")
    print("Each character is masked at one step tau in 1..T and stays masked; x_t shows tau > t.")
    for t in range(T + 1):
        x_t = noisy_sequence(x, tau, t, MASK)[0].tolist()
        print(f"  x_{t:<3} alpha={float(alpha[t]):.2f}  |{render(x_t)}|  visible {int((tau > t).sum())}")
    for k, row in enumerate(digit_rows(tau[0].tolist(), len(str(T)))):
        print(f"  {'tau' if k == 0 else '':<16} |{row}|")
    return tau


def show_order(x: torch.Tensor, tau: torch.Tensor, T: int):
    """Generation order and blocks of the trajectory: block b = T - tau + 1 (masked last first)."""
    order, blocks = order_from_mask_times(tau, T)  # (1, N) each, generation order
    heading("3. Generation order: sort by tau descending, B(n) = T - tau(n) + 1")
    print("Block b is generated given blocks < b only; running the masking backwards.")
    o, b, z = order[0].tolist(), blocks[0].tolist(), x[0].tolist()
    canvas = [MASK] * len(z)
    for blk in range(1, T + 1):
        pos = [p for p, bb in zip(o, b) if bb == blk]
        for p in pos:
            canvas[p] = z[p]
        chars = " ".join(repr(chr(z[p])) if 32 <= z[p] < 127 else "?" for p in pos) or "(empty)"
        print(f"  block {blk} (tau={T - blk + 1}): {len(pos):2d} tokens  |{render(canvas)}|  {chars}")
        assert canvas == noisy_sequence(x, tau, T - blk, MASK)[0].tolist()  # after block b: x_{T-b}
    print(f"  order  = {o}")
    print(f"  blocks = {b}")
    return order, blocks


def grid(mask: torch.Tensor, labels: list[str], title: str) -> list[str]:
    """A (K, K) bool mask as text lines: '#' may attend, '.' may not."""
    lines = [title, "       " + "".join(c for c, _ in labels), "       " + "".join(b for _, b in labels)]
    for (c, b), row in zip(labels, mask.tolist()):
        lines.append(f"  {c!r:>3}{b} " + "".join("#" if v else "." for v in row))
    return lines


def side_by_side(left: list[str], right: list[str], gap: int = 6) -> None:
    width = max(len(s) for s in left) + gap
    for a, b in zip(left, right):
        print(a.ljust(width) + b)


def show_masks(x: torch.Tensor, tau: torch.Tensor, T: int, k: int = 12) -> None:
    """M^c and M^sc of the first k characters, in generation order and in original order."""
    k = min(k, x.shape[1])
    order, blocks = order_from_mask_times(tau[:, :k], T)  # the first k characters on their own
    heading(f"4. Attention masks of the first {k} characters (rows attend to columns)")
    print("Legend: '#' = row token may attend column token, '.' = may not; labels: char, block id.")
    print("Every row also sees a BOS token (block 0, not drawn), so no row is empty.")
    z, b_of = x[0, :k].tolist(), dict(zip(order[0].tolist(), blocks[0].tolist()))
    label = lambda p: (chr(z[p]) if 32 <= z[p] < 127 else "?", str(b_of[p] % 10))  # noqa: E731
    mc, msc = block_causal_mask(blocks), strictly_causal_mask(blocks)  # (1, k, k), generation order
    gen_labels = [label(p) for p in order[0].tolist()]
    side_by_side(grid(mc[0], gen_labels, "M^c  generation order: B(i) <= B(n)"),
                 grid(msc[0], gen_labels, "M^sc generation order: B(i) < B(n)"))
    print()
    orig_labels = [label(p) for p in range(k)]
    side_by_side(grid(to_original_order(mc, order)[0], orig_labels, "M^c  original order"),
                 grid(to_original_order(msc, order)[0], orig_labels, "M^sc original order"))
    print("Generation order: block-lower-triangular. Original order: the same masks, scattered.")


def build_model(n: int, seed: int) -> ARMD:
    """A tiny untrained ARMD in float64 (so the two losses can be compared to ~1e-15)."""
    torch.manual_seed(seed)
    cfg = ARMDConfig(vocab_size=256, max_len=max(64, n), n_layer=4, n_two_stream=2, n_head=4, n_embd=64)
    return ARMD(cfg).double().eval()


def count_calls(model: ARMD, fn) -> tuple[torch.Tensor, int, float]:
    """Run fn(); return its result, the number of model forward calls and the wall time (s)."""
    calls = [0]
    hook = model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        start = time.perf_counter()
        out = fn()
        return out, calls[0], time.perf_counter() - start
    finally:
        hook.remove()


def compare_losses(model: ARMD, x: torch.Tensor, order: torch.Tensor, blocks: torch.Tensor,
                   label: str) -> float:
    """Single-pass ARMD loss vs the T-pass reference; print both, return the largest |difference|."""
    with torch.no_grad():
        armd_loss(model, x, order, blocks)  # warm-up, so the timings compare steady-state calls
        one, n_one, t_one = count_calls(model, lambda: armd_loss(model, x, order, blocks, per_token=True))
        ref, n_ref, t_ref = count_calls(model, lambda: t_pass_loss(model, x, order, blocks, per_token=True))
    diff, diff_tok = abs(one.mean().item() - ref.mean().item()), (one - ref).abs().max().item()
    n_blocks = torch.unique_consecutive(blocks[0]).numel()
    print(f"  {label}: {n_blocks} non-empty blocks")
    print(f"    single pass : {one.mean().item():.12f} nats/token  {n_one:3d} network call   {t_one * 1e3:8.2f} ms")
    print(f"    T-pass sum  : {ref.mean().item():.12f} nats/token  {n_ref:3d} network calls  {t_ref * 1e3:8.2f} ms")
    print(f"    |difference| = {diff:.3e}  (max over tokens {diff_tok:.3e}; tolerance {TOLERANCE:.0e})")
    return max(diff, diff_tok)


def check_losses(x: torch.Tensor, order: torch.Tensor, blocks: torch.Tensor, seed: int, T: int) -> None:
    heading("5. One forward pass = the T-pass sum (tiny untrained ARMD, float64)")
    model = build_model(x.shape[1], seed)
    print(f"ARMD: 4 layers (2 two-stream), 4 heads, width 64, {model.num_params():,} parameters. "
          f"Untrained, so ~ln 256 = {math.log(256):.3f}.")
    diffs = [compare_losses(model, x, order, blocks, f"masking trajectory, T = {T}")]
    gen = torch.Generator().manual_seed(seed + 1)
    order_n, blocks_n = random_order(1, x.shape[1], generator=gen)  # T = N: every token its own block
    diffs.append(compare_losses(model, x, order_n, blocks_n, f"T = N = {x.shape[1]}, random order"))
    if max(diffs) > TOLERANCE:
        raise SystemExit(f"FAILED: single-pass and T-pass losses differ by {max(diffs):.3e} > {TOLERANCE:.0e}; "
                         "later blocks leak into the predictions of earlier ones (or the loss is wrong).")
    print("OK: both agree to float64 rounding -- masked diffusion's T network calls become one.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m minarmd.demo", description="ARMD end to end on one sentence: masking, "
                                     "generation order, masks, single-pass = T-pass loss.")
    parser.add_argument("--sentence", default=DEFAULT_SENTENCE, help="text to demonstrate on")
    parser.add_argument("--T", type=int, default=4, help="number of masking steps (>= 1, default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    n = len(args.sentence.encode())
    if n == 0:
        parser.error("--sentence must not be empty")
    if n > MAX_BYTES:
        parser.error(f"--sentence has {n} bytes; use at most {MAX_BYTES} for this demo")
    if args.T < 1:
        parser.error(f"--T must be an integer >= 1 (number of masking steps), got {args.T}")
    return args


def run_demo(args: argparse.Namespace) -> None:
    x = tokenize(args.sentence)  # (1, N)
    heading("1. A sentence, tokenised byte-level (vocab 256)")
    print(f"  |{render(x[0].tolist())}|  N = {x.shape[1]} tokens")
    print(f"  ids: {x[0].tolist()[:16]}{' ...' if x.shape[1] > 16 else ''}")
    gen = torch.Generator().manual_seed(args.seed)
    tau = show_trajectory(x, args.T, gen)
    order, blocks = show_order(x, tau, args.T)
    show_masks(x, tau, args.T)
    check_losses(x, order, blocks, args.seed, args.T)
    heading("What next")
    print("Run the tests with `python -m pytest`; benchmarks live in benchmarks/.")


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: 1 thread is fastest, and immune to a busy machine's oversubscription
    try:
        run_demo(args)
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
