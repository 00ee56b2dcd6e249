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


class GPT(nn.Module):
    """AR baseline over ``cfg.vocab_size`` tokens; sequences of up to ``cfg.max_len`` tokens."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.net = with_extra_token(cfg, causal=True)
        self.cfg = cfg
        self.bos_id = cfg.vocab_size  # the extra embedding row

    def num_params(self) -> int:
        return self.net.num_params()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N) int64 -> logits (B, N, V): row n is p(x_n | BOS, x_<n)."""
        check_tokens(x, self.cfg.vocab_size, self.cfg.max_len)
        bos = torch.full_like(x[:, :1], self.bos_id)  # (B, 1)
        inputs = torch.cat([bos, x[:, :-1]], dim=1)  # (B, N): shifted right by one
        return self.net(inputs)[..., :self.cfg.vocab_size]  # (B, N, V)

    def next_logits(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix (B, k) with 0 <= k < max_len -> logits (B, V) of the next token (uncached)."""
        bos = torch.full((prefix.shape[0], 1), self.bos_id, dtype=torch.long, device=prefix.device)
        return self.net(torch.cat([bos, prefix], dim=1))[:, -1, :self.cfg.vocab_size]


def ar_loss(model: GPT, x: torch.Tensor, per_token: bool = False) -> torch.Tensor:
    """Exact NLL in nats: mean over all tokens, or (B, N) with ``per_token=True``."""
    nll = token_nll(model(x), x)  # (B, N)
    return nll if per_token else nll.mean()


def check_tokens(x: torch.Tensor, vocab_size: int, max_len: int) -> None:
    """A (B, N) int64 batch of ids in 0..vocab_size-1 with N <= max_len, or a ValueError saying why.

    Skipped inside ``torch.compile`` (the value checks sync with the GPU and break the graph).
    """
    if getattr(torch.compiler, "is_compiling", lambda: False)():
        return
    if not isinstance(x, torch.Tensor) or x.dtype != torch.long or x.ndim != 2:
        raise ValueError(f"x must be a (B, N) int64 tensor of token ids, got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must hold at least one token per row, got shape {tuple(x.shape)}")
    if x.shape[1] > max_len:
        raise ValueError(f"sequence length N={x.shape[1]} exceeds max_len={max_len}; "
                         f"crop the input or build the model with a larger max_len")
    if x.min() < 0 or x.max() >= vocab_size:
        raise ValueError(f"x must hold ids in 0..vocab_size-1={vocab_size - 1}, "
                         f"got values in {int(x.min())}..{int(x.max())}")
