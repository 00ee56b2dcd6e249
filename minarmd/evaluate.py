r"""Honest likelihoods: every number names its protocol, and estimates carry standard errors.

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
known.

**Two uncertainties.** With W windows and K draws, the loss of window w in draw k is
:math:`\ell_{wk}` and the estimate is :math:`\bar\ell = \frac{1}{WK}\sum_{w,k} \ell_{wk}`.

* ``se`` — over the draws: the spread of the K per-draw means, :math:`\sqrt{\mathrm{var}_k / K}`.
  It says how much the number would move with other orders or masks on *the same* windows, and it
  is 0 for an exact protocol.
* ``se_windows`` — over the held-out data: the spread of the W per-window means
  :math:`\bar\ell_w = \frac1K \sum_k \ell_{wk}`, :math:`\sqrt{\mathrm{var}_w / W}`. It says how
  much the number would move on other text like the held-out set (and includes the draws' noise,
  since each :math:`\bar\ell_w` carries it), so it is the error bar to quote. Windows are consecutive
  pieces of one stream, so neighbours are not quite independent: treat it as a lower bound.

Two models scored on the same windows are compared by ``paired_difference``: the standard error of
the per-window *differences*, far smaller than either model's own when both find the same windows
hard. ``zero_shot`` evaluates a GPT-2-BPE model on the paper's zero-shot sets (``zeroshot.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .deprecated import warn
from .kinds import DEFAULT_PROTOCOLS, PROTOCOL_NAMES, kind_of
from .masking import SCHEDULES
from .validation import check_int

__all__ = ["Estimate", "estimate", "evaluate", "paired_difference", "zero_shot", "DEFAULT_PROTOCOLS",
           "PROTOCOL_NAMES"]


@dataclass
class Estimate:
    protocol: str  # key of PROTOCOL_NAMES
    nats: float  # mean NLL or NELBO per token
    se: float  # standard error over the draws (0 for an exact, deterministic protocol)
    draws: int  # number of Monte Carlo draws (1 for exact)
    detail: str = ""  # e.g. "T=8, linear"
    se_windows: float = 0.0  # standard error over the held-out windows (see the module docstring)
    per_window: tuple[float, ...] = ()  # each window's loss, averaged over the draws (for paired_difference)

    @property
    def windows(self) -> int:
        return len(self.per_window)

    @property
    def ppl(self) -> float:
        return math.exp(self.nats)

    def bits_per_char(self, chars_per_token: float | None) -> float | None:
        return None if not chars_per_token else self.nats / math.log(2) / chars_per_token

    @classmethod
    def from_draws(cls, protocol: str, means: list[float], detail: str = "") -> "Estimate":
        """The mean of K per-draw means and its standard error, sqrt(var / K) (0 for one draw)."""
        k = len(means)
        mean = sum(means) / k
        return cls(protocol, mean, _standard_error(means), k, detail)

    @classmethod
    def from_losses(cls, protocol: str, losses: torch.Tensor, detail: str = "") -> "Estimate":
        """From the (K, W) per-draw, per-window losses: both standard errors, and the per-window means."""
        per_draw = [float(m) for m in losses.double().mean(dim=1)]  # (K,)
        per_window = tuple(float(m) for m in losses.double().mean(dim=0))  # (W,)
        est = cls.from_draws(protocol, per_draw, detail)
        est.se_windows, est.per_window = _standard_error(per_window), per_window
        return est

    def describe(self) -> str:
        name = PROTOCOL_NAMES[self.protocol] + (f" ({self.detail})" if self.detail else "")
        spread = [f"+- {self.se_windows:.4f} over {self.windows} windows"] if self.windows > 1 else []
        spread += [f"+- {self.se:.4f} over {self.draws} draws"] if self.draws > 1 else []
        return f"{name}: {self.nats:.4f} nats/token{' (' + ', '.join(spread) + ')' if spread else ''}, " \
               f"ppl {self.ppl:.3f}"


def _standard_error(values) -> float:
    """sqrt(sample variance / count) of a sequence of floats (0 for fewer than two)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def paired_difference(a: Estimate, b: Estimate) -> tuple[float, float]:
    """(mean of a - b, its standard error) over the windows both estimates were computed on.

    The windows must be the same, in the same order (``estimate`` on one windows tensor): the error
    is that of the per-window differences, so text that is hard for both models cancels out.
    """
    if not a.per_window or len(a.per_window) != len(b.per_window):
        raise ValueError(f"paired_difference needs two estimates on the same windows, got {len(a.per_window)} and "
                         f"{len(b.per_window)} per-window values (estimate both on one windows tensor)")
    diffs = [x - y for x, y in zip(a.per_window, b.per_window)]
    return sum(diffs) / len(diffs), _standard_error(diffs)


