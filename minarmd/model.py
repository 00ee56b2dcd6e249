r"""The ARMD network: a strictly causal, permutation-equivariant transformer over blocks.

Given tokens listed in generation order with their original positions and block ids, one forward
pass returns, for every token n, the model's distribution

.. math::  p_\theta\big(x_n \mid x_i : B(i) < B(n)\big)

for all blocks at once — the quantity the single-pass loss (``loss.py``) needs. The stack:

1. token embeddings X, with a learned BOS row prepended (position 0, block 0, seen by every
   query, never predicted); a real token at original position p sits at internal position p + 1;
2. prefix aggregation (Eq. 6) gives the query stream's start G^0 (``two_stream.py``);
3. L2s two-stream layers (Eq. 7): X under M^c, G under M^sc with keys/values from X;
4. L - L2s block-causal layers (M^c) on G only — still strictly causal, since every G row is;
5. final LayerNorm and the LM head (tied to the embeddings by default).

RoPE uses original positions everywhere (a query of G sits at its target's position), so listing
the tokens in another order with the same positions and blocks permutes the logits and nothing else.
Parameters ≈ a plain L-layer transformer plus the PE table; forward FLOPs ≈ (L + L2s - 1)/L of it.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .attention import AttentionMask, is_singleton, resolve_backend, singleton_sorted
from .config import ARMDConfig
from .layers import Block, init_weights
from .masks import block_mask
from .permutation import singleton_blocks
from .two_stream import PrefixAggregation, TwoStreamLayer
from .validation import check_embeddings, compiling

__all__ = ["ARMD", "check_inputs"]


class ARMD(nn.Module):
    def __init__(self, cfg: ARMDConfig):
        super().__init__()
        if not isinstance(cfg, ARMDConfig):
            raise ValueError(f"cfg must be an ARMDConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.bos = nn.Parameter(torch.zeros(cfg.n_embd))  # BOS embedding (not a vocabulary entry)
        # learned absolute positions (GPT-2 architecture): rows 0..max_len, BOS at 0
        self.wpe = nn.Embedding(cfg.max_len + 1, cfg.n_embd) if cfg.position_embedding == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.prefix = PrefixAggregation(cfg.max_len + 1, cfg.d_pe, cfg.pe_init_std, cfg.pe_init)  # +1: BOS at 0
        self.two_stream = nn.ModuleList(TwoStreamLayer(cfg) for _ in range(cfg.n_two_stream))
        self.causal = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer - cfg.n_two_stream))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        init_weights(self, cfg.n_layer)
        self.prefix.reset_parameters()  # its own init (cfg.pe_init), not init_weights' N(0, 0.02)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight

    def num_params(self) -> int:
        """Number of distinct parameters (a tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, blocks: torch.Tensor | None = None,
                return_hidden: bool = False, *, embeddings: torch.Tensor | None = None,
                singleton: bool | None = None):
        """tokens, pos, blocks: (B, M) int64 in generation order -> logits (B, M, vocab_size).

        ``pos`` are original positions in 0..max_len-1 (distinct within a row); ``blocks`` are
        non-decreasing block ids >= 1 (None: every token its own block, in the order given).
        ``logits[:, k]`` depends only on the tokens of blocks strictly before ``blocks[:, k]``.
        With ``return_hidden=True`` also returns the final query stream before ``ln_f`` (B, M, D).

        ``embeddings`` (B, M, D) replaces the lookup ``self.wte(tokens)`` (to differentiate with respect
        to the input vectors, notebook 03); ``tokens`` then give the shape and are checked, not looked up.
        ``singleton`` says whether every block is a single token (strictly increasing ids) without the
        model reading ``blocks`` to find out; the rule is ``attention.is_singleton``.
        """
        cfg = self.cfg
        if cfg.validate_inputs:
            check_inputs(tokens, pos, blocks, cfg, singleton)
        if embeddings is not None:
            check_embeddings(embeddings, tokens, self.wte)
        B, M = tokens.shape
        singleton = is_singleton(blocks, cfg.attn_backend, singleton)
        if blocks is None:
            blocks = singleton_blocks(B, M, tokens.device)
        backend = resolve_backend(cfg.attn_backend, singleton, tokens.device, cfg.head_dim)

        pos_g, pos_x, blocks_x = _with_bos(pos, blocks)
        mask_content = AttentionMask.from_blocks(blocks_x, blocks_x, strict=False, backend=backend)
        mask_query = AttentionMask.from_blocks(blocks, blocks_x, strict=True, backend=backend)
        mask_stack = AttentionMask.from_blocks(blocks, blocks, strict=False, backend=backend)

        x = self.drop(self._content_input(tokens, pos_x, embeddings))  # (B, M+1, D)
        if cfg.query_stream_init == "prefix":
            visible = None if backend == "causal" else block_mask(blocks, blocks_x, strict=True)
            g = self.prefix(x, pos_x, pos_g, visible)  # (B, M, D)
            if self.wpe is not None:  # learned positions: each query at its target's position
                g = g + self.wpe(pos_g)
        else:  # "token": the ordinary query built from x_n itself -- leaks x_n (teaching only)
            g = x[:, 1:]
        for i, layer in enumerate(self.two_stream):
            last = i == len(self.two_stream) - 1
            x, g = layer(x, g, pos_x, pos_g, mask_content, mask_query, update_content=not last)
        for block in self.causal:
            g = block(g, pos_g, mask_stack)
        logits = self.lm_head(self.ln_f(g))  # (B, M, V)
        return (logits, g) if return_hidden else logits


    def _content_input(self, tokens, pos_x, embeddings=None) -> torch.Tensor:
        """X^0 (B, M+1, D): BOS, then the token embeddings (or ``embeddings``), plus learned positions if any."""
        e = self.wte(tokens) if embeddings is None else embeddings  # (B, M, D)
        x = torch.cat([self.bos.expand(tokens.shape[0], 1, -1), e], dim=1)  # (B, M+1, D)
        return x if self.wpe is None else x + self.wpe(pos_x)

    def content_states(self, tokens: torch.Tensor, pos: torch.Tensor, blocks: torch.Tensor | None = None) -> list:
        """The content stream X^0 .. X^{L2s} under M^c, each (B, M+1, D) with BOS as row 0.

        ``forward`` never needs X^{L2s} (the last two-stream layer's content update); it is computed here
        so that a converted GPT can be compared layer by layer (``adapt.py``): X^l is what a causal
        transformer with these weights computes for the same tokens listed in the same order.
        """
        if self.cfg.validate_inputs:
            check_inputs(tokens, pos, blocks, self.cfg)
        B, M = tokens.shape
        singleton = is_singleton(blocks, self.cfg.attn_backend)
        if blocks is None:
            blocks = singleton_blocks(B, M, tokens.device)
        _, pos_x, blocks_x = _with_bos(pos, blocks)
        backend = resolve_backend(self.cfg.attn_backend, singleton, tokens.device, self.cfg.head_dim)
        mask = AttentionMask.from_blocks(blocks_x, blocks_x, strict=False, backend=backend)
        xs = [self.drop(self._content_input(tokens, pos_x))]
        for layer in self.two_stream:
            xs.append(Block.forward(layer, xs[-1], pos_x, mask))  # the content half of Eq. 7
        return xs

    @classmethod
    def from_gpt(cls, gpt, **options) -> "ARMD":
        """An ARMD whose content stream is this GPT baseline (``adapt.armd_from_gpt``; options there)."""
        from .adapt import armd_from_gpt
        return armd_from_gpt(gpt, **options)

    @classmethod
    def from_hf_gpt2(cls, model_or_name="gpt2", **options) -> "ARMD":
        """An ARMD whose content stream is a Hugging Face GPT-2 (``adapt.armd_from_hf_gpt2``; options there)."""
        from .adapt import armd_from_hf_gpt2
        return armd_from_hf_gpt2(model_or_name, **options)


