"""Solutions to exercises/01_forward_process.ipynb (try the exercises first!).

Each function is checked against ``minarmd.masking`` with ``check("01.k", fn)``.
"""
from __future__ import annotations

import math

import torch


# Exercise 01.1: the survival schedule alpha_0..alpha_T
def alpha_schedule(kind: str, T: int) -> torch.Tensor:
    t = torch.arange(T + 1, dtype=torch.float64) / T  # (T+1,) the times t/T in [0, 1]
    if kind == "linear":
        alpha = 1.0 - t
    elif kind == "cosine":
        alpha = torch.cos(0.5 * math.pi * t)
    elif kind == "loglinear":
        alpha = 1.0 - (1.0 - 1e-3) * t
    else:
        raise ValueError(f"unknown schedule kind {kind!r}")
    alpha[0], alpha[-1] = 1.0, 0.0  # exact end points: every token is masked by step T
    return alpha


# Exercise 01.2: P(tau = t) = alpha_{t-1} - alpha_t for t = 1..T
def masking_probs(alpha: torch.Tensor) -> torch.Tensor:
    return alpha[:-1] - alpha[1:]  # (T,), entry t-1 is P(tau = t)


# Exercise 01.3: x_t shows the tokens with tau > t, [mask] elsewhere
def noisy_sequence(z: torch.Tensor, tau: torch.Tensor, t: int, mask_id: int) -> torch.Tensor:
    return torch.where(tau > t, z, torch.full_like(z, mask_id))


# Exercise 01.4: w_t = (alpha_{t-1} - alpha_t) / (1 - alpha_t) = P(tau = t | tau <= t)
def mdlm_weight(alpha: torch.Tensor, t: int) -> float:
    return (float(alpha[t - 1]) - float(alpha[t])) / (1.0 - float(alpha[t]))


# Exercise 01.5: independent masking times with P(tau = t) = alpha_{t-1} - alpha_t
def sample_tau(alpha: torch.Tensor, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    probs = (alpha[:-1] - alpha[1:]).to(torch.float64)  # (T,)
    draws = torch.multinomial(probs, math.prod(shape), replacement=True, generator=generator)  # 0..T-1
    return (draws + 1).reshape(shape)  # int64, values 1..T
