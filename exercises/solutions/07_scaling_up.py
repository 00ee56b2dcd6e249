"""Solutions to exercises/07_scaling_up.ipynb (try the exercises first!).

Each function is checked by ``minarmd.check.check("07.k", function)`` against ``minarmd.throughput``,
the built models and ``minarmd.data``.
"""
from __future__ import annotations

import numpy as np
import torch


def count_params(cfg) -> int:
    """07.1: parameters of ARMD(cfg) without building it (a tied LM head counted once)."""
    d, r, b = cfg.n_embd, cfg.mlp_ratio, int(cfg.bias)
    linear = 3 * d * d + d * d + r * d * d + r * d * d  # W_qkv, W_o, MLP in, MLP out
    biases = b * (3 * d + d + r * d + d)
    norms = 2 * (d + b * d)  # ln_1 and ln_2: weight (and bias)
    per_layer = linear + biases + norms
    total = cfg.vocab_size * d  # token embeddings (= the tied LM head)
    total += d  # the learned BOS embedding
    total += (cfg.max_len + 1) * cfg.d_pe  # the PE table of prefix aggregation (BOS at position 0)
    total += cfg.n_layer * per_layer  # two-stream layers have exactly a block's weights
    total += d + b * d  # ln_f
    if not cfg.tie_weights:
        total += cfg.vocab_size * d  # a separate LM head
    return total


def armd_flops_per_token(cfg, seq_len: int) -> float:
    """07.2: matmul FLOPs per token of one ARMD training step (forward + backward = 3 x forward)."""
    d, r, L, L2s, N = cfg.n_embd, cfg.mlp_ratio, cfg.n_layer, cfg.n_two_stream, seq_len
    M = N + 1  # content-stream rows (BOS first)
    full = 2 * (4 + 2 * r) * d * d  # one row through a full layer's linear maps
    kv = 2 * 2 * d * d  # one row through W_k and W_v only
    content = max(L2s - 1, 0) * (M * full + 4 * d * M * M) + (M * kv if L2s > 0 else 0)
    query = L2s * (N * (full - kv) + 4 * d * N * M)
    stack = (L - L2s) * (N * full + 4 * d * N * N)
    prefix = 2 * N * M * (cfg.d_pe + d)
    head = 2 * d * cfg.vocab_size * N
    return 3 * (content + query + stack + prefix + head) / N


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """07.3: model FLOPs utilisation as a fraction; ValueError for impossible inputs."""
    if tokens_per_s < 0:
        raise ValueError(f"tokens_per_s must be >= 0, got {tokens_per_s}")
    if flops_per_token <= 0 or peak_flops <= 0:
        raise ValueError("flops_per_token and peak_flops must be > 0")
    return tokens_per_s * flops_per_token / peak_flops


def tokens_and_steps(cfg, token_budget: int) -> tuple[int, int]:
    """07.4: (tokens per optimiser step, optimiser steps to see at least token_budget tokens)."""
    per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len
    steps = -(-token_budget // per_step)  # ceiling division in integers (no float rounding)
    return per_step, steps


def random_windows(stream: np.memmap, batch_size: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """07.5: (batch_size, n) int64 windows at uniform random offsets of a uint16 token stream."""
    offsets = torch.randint(0, len(stream) - n + 1, (batch_size,), generator=generator)  # (B,)
    rows = [np.asarray(stream[o:o + n]) for o in offsets.tolist()]  # read only these windows
    return torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, n)
