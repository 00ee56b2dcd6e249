r"""The absorbing (masking) forward process of masked diffusion, in discrete time.

A clean sequence :math:`z_1..z_N` is corrupted over :math:`T` steps. Every token turns into
``[mask]`` at exactly one step :math:`\tau(j) \in \{1..T\}` and stays masked afterwards, so the
noisy sequence :math:`x_t` shows exactly the tokens with :math:`\tau(j) > t`. With the survival
schedule :math:`\alpha_t` (:math:`\alpha_0 = 1`, :math:`\alpha_T = 0`, non-increasing), the masking
times are independent across tokens and

.. math::  P(\tau = t) = \alpha_{t-1} - \alpha_t, \qquad P(z_j \text{ visible in } x_t) = \alpha_t .

MDLM's discrete-time loss weights the masked tokens of :math:`x_t` by

.. math::  w_t = \frac{\alpha_{t-1} - \alpha_t}{1 - \alpha_t} = P(\tau = t \mid \tau \le t),

which is why sampling whole trajectories and scoring every block once (ARMD, ``loss.py``) is an
exact, weight-free rewrite of the same objective (``../README.md``, "single pass = T-pass sum").

Schedules (``alpha_schedule``):

* ``"linear"``     :math:`\alpha_t = 1 - t/T` — every step masks the same expected number of tokens;
* ``"cosine"``     :math:`\alpha_t = \cos(\tfrac{\pi}{2}\, t/T)` — few masked early, many late;
* ``"loglinear"``  MDLM's log-linear noise :math:`\sigma(t) = -\log(1 - (1-\epsilon)t)`, i.e.
  :math:`\alpha_t = 1 - (1-\epsilon)\,t/T`, with :math:`\alpha_T` set to 0 so that every token is
  masked by step :math:`T` (the last step carries the extra :math:`\epsilon` mass). It differs from
  ``"linear"`` only by :math:`\epsilon`; it is here because it is the schedule MDLM and SEDD train with.
"""
from __future__ import annotations

import math

import torch

from .validation import check_int

__all__ = ["SCHEDULES", "LOGLINEAR_EPS", "alpha_schedule", "check_alpha", "masking_probs",
           "sample_mask_times", "visible", "noisy_sequence", "mdlm_weight"]

SCHEDULES = ("linear", "cosine", "loglinear")
LOGLINEAR_EPS = 1e-3  # MDLM's epsilon: alpha never reaches 0 in continuous time


def alpha_schedule(kind: str, T: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Survival probabilities alpha_0..alpha_T as a (T+1,) tensor (alpha_0 = 1, alpha_T = 0)."""
    check_int("T", T, hint=" (number of masking steps)")
    t = torch.arange(T + 1, dtype=torch.float64) / T  # (T+1,) in [0, 1]
    if kind == "linear":
        alpha = 1.0 - t
    elif kind == "cosine":
        alpha = torch.cos(0.5 * math.pi * t)
    elif kind == "loglinear":
        alpha = 1.0 - (1.0 - LOGLINEAR_EPS) * t
    else:
        raise ValueError(f"kind must be one of {SCHEDULES}, got {kind!r}")
    alpha[0], alpha[-1] = 1.0, 0.0  # exact end points (cos(pi/2) is 6e-17, not 0)
    return alpha.to(dtype)


def check_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """Validate a user-given schedule: 1-D, alpha_0 = 1, alpha_T = 0, non-increasing."""
    if not isinstance(alpha, torch.Tensor) or alpha.ndim != 1 or alpha.numel() < 2:
        raise ValueError("alpha must be a 1-D tensor alpha_0..alpha_T with T >= 1 "
                         "(build one with alpha_schedule(kind, T))")
    if not alpha.is_floating_point():
        raise ValueError(f"alpha must be a floating-point tensor, got dtype {alpha.dtype}")
    if abs(float(alpha[0]) - 1.0) > 1e-12 or abs(float(alpha[-1])) > 1e-12:
        raise ValueError(f"alpha must start at 1 and end at 0, got alpha_0={float(alpha[0])}, "
                         f"alpha_T={float(alpha[-1])}")
    if (alpha[1:] > alpha[:-1]).any():
        raise ValueError("alpha must be non-increasing: a token cannot be unmasked by the forward process")
    return alpha


def masking_probs(alpha: torch.Tensor) -> torch.Tensor:
    """P(tau = t) = alpha_{t-1} - alpha_t for t = 1..T, as a (T,) tensor indexed t-1."""
    alpha = check_alpha(alpha)
    return alpha[:-1] - alpha[1:]


def sample_mask_times(alpha: torch.Tensor, shape: tuple[int, ...],
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw independent masking times tau in 1..T with P(tau = t) = alpha_{t-1} - alpha_t.

    Returns an int64 tensor of the given ``shape`` (e.g. (B, N)).
    """
    probs = masking_probs(alpha).to(torch.float64)  # (T,)
    n = math.prod(shape)
    if n == 0:
        return torch.zeros(shape, dtype=torch.long)
    draws = torch.multinomial(probs, n, replacement=True, generator=generator)  # (n,) in 0..T-1
    return (draws + 1).reshape(shape)


def visible(tau: torch.Tensor, t: int) -> torch.Tensor:
    """Boolean (same shape as tau): which tokens are still visible in x_t (tau > t)."""
    return tau > t


def noisy_sequence(z: torch.Tensor, tau: torch.Tensor, t: int, mask_id: int) -> torch.Tensor:
    """x_t: the clean tokens z with every token whose masking time is <= t replaced by mask_id."""
    if z.shape != tau.shape:
        raise ValueError(f"z and tau must have the same shape, got {tuple(z.shape)} and {tuple(tau.shape)}")
    return torch.where(visible(tau, t), z, torch.full_like(z, mask_id))


def mdlm_weight(alpha: torch.Tensor, t: int) -> float:
    """MDLM's discrete-time weight w_t = (alpha_{t-1} - alpha_t) / (1 - alpha_t) = P(tau = t | tau <= t)."""
    alpha = check_alpha(alpha)
    T = alpha.numel() - 1
    if not 1 <= t <= T:
        raise ValueError(f"t must be in 1..T={T}, got {t}")
    denom = 1.0 - float(alpha[t])
    if denom <= 0.0:
        raise ValueError(f"1 - alpha_t is 0 at t={t}: nothing is masked yet, the weight is undefined")
    return (float(alpha[t - 1]) - float(alpha[t])) / denom
