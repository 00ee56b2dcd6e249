r"""A plain transformer over the same building blocks: causal (GPT) or bidirectional (MDM-style).

.. math::  p_\theta(x) = \prod_n p_\theta(x_n \mid x_{<n}) \quad\text{(causal)},\qquad
           p_\theta(z_j \mid x_t) \text{ for every position at once} \quad\text{(bidirectional)}

It shares ``layers.Block`` with ARMD, so any speed or quality difference between them comes from
ARMD's two streams and masks, not from a different implementation. The benchmarks use it as the
"same-size plain transformer"; the training issue builds the AR and MDM baselines on it.
Positions are 0..M-1 unless given (RoPE, or a learned table added to the input with
``position_embedding="learned"``, GPT-2); no BOS is added here — callers that need one prepend it.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from .attention import AttentionMask
from .config import TransformerConfig
from .layers import Block, init_weights
from .validation import check_embeddings

__all__ = ["Transformer", "with_extra_token"]


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, causal: bool = True):
        super().__init__()
        self.cfg, self.is_causal = cfg, causal
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        # learned absolute positions (GPT-2), max_len + 1 rows like ARMD's (whose BOS takes position 0)
        self.wpe = nn.Embedding(cfg.max_len + 1, cfg.n_embd) if cfg.position_embedding == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        init_weights(self, cfg.n_layer)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, tokens: torch.Tensor, present: torch.Tensor | None = None, *,
                embeddings: torch.Tensor | None = None, pos: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, M) int64 -> logits (B, M, vocab_size).

        ``present`` (B, M) bool, bidirectional only: False marks padding after the end of a shorter
        row, a key no position attends to (so each row is computed as if it were alone).
        ``embeddings`` (B, M, D) replaces the lookup ``self.wte(tokens)``; ``tokens`` still give the shape.
        ``pos`` (B, M) gives each row's position (default 0..M-1): a causal transformer over tokens
        listed in another order at their own positions (what ARMD's content stream computes).
        """
        h = self.hidden_states(tokens, present, embeddings=embeddings, pos=pos)[-1]
        return self.lm_head(self.ln_f(h))  # (B, M, V)

    def hidden_states(self, tokens: torch.Tensor, present: torch.Tensor | None = None, *,
                      embeddings: torch.Tensor | None = None, pos: torch.Tensor | None = None) -> list:
        """The residual stream: the input h^0 and each block's output h^1..h^L, L + 1 tensors (B, M, D)
        (before ``ln_f``). Arguments as ``forward``."""
        if tokens.ndim != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a (B, M) int64 tensor, got shape {tuple(tokens.shape)} "
                             f"dtype {tokens.dtype}")
        B, M = tokens.shape
        if M > self.cfg.max_len:
            raise ValueError(f"sequence length M={M} exceeds max_len={self.cfg.max_len}")
        if pos is None:
            pos = torch.arange(M, device=tokens.device).expand(B, M)  # (B, M)
        elif pos.shape != tokens.shape or pos.dtype != torch.long:
            raise ValueError(f"pos must be a (B, M) int64 tensor like tokens {tuple(tokens.shape)}, "
                             f"got {getattr(pos, 'dtype', type(pos).__name__)} {tuple(getattr(pos, 'shape', ()))}")
        mask = AttentionMask.causal() if self.is_causal else AttentionMask.full()
        if present is not None:
            if self.is_causal or present.shape != tokens.shape or present.dtype != torch.bool:
                raise ValueError(f"present must be a (B, M) bool tensor like tokens {tuple(tokens.shape)}, "
                                 f"and only for a bidirectional transformer (a causal one needs no padding mask)")
            mask = AttentionMask("dense", dense=present[:, None, None, :].expand(B, 1, M, M))
        if embeddings is not None:
            check_embeddings(embeddings, tokens, self.wte)
        hs = [self.drop(self.embed(tokens, pos, embeddings))]  # (B, M, D)
        for block in self.blocks:
            hs.append(block(hs[-1], pos, mask))
        return hs

    def embed(self, tokens: torch.Tensor, pos: torch.Tensor, embeddings: torch.Tensor | None = None):
        """The input rows: token embeddings (or the given ``embeddings``), plus learned positions if any."""
        h = self.wte(tokens) if embeddings is None else embeddings  # (B, M, D)
        return h if self.wpe is None else h + self.wpe(pos)


def with_extra_token(cfg: TransformerConfig, causal: bool) -> Transformer:
    """A Transformer over ids 0..vocab_size: the extra id vocab_size is BOS (AR) or [MASK] (MDM)."""
    if not isinstance(cfg, TransformerConfig):
        raise ValueError(f"cfg must be a TransformerConfig, got {type(cfg).__name__}")
    return Transformer(replace(cfg, vocab_size=cfg.vocab_size + 1), causal=causal)
