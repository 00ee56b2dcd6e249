"""Checkers for exercises/06_generation.ipynb: strided orders, call counts, draws, templates, spans."""
from __future__ import annotations

import torch

from . import CheckFailed, attempt, exercise, expect_raises, expect_tensor, hinted, same, short
from ..permutation import strided_order
from ..sampler import FREE, draw, make_template
from ..template import block_spans, plan


def _singleton_blocks_hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    if same(got, torch.arange(1, got.numel() + 1)):
        return ("one block per token (1..n) is left-to-right decoding: after the S heads, the S tokens at "
                "one relative position share a block")
    return None


@exercise("06.1", "strided block-parallel order", difficulty=3, importance=4, minutes=20)
def check_strided_order(fn):
    cases = [(8, 2), (8, 1), (8, 8), (8, 4), (12, 3), (1, 1), (6, 2), (16, 4)]
    for n, streams in cases:
        case = f"n={n}, S={streams}"
        got = attempt(fn, n, streams, case=case)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed(f"returned {short(got)}; expected a pair (order, blocks) of (n,) tensors ({case})")
        order, blocks = strided_order(n, streams)  # (1, n) each
        expect_tensor("order", got[0], order[0], case=case)
        expect_tensor("blocks", got[1], blocks[0], case=case, hints=[_singleton_blocks_hint])
    for n, streams in [(8, 3), (10, 4)]:
        expect_raises(fn, (n, streams), ValueError, f"n={n}, S={streams} (S does not divide n)")
    return f"{len(cases)} cases match minarmd.permutation.strided_order, and S not dividing n raises ValueError"


def _library_calls(n: int, given: int, streams: int) -> int:
    """Calls generate() spends: one per block after the given tokens' blocks (plan + block_spans)."""
    template = make_template(n, 1, prompt=list(range(given)) if given else None)
    _, blocks = plan(template, streams)
    return len(block_spans(blocks)) - given


@exercise("06.2", "network calls of SBP generation", difficulty=2, importance=4, minutes=10)
def check_num_calls(fn):
    cases = [(8, 0, 1), (8, 0, 2), (8, 0, 4), (8, 0, 8), (128, 0, 1), (128, 0, 2), (128, 0, 4),
             (12, 4, 2), (12, 4, 4), (20, 5, 5), (9, 8, 1), (256, 16, 8)]
    for n, given, streams in cases:
        case = f"n={n}, given={given}, S={streams}"
        got = attempt(fn, n, given, streams, case=case)
        expected = _library_calls(n, given, streams)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, int) or isinstance(got, bool):
            raise CheckFailed(f"returned a {type(got).__name__} ({short(got)}), expected an int ({case})")
        if got != expected:
            hint = None
            if got == expected - (streams - 1):
                hint = "the S stream heads are generated one at a time: phase 1 takes S calls, not 1"
            elif given and got == _library_calls(n, 0, streams):
                hint = "the given tokens need no calls: only the m = n - given free positions are generated"
            raise CheckFailed(hinted(f"got {got} calls, expected {expected} ({case}; m = n - given = {n - given} "
                                     f"positions to generate)", hint))
    return (f"{len(cases)} cases match the blocks of minarmd.template.plan (the calls generate() makes): "
            "S + m/S - 1")


def _frequencies(draws: torch.Tensor, V: int) -> torch.Tensor:
    return torch.bincount(draws.reshape(-1), minlength=V).double() / draws.numel()


def _same_draws(got, expected: torch.Tensor, case: str) -> None:
    """Exact same-seed draws; a right-shaped answer with other draws gets a hint on the procedure."""
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == expected.dtype \
            and not torch.equal(got, expected):
        raise CheckFailed(f"{int((got != expected).sum())} of {got.numel()} draws differ from "
                          f"minarmd.sampler.draw's with the same seed ({case}): divide in float64, softmax, "
                          f"then torch.multinomial(probs.reshape(-1, V), 1, generator=generator)")
    expect_tensor("samples", got, expected, case=case)


