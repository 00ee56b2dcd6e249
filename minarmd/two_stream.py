r"""Strict causality in ARMD: prefix aggregation (Eq. 6) and the two-stream layer (Eq. 7).

**Why a strict mask alone is not enough.** If token n's query were computed from its own input
x_n, then even with the strictly causal mask M^sc its output would depend on x_n — the token it
must predict. ARMD's query stream therefore never reads x_n: it starts from a summary of the
earlier blocks only.

**Prefix aggregation (Eq. 6).** With token embeddings X (one row per token), a learned position
table PE (rows indexed by original position) and the strictly causal mask,

.. math::  G^0 = \big((\widehat{PE}\,\widehat{PE}^\top) \odot M^{sc}\big)\, X,
           \qquad g^0_n = \sum_{i:\,B(i) < B(n)} \langle PE_{pos(n)}, PE_{pos(i)} \rangle\, x_i .

This is unnormalised linear attention, so it has a recurrent form with a (d_pe, D) state:
:math:`S \leftarrow S + PE_{pos(i)} x_i^\top` when token i is committed, and
:math:`g^0_n = S^\top PE_{pos(n)}` — O(1) work per generated token (``PrefixAggregation.update/read``).
The sum is kept exact (no normalisation), as in the paper.

**Where G^0 starts (PE's init; the paper is silent).** ``init="neighbours"`` (ARMD's default) makes
PE the Cholesky factor of the kernel K = 2 I + [|p - q| = 1], so :math:`\langle PE_p, PE_q \rangle = 1`
for adjacent positions and 0 for every other pair:

.. math::  g^0_n = x_{n-1}\,[n-1 \text{ visible}] + x_{n+1}\,[n+1 \text{ visible}],

the embeddings of n's neighbours already generated. Left to right that is :math:`x_{n-1}`, the row a
GPT predicts x_n from. It needs one column per position (d_pe >= positions). ``init="random"`` draws
N(0, init_std^2), which starts G^0 near 0 and leaves the query stream to find the previous token by
attention: on tiny Shakespeare that cost ARMD ~3 % of left-to-right NLL against AR after 1500 steps,
against ~0.5 % with the neighbours start (benchmarks/RESULTS.md §5).

**Two-stream layer (Eq. 7).** One set of weights, two streams; keys and values always come from
the content stream X:

.. math::  X^{l} = \mathrm{Attn}(W_q X^{l-1}, W_k X^{l-1}, W_v X^{l-1};\, M^{c}),\qquad
           G^{l} = \mathrm{Attn}(W_q G^{l-1}, W_k X^{l-1}, W_v X^{l-1};\, M^{sc}).

Each stream is a full pre-LN block (attention then MLP) with LayerNorms, MLP and projections
shared. X^l at row i depends on blocks <= B(i); G^l at row n reads X only from blocks < B(n), so
G^l_n depends on blocks < B(n) alone: strictly causal at every depth. The X update of the last
two-stream layer is never used, so it is skipped (``update_content=False``).

BOS: the content stream carries a BOS row (block 0, position 0) that every query may see, so no
query-stream row is ever empty; the query stream has one row per real token and no BOS row.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .attention import AttentionMask
from .layers import Block

__all__ = ["PrefixAggregation", "TwoStreamLayer", "neighbour_pe"]


def neighbour_pe(n_positions: int, d_pe: int) -> torch.Tensor:
    """(n_positions, d_pe) float64 table with <PE_p, PE_q> = 1 if |p - q| = 1, 0 for other p != q.

    The kernel K = 2 I + (ones beside the diagonal) has eigenvalues 2 + 2 cos(k pi / (P + 1)) > 0, so
    its Cholesky factor exists; columns past P are zero. The diagonal (2) is never read: no query sees
    its own position (M^sc).
    """
    if d_pe < n_positions:
        raise ValueError(f"pe_init='neighbours' needs d_pe >= max_len + 1 = {n_positions} (one dimension per "
                         f"position), got d_pe={d_pe}: pass d_pe={n_positions}, or pe_init='random'")
    off = torch.ones(n_positions - 1, dtype=torch.float64)
    kernel = 2 * torch.eye(n_positions, dtype=torch.float64) + torch.diag(off, 1) + torch.diag(off, -1)
    table = torch.zeros(n_positions, d_pe, dtype=torch.float64)
    table[:, :n_positions] = torch.linalg.cholesky(kernel)
    return table


class PrefixAggregation(nn.Module):
    """G^0 from token embeddings: sum over earlier blocks, weighted by <PE_pos(n), PE_pos(i)>."""

    def __init__(self, n_positions: int, d_pe: int, init_std: float | None = None, init: str = "random"):
        super().__init__()
        if init not in ("neighbours", "random"):
            raise ValueError(f"init must be 'neighbours' or 'random', got {init!r}")
        self.pe = nn.Embedding(n_positions, d_pe)  # PE table over (internal) positions, BOS included
        self.init, self.init_std = init, 1.0 / math.sqrt(d_pe) if init_std is None else init_std
        if init == "neighbours":
            neighbour_pe(n_positions, d_pe)  # refuses a table too narrow before anything is drawn
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # "neighbours" (ARMD's default, module docstring): g^0_n = the visible neighbours' embeddings.
        # "random": std 1/sqrt(d_pe) (the default here) makes <PE_a, PE_a> ~ 1, a unit-scale random +- mix
        # of the prefix; ARMDConfig.pe_init_std = 0.02 starts g^0 near 0 and trains much faster (README)
        with torch.no_grad():
            if self.init == "neighbours":
                self.pe.weight.copy_(neighbour_pe(*self.pe.weight.shape))
            else:
                nn.init.normal_(self.pe.weight, mean=0.0, std=self.init_std)

    def forward(self, x: torch.Tensor, pos_x: torch.Tensor, pos_q: torch.Tensor,
                visible: torch.Tensor | None) -> torch.Tensor:
        """Parallel form. x (B, Mk, D) embeddings, pos_x (B, Mk), pos_q (B, Mq) positions,
        visible (B, Mq, Mk) bool = M^sc, or None for the top-left triangle (singleton blocks)."""
        weights = self.pe(pos_q) @ self.pe(pos_x).transpose(1, 2)  # (B, Mq, Mk)
        # tril: singleton blocks in order with BOS at key slot 0 make M^sc the top-left triangle (query n
        # sees keys 0..n), so the mask need not be built (tests/test_masks.py checks it equals the rule)
        weights = torch.tril(weights) if visible is None else weights * visible
        return weights @ x  # (B, Mq, D)

    def init_state(self, x: torch.Tensor) -> torch.Tensor:
        """An empty recurrent state S (B, d_pe, D) for embeddings shaped like x (B, *, D).

        It is float32 when x is bf16/fp16: S sums one outer product per committed token, and in
        a 16-bit state each sum would be rounded to 8 (bf16) or 11 (fp16) bits again.
        """
        dtype = torch.float32 if x.element_size() < 4 else x.dtype
        return x.new_zeros(x.shape[0], self.pe.embedding_dim, x.shape[-1], dtype=dtype)

    def update(self, state: torch.Tensor, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Commit tokens: S + sum_i PE_pos(i) x_i^T. x (B, K, D), pos (B, K) -> (B, d_pe, D), in S's dtype."""
        return state + self.pe(pos).to(state.dtype).transpose(1, 2) @ x.to(state.dtype)

    def read(self, state: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """g^0 for query positions pos (B, K) given everything committed so far: (B, K, D), model dtype."""
        pe = self.pe(pos)  # (B, K, d_pe)
        return (pe.to(state.dtype) @ state).to(pe.dtype)


class TwoStreamLayer(Block):
    """A pre-LN block whose weights serve both streams (Eq. 7); queries of G, keys/values of X."""

    def forward(self, x: torch.Tensor, g: torch.Tensor, pos_x: torch.Tensor, pos_g: torch.Tensor,
                mask_content: AttentionMask, mask_query: AttentionMask, update_content: bool = True):
        """x (B, Mx, D) content stream, g (B, Mg, D) query stream -> (x', g') with the same shapes.

        With ``update_content=False`` the content stream is returned unchanged (last layer).
        """
        h_x = self.ln_1(x)
        if update_content:
            q_x, k, v = self.attn.qkv(h_x, pos_x)  # three (B, H, Mx, hd)
        else:
            k, v = self.attn.kv(h_x, pos_x)
        q_g = self.attn.query(self.ln_1(g), pos_g)  # (B, H, Mg, hd): same W_q, other stream
        g = self.finish(g, self.attn.attend(q_g, k, v, mask_query))
        if update_content:
            x = self.finish(x, self.attn.attend(q_x, k, v, mask_content))
        return x, g