@torch.no_grad()
def _per_window_losses(loss_fn, windows: torch.Tensor, draws: int, batch_size: int, device,
                       protocol: str) -> torch.Tensor:
    """(K, W) float64: ``loss_fn(batch, draw)``'s per-window losses, once per draw."""
    rows = []
    for draw in range(draws):
        parts = []
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start:start + batch_size].to(device)  # (b, N)
            loss = loss_fn(batch, draw)
            if not isinstance(loss, torch.Tensor) or loss.shape != (batch.shape[0],):
                raise ValueError(f"protocol {protocol!r}: its loss must return one loss per window, shape "
                                 f"({batch.shape[0]},), got {getattr(loss, 'shape', type(loss).__name__)} "
                                 f"(average the per-token losses over dim 1)")
            parts.append(loss.detach().double().cpu())
        rows.append(torch.cat(parts))  # (W,)
    return torch.stack(rows)  # (K, W)


def estimate(model, windows: torch.Tensor, protocol: str, draws: int = 8, T: int = 8,
             schedule: str = "linear", seed: int = 0, batch_size: int = 32) -> Estimate:
    """Evaluate ``model`` on (W, N) int64 ``windows`` under one protocol (see the module docstring)."""
    proto = kind_of(model).protocol(protocol)
    if not isinstance(windows, torch.Tensor) or windows.ndim != 2 or windows.dtype != torch.long \
            or windows.shape[0] == 0:
        raise ValueError(f"windows must be a non-empty (W, N) int64 tensor, got {tuple(windows.shape)} "
                         f"{windows.dtype}")
    check_int("draws", draws)
    check_int("batch_size", batch_size)
    if proto.uses_T:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        check_int("T", T)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)  # CPU generator: same draws on every device
    was_training = model.training
    model.eval()
    draws = 1 if proto.exact else draws
    detail = f"T={T}, {schedule}" if proto.uses_T else ""

    def loss_fn(x, draw):
        return proto.loss(model, x, gen, T, schedule)

    try:
        losses = _per_window_losses(loss_fn, windows, draws, batch_size, device, protocol)  # (K, W)
    finally:
        model.train(was_training)
    if not torch.isfinite(losses).all():
        raise ValueError(f"the model's {protocol!r} loss is not finite ({losses.mean(1).tolist()}): its outputs hold "
                         f"NaN or Inf, so its weights are probably broken (a diverged run?); check the checkpoint, "
                         f"e.g. with minarmd.checkpoint.non_finite_entries(model.state_dict())")
    return Estimate.from_losses(protocol, losses, detail)


def evaluate(model, windows: torch.Tensor, protocols: tuple[str, ...] | None = None,
             **kwargs) -> dict[str, Estimate]:
    """Every protocol that applies to the model (or the ones named), as {protocol: Estimate}."""
    protocols = protocols or DEFAULT_PROTOCOLS[kind_of(model).name]
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
    protocol = protocol or DEFAULT_PROTOCOLS[kind_of(model).name][0]
    return estimate(model, windows, protocol, **kwargs)


def model_kind(model) -> str:
    """Deprecated: ``kinds.kind_of(model).name``."""
    warn("minarmd.evaluate.model_kind", "minarmd.kinds.kind_of(model).name")
    return kind_of(model).name
