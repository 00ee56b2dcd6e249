r"""Generation orders and block ids: which token is generated when, and with which others.

ARMD rewrites masked diffusion as block-wise autoregression (paper, Eq. 2). Sort the tokens by
their masking time :math:`\tau` in **descending** order — masked last means generated first — and
group equal times into one block, :math:`B(n) = T - \tau(n) + 1`:

.. math::  \mathcal{L} = \mathbb{E}_q \sum_t \gamma(t) \sum_{n \in \text{block } t}
           -\log p\big(x_n \mid x_i : B(i) < B(n)\big).

Every function here returns a pair ``(order, blocks)`` of int64 tensors of shape (B, N):

* ``order[b, k]`` is the **original position** (0-based) of the k-th token in generation order, so
  ``order[b]`` is a permutation of 0..N-1 and ``x.gather(1, order)`` lists the tokens in that order;
* ``blocks[b, k] >= 1`` is the block id of that token, non-decreasing along k. Tokens of one block
  are generated together, each conditioned only on strictly earlier blocks.

The paper writes positions 1-based: its strided example for N = 8, S = 2 is
``[1, 5, 2, 6, 3, 7, 4, 8]``; here the same order is ``[0, 4, 1, 5, 2, 6, 3, 7]``.

Orders provided:

* ``order_from_mask_times`` — from a masking trajectory (descending tau, ties by position);
* ``left_to_right`` — the identity with singleton blocks (exact AR factorisation);
* ``random_order`` — a uniformly random permutation with singleton blocks (any-order AR);
* ``shuffle_k`` — left to right except that exactly k tokens leave their slot: k randomly chosen
  slots receive a random derangement of their tokens (the progressive permutation schedule's "k
  shuffled tokens"; ``window=True`` shuffles k consecutive slots instead);
* ``strided_order`` — strided block-parallel (SBP) order with S streams: the S stream heads as
  singleton blocks, then one block of S tokens per relative position (S + N/S - 1 blocks in all;
  ``uneven=True`` allows S not dividing N: the last blocks are shorter).

``ProgressiveSchedule`` gives k(step) of the paper's curriculum: 0 (pure left to right) for the
first ``i_ar`` steps, then a linear ramp from 2 to ``rho`` shuffled tokens at step ``i_perm``, then flat.

**What "k shuffled tokens" means here.** The paper grows "the number of shuffled tokens" from 1 to
rho and defines it no further. We count tokens that leave their left-to-right slot, exactly: k
slots are chosen and their tokens are permuted by a uniformly random *derangement* (no token keeps
its slot). So k = 0 is left to right, k = 1 cannot happen (one token cannot move alone: the
smallest change of order is a swap, k = 2), and k = n displaces every token (a uniform derangement
of the whole sequence: a uniform permutation conditioned on no fixed point, which holds for about
1/e of all permutations). Permuting k slots uniformly, the earlier reading, moves only about k - 1
tokens on average and leaves k = 1 a no-op.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .validation import check_int

__all__ = ["singleton_blocks", "order_from_mask_times", "left_to_right", "random_order", "derangement",
           "shuffle_k", "strided_order", "ProgressiveSchedule"]


def singleton_blocks(batch: int, n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Block ids 1..n for every row: each token is its own block."""
    return torch.arange(1, n + 1, device=device).expand(batch, n).clone()  # (B, N)


