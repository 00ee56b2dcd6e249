r"""Synthetic sources with a known entropy: the gap between a model's loss and the true NLL is measurable.

On real text nobody knows the best achievable loss. On these sources it is exact, so a learning curve
can be read as "nats above the floor".

``MarkovSource`` — a random Markov chain of order :math:`k` over :math:`V` symbols. Each context
:math:`c = (x_{t-k}, \dots, x_{t-1})` has its own next-symbol distribution :math:`P(\cdot \mid c)`,
drawn once from a symmetric Dirichlet (small concentration = peaked rows = low entropy). The chain
over contexts has a unique stationary distribution :math:`\pi` (every row of P is strictly positive,
so every context reaches every other in k steps), and the entropy rate is

.. math::  h = \sum_c \pi(c)\, H\big(P(\cdot \mid c)\big) \quad \text{nats/token}.

A model that sees a window :math:`x_1..x_n` of the stationary stream (and nothing before it) can at
best pay the window's joint entropy, per token

.. math::  \text{window\_nll}(n) = \frac{H(\pi) + (n - k)\, h}{n}, \qquad n \ge k,

where :math:`H(\pi)` is the entropy of the first k tokens (the stationary joint over contexts): the
first k tokens have no full context, every later one is an ordinary transition.

``CopyTask`` — sequences whose second half repeats the first, the first half i.i.d. uniform over V
symbols. The joint entropy is :math:`(n/2)\log V`, so the floor is :math:`\tfrac12 \log V` per token
whatever the generation order: left to right pays :math:`\log V` on the first half and 0 on the copy.

Contexts are indexed big-endian, the most recent token least significant:
:math:`c = x_{t-k} V^{k-1} + \dots + x_{t-1}`, and the next context is :math:`(c V + x_t) \bmod V^k`.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .validation import check_int

__all__ = ["MarkovSource", "CopyTask"]


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats along the last dim (0 log 0 = 0)."""
    return -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(-1)


