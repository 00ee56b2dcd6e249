r"""Block-causal and strictly causal attention masks, built from block ids.

With the tokens listed in generation order (blocks contiguous and non-decreasing), the paper's two
masks are (row n = the attending token, column i = the attended one):

.. math::  M^{c}_{n,i} = [\,B(i) \le B(n)\,] \qquad\text{(block-causal: full inside a block)}

.. math::  M^{sc}_{n,i} = [\,B(i) < B(n)\,] \qquad\text{(strictly causal: earlier blocks only)}

Both are one elementwise rule, ``visible(B(i), B(n), strict)``: ``block_mask`` applies it to whole
(B, Mq, Mk) grids, the FlexAttention ``mask_mod`` of ``attention.py`` to one (query, key) pair of
ids at a time, and the KV cache (``cache.py``) to the blocks of one decoding call. The fused causal
path (singleton blocks) builds no mask; ``tests/test_masks.py`` checks it against this rule.

In generation order both are block-lower-triangular. No ``[mask]`` token is ever fed to ARMD:
"masking" a token for the tokens of its own and earlier blocks is done by these masks alone.
In the original token order the same masks look scattered; ``to_original_order`` maps them
there (row p, column p' are original positions), which is how the notebooks draw them.

``True`` means "may attend", the convention of ``torch.nn.functional.scaled_dot_product_attention``.
"""
from __future__ import annotations

import torch

__all__ = ["visible", "block_mask", "block_causal_mask", "strictly_causal_mask", "inverse_order",
           "blocks_in_original_order", "to_original_order"]


def visible(block_k, block_q, strict: bool):
    """The mask rule: a query of block B(q) may see a key of block B(k) iff B(k) < B(q) (strict) or B(k) <= B(q).

    Elementwise: block ids as broadcastable tensors, index tensors inside a FlexAttention mask_mod, or ints.
    """
    return block_k < block_q if strict else block_k <= block_q


def block_mask(blocks_q: torch.Tensor, blocks_k: torch.Tensor, strict: bool) -> torch.Tensor:
    """(B, Mq, Mk) bool: query q may attend key k iff B(k) < B(q) (strict) or B(k) <= B(q)."""
    return visible(blocks_k[:, None, :], blocks_q[:, :, None], strict)  # (B, 1, Mk) vs (B, Mq, 1)


def block_causal_mask(blocks: torch.Tensor) -> torch.Tensor:
    """M^c in generation order, (B, N, N): n attends i iff B(i) <= B(n)."""
    return block_mask(blocks, blocks, strict=False)


def strictly_causal_mask(blocks: torch.Tensor) -> torch.Tensor:
    """M^sc in generation order, (B, N, N): n attends i iff B(i) < B(n). Rows of block 1 are empty."""
    return block_mask(blocks, blocks, strict=True)


def inverse_order(order: torch.Tensor) -> torch.Tensor:
    """rank[b, p] = slot in generation order of original position p (the inverse permutation)."""
    return torch.argsort(order, dim=-1)


def blocks_in_original_order(blocks: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """(B, N): the block id of every original position."""
    return blocks.gather(1, inverse_order(order))


def to_original_order(mask: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Re-index a (B, N, N) generation-order mask by original positions: out[b, p, p'] for positions p, p'."""
    rank = inverse_order(order)  # (B, N)
    rows = mask.gather(1, rank[:, :, None].expand_as(mask))  # rows p: mask[b, rank[p], :]
    return rows.gather(2, rank[:, None, :].expand_as(mask))  # cols p': [.., rank[p']]
