"""Checkers for exercises/01_forward_process.ipynb: the masked-diffusion forward process.

Every checker compares the learner's function with ``minarmd.masking`` on fixed and edge cases.
The sampler (01.5) is random: it gets an explicit generator, and is accepted either because it
reproduces the library draw for draw (same algorithm, same seed) or because its histogram agrees
with P(tau = t) within 5 binomial standard errors per step (a fixed seed makes the verdict
deterministic; a correct sampler fails it with probability about 6e-7 per step).
"""
from __future__ import annotations

import torch

from . import (CheckFailed, attempt, dtype_hint, exercise, expect_close, expect_raises, expect_tensor, hinted,
               same, shape_hint, short)
from ..masking import SCHEDULES, alpha_schedule, masking_probs, mdlm_weight, noisy_sequence, sample_mask_times

TOL = 1e-12  # float64 identities: only rounding may differ

# Hand-made schedules with edge cases: a flat step (P(tau = 2) = 0) and T = 1.
FLAT = torch.tensor([1.0, 0.6, 0.6, 0.2, 0.0], dtype=torch.float64)
T1 = torch.tensor([1.0, 0.0], dtype=torch.float64)


def _schedules() -> list[tuple[str, torch.Tensor]]:
    cases = [(f"alpha_schedule({kind!r}, {T})", alpha_schedule(kind, T))
             for kind in SCHEDULES for T in (4, 10)]
    return cases + [(f"alpha {FLAT.tolist()}", FLAT), (f"alpha {T1.tolist()}", T1)]


