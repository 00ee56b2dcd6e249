"""M^c and M^sc against their definitions, in generation order and in original order."""
import torch

from minarmd import masking, masks, permutation


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
