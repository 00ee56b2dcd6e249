"""Checkers for exercises/02_orders_and_masks.ipynb: generation orders, blocks and attention masks."""
from __future__ import annotations

import itertools

import torch

from . import (CheckFailed, NotAttempted, attempt, exercise, expect_raises, expect_tensor, hinted, same,
               where_raised)
from ..masks import block_causal_mask, strictly_causal_mask, to_original_order
from ..permutation import left_to_right, order_from_mask_times, random_order, strided_order


def _pair(got, what: str, case: str) -> tuple:
    """The learner's function must return two things (order, blocks)."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        kind = f"a {type(got).__name__}" + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
        raise CheckFailed(f"returned {kind}, expected a pair {what} of two tensors (case: {case})")
    return got


def _tau_cases() -> list[tuple[torch.Tensor, int]]:
    """Fixed masking trajectories (B, N) with their T: ties, N = 1, T = 1, one block, batch > 1."""
    g = torch.Generator().manual_seed(2)
    return [
        (torch.tensor([[3, 1, 4, 1, 2, 3]]), 4),  # ties inside blocks 2 and 4, one empty block (tau = ...)
        (torch.tensor([[2, 1, 2, 2, 1]]), 2),  # ties: order must keep original positions in order
        (torch.tensor([[1]]), 1),  # N = 1, T = 1
        (torch.tensor([[1, 1, 1, 1]]), 1),  # T = 1: every token in one block
        (torch.tensor([[3, 3, 3]]), 5),  # one block, but not block 1 (T = 5, tau = 3 -> B = 3)
        (torch.tensor([[4, 2, 3, 1]]), 4),  # T = N, distinct times: singleton blocks
        (torch.randint(1, 4, (3, 9), generator=g), 3),  # batch > 1, different orders per row
    ]


def _blocks_hint(T: int):
    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        if same(got, T + 1 - expected):
            return ("your blocks are the masking times themselves: block 1 holds the tokens masked LAST "
                    "(the largest tau), so the id counts the steps back from T")
        if got.shape[1] > 1 and bool((got[:, 1:] <= got[:, :-1]).all()) and not same(got, got[:, :1].expand_as(got)):
            return ("your blocks decrease along the row: ARMD generates the tokens masked last (the largest "
                    "tau) first, so sort by descending tau")
        return None
    return hint


@exercise("02.1", "order and blocks from masking times", difficulty=2, importance=5, minutes=15)
def check_order_and_blocks(fn):
    for tau, T in _tau_cases():
        case = f"tau {tau.tolist()}, T={T}" if tau.numel() <= 12 else f"tau of shape {tuple(tau.shape)}, T={T}"
        order_ref, blocks_ref = order_from_mask_times(tau, T)
        order, blocks = _pair(attempt(fn, tau.clone(), T, case=case), "(order, blocks)", case)
        expect_tensor("blocks", blocks, blocks_ref, case=case, hints=[_blocks_hint(T)])
        if isinstance(order, torch.Tensor) and order.shape == order_ref.shape and order.dtype == order_ref.dtype \
                and not torch.equal(order, order_ref):
            # a valid descending-tau order whose ties are broken differently: say so in plain words
            perm_ok = torch.equal(order.sort(dim=1).values, torch.arange(tau.shape[1]).expand_as(tau))
            if perm_ok and torch.equal(tau.gather(1, order), tau.gather(1, order_ref)):
                row = int((order != order_ref).any(dim=1).nonzero()[0])
                raise CheckFailed(f"order: ties (equal tau) must be broken by original position, smaller "
                                  f"first (a stable sort): got {order[row].tolist()}, expected "
                                  f"{order_ref[row].tolist()} in row {row} (case: {case})")
        expect_tensor("order", order, order_ref, case=case)
    return f"{len(_tau_cases())} trajectories match minarmd.permutation.order_from_mask_times"


def _block_cases() -> list[torch.Tensor]:
    """Fixed block ids (B, N) in generation order (non-decreasing per row)."""
    return [
        torch.tensor([[1, 1, 2]]),
        torch.tensor([[1, 2, 2, 4, 4, 4]]),  # block 3 empty: ids need not be consecutive
        torch.tensor([[1]]),  # N = 1
        torch.tensor([[2, 2, 2, 2]]),  # all tokens one block
        torch.arange(1, 6)[None],  # singleton blocks (left to right)
        strided_order(8, 2)[1],  # the SBP blocks [1, 2, 3, 3, 4, 4, 5, 5]
        torch.tensor([[1, 1, 2, 3], [1, 2, 2, 2], [1, 2, 3, 4]]),  # batch > 1, different blocks per row
    ]


def _mask_hint(blocks: torch.Tensor):
    """Names the two usual wrong masks: the token-level causal mask, and the other one of M^c / M^sc."""
    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        n = blocks.shape[1]
        ones = torch.ones(n, n, dtype=torch.bool)
        if n > 1 and (same(got, ones.tril().expand_as(got)) or same(got, ones.tril(-1).expand_as(got))):
            return "your mask is the token-by-token causal mask (torch.tril): it ignores the block ids"
        same_block = blocks[:, :, None] == blocks[:, None, :]  # (B, N, N): tokens n and i in one block
        if bool(((got != expected) <= same_block).all()):
            return ("only entries between two tokens of the same block differ: M^c lets a token see its own "
                    "block, M^sc does not (< vs <=?)")
        return None
    return hint


def _check_mask(fn, reference, name: str) -> str:
    for blocks in _block_cases():
        case = f"blocks {blocks.tolist()}"
        got = attempt(fn, blocks.clone(), case=case)
        expect_tensor(name, got, reference(blocks), case=case, hints=[_mask_hint(blocks)])
    return f"{len(_block_cases())} cases match minarmd.masks.{reference.__name__}"


@exercise("02.2", "block-causal mask M^c", difficulty=1, importance=5, minutes=10)
def check_block_causal(fn):
    return _check_mask(fn, block_causal_mask, "M^c")


@exercise("02.3", "strictly causal mask M^sc", difficulty=1, importance=5, minutes=5)
def check_strictly_causal(fn):
    return _check_mask(fn, strictly_causal_mask, "M^sc")


def _reindex_hint(mask: torch.Tensor, order: torch.Tensor):
    """Names the usual wrong re-indexings: by order itself, rows only, row 0's order, not at all."""
    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        batch = torch.arange(mask.shape[0])[:, None, None]
        rank = torch.argsort(order, dim=1)
        if same(got, mask[batch, order[:, :, None], order[:, None, :]]):
            return "you indexed with order itself: out[p, q] needs the slot of position p, the inverse permutation"
        if same(got, mask):
            return "your result is the input unchanged: it is still in generation order"
        if same(got, mask[batch, rank[:, :, None], torch.arange(mask.shape[1])[None, None, :]]):
            return "only the rows were re-indexed: the columns are positions too and need the same re-indexing"
        if order.shape[0] > 1 and same(got, to_original_order(mask, order[:1].expand_as(order))):
            return "every row of the batch was re-indexed with row 0's order: each row has its own order"
        return None
    return hint


