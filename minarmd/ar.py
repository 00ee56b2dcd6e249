r"""The autoregressive baseline: a GPT with RoPE and the next-token loss.

.. math::  -\log p_\theta(x) = \sum_{n=1}^{N} -\log p_\theta(x_n \mid \mathrm{BOS}, x_{<n})

ARMD is measured against it: ARMD in left-to-right order computes the same factorisation with a
different network, so on equal data, width, depth and steps the two exact NLLs are directly
comparable (``evaluate.py``, protocol "exact, left to right").

It is ``transformer.Transformer(causal=True)`` — the same ``layers.Block`` as ARMD — with one extra
embedding row used as BOS. The input is ``[BOS, x_1 .. x_{N-1}]`` and the targets ``x_1 .. x_N``,
so every one of the N tokens is scored, the first one given BOS only, exactly as ARMD scores it.
The BOS row is cut from the output logits: the model never predicts BOS.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import TransformerConfig
from .loss import token_nll
from .transformer import with_extra_token
from .validation import check_embeddings, check_tokens  # ar.check_tokens: its old home, still importable

__all__ = ["GPT", "ar_loss"]


class GPT(nn.Module):
    """AR baseline over ``cfg.vocab_size`` tokens; sequences of up to ``cfg.max_len`` tokens."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.net = with_extra_token(cfg, causal=True)
        self.cfg = cfg
        self.bos_id = cfg.vocab_size  # the extra embedding row

    def num_params(self) -> int:
        return self.net.num_params()

    def forward(self, x: torch.Tensor, *, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N) int64 -> logits (B, N, V): row n is p(x_n | BOS, x_<n).

        ``embeddings`` (B, N, D), row n the vector of x_n, replaces the lookup of x (``x`` still gives
        the shape and is checked). The input is shifted, so the last row is never read.
        """
        check_tokens(x, self.cfg.vocab_size, self.cfg.max_len)
        bos = torch.full_like(x[:, :1], self.bos_id)  # (B, 1)
        inputs = torch.cat([bos, x[:, :-1]], dim=1)  # (B, N): shifted right by one
        if embeddings is not None:
            check_embeddings(embeddings, x, self.net.wte)
            embeddings = torch.cat([self.net.wte(bos), embeddings[:, :-1]], dim=1)  # (B, N, D), shifted too
        return self.net(inputs, embeddings=embeddings)[..., :self.cfg.vocab_size]  # (B, N, V)

    def next_logits(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix (B, k) with 0 <= k < max_len -> logits (B, V) of the next token (uncached)."""
        bos = torch.full((prefix.shape[0], 1), self.bos_id, dtype=torch.long, device=prefix.device)
        return self.net(torch.cat([bos, prefix], dim=1))[:, -1, :self.cfg.vocab_size]


def ar_loss(model: GPT, x: torch.Tensor, per_token: bool = False) -> torch.Tensor:
    """Exact NLL in nats: mean over all tokens, or (B, N) with ``per_token=True``."""
    nll = token_nll(model(x), x)  # (B, N)
    return nll if per_token else nll.mean()