@dataclass
class MarkovSource:
    """A seeded random order-k Markov chain over V symbols with exact entropy rate and window NLL."""

    vocab_size: int = 32  # V: small enough to learn from ~2M tokens (1024 contexts x 32 outcomes)
    order: int = 2  # k: the lower-order marginals are then nearly uniform, so the context must be learned
    concentration: float = 0.1  # Dirichlet alpha of every row: h = 0.498 log V = 1.72 nats at the defaults
    seed: int = 0  # seeds the transition table (numpy PCG64: torch's Gamma sampler takes no generator)
    transition: torch.Tensor = field(init=False, repr=False, compare=False)  # (V^k, V) float64, rows P(. | c)
    _pi: torch.Tensor = field(init=False, repr=False, compare=False)  # (V^k,) float64 stationary distribution

    def __post_init__(self):
        check_int("vocab_size", self.vocab_size, 2)
        check_int("order", self.order, 1)
        if not isinstance(self.concentration, (int, float)) or not self.concentration > 0:
            raise ValueError(f"concentration must be a number > 0 (Dirichlet alpha), got {self.concentration!r}")
        contexts = self.vocab_size ** self.order
        if contexts * self.vocab_size > 2 ** 26:
            raise ValueError(f"vocab_size**(order+1) = {contexts * self.vocab_size} transition entries is "
                             f"too many (max 2**26): lower vocab_size or order")
        # Dirichlet(alpha) = normalised Gamma(alpha) draws, made in log space so that small alpha does
        # not underflow: Gamma(a) = Gamma(a + 1) * U^(1/a) for U uniform (Marsaglia & Tsang's boost).
        rng = np.random.default_rng(self.seed)
        a = float(self.concentration)
        log_gamma = np.log(rng.standard_gamma(a + 1.0, (contexts, self.vocab_size))) + np.log(
            rng.random((contexts, self.vocab_size))) / a  # (C, V)
        self.transition = torch.softmax(torch.from_numpy(log_gamma), dim=1)  # (C, V) float64 rows P(. | c)
        if not (self.transition > 0).all():  # a zero entry could break irreducibility
            raise ValueError(f"concentration={self.concentration} is so small that a transition probability "
                             f"underflowed to 0 in float64: use a larger one (0.03 still works at V = 32)")
        self._pi = self._power_iteration()

    # ---- exact quantities -------------------------------------------------------------------
    def _step(self, pi: torch.Tensor) -> torch.Tensor:
        """One step of the context chain: pi'(b.., x) = sum_a pi(a, b..) P(x | a, b..)."""
        V, C = self.vocab_size, self.vocab_size ** self.order
        joint = pi.reshape(V, C // V, 1) * self.transition.reshape(V, C // V, V)  # (V, C/V, V)
        return joint.sum(0).reshape(C)

    def _power_iteration(self, tol: float = 1e-15, max_iter: int = 100_000) -> torch.Tensor:
        C = self.vocab_size ** self.order
        pi = torch.full((C,), 1.0 / C, dtype=torch.float64)
        for _ in range(max_iter):
            new = self._step(pi)
            new = new / new.sum()
            done = (new - pi).abs().max() < tol
            pi = new
            if done:
                break
        residual = float((self._step(pi) - pi).abs().max())
        if residual > 1e-13:
            raise RuntimeError(f"power iteration did not converge (residual {residual:.1e}): "
                               f"the chain mixes too slowly; raise concentration")
        return pi

    def stationary(self) -> torch.Tensor:
        """Stationary distribution over contexts, (V^k,) float64 (reshape to (V,)*k for the joint)."""
        return self._pi.clone()

    def entropy_rate(self) -> float:
        """h = sum_c pi(c) H(P(. | c)) in nats/token."""
        return float((self._pi * _entropy(self.transition)).sum())

    def window_nll(self, n: int) -> float:
        """Exact expected NLL per token (nats) of a length-n window of the stationary stream, n >= k."""
        check_int("n", n, self.order)
        return (float(_entropy(self._pi)) + (n - self.order) * self.entropy_rate()) / n

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-probability (float64) of sequences x of shape (..., n), n >= k, under the stationary chain."""
        if not isinstance(x, torch.Tensor) or x.dtype != torch.long or x.ndim < 1 or x.shape[-1] < self.order:
            raise ValueError(f"x must be an int64 tensor (..., n) with n >= order={self.order}")
        if x.numel() and (x.min() < 0 or x.max() >= self.vocab_size):
            raise ValueError(f"x must hold symbols in 0..{self.vocab_size - 1}")
        V, k = self.vocab_size, self.order
        weights = V ** torch.arange(k - 1, -1, -1)  # (k,) big-endian place values
        windows = x.unfold(-1, k, 1)  # (..., n-k+1, k) every run of k consecutive tokens
        ctx = (windows * weights).sum(-1)  # (..., n-k+1) context index at each position
        first = self._pi.log()[ctx[..., 0]]  # (...) log pi(x_1..x_k)
        steps = self.transition.log()[ctx[..., :-1], x[..., k:]]  # (..., n-k) log P(x_t | context)
        return first + steps.sum(-1)

    # ---- sampling ---------------------------------------------------------------------------
    def sample(self, n_tokens: int, generator: torch.Generator | None = None,
               batch: int | None = None) -> torch.Tensor:
        """A stationary stream (n,) int64, or ``batch`` independent windows (B, n).

        Both draw one uniform for the first k tokens (inverse CDF of pi) and one per later token
        (inverse CDF of P(. | context)), so ``sample(n, g)`` equals ``sample(n, g, batch=1)[0]``.
        The stream is a Python loop (~0.5 us/token); the batch path loops over positions only.
        """
        check_int("n_tokens", n_tokens)
        if batch is not None:
            check_int("batch", batch)
        V, k, C = self.vocab_size, self.order, self.vocab_size ** self.order
        steps = max(n_tokens - k, 0)
        u = torch.rand(batch or 1, steps + 1, generator=generator, dtype=torch.float64)  # (B, 1 + steps)
        pi_cdf = self._pi.cumsum(0)
        ctx = torch.searchsorted(pi_cdf, u[:, 0].contiguous(), right=True).clamp_max(C - 1)  # (B,)
        head = torch.stack([(ctx // V ** (k - 1 - j)) % V for j in range(k)], dim=1)  # (B, k)
        cdf = self.transition.cumsum(1)
        cdf[:, -1] = math.inf  # rounding can leave the last cumsum below a uniform draw
        if batch is None:
            rows, draws, c, out = cdf.tolist(), u[0, 1:].tolist(), int(ctx[0]), [0] * steps
            for i in range(steps):
                c_next = bisect.bisect_right(rows[c], draws[i])
                out[i] = c_next
                c = (c * V + c_next) % C
            return torch.cat([head[0], torch.tensor(out, dtype=torch.long)])[:n_tokens]
        draws = u[:, 1:].T.contiguous()  # (steps, B): one contiguous row per position
        out = torch.empty(batch, steps, dtype=torch.long)
        for i in range(steps):
            out[:, i] = torch.searchsorted(cdf[ctx], draws[i, :, None], right=True)[:, 0]
            ctx = (ctx * V + out[:, i]) % C
        return torch.cat([head, out], dim=1)[:, :n_tokens]  # (B, n)


@dataclass
class CopyTask:
    """Sequences x_1..x_n with x_{n/2+i} = x_i, the first half i.i.d. uniform over V symbols."""

    vocab_size: int = 16  # V: floor 0.5 log 16 = 1.39 nats/token; small so the copy, not memory, is the task

    def __post_init__(self):
        check_int("vocab_size", self.vocab_size, 2)

    @staticmethod
    def _check_n(n: int) -> None:
        check_int("n", n, 2)
        if n % 2:
            raise ValueError(f"n={n} must be even: the second half of a copy sequence repeats the first")

    def sample(self, batch: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n) int64 copy sequences."""
        check_int("batch", batch)
        self._check_n(n)
        half = torch.randint(0, self.vocab_size, (batch, n // 2), generator=generator)  # (B, n/2)
        return torch.cat([half, half], dim=1)  # (B, n)

    def window_nll(self, n: int) -> float:
        """The floor per token: (n/2) log V / n, i.e. the joint entropy spread over all n tokens."""
        self._check_n(n)
        return (n // 2) * math.log(self.vocab_size) / n
