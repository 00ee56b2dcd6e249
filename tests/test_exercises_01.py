"""Exercises 01 (forward process): deliberately wrong answers fail, with a message that says what is wrong.

(That every checker passes its solution and reports the stub as not attempted: tests/test_notebooks.py.)
"""
import math

import torch

from course import failed, load_solution
from minarmd.check import PASSED, run

solution = load_solution("01_forward_process")


# ---- 01.1 alpha schedule -----------------------------------------------------------------------

def test_alpha_loglinear_ending_at_eps_fails():
    def wrong(kind, T):  # forgets to set alpha_T = 0 (log-linear stops at eps)
        alpha = solution.alpha_schedule(kind, T)
        if kind == "loglinear":
            alpha[-1] = 1e-3
        return alpha
    failed("01.1", wrong, "alpha:", "entries differ", "loglinear", "hint: only alpha_T differs")


def test_alpha_float32_reports_dtype():
    failed("01.1", lambda kind, T: solution.alpha_schedule(kind, T).float(), "dtype", "float32",
           "hint: torch.float32 is less precise")


def test_alpha_without_alpha_0_reports_shape():
    failed("01.1", lambda kind, T: solution.alpha_schedule(kind, T)[1:], "shape", "expected (2,)",
           "hint: dimension 0 has one")


def test_alpha_accepting_unknown_kind_fails():
    def wrong(kind, T):
        return solution.alpha_schedule(kind if kind in ("linear", "cosine", "loglinear") else "linear", T)
    failed("01.1", wrong, "ValueError", "quadratic")


# ---- 01.2 masking probabilities ---------------------------------------------------------------

def test_probs_wrong_sign_fails():
    failed("01.2", lambda alpha: alpha[1:] - alpha[:-1], "P(tau = t):", "entries differ", "hint: every entry has the")


def test_probs_with_t0_entry_reports_shape():
    failed("01.2", lambda alpha: torch.cat([alpha[:1] * 0, alpha[:-1] - alpha[1:]]), "shape",
           "hint: dimension 0 has one")


def test_probs_float32_reports_dtype():
    failed("01.2", lambda alpha: (alpha[:-1] - alpha[1:]).float(), "dtype", "hint: torch.float32 is less precise")


# ---- 01.3 noisy sequence ----------------------------------------------------------------------

def test_noisy_off_by_one_fails():
    # tau >= t counts a token masked at step t as still visible in x_t
    failed("01.3", lambda z, tau, t, m: torch.where(tau >= t, z, torch.full_like(z, m)), "x_t:", "differ",
           "hint: only tokens with tau")


def test_noisy_in_place_fails():
    def wrong(z, tau, t, mask_id):
        z[tau <= t] = mask_id
        return z
    failed("01.3", wrong, "in place")


def test_noisy_returning_visibility_reports_dtype():
    failed("01.3", lambda z, tau, t, m: tau > t, "dtype", "torch.bool", "hint: you returned a True/False")


def test_noisy_returning_list_reports_type():
    failed("01.3", lambda z, tau, t, m: solution.noisy_sequence(z, tau, t, m).tolist(), "returned a list")


# ---- 01.4 MDLM weight -------------------------------------------------------------------------

def test_weight_without_denominator_fails():
    failed("01.4", lambda alpha, t: float(alpha[t - 1] - alpha[t]), "w_t: got", "hint: that is P(tau =")


def test_weight_one_over_t_fails_beyond_linear():
    # 1/t is exact for the linear schedule only; the cosine cases catch it
    assert all(abs(solution.mdlm_weight(solution.alpha_schedule("linear", 10), t) - 1 / t) < 1e-12
               for t in range(1, 11))
    failed("01.4", lambda alpha, t: 1.0 / t, "w_t: got", "cosine", "hint: 1/t is the weight")


def test_weight_off_by_one_fails():
    # uses step t+1 instead of t: already wrong at t = 1 (and would index past alpha_T at t = T)
    failed("01.4", lambda alpha, t: float(alpha[t] - alpha[t + 1]) / (1 - float(alpha[t + 1])), "w_t: got", "t=1",
           "hint: that is the weight")


def test_weight_as_tensor_is_accepted():
    def as_tensor(alpha, t):
        return (alpha[t - 1] - alpha[t]) / (1 - alpha[t])  # a 0-d float64 tensor
    assert run("01.4", as_tensor).status == PASSED


# ---- 01.5 sampling tau ------------------------------------------------------------------------

def test_sampler_uniform_fails_on_distribution():
    def uniform(alpha, shape, generator):
        return torch.randint(1, alpha.numel(), shape, generator=generator)
    failed("01.5", uniform, "distribution of tau", "standard errors", "hint: draw each step t")


def test_sampler_proportional_to_alpha_fails():
    def wrong(alpha, shape, generator):  # P(tau = t) proportional to alpha_t: the wrong quantity
        draws = torch.multinomial(alpha[:-1], math.prod(shape), replacement=True, generator=generator)
        return (draws + 1).reshape(shape)
    failed("01.5", wrong, "distribution of tau", "hint: draw each step t")


def test_sampler_ignoring_generator_fails():
    def wrong(alpha, shape, generator):
        probs = alpha[:-1] - alpha[1:]
        return (torch.multinomial(probs, math.prod(shape), replacement=True) + 1).reshape(shape)
    failed("01.5", wrong, "seeded alike")


def test_sampler_zero_based_fails_on_range():
    failed("01.5", lambda alpha, shape, g: solution.sample_tau(alpha, shape, g) - 1, "tau values", "1..T",
           "hint: masking times count from")


def test_sampler_float_reports_dtype():
    failed("01.5", lambda alpha, shape, g: solution.sample_tau(alpha, shape, g).double(), "dtype",
           "hint: a float result where")


def test_sampler_flat_reports_shape():
    failed("01.5", lambda alpha, shape, g: solution.sample_tau(alpha, shape, g).flatten(), "shape",
           "hint: the batch dimension is")


def test_sampler_inverse_cdf_passes():
    def inverse_cdf(alpha, shape, generator):  # another correct algorithm
        cdf = torch.cumsum(alpha[:-1] - alpha[1:], 0)  # (T,) P(tau <= t)
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        return (torch.searchsorted(cdf, u, right=True) + 1).clamp(max=alpha.numel() - 1)
    result = run("01.5", inverse_cdf)
    assert result.status == PASSED, str(result)


def test_sampler_gumbel_max_passes_with_different_draws():
    def gumbel_max(alpha, shape, generator):  # a correct sampler that draws other random numbers
        logp = (alpha[:-1] - alpha[1:]).log()  # (T,), -inf where P(tau = t) = 0
        u = torch.rand(*shape, logp.numel(), generator=generator, dtype=torch.float64)
        return (logp - (-u.log()).log()).argmax(-1) + 1
    result = run("01.5", gumbel_max)
    assert result.status == PASSED, str(result)
    assert "different draws" in result.message
    assert "identical draws" in run("01.5", solution.sample_tau).message
