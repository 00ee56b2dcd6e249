r"""Templates and generation plans: what to generate, in which order, and which slots each call fills.

A **template** is a (B, N) int64 tensor, one row per sequence, in original position order:

* a token id >= 0 is **given** (a prompt, a suffix, scattered tokens): it conditions the rest and
  is never redrawn;
* ``FREE`` (-1) marks a position to generate;
* ``PAD`` (-2) marks a position the row does not have: a row shorter than N ends in PAD
  (rows are left-aligned; a PAD is followed only by PADs).

Rows may differ in everything: how many tokens they give, where, and how long they are.

A **plan** (``plan``) turns a template into a generation order and block ids, per row, with the
conventions of ``permutation.py`` (``order[b, k]`` = original position of the k-th slot):

.. math::  \underbrace{\text{given}}_{\text{blocks } 1..g_b \text{ (singletons, left to right)}}
           \;\big|\; \underbrace{\text{free}}_{\text{blocks } g_b + 1 \ldots} \;\big|\;
           \underbrace{\text{PAD}}_{\text{one last block, never generated}}

so the model, which scores block b given blocks < b, sees every given token before any free one.
The free positions are ordered left to right, at random, by a permutation you pass, or strided over
S streams (SBP, ``permutation.strided_order(uneven=True)``). **When S does not divide a row's m free
positions**, the runs are as even as possible: the first m mod S runs are one position longer, so
the last phase-2 blocks hold fewer than S tokens. Either way a row takes S + ceil(m/S) - 1 calls.

**Calls** (``call_slots``): call j fills, in every row, that row's j-th free block. Rows with
fewer free blocks are done early and take no part in later calls, so a batch takes as many
calls as its longest row. Each call's slots come as a padded (B, K) index with a validity mask.
"""
from __future__ import annotations

import torch

from .permutation import strided_order
from .validation import check_int

__all__ = ["FREE", "PAD", "make_template", "stack_rows", "check_template", "plan", "block_spans",
           "call_slots"]

FREE = -1  # template value of a position to generate
PAD = -2  # template value of a position the row does not have (a shorter row ends in PAD)


def make_template(n: int, batch: int = 1, prompt=None, suffix=None) -> torch.Tensor:
    """(batch, n) int64: ``prompt`` at the start, ``suffix`` at the end, ``FREE`` elsewhere.

    ``prompt`` and ``suffix`` are id lists or tensors, (P,) or (batch, P).
    """
    if not isinstance(n, int) or n < 1 or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"n and batch must be integers >= 1, got n={n!r}, batch={batch!r}")
    parts = []
    for name, ids in (("prompt", prompt), ("suffix", suffix)):
        ids = torch.zeros(batch, 0, dtype=torch.long) if ids is None else torch.as_tensor(ids)
        if ids.dtype not in (torch.int32, torch.int64) or ids.ndim not in (1, 2):
            raise ValueError(f"{name} must be token ids, shaped (P,) or (batch, P); "
                             f"got dtype {ids.dtype} and shape {tuple(ids.shape)}")
        parts.append(ids.long().expand(batch, -1) if ids.ndim == 1 else ids.long())
    prompt, suffix = parts
    if prompt.shape[1] + suffix.shape[1] >= n:
        raise ValueError(f"prompt ({prompt.shape[1]} tokens) and suffix ({suffix.shape[1]}) leave nothing "
                         f"to generate in n={n} positions; raise n or shorten them")
    template = torch.full((batch, n), FREE, dtype=torch.long)
    template[:, :prompt.shape[1]] = prompt
    if suffix.shape[1]:
        template[:, n - suffix.shape[1]:] = suffix
    return template


def stack_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """One template from rows of different lengths (each (n_b,) with ids and FREE): PAD on the right."""
    if not rows:
        raise ValueError("stack_rows needs at least one row")
    n = max(len(r) for r in rows)
    template = torch.full((len(rows), n), PAD, dtype=torch.long)
    for b, row in enumerate(rows):
        template[b, :len(row)] = torch.as_tensor(row, dtype=torch.long)
    return template


def check_template(template: torch.Tensor, vocab_size: int, max_len: int) -> torch.Tensor:
    """Validate a (B, N) template; returns the number of given tokens of each row, (B,) int64."""
    if not isinstance(template, torch.Tensor) or template.dtype != torch.long or template.ndim != 2:
        raise ValueError("template must be a (B, N) int64 tensor: token ids where given, FREE (-1) where "
                         "to generate, PAD (-2) after the end of a shorter row (build one with make_template)")
    B, N = template.shape
    if B == 0 or N == 0:
        raise ValueError(f"template must have at least one row and one position, got shape {(B, N)}")
    if N > max_len:
        raise ValueError(f"template length N={N} exceeds the model's max_len={max_len}: "
                         f"generate at most {max_len} tokens (or a shorter prompt)")
    if template.min() < PAD or template.max() >= vocab_size:
        raise ValueError(f"template ids must be in 0..vocab_size-1={vocab_size - 1} (or FREE = -1, PAD = -2), "
                         f"got values in {int(template.min())}..{int(template.max())}")
    absent = template == PAD
    if (absent[:, :-1] & ~absent[:, 1:]).any():
        row = int((absent[:, :-1] & ~absent[:, 1:]).any(1).nonzero()[0])
        raise ValueError(f"template row {row}: PAD (-2) may only end a row (left-aligned rows); "
                         f"use FREE (-1) for a position to generate")
    free = (template == FREE).sum(dim=1)  # (B,)
    if (free == 0).any():
        row = int((free == 0).nonzero()[0])
        raise ValueError(f"template row {row} has no FREE position: nothing to generate")
    return (template >= 0).sum(dim=1)


