r"""Honest likelihoods: every number names its protocol, and estimates carry a standard error.

Protocols (all in nats per token, averaged over the same validation windows):

* ``"l2r"``  — ARMD **exact** NLL in left-to-right order, one pass:
  :math:`\sum_n -\log p(x_n \mid x_{<n})`; for the AR baseline the same quantity from the GPT.
* ``"random"`` — ARMD NELBO under uniformly random orders (singleton blocks): the any-order
  objective, which equals MDLM's continuous-time NELBO for a model of this form. Each draw gives an
  unbiased estimate; we report the mean of K draws and its standard error.
* ``"mask"`` — ARMD NELBO under T-step masking trajectories (``masking.sample_mask_times``, linear
  schedule by default), blocks of tied tokens predicted together: the discrete-time MDLM loss.
* ``"nelbo"`` — the MDM baseline's continuous-time NELBO (``mdm.mdm_loss``) with K antithetic
  draws of t per window.

The protocols measure different things. Left to right, ARMD's conditionals define a proper
distribution and "l2r" is its exact -log p(x). The NELBOs average over orders; if the model's
conditionals in every order came from one joint, each would equal that -log p(x) — they differ
exactly as much as the model is inconsistent across orders, so they are reported side by side.
Perplexity = exp(nats); bits/char = nats / ln 2 / (chars per token) when the character count is
known. ``zero_shot`` evaluates a GPT-2-BPE model on the paper's zero-shot sets (``zeroshot.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .ar import GPT, ar_loss
from .loss import armd_loss
from .masking import alpha_schedule, sample_mask_times
from .mdm import MDM, mdm_loss
from .model import ARMD
from .permutation import left_to_right, order_from_mask_times, random_order

PROTOCOL_NAMES = {
    "l2r": "exact NLL, left to right",
    "random": "NELBO, uniformly random orders",
    "mask": "NELBO, T-step masking trajectories",
    "nelbo": "MDM NELBO, antithetic t",
}
DEFAULT_PROTOCOLS = {"armd": ("l2r", "random", "mask"), "ar": ("l2r",), "mdm": ("nelbo",)}


@dataclass
class Estimate:
    protocol: str  # key of PROTOCOL_NAMES
    nats: float  # mean NLL or NELBO per token
    se: float  # standard error over the draws (0 for an exact, deterministic protocol)
    draws: int  # number of Monte Carlo draws (1 for exact)
    detail: str = ""  # e.g. "T=8, linear"

    @property
    def ppl(self) -> float:
        return math.exp(self.nats)

    def bits_per_char(self, chars_per_token: float | None) -> float | None:
        return None if not chars_per_token else self.nats / math.log(2) / chars_per_token

    def describe(self) -> str:
        name = PROTOCOL_NAMES[self.protocol] + (f" ({self.detail})" if self.detail else "")
        se = f" +- {self.se:.4f}" if self.draws > 1 else ""
        return f"{name}: {self.nats:.4f}{se} nats/token, ppl {self.ppl:.3f}"


def model_kind(model) -> str:
    """'armd', 'ar' or 'mdm' for the three model classes (compiled modules unwrapped)."""
    model = getattr(model, "_orig_mod", model)
    for cls, kind in ((ARMD, "armd"), (GPT, "ar"), (MDM, "mdm")):
        if isinstance(model, cls):
            return kind
    raise ValueError(f"model must be an ARMD, GPT or MDM, got {type(model).__name__}")


@torch.no_grad()
def _per_draw_means(loss_fn, windows: torch.Tensor, draws: int, batch_size: int, device) -> list[float]:
    """Mean of ``loss_fn(batch, draw)`` over all windows, once per draw (token-weighted)."""
    means = []
    for draw in range(draws):
        total = 0.0
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start:start + batch_size].to(device)  # (b, N)
            total += float(loss_fn(batch, draw)) * batch.shape[0]
        means.append(total / windows.shape[0])
    return means


def _estimate(protocol: str, means: list[float], detail: str = "") -> Estimate:
    k = len(means)
    mean = sum(means) / k
    se = math.sqrt(sum((m - mean) ** 2 for m in means) / (k - 1) / k) if k > 1 else 0.0
    return Estimate(protocol, mean, se, k, detail)


def estimate(model, windows: torch.Tensor, protocol: str, draws: int = 8, T: int = 8,
             schedule: str = "linear", seed: int = 0, batch_size: int = 32) -> Estimate:
    """Evaluate ``model`` on (W, N) int64 ``windows`` under one protocol (see the module docstring)."""
    kind = model_kind(model)
    if protocol not in DEFAULT_PROTOCOLS[kind]:
        raise ValueError(f"protocol {protocol!r} does not apply to a {kind} model; "
                         f"choose from {DEFAULT_PROTOCOLS[kind]}")
    if windows.ndim != 2 or windows.dtype != torch.long or windows.shape[0] == 0:
        raise ValueError(f"windows must be a non-empty (W, N) int64 tensor, got {tuple(windows.shape)} "
                         f"{windows.dtype}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)  # CPU generator: same draws on every device
    was_training = model.training
    model.eval()
    n = windows.shape[1]

    def armd_with(order_fn):
        def fn(x, draw):
            order, blocks = order_fn(x.shape[0])
            return armd_loss(model, x, order.to(x.device), blocks.to(x.device))
        return fn

    if protocol == "l2r" and kind == "armd":
        loss_fn, draws, detail = armd_with(lambda b: left_to_right(b, n)), 1, ""
    elif protocol == "l2r":
        loss_fn, draws, detail = (lambda x, draw: ar_loss(model, x)), 1, ""
    elif protocol == "random":
        loss_fn, detail = armd_with(lambda b: random_order(b, n, gen)), ""
    elif protocol == "mask":
        alpha = alpha_schedule(schedule, T)
        loss_fn = armd_with(lambda b: order_from_mask_times(sample_mask_times(alpha, (b, n), gen), T))
        detail = f"T={T}, {schedule}"
    else:
        loss_fn, detail = (lambda x, draw: mdm_loss(model, x, gen)), ""
    try:
        means = _per_draw_means(loss_fn, windows, draws, batch_size, device)
    finally:
        model.train(was_training)
    return _estimate(protocol, means, detail)


def evaluate(model, windows: torch.Tensor, protocols: tuple[str, ...] | None = None,
             **kwargs) -> dict[str, Estimate]:
    """Every protocol that applies to the model (or the ones named), as {protocol: Estimate}."""
    protocols = protocols or DEFAULT_PROTOCOLS[model_kind(model)]
    return {p: estimate(model, windows, p, **kwargs) for p in protocols}


def zero_shot(model, name: str, n: int, data_files=None, max_windows: int | None = None,
              protocol: str | None = None, cache_dir: str | None = None, **kwargs) -> Estimate:
    """Zero-shot perplexity of a GPT-2-BPE model on a set from ``zeroshot.ZERO_SHOT``.

    Documents (detokenised by ``zeroshot.load_zero_shot``) are GPT-2 encoded with EOS after each,
    packed, and cut into non-overlapping windows of n tokens (the remainder is dropped).
    """
    from .tokenizer import GPT2Tokenizer
    from .zeroshot import load_zero_shot

    tok = GPT2Tokenizer()
    ids: list[int] = []
    for doc in load_zero_shot(name, data_files=data_files, cache_dir=cache_dir):
        ids += tok.encode(doc) + [tok.eot_token]
    count = len(ids) // n
    if count == 0:
        raise ValueError(f"zero-shot set {name!r} has {len(ids)} tokens, fewer than one window of n={n}")
    windows = torch.tensor(ids[:count * n], dtype=torch.long).view(count, n)[:max_windows]  # (W, n)
    protocol = protocol or DEFAULT_PROTOCOLS[model_kind(model)][0]
    return estimate(model, windows, protocol, **kwargs)