def _last_alpha_not_zero(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    if same(got[:-1], expected[:-1]) and got[-1] != 0:
        return "only alpha_T differs: at the last step every token is masked, so alpha_T is exactly 0"
    return None


@exercise("01.1", "survival schedule alpha_0..alpha_T", difficulty=2, importance=3, minutes=10)
def check_alpha_schedule(fn):
    n = 0
    for kind in SCHEDULES:
        for T in (1, 4, 10):
            case = f"kind={kind!r}, T={T}"
            got = attempt(fn, kind, T, case=case)
            expect_tensor("alpha", got, alpha_schedule(kind, T), case=case, atol=TOL, hints=[_last_alpha_not_zero])
            n += 1
    expect_raises(fn, ("quadratic", 4), ValueError, "an unknown kind 'quadratic'")
    return f"{n} schedules match minarmd.masking.alpha_schedule; an unknown kind raises ValueError"


@exercise("01.2", "masking probabilities P(tau = t)", difficulty=1, importance=3, minutes=5)
def check_masking_probs(fn):
    cases = _schedules()
    for case, alpha in cases:
        got = attempt(fn, alpha.clone(), case=case)
        expect_tensor("P(tau = t)", got, masking_probs(alpha), case=case, atol=TOL)
    return f"{len(cases)} schedules match minarmd.masking.masking_probs"


def _noisy_cases() -> list[tuple[torch.Tensor, torch.Tensor, int, int]]:
    z1 = torch.tensor([[5, 2, 7, 1, 0, 3]])  # (1, 6)
    tau1 = torch.tensor([[2, 4, 1, 3, 2, 4]])  # T = 4
    cases = [(z1, tau1, t, 8) for t in range(5)]  # t = 0 (all visible) .. t = T (all masked)
    z3 = torch.arange(15).reshape(3, 5) % 6  # (3, 5): a batch of three rows
    tau3 = torch.tensor([[1, 1, 1, 1, 1], [3, 3, 3, 3, 3], [1, 2, 3, 2, 1]])
    cases += [(z3, tau3, t, mask_id) for t, mask_id in ((1, 6), (2, 99), (3, 6))]
    cases.append((torch.tensor([4, 4, 0]), torch.tensor([1, 2, 2]), 1, 5))  # 1-D input works too
    return cases


def _masked_at_t(tau: torch.Tensor, t: int):
    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        if bool(((got != expected) <= (tau == t)).all()):
            return ("only tokens with tau = t differ: a token masked at step t is already masked in x_t "
                    "(< where <= is meant?)")
        return None
    return hint


@exercise("01.3", "noisy sequence x_t", difficulty=1, importance=4, minutes=5)
def check_noisy_sequence(fn):
    cases = _noisy_cases()
    for z, tau, t, mask_id in cases:
        case = f"z {short(z)}, tau {tau.tolist()}, t={t}, mask_id={mask_id}"
        z_in, tau_in = z.clone(), tau.clone()
        got = attempt(fn, z_in, tau_in, t, mask_id, case=case)
        expect_tensor("x_t", got, noisy_sequence(z, tau, t, mask_id), case=case, hints=[_masked_at_t(tau, t)])
        if not (torch.equal(z_in, z) and torch.equal(tau_in, tau)):
            raise CheckFailed(f"your function changed its input z or tau in place; return a new tensor "
                              f"(e.g. torch.where) instead (case: {case})")
    return f"{len(cases)} cases (t = 0..T, batch of 3, 1-D) match minarmd.masking.noisy_sequence"


def _weight_hint(alpha: torch.Tensor, t: int):
    """Names the usual wrong weights of step t: P(tau = t) alone, 1/t, the weight of step t + 1."""
    T = alpha.numel() - 1

    def hint(got: float, expected: float) -> str | None:
        if abs(got - float(alpha[t - 1] - alpha[t])) <= TOL:
            return "that is P(tau = t) alone: the weight also divides by the masked fraction at step t"
        if abs(got - 1 / t) <= TOL:
            return "1/t is the weight of the linear schedule only; this schedule is not linear"
        if t < T and 1 - float(alpha[t + 1]) > 0 and abs(got - mdlm_weight(alpha, t + 1)) <= TOL:
            return "that is the weight of step t + 1: an index off by one (alpha has T + 1 entries, alpha_0 first)"
        return None
    return hint


@exercise("01.4", "MDLM weight w_t", difficulty=2, importance=3, minutes=10)
def check_mdlm_weight(fn):
    n = 0
    for case, alpha in _schedules():
        T = alpha.numel() - 1
        for t in range(1, T + 1):
            if 1.0 - float(alpha[t]) <= 0.0:
                continue  # nothing masked yet: the weight is undefined
            got = attempt(fn, alpha.clone(), t, case=f"{case}, t={t}")
            expect_close("w_t", got, mdlm_weight(alpha, t), TOL, case=f"{case}, t={t}", hints=[_weight_hint(alpha, t)])
            n += 1
    return f"{n} (schedule, t) pairs match minarmd.masking.mdlm_weight"


def _draw(fn, alpha: torch.Tensor, shape: tuple[int, ...], seed: int, case: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    got = attempt(fn, alpha.clone(), shape, gen, case=case)
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"tau: returned a {type(got).__name__}, expected a torch.Tensor of shape "
                          f"{shape} and dtype torch.int64 (case: {case})")
    if tuple(got.shape) != shape:
        raise CheckFailed(hinted(f"tau shape: got {tuple(got.shape)}, expected {shape} (case: {case})",
                                 shape_hint(tuple(got.shape), shape) or "draw exactly `shape` values: "
                                 "torch.multinomial gives a flat sample, .reshape(shape) it"))
    if got.dtype != torch.long:
        raise CheckFailed(hinted(f"tau dtype: got {got.dtype}, expected torch.int64 (case: {case})",
                                 dtype_hint(got.dtype, torch.long)))
    T = alpha.numel() - 1
    if got.numel() and (got.min() < 1 or got.max() > T):
        zero_based = int(got.min()) == 0 and int(got.max()) <= T - 1
        raise CheckFailed(hinted(f"tau values: got values in {int(got.min())}..{int(got.max())}, expected "
                                 f"masking times in 1..T={T} (case: {case})",
                                 "masking times count from 1: an index from torch.multinomial counts from 0"
                                 if zero_based else None))
    return got


@exercise("01.5", "sampling masking times tau", difficulty=2, importance=3, minutes=15)
def check_sample_tau(fn):
    # shape, dtype and range, exactly
    for alpha, shape in ((FLAT, (3,)), (FLAT, (1, 1)), (alpha_schedule("cosine", 6), (2, 3, 4)), (T1, (2, 5))):
        _draw(fn, alpha, shape, 0, case=f"alpha {[round(a, 3) for a in alpha.tolist()]}, shape {shape}")
    alpha, shape, seed = alpha_schedule("cosine", 6), (40, 500), 1234  # 20,000 draws
    case = f"alpha_schedule('cosine', 6), shape {shape}, seed {seed}"
    got = _draw(fn, alpha, shape, seed, case)
    # the generator must drive the randomness: the same seed gives the same draws
    again = _draw(fn, alpha, shape, seed, case)
    if not torch.equal(got, again):
        raise CheckFailed("two calls with generators seeded alike gave different draws: draw every random "
                          "number from the `generator` argument (e.g. torch.multinomial(..., generator=generator))")
    reference = sample_mask_times(alpha, shape, generator=torch.Generator().manual_seed(seed))
    if torch.equal(got, reference):
        same = "identical draws to minarmd.masking.sample_mask_times with the same seed"
    else:
        same = "different draws from the library's, same distribution"
    # the distribution: each step's frequency within 5 binomial standard errors of P(tau = t)
    flat = _draw(fn, FLAT, shape, seed, f"alpha {FLAT.tolist()}, shape {shape}")
    for tau, a, name in ((got, alpha, "alpha_schedule('cosine', 6)"), (flat, FLAT, f"alpha {FLAT.tolist()}")):
        p = masking_probs(a)  # (T,)
        n = tau.numel()
        freq = torch.bincount(tau.flatten() - 1, minlength=p.numel()).double() / n
        se = (p * (1 - p) / n).sqrt()  # binomial standard error of each frequency
        for t in range(1, p.numel() + 1):
            if abs(float(freq[t - 1] - p[t - 1])) > 5 * float(se[t - 1]) + TOL:
                raise CheckFailed(f"distribution of tau ({name}, {n} draws): P(tau = {t}) should be "
                                  f"{float(p[t - 1]):.4f}, your draws give {float(freq[t - 1]):.4f} "
                                  f"(allowed: 5 standard errors = {5 * float(se[t - 1]):.4f})\n"
                                  f"hint: draw each step t = 1..T with its probability alpha_(t-1) - alpha_t")
    return f"shape, int64, range 1..T, reproducible per seed, histogram within 5 SE; {same}"


__all__ = ["check_alpha_schedule", "check_masking_probs", "check_noisy_sequence", "check_mdlm_weight",
           "check_sample_tau"]
