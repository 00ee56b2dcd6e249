"""M^c and M^sc against their definitions, in generation order and in original order; the one rule
(``masks.visible``) against the fast paths that assume it: the fused causal kernel, ``torch.tril`` in
prefix aggregation, and FlexAttention."""
import torch

from minarmd import masking, masks, permutation
from minarmd.attention import AttentionMask, flex_available
from minarmd.two_stream import PrefixAggregation


def brute_force(blocks_row, strict):
    n = len(blocks_row)
    return [[(blocks_row[i] < blocks_row[q]) if strict else (blocks_row[i] <= blocks_row[q])
             for i in range(n)] for q in range(n)]


def trajectories():
    g = torch.Generator().manual_seed(0)
    T = 4
    tau = masking.sample_mask_times(masking.alpha_schedule("linear", T), (5, 11), g)
    yield permutation.order_from_mask_times(tau, T)
    yield permutation.strided_order(12, 3, batch=2)
    yield permutation.random_order(3, 9, g)


def test_masks_match_definitions_in_generation_order():
    for order, blocks in trajectories():
        mc, msc = masks.block_causal_mask(blocks), masks.strictly_causal_mask(blocks)
        assert mc.dtype == torch.bool and mc.shape == (*blocks.shape, blocks.shape[1])
        for row in range(blocks.shape[0]):
            assert mc[row].tolist() == brute_force(blocks[row].tolist(), strict=False)
            assert msc[row].tolist() == brute_force(blocks[row].tolist(), strict=True)
        # block-lower-triangular in generation order: each row sees a prefix of the slots, up to the
        # end of its own block (M^c) or the start of it (M^sc); M^sc is M^c minus the diagonal blocks
        slots = torch.arange(blocks.shape[1])
        n_upto = (blocks[:, None, :] <= blocks[:, :, None]).sum(-1, keepdim=True)  # (B, N, 1)
        n_before = (blocks[:, None, :] < blocks[:, :, None]).sum(-1, keepdim=True)
        assert torch.equal(mc, slots < n_upto) and torch.equal(msc, slots < n_before)
        same_block = blocks[:, :, None] == blocks[:, None, :]
        assert torch.equal(msc, mc & ~same_block)


def test_original_order_masks_match_definitions():
    for order, blocks in trajectories():
        block_of_pos = masks.blocks_in_original_order(blocks, order)
        for row in range(order.shape[0]):
            for k, p in enumerate(order[row].tolist()):
                assert block_of_pos[row, p] == blocks[row, k]
        for strict, fn in ((False, masks.block_causal_mask), (True, masks.strictly_causal_mask)):
            orig = masks.to_original_order(fn(blocks), order)
            for row in range(order.shape[0]):
                assert orig[row].tolist() == brute_force(block_of_pos[row].tolist(), strict)


def test_singleton_left_to_right_masks_are_causal_and_shifted():
    _, blocks = permutation.left_to_right(1, 6)
    ones = torch.ones(6, 6, dtype=torch.bool)
    assert torch.equal(masks.block_causal_mask(blocks)[0], torch.tril(ones))
    assert torch.equal(masks.strictly_causal_mask(blocks)[0], torch.tril(ones, diagonal=-1))


# ---- the one rule, and the fast causal path that assumes it --------------------------------------

def test_visible_is_the_rule_on_ints_tensors_and_index_lookups():
    assert masks.visible(1, 2, strict=True) and not masks.visible(2, 2, strict=True)
    assert masks.visible(2, 2, strict=False) and not masks.visible(3, 2, strict=False)
    ids = torch.tensor([0, 1, 1, 2, 5])
    for strict in (True, False):
        grid = masks.visible(ids[None, :], ids[:, None], strict)  # (5, 5) by broadcasting
        assert grid.tolist() == brute_force(ids.tolist(), strict)
        q_idx, kv_idx = torch.tensor([3, 1]), torch.tensor([1, 2])  # a mask_mod indexes the ids like this
        assert masks.visible(ids[kv_idx], ids[q_idx], strict).tolist() == [grid[3, 1].item(), grid[1, 2].item()]


def singleton_layouts():
    """(blocks (B, M), blocks_x (B, M + 1) with BOS = block 0 at slot 0): strictly increasing ids."""
    for blocks in (torch.arange(1, 8).expand(2, 7), torch.tensor([[1, 3, 4, 9, 10]]), torch.tensor([[1]])):
        zeros = torch.zeros(blocks.shape[0], 1, dtype=torch.long)
        yield blocks, torch.cat([zeros, blocks], 1)


def triangle(m_q, m_k):
    """The pattern of the fused causal kernel (is_causal, top left): query i sees keys 0..i."""
    return torch.ones(m_q, m_k, dtype=torch.bool).tril()


def test_top_left_triangle_is_the_rule_for_singleton_blocks_with_bos_at_slot_0():
    for blocks, blocks_x in singleton_layouts():
        m = blocks.shape[1]
        assert (masks.block_mask(blocks, blocks_x, strict=True) == triangle(m, m + 1)).all()  # query stream
        assert (masks.block_mask(blocks_x, blocks_x, strict=False) == triangle(m + 1, m + 1)).all()  # content
        assert (masks.block_mask(blocks, blocks, strict=False) == triangle(m, m)).all()  # causal stack


def test_causal_and_flex_attention_equal_dense_attention_under_the_rule():
    g = torch.Generator().manual_seed(0)
    for blocks, blocks_x in singleton_layouts():
        B, m = blocks.shape
        for ids_q, ids_k, strict in ((blocks, blocks_x, True), (blocks_x, blocks_x, False), (blocks, blocks, False)):
            q = torch.randn(B, 2, ids_q.shape[1], 8, generator=g, dtype=torch.float64)  # (B, H, Mq, hd)
            k, v = (torch.randn(B, 2, ids_k.shape[1], 8, generator=g, dtype=torch.float64) for _ in range(2))
            dense = AttentionMask.from_blocks(ids_q, ids_k, strict, backend="dense").attend(q, k, v)
            causal = AttentionMask.causal().attend(q, k, v)
            torch.testing.assert_close(causal, dense, rtol=0, atol=1e-12)
            if flex_available():  # eager FlexAttention on the CPU: forward only
                flex = AttentionMask.from_blocks(ids_q, ids_k, strict, backend="flex")
                flex = flex.attend(q.float(), k.float(), v.float())
                torch.testing.assert_close(flex, dense.float(), rtol=0, atol=1e-5)


def test_tril_prefix_weights_are_the_weights_under_the_strict_rule():
    torch.manual_seed(0)
    agg = PrefixAggregation(12, 4).double()
    for blocks, blocks_x in singleton_layouts():
        B, m = blocks.shape
        pos_q = torch.stack([torch.randperm(m) + 1 for _ in range(B)])  # (B, M) internal positions, any order
        pos_x = torch.cat([torch.zeros(B, 1, dtype=torch.long), pos_q], 1)
        weights = agg.pe(pos_q) @ agg.pe(pos_x).transpose(1, 2)  # (B, M, M + 1)
        rule = masks.block_mask(blocks, blocks_x, strict=True)
        assert torch.equal(torch.tril(weights), weights * rule)
        x = torch.randn(B, m + 1, 3, dtype=torch.float64)
        assert torch.equal(agg(x, pos_x, pos_q, None), agg(x, pos_x, pos_q, rule))  # the fast path, bit for bit