@exercise("02.4", "a generation-order mask in original order", difficulty=3, importance=3, minutes=20)
def check_to_original(fn):
    g = torch.Generator().manual_seed(4)
    tau = torch.randint(1, 4, (3, 7), generator=g)
    cases = [
        left_to_right(1, 5),  # identity order: nothing moves
        strided_order(8, 2),  # [0, 4, 1, 5, 2, 6, 3, 7] is not its own inverse
        strided_order(12, 3),
        random_order(1, 1, g),  # N = 1
        random_order(4, 6, g),  # batch > 1, different orders
        order_from_mask_times(tau, 3),  # blocks with ties, batch > 1
    ]
    for order, blocks in cases:
        for name, mask in (("M^c", block_causal_mask(blocks)), ("M^sc", strictly_causal_mask(blocks))):
            case = f"{name} of order {order.tolist()}" if order.numel() <= 12 else \
                f"{name} of {order.shape[0]} orders of length {order.shape[1]}"
            got = attempt(fn, mask.clone(), order.clone(), case=case)
            expect_tensor(f"{name} in original order", got, to_original_order(mask, order), case=case,
                          hints=[_reindex_hint(mask, order)])
    # not only masks: any (B, N, N) tensor is re-indexed the same way (here distinct values per cell)
    order = random_order(2, 5, g)[0]
    values = torch.arange(2 * 5 * 5).reshape(2, 5, 5)
    case = f"a (2, 5, 5) int64 tensor of distinct values, orders {order.tolist()}"
    expect_tensor("re-indexed tensor", attempt(fn, values.clone(), order.clone(), case=case),
                  to_original_order(values, order), case=case)
    return f"{2 * len(cases) + 1} cases match minarmd.masks.to_original_order"