@exercise("06.3", "sampling from logits with temperature and top-k", difficulty=2, importance=4, minutes=15)
def check_sample_logits(fn):
    V = 8
    logits = torch.randn(V, generator=torch.Generator().manual_seed(6), dtype=torch.float32) * 2
    # 1. the distribution: many rows of the same logits, frequencies against the library's probabilities
    rows = 20_000
    for temperature, top_k in [(1.0, None), (0.5, None), (2.0, 3), (1.0, 1)]:
        case = f"temperature={temperature}, top_k={top_k}"
        got = attempt(fn, logits.expand(rows, V), temperature, top_k,
                      torch.Generator().manual_seed(1), case=case)
        expected = draw(logits.expand(rows, V), temperature, top_k, generator=torch.Generator().manual_seed(1))
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == expected.dtype:
            if got.min() < 0 or got.max() >= V:
                raise CheckFailed(f"drew ids outside 0..{V - 1} ({case})")
            scaled = logits.double() / temperature
            if top_k is not None:
                allowed = torch.zeros(V, dtype=torch.bool)
                allowed[scaled.topk(top_k).indices] = True
                if (~allowed[got]).any():
                    bad = int(got[~allowed[got]][0])
                    raise CheckFailed(f"drew token {bad}, which is not among the top-{top_k} logits ({case})")
                scaled = scaled.masked_fill(~allowed, float("-inf"))
            probs = torch.softmax(scaled, dim=-1)
            freq = _frequencies(got, V)
            z = ((freq - probs).abs() / (probs * (1 - probs) / rows).clamp(min=1e-12).sqrt())
            z = z.masked_fill(probs == 0, 0.0)
            if (z > 6).any():
                k = int(z.argmax())
                raise CheckFailed(f"token {k} drawn with frequency {freq[k]:.4f} in {rows} draws, expected "
                                  f"probability {probs[k]:.4f}: softmax(logits / temperature) over the "
                                  f"kept tokens? ({case})")
        _same_draws(got, expected, case + ", same generator seed")
    # 2. exact draws for batched logits of other shapes, same seed as the library
    cases = [((5, V), 1.0, None), ((2, 3, V), 0.7, 4), ((4, 65), 1.3, 10), ((3, V), 1.0, V)]
    for shape, temperature, top_k in cases:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape) + shape[-1]))
        case = f"logits {tuple(shape)}, temperature={temperature}, top_k={top_k}"
        got = attempt(fn, x, temperature, top_k, torch.Generator().manual_seed(3), case=case)
        expected = draw(x, temperature, top_k, generator=torch.Generator().manual_seed(3))
        _same_draws(got, expected, case)
    return ("frequencies of 4 x 20,000 draws match softmax(logits / T) over the top k, and "
            f"{4 + len(cases)} same-seed draws equal minarmd.sampler.draw's")


def _free_hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    if bool(((got != expected) <= (expected == FREE)).all()):
        return f"only the free positions differ: they must hold FREE = {FREE}"
    return None


@exercise("06.4", "a template for infilling", difficulty=2, importance=3, minutes=15)
def check_infill_template(fn):
    cases = [
        (10, 1, [5, 6, 7], [8, 9]),
        (10, 2, [5, 6, 7], [8, 9]),
        (6, 1, [1], None),
        (6, 3, None, [2, 3]),
        (4, 1, None, None),
        (5, 2, torch.tensor([[1, 2], [3, 4]]), torch.tensor([[0], [9]])),
        (3, 1, [4], [7]),
    ]
    for n, batch, prompt, suffix in cases:
        case = f"n={n}, batch={batch}, prompt={short(prompt, 40)}, suffix={short(suffix, 40)}"
        got = attempt(fn, n, batch, prompt, suffix, case=case)
        expect_tensor("template", got, make_template(n, batch, prompt, suffix), case=case, hints=[_free_hint])
    for args, why in [((4, 1, [1, 2], [3, 4]), "prompt + suffix fill all 4 positions"),
                      ((3, 1, [1, 2, 3], None), "the prompt fills all 3 positions")]:
        expect_raises(fn, args, ValueError, f"n={args[0]}: {why}")
    return (f"{len(cases)} cases match minarmd.sampler.make_template (FREE = {FREE}), and a template with "
            "nothing to generate raises ValueError")


@exercise("06.5", "block spans", difficulty=1, importance=3, minutes=10)
def check_block_spans(fn):
    cases = [
        torch.tensor([[1, 2, 3, 4]]),
        strided_order(8, 2)[1],
        strided_order(12, 4, batch=2)[1],
        torch.tensor([[1, 1, 1]]),
        torch.tensor([[1]]),
        torch.tensor([[1, 2, 3, 3, 3, 5, 5, 6]]),
        plan(make_template(10, 2, prompt=[1, 2], suffix=[3, 4]), streams=3)[1],
    ]
    for blocks in cases:
        case = f"blocks {blocks[0].tolist()}" + (f" (batch {blocks.shape[0]})" if blocks.shape[0] > 1 else "")
        got = attempt(fn, blocks.clone(), case=case)
        expected = block_spans(blocks)
        if not isinstance(got, (list, tuple)):
            raise CheckFailed(f"returned a {type(got).__name__}, expected a list of (start, end) pairs ({case})")
        try:
            pairs = [(int(a), int(b)) for a, b in got]
        except (TypeError, ValueError):
            raise CheckFailed(f"returned {short(got)}: expected a list of (start, end) pairs ({case})") from None
        if len(pairs) != len(expected):
            raise CheckFailed(f"got {len(pairs)} spans, expected {len(expected)}: one per block ({case})")
        for k, (mine, ref) in enumerate(zip(pairs, expected)):
            if mine != ref:
                hint = "end is exclusive, like a Python slice: end - start is the block's size" \
                    if mine == (ref[0], ref[1] - 1) else None
                raise CheckFailed(hinted(f"span {k}: got {mine}, expected {ref} (start inclusive, end exclusive; "
                                         f"{case})", hint))
    return f"{len(cases)} cases match minarmd.template.block_spans"

