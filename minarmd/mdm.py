r"""The masked-diffusion baseline, MDLM-style: a bidirectional transformer and a [MASK] token.

Continuous-time absorbing process with the log-linear schedule alpha_t = 1 - t: at time
t in (0, 1] each token is replaced by [MASK] with probability t, independently. MDLM's negative
ELBO (Sahoo et al., 2024, Eq. 10) is then

.. math::  \mathcal{L}_{\mathrm{NELBO}}(x) = \int_0^1 \frac{1}{t}\;
           \mathbb{E}_{x_t \sim q(\cdot \mid x)} \sum_{j:\,x_{t,j} = \mathrm{[MASK]}}
           -\log p_\theta(x_j \mid x_t)\,dt ,

the weight -alpha'_t / (1 - alpha_t) = 1/t. Choices, all MDLM's:

* **no time conditioning** — the network sees only x_t;
* **antithetic t** — a batch of B draws t_i = (u + i/B) mod 1 covers [0, 1) evenly, which lowers
  the variance of the batch mean without biasing it;
* **carry-over of unmasked tokens** (SUBS) — an unmasked token is copied, so it costs nothing in the
  loss and is never changed by the sampler (``log_probs``); the [MASK] row is cut from the output,
  so the model never predicts [MASK];
* **t >= t_min** — the integrand's variance grows like 1/t near 0 (rarely one masked token with
  weight 1/t), so t is drawn from U[t_min, 1]; the dropped sliver [0, t_min) is worth about
  t_min x the per-token NLL (0.1 % at t_min = 1e-3).

The estimate is reported per token (divided by N), like every NLL in minarmd.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import TransformerConfig
from .loss import token_nll
from .transformer import with_extra_token
from .validation import check_tokens

__all__ = ["T_MIN", "MDM", "sample_t", "mdm_loss"]

T_MIN = 1e-3  # smallest masking time sampled (MDLM's sampling_eps)


class MDM(nn.Module):
    """Bidirectional denoiser over ``cfg.vocab_size`` tokens plus one [MASK] id (= vocab_size)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.net = with_extra_token(cfg, causal=False)
        self.cfg = cfg
        self.mask_id = cfg.vocab_size  # the extra embedding row

    def num_params(self) -> int:
        return self.net.num_params()

    def forward(self, x_t: torch.Tensor, present: torch.Tensor | None = None, *,
                embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, N) int64, ids in 0..V (V = [MASK]) -> logits (B, N, V) over the real tokens.

        ``present`` (B, N) bool marks the positions a shorter row has (padding keys are masked out).
        ``embeddings`` (B, N, D) replaces the lookup of x_t (``x_t`` still gives the shape and is checked).
        """
        check_tokens(x_t, self.cfg.vocab_size + 1, self.cfg.max_len)
        return self.net(x_t, present, embeddings=embeddings)[..., :self.cfg.vocab_size]  # (B, N, V)

    def log_probs(self, x_t: torch.Tensor) -> torch.Tensor:
        """(B, N, V) float log-probabilities with carry-over: unmasked positions are one-hot."""
        logits = self(x_t)
        if logits.element_size() < 4:  # bf16/fp16: normalise in float32
            logits = logits.float()
        logp = torch.log_softmax(logits, dim=-1)  # (B, N, V)
        unmasked = x_t != self.mask_id  # (B, N)
        one_hot = torch.full_like(logp, float("-inf"))
        one_hot.scatter_(-1, x_t.clamp(max=self.cfg.vocab_size - 1)[..., None], 0.0)
        return torch.where(unmasked[..., None], one_hot, logp)


def sample_t(batch: int, generator: torch.Generator | None = None, antithetic: bool = True,
             t_min: float = T_MIN, device: torch.device | str | None = None) -> torch.Tensor:
    """(batch,) float64 masking times in [t_min, 1): antithetic (evenly spread) or i.i.d. uniform."""
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must be in [0, 1), got {t_min!r}")
    if antithetic:
        u0 = torch.rand((), generator=generator, dtype=torch.float64)
        u = (u0 + torch.arange(batch, dtype=torch.float64) / batch) % 1.0  # (B,)
    else:
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return (t_min + (1.0 - t_min) * u).to(device)


def mdm_loss(model: MDM, x: torch.Tensor, generator: torch.Generator | None = None,
             t: torch.Tensor | None = None, antithetic: bool = True, t_min: float = T_MIN,
             per_token: bool = False, masked: torch.Tensor | None = None) -> torch.Tensor:
    """One-sample NELBO estimate in nats per token (mean), or its (B, N) terms with ``per_token``.

    ``t`` (B,) fixes the masking times (default: ``sample_t``); which tokens are masked is drawn
    from ``generator`` on the CPU, so a run is reproducible on any device, unless ``masked`` (B, N)
    bool gives them (drawn beforehand the same way, ``kinds.draw_noise``).
    """
    B, N = x.shape
    if t is None:
        t = sample_t(B, generator, antithetic, t_min)
    t = t.to(torch.float64).cpu()
    if masked is None:
        masked = torch.rand(B, N, generator=generator, dtype=torch.float64) < t[:, None]  # (B, N)
    masked = masked.to(x.device)
    mask_id = getattr(model, "module", model).mask_id  # through a DistributedDataParallel wrapper
    x_t = torch.where(masked, torch.full_like(x, mask_id), x)  # (B, N)
    nll = token_nll(model(x_t), x)  # (B, N); unmasked terms are dropped below (carry-over)
    weight = ((1.0 - t_min) / t).to(device=x.device, dtype=nll.dtype)  # (B,): 1/t, rescaled to [t_min, 1]
    terms = torch.where(masked, nll, torch.zeros_like(nll)) * weight[:, None]  # (B, N)
    return terms if per_token else terms.mean()