def plan(template: torch.Tensor, streams: int = 1, order: str | torch.Tensor = "l2r",
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generation order and blocks (both (B, N)) for a template (see the module docstring).

    Given tokens come first (singleton blocks, left to right). Then each row's m_b FREE positions:
    left to right ("l2r"), in a random order per row ("random"), or in your order. A tensor
    ``order``, (m,) or (B, m), is a permutation of 0..m-1 that ranks the m free positions (taken in
    ascending position order; every row must have the same m), so for an empty template it is
    simply the order of positions. With ``streams`` > 1 the free positions are strided over S runs
    (SBP; order "l2r"). PAD positions come last, in one block after the row's last free block.
    """
    B, N = template.shape
    given, free = template >= 0, template == FREE
    n_given, n_free = given.sum(1), free.sum(1)  # (B,) each
    check_int("streams", streams)
    custom = isinstance(order, torch.Tensor)
    if custom:
        m = int(n_free[0])
        if (n_free != m).any():
            raise ValueError(f"a tensor order needs the same number of FREE positions in every row, got "
                             f"{n_free.tolist()}; use order='l2r' or 'random' for such a batch")
        order = order.long().expand(B, -1) if order.ndim == 1 else order.long()
        if order.shape != (B, m) or not torch.equal(order.sort(dim=1).values, torch.arange(m).expand(B, m)):
            raise ValueError(f"a tensor order must be a permutation of 0..{m - 1} (one rank per free "
                             f"position), shaped ({m},) or ({B}, {m}); got shape {tuple(order.shape)}")
    elif order not in ("l2r", "random"):
        raise ValueError(f"order must be 'l2r', 'random' or a permutation tensor, got {order!r}")
    if streams > 1 and (custom or order != "l2r"):
        raise ValueError("strided generation (streams > 1) runs its streams left to right: use order='l2r'")
    if streams > int(n_free.min()):
        raise ValueError(f"streams={streams} exceeds the number of positions to generate "
                         f"({int(n_free.min())} in the shortest row): every stream needs one; lower streams")
    # stable sort by kind: given positions ascending, then free ones, then PAD
    kind = torch.where(given, 0, torch.where(free, 1, 2))  # (B, N)
    by_position = torch.sort(kind, dim=1, stable=True).indices  # (B, N)
    slots = torch.arange(N).expand(B, N)
    blocks = torch.where(slots < n_given[:, None], slots + 1, 0)  # given: singleton blocks 1..g_b
    rank = None  # (B, m_max) ranks of the free positions, or None for their own left-to-right order
    if custom:
        rank = order
    elif order == "random":  # one uniform permutation per row (from the first m_b uniforms of the row)
        uniforms = torch.rand(B, int(n_free.max()), generator=generator, dtype=torch.float64)
        rank = uniforms.masked_fill(torch.arange(uniforms.shape[1]) >= n_free[:, None], 2.0).argsort(dim=1)
    order_out = by_position.clone()
    for b in range(B):  # free part of each row: [g_b, g_b + m_b)
        g, m = int(n_given[b]), int(n_free[b])
        positions = by_position[b, g:g + m]
        if rank is not None:
            positions = positions[rank[b, :m]]
            free_blocks = torch.arange(1, m + 1)
        elif streams > 1:
            stride, free_blocks = strided_order(m, streams, uneven=True)
            positions, free_blocks = positions[stride[0]], free_blocks[0]
        else:
            free_blocks = torch.arange(1, m + 1)
        order_out[b, g:g + m] = positions
        blocks[b, g:g + m] = free_blocks + g
        blocks[b, g + m:] = g + int(free_blocks[-1]) + 1  # PAD: one block after the last free one
    return order_out, blocks


def block_spans(blocks: torch.Tensor) -> list[tuple[int, int]]:
    """[(start, end), ...] slots of each block along row 0 of a (B, N) blocks tensor."""
    ids = blocks[0].tolist()
    starts = [k for k in range(len(ids)) if k == 0 or ids[k] != ids[k - 1]]
    return list(zip(starts, starts[1:] + [len(ids)]))


def call_slots(blocks: torch.Tensor, n_given: torch.Tensor, n_real: torch.Tensor):
    """The slots each call fills: a list, one (slots, valid) pair per call, both (B, K_j).

    Call j (0-based) fills each row's free block g_b + 1 + j: ``slots[b, :w]`` are its slots along
    the generation order (w = its size, 0 once the row is done) and ``valid[b, k]`` says which of the
    padded K_j entries are real. ``n_given`` and ``n_real`` (B,) count given and non-PAD positions.
    """
    B, N = blocks.shape
    last = blocks.gather(1, (n_real - 1)[:, None])[:, 0]  # (B,) block id of each row's last free slot
    n_calls = int((last - n_given).max())
    targets = n_given[:, None] + 1 + torch.arange(n_calls)  # (B, J) block id of call j in each row
    start = torch.searchsorted(blocks.contiguous(), targets.contiguous(), right=False)  # (B, J)
    end = torch.searchsorted(blocks.contiguous(), targets.contiguous(), right=True)
    width = torch.where(targets <= last[:, None], end - start, 0)  # (B, J): 0 once a row is done
    calls = []
    for j in range(n_calls):
        k = torch.arange(int(width[:, j].max()))  # (K_j,)
        valid = k < width[:, j:j + 1]  # (B, K_j)
        calls.append((torch.where(valid, start[:, j:j + 1] + k, 0), valid))
    return calls
