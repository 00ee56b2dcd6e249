"""Solutions to exercises/02_orders_and_masks.ipynb (try the exercises first!).

Each function is checked against the library with ``check("02.k", function)``:
02.1 ``minarmd.permutation.order_from_mask_times``, 02.2 ``minarmd.masks.block_causal_mask``,
02.3 ``minarmd.masks.strictly_causal_mask``, 02.4 ``minarmd.masks.to_original_order``,
02.5 ``minarmd.permutation.strided_order``, 02.6 ``minarmd.permutation.shuffle_k``.
"""
import torch


# Exercise 02.1: generation order and block ids from masking times
def order_and_blocks(tau, T):
    # masked last = generated first: sort by tau descending; equal times keep their original order
    tau_sorted, order = torch.sort(tau, dim=1, descending=True, stable=True)  # (B, N) each
    blocks = T - tau_sorted + 1  # B(n) = T - tau(n) + 1, non-decreasing along the generation order
    return order, blocks


# Exercise 02.2: block-causal mask M^c (generation order)
def block_causal(blocks):
    # row n (query) may attend column i (key) iff B(i) <= B(n)
    return blocks[:, None, :] <= blocks[:, :, None]  # (B, N, N) bool


# Exercise 02.3: strictly causal mask M^sc (generation order)
def strictly_causal(blocks):
    # row n may attend column i iff B(i) < B(n): earlier blocks only, never its own block
    return blocks[:, None, :] < blocks[:, :, None]  # (B, N, N) bool


# Exercise 02.4: a generation-order mask re-indexed by original positions
def mask_to_original(mask, order):
    # rank[b, p] = slot of original position p in the generation order (the inverse permutation)
    rank = torch.argsort(order, dim=1)  # (B, N)
    batch = torch.arange(mask.shape[0])[:, None, None]  # (B, 1, 1)
    # out[b, p, p'] = mask[b, rank[p], rank[p']]
    return mask[batch, rank[:, :, None], rank[:, None, :]]  # (B, N, N)


# Exercise 02.5: strided block-parallel order (S streams of n/S consecutive positions, interleaved)
def strided(n, streams):
    if n % streams:
        raise ValueError(f"streams={streams} must divide n={n}")
    length = n // streams
    rel = torch.arange(length).repeat_interleave(streams)  # (N,) relative position j in its stream
    stream = torch.arange(streams).repeat(length)  # (N,) stream s
    order = stream * length + rel  # original position of slot k
    blocks = torch.where(rel == 0, stream + 1, streams + rel)  # heads one by one, then one block per j
    return order[None], blocks[None]  # (1, N) each


# Exercise 02.6: left to right except that exactly k tokens leave their slot (a derangement of k slots)
def shuffle_tokens(batch, n, k, generator):
    if k == 1:
        raise ValueError("k=1: one token cannot leave its slot alone (the smallest shuffle is a swap)")
    order = torch.arange(n).repeat(batch, 1)  # (B, N)
    for row in range(batch):
        slots = torch.randperm(n, generator=generator)[:k]  # k distinct slots, uniformly chosen
        while True:  # rejection sampling: a uniform permutation of the k slots until none stays put
            perm = torch.randperm(k, generator=generator)  # (k,)
            if not (perm == torch.arange(k)).any():  # a derangement (k = 0: the empty one, at once)
                break
        order[row, slots] = order[row, slots[perm]]
    blocks = torch.arange(1, n + 1).repeat(batch, 1)  # singleton blocks
    return order, blocks