def _with_bos(pos: torch.Tensor, blocks: torch.Tensor):
    """Internal positions of the real tokens (B, M), and positions and blocks with BOS first (B, M+1):
    a real token at original position p sits at p + 1; BOS is position 0, block 0."""
    zeros = torch.zeros(pos.shape[0], 1, dtype=torch.long, device=pos.device)
    pos_g = pos + 1
    return pos_g, torch.cat([zeros, pos_g], dim=1), torch.cat([zeros, blocks], dim=1)


def check_inputs(tokens, pos, blocks, cfg: ARMDConfig, singleton: bool | None = None) -> None:
    """Raise ValueError, naming the argument and the fix, for anything the model cannot honour.

    Shapes and dtypes are always checked. The checks of values (ids, positions, block order, a
    ``singleton=True`` claim) read the tensors, a host sync on a GPU and a graph break under
    ``torch.compile``: they are skipped while compiling (as ``validation.check_tokens``).
    """
    for name, t in (("tokens", tokens), ("pos", pos), ("blocks", blocks)):
        if t is None and name == "blocks":
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.long:
            raise ValueError(f"{name} must be int64 (torch.long), got {t.dtype}; convert with {name}.long()")
        if t.ndim != 2:
            raise ValueError(f"{name} must have shape (B, M), got {tuple(t.shape)}; "
                             f"add a batch dimension with {name}[None] for one sequence")
        if t.shape != tokens.shape:
            raise ValueError(f"{name} must have the same shape as tokens {tuple(tokens.shape)}, "
                             f"got {tuple(t.shape)}")
    B, M = tokens.shape
    if B == 0 or M == 0:
        raise ValueError(f"tokens must hold at least one token per row, got shape {(B, M)}")
    if M > cfg.max_len:
        raise ValueError(f"sequence length M={M} exceeds max_len={cfg.max_len}; "
                         f"crop the input or build the model with a larger max_len")
    if singleton is not None and not isinstance(singleton, bool):
        raise ValueError(f"singleton must be True, False or None (let the model look), got {singleton!r}")
    if compiling():
        return
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        raise ValueError(f"tokens must be ids in 0..vocab_size-1={cfg.vocab_size - 1}, "
                         f"got values in {int(tokens.min())}..{int(tokens.max())}")
    if pos.min() < 0 or pos.max() >= cfg.max_len:
        raise ValueError(f"pos must be original positions in 0..max_len-1={cfg.max_len - 1}, "
                         f"got values in {int(pos.min())}..{int(pos.max())}")
    sorted_pos = pos.sort(dim=1).values
    if (sorted_pos[:, 1:] == sorted_pos[:, :-1]).any():
        raise ValueError("pos must not repeat within a row: each token has its own original position")
    if blocks is not None:
        if blocks.min() < 1:
            raise ValueError(f"blocks must be block ids >= 1 (0 is reserved for BOS), got min {int(blocks.min())}")
        if (blocks[:, 1:] < blocks[:, :-1]).any():
            raise ValueError("blocks must be non-decreasing along each row: list the tokens in generation "
                             "order (e.g. with permutation.order_from_mask_times)")
        if singleton and not singleton_sorted(blocks):
            raise ValueError("singleton=True needs one token per block (strictly increasing block ids); "
                             "pass singleton=None to let the model look, or False")
