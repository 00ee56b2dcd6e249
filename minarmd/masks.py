r"""Block-causal and strictly causal attention masks, built from block ids.

With the tokens listed in generation order (blocks contiguous and non-decreasing), the paper's two
masks are (row n = the attending token, column i = the attended one):

.. math::  M^{c}_{n,i} = [\,B(i) \le B(n)\,] \qquad\text{(block-causal: full inside a block)}

.. math::  M^{sc}_{n,i} = [\,B(i) < B(n)\,] \qquad\text{(strictly causal: earlier blocks only)}

In generation order both are block-lower-triangular. No ``[mask]`` token is ever fed to ARMD:
"masking" a token for the tokens of its own and earlier blocks is done by these masks alone.
In the original token order the same masks look scattered; ``to_original_order`` maps them
there (row p, column p' are original positions), which is how the notebooks draw them.

``True`` means "may attend", the convention of ``torch.nn.functional.scaled_dot_product_attention``.
"""
from __future__ import annotations

import torch


def block_mask(blocks_q: torch.Tensor, blocks_k: torch.Tensor, strict: bool) -> torch.Tensor:
    """(B, Mq, Mk) bool: query q may attend key k iff B(k) < B(q) (strict) or B(k) <= B(q)."""
    bq = blocks_q[:, :, None]  # (B, Mq, 1)
    bk = blocks_k[:, None, :]  # (B, 1, Mk)
    return bk < bq if strict else bk <= bq


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