def _left_to_right_hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    if same(got, torch.arange(got.shape[-1]).expand_as(got)):
        return "your order is left to right (0..n-1): slot k holds a position of stream k mod S, interleaved"
    return None


def _heads_hint(streams: int):
    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        if streams > 1 and bool((got[:, :streams] == got[:, :1]).all()):
            return "the S stream heads share a block: in phase 1 they are generated one at a time, blocks 1..S"
        return None
    return hint


@exercise("02.5", "strided block-parallel order", difficulty=3, importance=4, minutes=25)
def check_strided(fn):
    cases = [(8, 2), (8, 1), (8, 8), (1, 1), (12, 3), (6, 2), (12, 4)]
    for n, streams in cases:
        case = f"n={n}, streams={streams}"
        order_ref, blocks_ref = strided_order(n, streams)
        order, blocks = _pair(attempt(fn, n, streams, case=case), "(order, blocks)", case)
        expect_tensor("order", order, order_ref, case=case, hints=[_left_to_right_hint])
        expect_tensor("blocks", blocks, blocks_ref, case=case, hints=[_heads_hint(streams)])
    expect_raises(fn, (10, 3), ValueError, "n=10, streams=3 (3 does not divide 10)")
    return f"{len(cases)} (n, S) pairs match minarmd.permutation.strided_order; n % S != 0 raises ValueError"


def _singletons_hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    if same(got, got[:, :1].expand_as(got)):
        return "all your block ids are equal: one token per step here, so the blocks are 1, 2, ..., n"
    return None


def _derangements(k: int) -> list[list[int]]:
    """Every permutation of 0..k-1 with no fixed point, in lexicographic order (k = 3: 2, k = 4: 9)."""
    return [list(p) for p in itertools.permutations(range(k)) if all(p[i] != i for i in range(k))]


def _moved_hint(moved: int, k: int) -> str:
    if moved < k:
        return ("a uniform permutation of the k slots, not a derangement: some rows move fewer than k tokens "
                "(a chosen token can land in its own slot again; draw again until none does)")
    if k == 0:
        return "k=0 is left to right: every token stays in its slot"
    return "more than k tokens left their slot: only the k chosen slots may change"


def _k1_refused(fn) -> None:
    """k = 1 must raise ValueError: no order moves exactly one token (the smallest shuffle is a swap)."""
    case = "batch=2, n=5, k=1, generator seeded 0"
    try:
        got = fn(2, 5, 1, torch.Generator().manual_seed(0))
    except NotImplementedError as err:
        raise NotAttempted(str(err)) from None
    except ValueError:
        return
    except Exception as err:  # noqa: BLE001 - any other error of the learner's code is reported
        place = where_raised(err)
        raise CheckFailed(f"raised {type(err).__name__} for {case}, expected ValueError"
                          + (f"\n{place}" if place else "")) from None
    ltr = isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[0], torch.Tensor) \
        and same(got[0], left_to_right(2, 5)[0])
    raise CheckFailed(hinted(f"returned without an error for {case}; it should raise ValueError",
                             "k=1: one token cannot leave its slot alone (the smallest shuffle is a swap, k=2), "
                             "so raise ValueError" + (" instead of returning left to right" if ltr else "")))