def order_from_mask_times(tau: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Generation order and blocks of a masking trajectory: descending tau, B(n) = T - tau(n) + 1.

    ``tau`` is (B, N) with values in 1..T (``masking.sample_mask_times``). Ties are broken by
    original position (a stable sort), which is harmless: tokens of one block are exchangeable.
    """
    if tau.ndim != 2 or tau.dtype != torch.long:
        raise ValueError(f"tau must be a (B, N) int64 tensor, got shape {tuple(tau.shape)} dtype {tau.dtype}")
    check_int("T", T)
    if tau.numel() and (tau.min() < 1 or tau.max() > T):
        raise ValueError(f"tau must lie in 1..T={T}, got values in {int(tau.min())}..{int(tau.max())}")
    tau_sorted, order = torch.sort(tau, dim=1, descending=True, stable=True)  # (B, N) each
    return order, T - tau_sorted + 1


def left_to_right(batch: int, n: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The autoregressive order 0, 1, ..., n-1 with singleton blocks."""
    check_int("batch", batch)
    check_int("n", n)
    order = torch.arange(n, device=device).expand(batch, n).clone()  # (B, N)
    return order, singleton_blocks(batch, n, device)


def random_order(batch: int, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniformly random permutation per row, singleton blocks (continuous-time limit of masking)."""
    check_int("batch", batch)
    check_int("n", n)
    # argsort of i.i.d. uniforms is a uniform permutation (ties have probability ~0 in float64)
    order = torch.argsort(torch.rand(batch, n, generator=generator, dtype=torch.float64), dim=1)
    return order, singleton_blocks(batch, n)


def derangement(k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random permutation of 0..k-1 with no fixed point (k = 0 gives an empty one).

    Rejection sampling: a uniform permutation is a derangement with probability about 1/e, so this
    takes e ~ 2.7 draws on average, and every derangement is equally likely. k = 1 has none.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 0 or k == 1:
        raise ValueError(f"k must be 0 or an integer >= 2 (one token alone cannot leave its slot), got {k!r}")
    while True:
        perm = torch.randperm(k, generator=generator)  # (k,)
        if not (perm == torch.arange(k)).any():
            return perm


def shuffle_k(batch: int, n: int, k: int, generator: torch.Generator | None = None,
              window: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Left to right, except that exactly k tokens leave their slot (a derangement of k slots).

    ``window=False``: the k slots are drawn uniformly from all n. ``window=True``: they are k
    consecutive slots starting at a uniform offset. k = 0 gives left to right; k = 1 is refused (a
    single token cannot move alone; the smallest shuffle is a swap).
    """
    order, blocks = left_to_right(batch, n)
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n or k == 1:
        raise ValueError(f"k must be 0 or an integer in 2..n={n} (the number of tokens that leave their "
                         f"left-to-right slot; one token cannot move alone), got {k!r}")
    if k == 0:
        return order, blocks
    for row in range(batch):
        if window:
            start = int(torch.randint(0, n - k + 1, (1,), generator=generator))
            slots = torch.arange(start, start + k)
        else:
            slots = torch.randperm(n, generator=generator)[:k]
        order[row, slots] = order[row, slots[derangement(k, generator)]]
    return order, blocks


def strided_order(n: int, streams: int, batch: int = 1, uneven: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Strided block-parallel order: S streams of consecutive positions, interleaved.

    Phase 1 generates the S stream heads one at a time (blocks 1..S); phase 2 generates, for each
    relative position j = 1, 2, ..., the tokens {x_j^(1..S)} as one block (block S + j).
    n = 8, S = 2 gives order [0, 4, 1, 5, 2, 6, 3, 7] and blocks [1, 2, 3, 3, 4, 4, 5, 5]:
    S + n/S - 1 blocks.

    S must divide n, unless ``uneven=True`` (the sampler's rule for any number of free positions):
    then the runs are as even as possible, the first n mod S runs one position longer than the
    others, so the last phase-2 blocks hold fewer than S tokens. n = 10, S = 4 gives runs of
    3, 3, 2, 2 positions and S + ceil(n/S) - 1 = 6 blocks. Every stream needs a position: S <= n.
    """
    check_int("n", n)
    check_int("streams", streams)
    check_int("batch", batch)
    if streams > n:
        raise ValueError(f"streams={streams} exceeds n={n}: every stream needs at least one position; "
                         f"use at most {n} streams")
    if n % streams and not uneven:
        raise ValueError(f"streams={streams} must divide n={n}: each stream holds n/S positions "
                         f"(pad the sequence or pick S among the divisors of n)")
    base, extra = divmod(n, streams)
    lengths = torch.full((streams,), base) + (torch.arange(streams) < extra)  # (S,) run lengths
    stream = torch.arange(streams).repeat_interleave(lengths)  # (n,) stream of each position
    start = torch.cumsum(lengths, 0) - lengths  # (S,) first position of each run
    rel = torch.arange(n) - start[stream]  # (n,) relative position j within its run
    slot = torch.argsort(rel * streams + stream)  # generation order: by j, then by stream
    order, rel, stream = slot, rel[slot], stream[slot]
    blocks = torch.where(rel == 0, stream + 1, streams + rel)
    return order.expand(batch, n).clone(), blocks.expand(batch, n).clone()


@dataclass
class ProgressiveSchedule:
    """The paper's progressive permutation curriculum: k(step) shuffled tokens per sequence."""

    i_ar: int  # steps of pure left-to-right training (paper, OWT: 9_000)
    i_perm: int  # step at which k reaches rho (paper, OWT: 48_000)
    rho: int  # final number of displaced tokens, 0 or >= 2 (paper: 32 at N = 1024, about 3 %)
    window: bool = False  # shuffle k consecutive slots instead of k random ones (our variant)

    def __post_init__(self):
        check_int("i_ar", self.i_ar, 0)
        check_int("rho", self.rho, 0)
        if self.rho == 1:
            raise ValueError("rho=1 displaces no token (one token cannot leave its slot alone): use rho=0 for "
                             "left to right throughout, or rho >= 2")
        check_int("i_perm", self.i_perm, self.i_ar, hint=" (i_ar)")

    def k(self, step: int) -> int:
        """Number of displaced tokens at a (0-based) training step: 0, then 2 rising to rho."""
        if step < self.i_ar:
            return 0
        if step >= self.i_perm or self.rho <= 2:
            return self.rho
        frac = (step - self.i_ar) / (self.i_perm - self.i_ar)  # in [0, 1)
        return 2 + int(frac * (self.rho - 2))

    def sample(self, step: int, batch: int, n: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Orders and (singleton) blocks for one training batch at ``step``."""
        k = self.k(step)
        if k > n:
            raise ValueError(f"rho={self.rho} exceeds the sequence length n={n}: scale rho with n "
                             f"(the paper's rho=32 is for n=1024)")
        return shuffle_k(batch, n, k, generator, window=self.window)
