"""Exercises 04 (single-pass loss): deliberately wrong answers fail, with a message that says what is wrong.

(That every checker passes its solution and reports the stub as not attempted: tests/test_notebooks.py.)
"""
import math

import torch

from course import failed, load_solution
from minarmd.check import run
from minarmd.loss import armd_loss, token_nll
from minarmd.masking import sample_mask_times
from minarmd.permutation import order_from_mask_times

solution = load_solution("04_single_pass_loss")


# ---- 04.1 token NLL ------------------------------------------------------------------------------

def test_token_nll_wrong_sign():
    assert "entries differ" in failed("04.1", lambda logits, t: -solution.my_token_nll(logits, t),
                                      "hint: every entry has the")


def test_token_nll_mean_is_wrong_shape():
    assert "shape" in failed("04.1", lambda logits, t: solution.my_token_nll(logits, t).mean(),
                             "hint: you reduced a dimension")


def test_token_nll_without_upcast_is_wrong_dtype():
    def no_upcast(logits, targets):
        return -torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    message = failed("04.1", no_upcast, "hint: torch.bfloat16 is less precise")
    assert "dtype" in message and "bfloat16" in message


def test_token_nll_log_of_softmax_underflows():
    def naive(logits, targets):
        logits = logits.float() if logits.element_size() < 4 else logits
        return -torch.log(torch.softmax(logits, -1)).gather(-1, targets[..., None])[..., 0]
    message = failed("04.1", naive, "hint: your result contains inf")
    assert "entries differ" in message and "confident" in message


# ---- 04.2 T-pass loop ----------------------------------------------------------------------------

def test_t_pass_single_call_is_caught():
    message = failed("04.2", lambda model, x, order, blocks: token_nll(
        model(x.gather(1, order), order, blocks), x.gather(1, order)))
    assert "model calls" in message


def test_t_pass_mean_is_wrong_shape():
    assert "shape" in failed("04.2", lambda *a: solution.my_t_pass_loss(*a).mean(), "hint: you reduced a dimension")


def test_t_pass_without_gather_is_wrong():
    def no_gather(model, x, order, blocks):
        return solution.my_t_pass_loss(model, x, torch.arange(x.shape[1]).expand_as(x), blocks)
    assert "entries differ" in failed("04.2", no_gather)


def test_t_pass_fed_the_whole_row_is_caught():
    def whole_row(model, x, order, blocks):
        tokens = x.gather(1, order)
        rows = []
        for row in range(x.shape[0]):
            n_blocks = torch.unique_consecutive(blocks[row]).numel()
            logits = [model(tokens[row:row + 1], order[row:row + 1], blocks[row:row + 1]) for _ in range(n_blocks)]
            rows.append(token_nll(logits[-1], tokens[row:row + 1])[0])
        return torch.stack(rows)
    assert "wrong tokens" in failed("04.2", whole_row)  # right values, right call count, future tokens fed


# ---- 04.3 per-step losses ------------------------------------------------------------------------

def test_step_losses_indexed_by_block_is_wrong():
    def by_block(model, x, tau, T):
        order, blocks = order_from_mask_times(tau, T)
        nll = armd_loss(model, x, order, blocks, per_token=True)
        return torch.zeros(x.shape[0], T, dtype=nll.dtype).scatter_add_(1, blocks - 1, nll)
    assert "entries differ" in failed("04.3", by_block, "hint: your result is the")


def test_step_losses_float32_is_wrong_dtype():
    assert "dtype" in failed("04.3", lambda *a: solution.my_step_losses(*a).float(),
                             "hint: torch.float32 is less precise")


def test_step_losses_per_token_is_wrong_shape():
    def per_token(model, x, tau, T):
        order, blocks = order_from_mask_times(tau, T)
        return armd_loss(model, x, order, blocks, per_token=True)
    assert "shape" in failed("04.3", per_token, "hint: one column per step")


# ---- 04.4 MDLM weights ---------------------------------------------------------------------------

def test_weights_off_by_one_denominator():
    message = failed("04.4", lambda alpha: (alpha[:-1] - alpha[1:]) / (1 - alpha[:-1]),
                     "hint: the denominator uses alpha_(t-1)")
    assert "entries differ" in message


def test_weights_unweighted_is_wrong():
    assert "entries differ" in failed("04.4", lambda alpha: torch.ones(alpha.numel() - 1, dtype=torch.float64))


def test_weights_float32_and_shape():
    assert "dtype" in failed("04.4", lambda alpha: solution.my_mdlm_weights(alpha).float(),
                             "hint: torch.float32 is less precise")
    assert "shape" in failed("04.4", lambda alpha: torch.cat([alpha.new_ones(1), solution.my_mdlm_weights(alpha)]),
                             "hint: dimension 0 has one")


# ---- 04.5 Monte Carlo ----------------------------------------------------------------------------

def test_mc_standard_deviation_is_not_the_standard_error():
    def std_only(model, x, alpha, K, generator):
        mean, se = solution.my_mc_estimate(model, x, alpha, K, generator)
        return mean, se * math.sqrt(K)
    assert "standard error" in failed("04.5", std_only, "hint: that is the standard")


def test_mc_population_std_is_caught():
    def population(model, x, alpha, K, generator):
        tau = sample_mask_times(alpha, (K, x.shape[1]), generator)
        order, blocks = order_from_mask_times(tau, alpha.numel() - 1)
        totals = armd_loss(model, x.expand(K, -1), order, blocks, per_token=True).sum(1)
        return float(totals.mean()), float(totals.std(correction=0) / math.sqrt(K))
    assert "standard error" in failed("04.5", population, "hint: the variance was divided")


def test_mc_per_token_mean_is_caught():
    def per_token(model, x, alpha, K, generator):
        mean, se = solution.my_mc_estimate(model, x, alpha, K, generator)
        return mean / x.shape[1], se / x.shape[1]
    assert "mean" in failed("04.5", per_token, "hint: per token")


def test_mc_must_return_a_pair():
    assert "tuple" in failed("04.5", lambda *a: solution.my_mc_estimate(*a)[0])


def test_checkers_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    run("04.2", solution.my_t_pass_loss)
    assert torch.equal(torch.rand(3), before)
