"""Generation orders and block ids against brute-force definitions and the paper's example."""
import itertools

import pytest
import torch

from minarmd import masking, permutation


def is_permutation(order: torch.Tensor) -> bool:
    return all(sorted(row) == list(range(order.shape[1])) for row in order.tolist())


def test_paper_strided_example():
    # paper, Sec. 3.1, 1-based: N = 8, S = 2 -> [1, 5, 2, 6, 3, 7, 4, 8]
    order, blocks = permutation.strided_order(8, 2)
    assert (order[0] + 1).tolist() == [1, 5, 2, 6, 3, 7, 4, 8]
    assert blocks[0].tolist() == [1, 2, 3, 3, 4, 4, 5, 5]  # heads singleton, then pairs


@pytest.mark.parametrize("n,s", [(8, 1), (8, 2), (8, 4), (8, 8), (12, 3), (256, 4)])
def test_strided_order_brute_force(n, s):
    order, blocks = permutation.strided_order(n, s, batch=2)
    length = n // s
    expected = [stream * length + j for j in range(length) for stream in range(s)]
    assert order[1].tolist() == expected
    expected_blocks = [stream + 1 if j == 0 else s + j for j in range(length) for stream in range(s)]
    assert blocks[1].tolist() == expected_blocks
    n_blocks = len(set(expected_blocks))
    assert n_blocks == s + length - 1  # the number of network calls of SBP generation


def test_strided_order_needs_s_dividing_n():
    with pytest.raises(ValueError, match="streams"):
        permutation.strided_order(10, 4)


def test_order_from_mask_times_brute_force():
    g = torch.Generator().manual_seed(0)
    T, n = 5, 17
    tau = masking.sample_mask_times(masking.alpha_schedule("linear", T), (6, n), g)
    order, blocks = permutation.order_from_mask_times(tau, T)
    for row in range(6):
        # brute force: positions sorted by (-tau, position); block = T - tau + 1
        expected = sorted(range(n), key=lambda p: (-int(tau[row, p]), p))
        assert order[row].tolist() == expected
        assert blocks[row].tolist() == [T - int(tau[row, p]) + 1 for p in expected]
        assert (blocks[row, 1:] >= blocks[row, :-1]).all() and blocks[row].min() >= 1


def test_masked_last_is_generated_first():
    tau = torch.tensor([[2, 4, 1, 4, 3]])
    order, blocks = permutation.order_from_mask_times(tau, T=4)
    assert order.tolist() == [[1, 3, 4, 0, 2]]
    assert blocks.tolist() == [[1, 1, 2, 3, 4]]


def test_left_to_right_and_random_orders():
    order, blocks = permutation.left_to_right(3, 7)
    assert order.tolist() == [list(range(7))] * 3 and blocks.tolist() == [list(range(1, 8))] * 3
    order, blocks = permutation.random_order(50, 7, torch.Generator().manual_seed(0))
    assert is_permutation(order) and blocks.tolist() == [list(range(1, 8))] * 50
    assert len({tuple(r) for r in order.tolist()}) > 40  # 50 draws from 5040 permutations: few repeats


def test_random_order_is_uniform_on_small_n():
    order, _ = permutation.random_order(24_000, 3, torch.Generator().manual_seed(0))
    counts = {}
    for row in order.tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    assert set(counts) == set(itertools.permutations(range(3)))
    # each of 6 permutations has p = 1/6: count std = sqrt(24000 * 1/6 * 5/6) ~ 58; allow 5 sigma
    assert all(abs(c - 4000) < 5 * 58 for c in counts.values()), counts


@pytest.mark.parametrize("window", [False, True])
def test_shuffle_k_displaces_exactly_k_tokens(window):
    g = torch.Generator().manual_seed(0)
    for k in (0, 2, 3, 5, 16):
        order, blocks = permutation.shuffle_k(50, 16, k, g, window=window)
        assert is_permutation(order)
        assert blocks.tolist() == [list(range(1, 17))] * 50
        moved = order != torch.arange(16)
        assert (moved.sum(1) == k).all()  # exactly k tokens leave their slot: k counts displaced tokens
        if window and k > 1:  # the moved slots are k consecutive slots
            for row in moved:
                idx = row.nonzero().flatten()
                assert int(idx.max() - idx.min()) == k - 1
    with pytest.raises(ValueError, match="one token cannot move alone"):
        permutation.shuffle_k(2, 16, 1, g, window=window)


def test_derangement_is_uniform_over_derangements():
    """n = 4 has 9 derangements (of 24 permutations): 9000 draws, each about 1000 times (std ~ sqrt(9000 *
    1/9 * 8/9) ~ 30; allow 5 sigma); none has a fixed point."""
    g = torch.Generator().manual_seed(0)
    counts = {}
    for _ in range(9000):
        perm = permutation.derangement(4, g)
        assert not (perm == torch.arange(4)).any()
        counts[tuple(perm.tolist())] = counts.get(tuple(perm.tolist()), 0) + 1
    assert len(counts) == 9 and all(abs(c - 1000) < 5 * 30 for c in counts.values()), counts
    assert permutation.derangement(2, g).tolist() == [1, 0] and permutation.derangement(0, g).numel() == 0
    with pytest.raises(ValueError, match="k must be 0 or an integer >= 2"):
        permutation.derangement(1, g)


def test_progressive_schedule_is_flat_then_ramps_then_flat():
    sched = permutation.ProgressiveSchedule(i_ar=100, i_perm=400, rho=32)
    ks = [sched.k(step) for step in range(600)]
    assert ks[:100] == [0] * 100  # pure left to right
    assert ks[100] == 2 and ks[400:] == [32] * 200  # the ramp starts at 2: the smallest shuffle is a swap
    ramp = ks[100:400]
    assert all(b >= a for a, b in zip(ramp, ramp[1:])) and ramp[-1] <= 32
    assert abs(sched.k(250) - 17) <= 1  # linear: half-way at the middle
    order, _ = sched.sample(50, batch=4, n=64)
    assert torch.equal(order, torch.arange(64).expand(4, 64))
    with pytest.raises(ValueError, match="rho"):
        sched.sample(500, batch=1, n=16)
    with pytest.raises(ValueError, match="i_perm"):
        permutation.ProgressiveSchedule(i_ar=10, i_perm=5, rho=4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="tau"):
        permutation.order_from_mask_times(torch.tensor([[0, 1]]), T=2)
    with pytest.raises(ValueError, match="tau"):
        permutation.order_from_mask_times(torch.tensor([1.0, 2.0]), T=2)
    with pytest.raises(ValueError, match="k must"):
        permutation.shuffle_k(1, 4, 5)
    with pytest.raises(ValueError, match="n must"):
        permutation.left_to_right(1, 0)
