r"""Sampling from the three models, without caches (the plain reference samplers).

* ARMD, any order and blocks: for block b, one call on the tokens generated so far gives
  :math:`p(x_n \mid x_i : B(i) < b)` for every n in block b (strict causality: the placeholder
  values fed at block b's own slots cannot influence their own predictions), and block b's tokens
  are drawn independently. Singleton blocks give sequential decoding; ``strided_order`` gives SBP.
* AR: next token given BOS and the prefix.
* MDM: ancestral sampling on a uniform time grid 1 = t_0 > ... > t_K = 0 with carry-over: each
  still-masked token is revealed between t and s with probability (t - s) / t, drawn from the
  model's prediction.

Draws use float64 probabilities and a CPU ``torch.Generator`` (float32 Gumbel tricks are known to
lower sample entropy). Each call re-runs the network on the whole prefix: O(N) calls of O(N) work.
"""
from __future__ import annotations

import torch

from .permutation import left_to_right


def draw(logits: torch.Tensor, temperature: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """(..., V) logits -> (...) int64 samples, in float64 on the CPU."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    probs = torch.softmax(logits.detach().double().cpu() / temperature, dim=-1)  # (..., V)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1]).to(logits.device)


@torch.no_grad()
def sample_armd(model, batch: int, n: int, order: torch.Tensor | None = None,
                blocks: torch.Tensor | None = None, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, n) samples in original order, generated block by block along ``order``."""
    device = next(model.parameters()).device
    if order is None:
        order, blocks = left_to_right(batch, n)
    order, blocks = order.to(device), blocks.to(device)
    tokens = torch.zeros(batch, n, dtype=torch.long, device=device)  # (B, n) in generation order
    _, counts = torch.unique_consecutive(blocks[0], return_counts=True)
    end = 0
    for count in counts.tolist():
        start, end = end, end + count
        logits = model(tokens[:, :end], order[:, :end], blocks[:, :end])[:, start:end]  # (B, count, V)
        tokens[:, start:end] = draw(logits, temperature, generator)
    return torch.empty_like(tokens).scatter_(1, order, tokens)  # back to original order


@torch.no_grad()
def sample_ar(model, batch: int, n: int, temperature: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    device = next(model.parameters()).device
    x = torch.zeros(batch, 0, dtype=torch.long, device=device)
    for _ in range(n):
        x = torch.cat([x, draw(model.next_logits(x), temperature, generator)[:, None]], dim=1)
    return x  # (B, n)


@torch.no_grad()
def sample_mdm(model, batch: int, n: int, steps: int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    device = next(model.parameters()).device
    steps = steps or n
    x = torch.full((batch, n), model.mask_id, dtype=torch.long, device=device)
    for k in range(steps):
        t, s = 1.0 - k / steps, 1.0 - (k + 1) / steps
        masked = x == model.mask_id  # (B, n)
        if not masked.any():
            break
        reveal = masked & (torch.rand(batch, n, generator=generator, dtype=torch.float64) < (t - s) / t).to(device)
        if reveal.any():  # no network call when nothing changes
            x = torch.where(reveal, draw(model(x), temperature, generator), x)
    return x  # (B, n)
