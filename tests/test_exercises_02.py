"""Exercises 02 (orders and masks): deliberately wrong answers fail, with a message that says what is wrong.

(That every checker passes its solution and reports the stub as not attempted: tests/test_notebooks.py.)
"""

import torch

from course import failed, load_solution
from minarmd import permutation
from minarmd.check import PASSED, run

solution = load_solution("02_orders_and_masks")


def test_library_functions_pass_their_own_checks():
    assert run("02.1", permutation.order_from_mask_times).status == PASSED
    assert run("02.5", permutation.strided_order).status == PASSED
    assert run("02.6", permutation.shuffle_k).status == PASSED


# ---- 02.1 order and blocks ------------------------------------------------------------------------

def test_02_1_wrong_answers():
    def ascending(tau, T):  # generates the first-masked tokens first
        tau_sorted, order = torch.sort(tau, dim=1, stable=True)
        return order, T - tau_sorted + 1

    def blocks_are_tau(tau, T):  # forgets B = T - tau + 1
        tau_sorted, order = torch.sort(tau, dim=1, descending=True, stable=True)
        return order, tau_sorted

    def ties_reversed(tau, T):  # a valid order, but equal times listed right to left
        n = tau.shape[1]
        tau_sorted, order = torch.sort(tau.flip(1), dim=1, descending=True, stable=True)
        return n - 1 - order, T - tau_sorted + 1

    def int32(tau, T):
        order, blocks = solution.order_and_blocks(tau, T)
        return order.int(), blocks

    def unbatched(tau, T):  # squeezes the batch dimension away
        order, blocks = solution.order_and_blocks(tau, T)
        return order[0], blocks[0]

    failed("02.1", ascending, "blocks", "differ", "hint: your blocks decrease along")
    failed("02.1", blocks_are_tau, "blocks", "differ", "hint: your blocks are the")
    failed("02.1", ties_reversed, "ties", "stable sort")
    failed("02.1", int32, "order dtype", "torch.int32", "hint: convert with .long()")
    failed("02.1", unbatched, "shape", "hint: the batch dimension is")
    failed("02.1", lambda tau, T: solution.order_and_blocks(tau, T)[0], "expected a pair")


# ---- 02.2 / 02.3 masks ----------------------------------------------------------------------------

def test_02_2_wrong_answers():
    failed("02.2", solution.strictly_causal, "M^c", "differ",
           "hint: only entries between two")  # misses the diagonal blocks
    failed("02.2", lambda b: b[:, None, :] >= b[:, :, None], "M^c", "differ",
           "hint: your result is the")  # transposed (upper)
    failed("02.2", lambda b: solution.block_causal(b).float(), "M^c dtype", "torch.float32",
           "hint: a comparison (<, <=")
    failed("02.2", lambda b: solution.block_causal(b)[0], "M^c shape",
           "hint: the batch dimension is")  # no batch dimension
    n = lambda b: b.shape[1]  # noqa: E731
    failed("02.2", lambda b: torch.ones(n(b), n(b), dtype=torch.bool).tril()[None].expand(b.shape[0], -1, -1),
           "M^c", "differ", "hint: your mask is the")  # plain causal tril ignores the blocks
    failed("02.2", lambda b: solution.block_causal(b).tolist(), "returned a list")


def test_02_3_wrong_answers():
    failed("02.3", solution.block_causal, "M^sc", "differ",
           "hint: only entries between two")  # keeps the diagonal blocks
    n = lambda b: b.shape[1]  # noqa: E731
    failed("02.3", lambda b: torch.ones(n(b), n(b), dtype=torch.bool).tril(-1)[None].expand(b.shape[0], -1, -1),
           "M^sc", "differ", "hint: your mask is the")  # strictly causal per token, ignoring blocks
    failed("02.3", lambda b: solution.strictly_causal(b).long(), "M^sc dtype", "torch.int64",
           "hint: a comparison (<, <=")


# ---- 02.4 to original order -----------------------------------------------------------------------

def test_02_4_wrong_answers():
    def by_order(mask, order):  # indexes with order instead of its inverse
        batch = torch.arange(mask.shape[0])[:, None, None]
        return mask[batch, order[:, :, None], order[:, None, :]]

    def rows_only(mask, order):  # permutes the rows, forgets the columns
        rank = torch.argsort(order, dim=1)
        return mask.gather(1, rank[:, :, None].expand_as(mask))

    def first_row_order(mask, order):  # uses row 0's order for the whole batch
        return solution.mask_to_original(mask, order[:1].expand_as(order))

    failed("02.4", by_order, "in original order", "differ", "[0, 4, 1, 5, 2, 6, 3, 7]", "hint: you indexed with order")
    failed("02.4", rows_only, "differ", "hint: only the rows were")
    failed("02.4", first_row_order, "differ", "orders of length", "hint: every row of the")
    failed("02.4", lambda mask, order: mask, "differ", "hint: your result is the")  # leaves it in generation order


