r"""Transformer building blocks shared by ARMD and the baselines: RoPE, attention, MLP, pre-LN block.

A pre-LayerNorm block (GPT-2 style) maps a residual stream h to

.. math::  h' = h + W_o\,\mathrm{Attn}(W_q \mathrm{LN}_1(h),\; W_k \mathrm{LN}_1(s),\; W_v \mathrm{LN}_1(s);\, M),
           \qquad h'' = h' + \mathrm{MLP}(\mathrm{LN}_2(h'))

where the key/value source s is h itself (self-attention) or, in ARMD's query stream, the content
stream X (``two_stream.py``). Rotary position embeddings (RoPE, Su et al.) rotate queries and keys
by their **original** token positions, so attention scores depend only on relative positions,
whatever order the tokens are listed in — this is what makes ARMD permutation-equivariant.

The attention module exposes its projections separately (``qkv``, ``kv``, ``query``) because the
two-stream layer needs queries from one stream and keys/values from another with the same weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import AttentionMask
from .config import TransformerConfig

__all__ = ["RotaryEmbedding", "Attention", "MLP", "Block", "init_weights"]


class RotaryEmbedding(nn.Module):
    """Rotate pairs of dimensions (i, i + hd/2) by angle pos * base^(-2i/hd)."""

    def __init__(self, head_dim: int, base: float, n_positions: int):
        super().__init__()
        self.head_dim, self.base = head_dim, base
        # cos/sin tables for positions 0..n_positions-1, computed once in float64: every layer of
        # every pass (and every decoding step) needs them. Not saved in checkpoints (persistent=False).
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
        angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * inv_freq  # (P, hd/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, *xs: torch.Tensor, pos: torch.Tensor):
        """Each x (B, H, M, hd), pos (B, M) integer positions -> rotated x, same shape and dtype.

        Several tensors at the same positions (queries and keys) share one lookup of the tables;
        one x gives one tensor back, several a tuple.
        """
        # the tables stay float64 unless the model is cast (model.float() rounds them once); bf16
        # activations rotate with float32 values: pos * freq needs more than bf16's 8-bit mantissa
        dtype = xs[0].dtype if xs[0].dtype in (torch.float64, torch.float32) else torch.float32
        cos, sin = self.cos[pos][:, None].to(dtype), self.sin[pos][:, None].to(dtype)  # (B, 1, M, hd/2)
        out = []
        for x in xs:
            x1, x2 = x.chunk(2, dim=-1)  # (B, H, M, hd/2) each
            out.append(torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype))
        return out[0] if len(out) == 1 else tuple(out)


class Attention(nn.Module):
    """Multi-head attention whose query and key/value inputs may come from different streams."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head, self.n_embd = cfg.n_head, cfg.n_embd
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # fused W_q, W_k, W_v
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # W_o
        # +1: ARMD's BOS. None with learned absolute positions (GPT-2): they were added to the input
        self.rope = (RotaryEmbedding(cfg.head_dim, cfg.rope_base, cfg.max_len + 1)
                     if cfg.position_embedding == "rope" else None)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def _project(self, h: torch.Tensor, part: slice) -> torch.Tensor:
        bias = None if self.c_attn.bias is None else self.c_attn.bias[part]
        return F.linear(h, self.c_attn.weight[part], bias)

    def _rotate(self, *xs: torch.Tensor, pos: torch.Tensor):
        """RoPE, or nothing when positions were added to the input (learned position embeddings)."""
        if self.rope is not None:
            return self.rope(*xs, pos=pos)
        return xs[0] if len(xs) == 1 else xs

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, M, _ = t.shape
        return t.view(B, M, self.n_head, -1).transpose(1, 2)  # (B, M, D) -> (B, H, M, hd)

    def qkv(self, h: torch.Tensor, pos: torch.Tensor):
        """Queries, keys and values of one (normalised) stream, RoPE applied: three (B, H, M, hd)."""
        q, k, v = self.c_attn(h).split(self.n_embd, dim=-1)
        return *self._rotate(self._heads(q), self._heads(k), pos=pos), self._heads(v)

    def kv(self, h: torch.Tensor, pos: torch.Tensor):
        """Keys and values only (used when this stream's own queries are not needed)."""
        k, v = self._project(h, slice(self.n_embd, 3 * self.n_embd)).split(self.n_embd, dim=-1)
        return self._rotate(self._heads(k), pos=pos), self._heads(v)

    def query(self, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Queries only, with the same W_q (ARMD's query stream): (B, H, M, hd)."""
        return self._rotate(self._heads(self._project(h, slice(0, self.n_embd))), pos=pos)

    def attend(self, q, k, v, mask: AttentionMask) -> torch.Tensor:
        """Attention for prepared q, k, v, merged heads and output projection: (B, Mq, D)."""
        y = mask.attend(q, k, v, self.dropout if self.training else 0.0)  # (B, H, Mq, hd)
        B, H, M, hd = y.shape
        y = y.transpose(1, 2).reshape(B, M, H * hd)  # (B, Mq, D)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"  # GPT-2's "gelu_new" is tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    """A pre-LN transformer block: self-attention under a mask, then an MLP, both residual."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, h: torch.Tensor, pos: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        """h (B, M, D), pos (B, M) -> (B, M, D)."""
        q, k, v = self.attn.qkv(self.ln_1(h), pos)
        return self.finish(h, self.attn.attend(q, k, v, mask))

    def finish(self, h: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """The rest of the block once the attention output is known: residual, then MLP residual."""
        h = h + attn_out
        return h + self.mlp(self.ln_2(h))


def init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2L)."""
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):  # the two writes into the residual stream of every block
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
        elif name.endswith("bias"):
            nn.init.zeros_(p)
        elif p.ndim >= 2 or name.endswith("bos"):
            nn.init.normal_(p, mean=0.0, std=0.02)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