@exercise("02.6", "k shuffled tokens", difficulty=3, importance=3, minutes=20)
def check_shuffle(fn):
    def call(batch, n, k, seed):
        case = f"batch={batch}, n={n}, k={k}, generator seeded {seed}"
        order, blocks = _pair(attempt(fn, batch, n, k, torch.Generator().manual_seed(seed), case=case),
                              "(order, blocks)", case)
        ltr_order, ltr_blocks = left_to_right(batch, n)
        expect_tensor("blocks", blocks, ltr_blocks, case=case, hints=[_singletons_hint])  # singleton blocks 1..n
        if not isinstance(order, torch.Tensor):
            expect_tensor("order", order, ltr_order, case=case)  # reports the type
        if order.shape != ltr_order.shape or order.dtype != ltr_order.dtype:
            expect_tensor("order", order, ltr_order, case=case)  # reports shape / dtype
        if not torch.equal(order.sort(dim=1).values, ltr_order):
            row = int((order.sort(dim=1).values != ltr_order).any(dim=1).nonzero()[0])
            raise CheckFailed(f"order: row {row} is {order[row].tolist()[:12]}, not a permutation of 0..{n - 1} "
                              f"(case: {case})")
        moved = (order != ltr_order).sum(dim=1)  # (batch,) tokens off their left-to-right slot
        if (moved != k).any():
            row = int((moved != k).nonzero()[0])
            raise CheckFailed(hinted(f"order: row {row} moves {int(moved[row])} tokens, exactly k={k} must leave "
                                     f"their left-to-right slot: {order[row].tolist()[:12]} (case: {case})",
                                     _moved_hint(int(moved[row]), k)))
        return order, case

    def frequencies(order: torch.Tensor, k: int) -> list[float]:
        """How often each derangement of 0..k-1 (lexicographic) appears among the rows."""
        return [float((order == torch.tensor(d)).all(dim=1).double().mean()) for d in _derangements(k)]

    for n in (5, 1, 2, 8):  # k = 0 is left to right
        call(2, n, 0, 0)
    for n, k in ((2, 2), (5, 2), (5, 5), (10, 3), (10, 7), (12, 12)):  # exactly k tokens move, in every row
        call(8, n, k, n + k)
    _k1_refused(fn)
    # the generator is the only source of randomness: the same seed gives the same orders
    first, case = call(6, 10, 4, 1)
    again, _ = call(6, 10, 4, 1)
    if not torch.equal(first, again):
        raise CheckFailed(f"order: two calls with generators seeded alike gave different orders; draw every "
                          f"random number with generator=... (case: {case})")
    # Uniformity. A correct answer draws other random numbers than the library, so its frequencies
    # are binomial: a frequency p over R rows has std sqrt(p (1 - p) / R), and each check allows 5 std
    # (one frequency leaves it by chance with probability 6e-7, one of the 16 below with under 1e-5).
    # The wrong answers are far outside: a missing derangement has frequency 0, a window moves an end
    # slot 1/4 of the time instead of 2/5.
    rows = 2000
    # k = n = 3: the 2 derangements [1, 2, 0] and [2, 0, 1], each 1/2 (std 0.011, tolerance 0.056)
    order, case = call(rows, 3, 3, 2)
    freq, tol = frequencies(order, 3), 5 * (0.5 * 0.5 / rows) ** 0.5
    if max(abs(f - 1 / 2) for f in freq) > tol:
        raise CheckFailed(f"order: with k = n = 3 the 2 derangements [1, 2, 0] and [2, 0, 1] should each appear "
                          f"about 1/2 of the time, got {[round(f, 3) for f in freq]} (case: {case})")
    # k = n = 4: the 9 derangements, each 1/9 (std 0.0070, tolerance 0.035): 6 are 4-cycles, 3 double swaps
    order, case = call(rows, 4, 4, 3)
    freq, tol = frequencies(order, 4), 5 * (1 / 9 * 8 / 9 / rows) ** 0.5
    if max(abs(f - 1 / 9) for f in freq) > tol:
        no_swaps = not bool((order.gather(1, order) == torch.arange(4)).all(dim=1).any())  # no involution
        hint = ("every row is one 4-cycle (a roll of the chosen slots?): a uniform derangement is also a "
                "product of two swaps, 3 of the 9 for k=4; draw uniform permutations until one has no fixed "
                "point") if no_swaps else None
        raise CheckFailed(hinted(f"order: with k = n = 4 the 9 derangements {_derangements(4)} should each appear "
                                 f"about 1/9 = 0.111 of the time, got {[round(f, 3) for f in freq]} (case: {case})",
                                 hint))
    # k = 2 of n = 5: always a swap (checked above), of a uniform pair: every slot moves 2/5 of the time
    # (std 0.011, tolerance 0.055)
    order, case = call(rows, 5, 2, 4)
    moved = (order != torch.arange(5)).double().mean(dim=0)  # (5,) how often each slot moved
    tol = 5 * (0.4 * 0.6 / rows) ** 0.5
    if (moved - 0.4).abs().max() > tol:
        raise CheckFailed(f"order: every slot should be among the k shuffled ones equally often (moved 2/5 = 0.4 "
                          f"of the time for k=2, n=5), got per slot {[round(float(m), 3) for m in moved]}; "
                          f"choose the k slots uniformly among all n (case: {case})")
    return ("singleton blocks, permutations moving exactly k tokens, k = 0 left to right, k = 1 refused, "
            "seeded draws reproducible, uniform slots and derangements")