# ---- 02.5 strided order ---------------------------------------------------------------------------

def test_02_5_wrong_answers():
    def slot_order(n, streams):  # order = slot: rel * S + s instead of the position s * n/S + rel
        order, blocks = solution.strided(n, streams)
        return torch.arange(n)[None], blocks

    def no_phase_one(n, streams):  # the S heads in one block (they are generated one at a time)
        order, blocks = solution.strided(n, streams)
        rel = torch.arange(n // streams).repeat_interleave(streams)
        return order, (rel + 1)[None]

    def no_error(n, streams):
        if n % streams:
            return torch.arange(n)[None], torch.arange(1, n + 1)[None]
        return solution.strided(n, streams)

    def int32(n, streams):
        order, blocks = solution.strided(n, streams)
        return order, blocks.int()

    failed("02.5", slot_order, "order", "differ", "n=8, streams=2", "hint: your order is left")
    failed("02.5", no_phase_one, "blocks", "differ", "hint: the S stream heads")
    failed("02.5", no_error, "should raise ValueError")
    failed("02.5", int32, "blocks dtype", "hint: convert with .long()")
    failed("02.5", lambda n, s: solution.strided(n, s)[0][0], "expected a pair")


# ---- 02.6 k shuffled tokens -----------------------------------------------------------------------

def _derangement(k, generator):  # what the wrong answers below share with a right one
    if k == 1:
        raise ValueError("k=1")
    while True:
        perm = torch.randperm(k, generator=generator)
        if not (perm == torch.arange(k)).any():
            return perm


def _singletons(batch, n):
    return torch.arange(1, n + 1).repeat(batch, 1)


def test_02_6_wrong_answers():
    def uniform_perm(batch, n, k, generator):  # the old reading: k slots permuted uniformly (fixed points too)
        order = torch.arange(n).repeat(batch, 1)
        for row in range(batch):
            slots = torch.randperm(n, generator=generator)[:k]
            order[row, slots] = order[row, slots[torch.randperm(k, generator=generator)]]
        return order, _singletons(batch, n)

    def first_k_slots(batch, n, k, generator):  # always deranges the first k slots
        order = torch.arange(n).repeat(batch, 1)
        for row in range(batch):
            order[row, :k] = order[row, :k][_derangement(k, generator)]
        return order, _singletons(batch, n)

    def global_rng(batch, n, k, generator):  # ignores the generator
        return solution.shuffle_tokens(batch, n, k, None)

    def whole_row(batch, n, k, generator):  # shuffles every token, whatever k is
        return solution.shuffle_tokens(batch, n, n, generator)

    def cycle(batch, n, k, generator):  # one k-cycle (a roll): a derangement, but not a uniform one for k >= 4
        if k == 1:
            raise ValueError("k=1")
        order = torch.arange(n).repeat(batch, 1)
        for row in range(batch):
            slots = torch.randperm(n, generator=generator)[:k]
            order[row, slots] = order[row, slots.roll(1)]
        return order, _singletons(batch, n)

    def one_block(batch, n, k, generator):  # blocks all 1 instead of singleton blocks
        order, blocks = solution.shuffle_tokens(batch, n, k, generator)
        return order, torch.ones_like(blocks)

    def window(batch, n, k, generator):  # the library's window variant: k consecutive slots
        return permutation.shuffle_k(batch, n, k, generator, window=True)

    def not_permutation(batch, n, k, generator):
        order, blocks = solution.shuffle_tokens(batch, n, k, generator)
        return order.clamp(max=max(n - 2, 0)), blocks

    def k1_left_to_right(batch, n, k, generator):  # returns left to right for k = 1 instead of raising
        if k == 1:
            return permutation.left_to_right(batch, n)
        return solution.shuffle_tokens(batch, n, k, generator)

    def k1_wrong_error(batch, n, k, generator):  # refuses k = 1, but not with a ValueError
        if k == 1:
            raise TypeError("k=1")
        return solution.shuffle_tokens(batch, n, k, generator)

    failed("02.6", uniform_perm, "moves 0 tokens, exactly k=2 must leave",
           "hint: a uniform permutation of the k slots, not a derangement: some rows move fewer than k")
    failed("02.6", first_k_slots, "equally often", "choose the k slots uniformly")
    failed("02.6", global_rng, "seeded alike", "generator=")
    failed("02.6", whole_row, "row 0 moves 5 tokens, exactly k=0", "hint: k=0 is left to right")
    failed("02.6", cycle, "the 9 derangements", "n = 4", "hint: every row is one 4-cycle")
    failed("02.6", one_block, "blocks", "differ", "hint: all your block ids")
    failed("02.6", window, "equally often")
    failed("02.6", not_permutation, "not a permutation")
    failed("02.6", k1_left_to_right, "k=1", "should raise ValueError",
           "hint: k=1: one token cannot leave its slot alone", "instead of returning left to right")
    failed("02.6", k1_wrong_error, "raised TypeError", "expected ValueError", "line")
