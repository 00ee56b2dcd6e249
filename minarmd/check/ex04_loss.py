"""Checkers for exercises/04_single_pass_loss.ipynb: token NLL, the T-pass loop, per-step losses,
MDLM's weight and a Monte Carlo estimate of the expected ARMD loss."""
from __future__ import annotations

import math

import torch

from . import (CheckFailed, attempt, exercise, expect_close, expect_tensor, factor_hint, hinted, same,
               standard_error_hints)
from ..config import ARMDConfig
from ..loss import armd_loss, t_pass_loss, token_nll
from ..masking import alpha_schedule, mdlm_weight, sample_mask_times
from ..model import ARMD
from ..permutation import order_from_mask_times


def small_model(seed: int = 0, vocab_size: int = 11, max_len: int = 12) -> ARMD:
    """A tiny untrained float64 ARMD; built without touching the learner's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = ARMDConfig(vocab_size=vocab_size, max_len=max_len, n_layer=2, n_two_stream=1, n_head=2,
                         n_embd=16, d_pe=8, pe_init="random")
        return ARMD(cfg).double().eval()


def trajectory_cases():
    """(label, x, tau, T) cases: batch > 1 with different block structures, T = 1, T = N, N = 1."""
    g = torch.Generator().manual_seed(4)
    cases = []
    for T, batch, n in ((4, 3, 10), (1, 2, 6), (12, 2, 12), (3, 1, 1)):
        x = torch.randint(0, 11, (batch, n), generator=g)
        tau = sample_mask_times(alpha_schedule("cosine", T), (batch, n), g)
        cases.append((f"T={T}, x of shape {tuple(x.shape)}", x, tau, T))
    return cases


# ---- 04.1 ---------------------------------------------------------------------------------------

@exercise("04.1", "token NLL from logits", difficulty=1, importance=4, minutes=10)
def check_token_nll(fn):
    g = torch.Generator().manual_seed(1)
    cases = []
    for B, M, V, dtype in ((2, 5, 7, torch.float64), (1, 1, 3, torch.float64), (3, 4, 50, torch.float32),
                           (2, 3, 11, torch.bfloat16)):
        logits = (3 * torch.randn(B, M, V, generator=g, dtype=torch.float64)).to(dtype)
        targets = torch.randint(0, V, (B, M), generator=g)
        cases.append((f"logits {B}x{M}x{V} {str(dtype).replace('torch.', '')}", logits, targets))
    # a very peaked distribution: softmax underflows to 0 for the first target, so log(softmax)
    # gives inf where the exact NLL is 800 (use log_softmax)
    logits = torch.tensor([[[0.0, 800.0, -40.0], [0.0, 800.0, -40.0]]], dtype=torch.float64)
    cases.append(("very confident predictions, logits [0, 800, -40]", logits, torch.tensor([[0, 1]])))
    for case, logits, targets in cases:
        got = attempt(fn, logits.clone(), targets.clone(), case=case)
        expected = token_nll(logits, targets)
        tol = 1e-12 if expected.dtype == torch.float64 else 1e-5
        expect_tensor("NLL", got, expected, case=case, atol=tol, rtol=tol)
    return f"{len(cases)} cases (float64, float32, bfloat16 -> float32) match minarmd.loss.token_nll"


# ---- 04.2 ---------------------------------------------------------------------------------------

class CallRecorder:
    """Wraps a model: forwards every call and records the block ids it was fed."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, tokens, pos, blocks=None):
        self.calls.append(None if blocks is None else blocks.detach().clone())
        return self.model(tokens, pos, blocks)


def expected_calls(blocks: torch.Tensor) -> list[tuple[int, ...]]:
    """The block ids of each call of the T-pass loop: per row, per non-empty block b, blocks <= b."""
    calls = []
    for row in blocks:
        _, counts = torch.unique_consecutive(row, return_counts=True)
        for end in torch.cumsum(counts, 0).tolist():
            calls.append(tuple(row[:end].tolist()))
    return calls


@exercise("04.2", "the T-pass loss loop", difficulty=3, importance=4, minutes=25)
def check_t_pass(fn):
    model = small_model()
    with torch.no_grad():
        for case, x, tau, T in trajectory_cases():
            order, blocks = order_from_mask_times(tau, T)
            spy = CallRecorder(model)
            got = attempt(fn, spy, x.clone(), order.clone(), blocks.clone(), case=case)
            expected = t_pass_loss(model, x, order, blocks, per_token=True)
            expect_tensor("per-token NLL (generation order)", got, expected, case=case, atol=1e-12)
            want = expected_calls(blocks)
            if any(c is None for c in spy.calls):
                raise CheckFailed(f"a model call got blocks=None: pass each call its slice of blocks (case: {case})")
            fed = [tuple(c[0].tolist()) for c in spy.calls if c.shape[0] == 1]
            if len(spy.calls) != len(want) or len(fed) != len(spy.calls):
                raise CheckFailed(f"made {len(spy.calls)} model calls, expected {len(want)}: one call per non-empty "
                                  f"block of each row, each on one row (case: {case})")
            if sorted(fed) != sorted(want):
                raise CheckFailed("a model call was fed the wrong tokens: the call for block b must hold exactly "
                                  f"the tokens of blocks 1..b of that row (case: {case})")
    return "4 trajectories match minarmd.loss.t_pass_loss, with one call per non-empty block"


# ---- 04.3 ---------------------------------------------------------------------------------------

def reference_step_losses(model, x, tau, T) -> torch.Tensor:
    """(B, T): column t-1 = L_t, from the library's T-pass reference."""
    order, blocks = order_from_mask_times(tau, T)
    nll = t_pass_loss(model, x, order, blocks, per_token=True)  # (B, N) in generation order
    steps = (T - blocks + 1) - 1  # (B, N): tau - 1 of each slot
    return torch.zeros(x.shape[0], T, dtype=nll.dtype).scatter_add_(1, steps, nll)


@exercise("04.3", "per-step losses L_t from one pass", difficulty=3, importance=5, minutes=20)
def check_step_losses(fn):
    model = small_model()
    with torch.no_grad():
        for case, x, tau, T in trajectory_cases():
            got = attempt(fn, model, x.clone(), tau.clone(), T, case=case)
            if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(x.shape) and x.shape[1] != T:
                raise CheckFailed(hinted(f"L (B, T) shape: got {tuple(got.shape)}, expected {(x.shape[0], T)} "
                                         f"(case: {case})", "one column per step t = 1..T, not per token: add up "
                                         "the NLLs of the tokens masked at each step"))
            expect_tensor("L (B, T)", got, reference_step_losses(model, x, tau, T), case=case, atol=1e-12)
    return "4 trajectories (with empty steps, T = 1, T = N, N = 1) match the T-pass reference"


# ---- 04.4 ---------------------------------------------------------------------------------------

def _denominator_hint(alpha: torch.Tensor):
    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        if same(got, (alpha[:-1] - alpha[1:]) / (1 - alpha[:-1])):
            return "the denominator uses alpha_(t-1): divide by the masked fraction of step t itself, 1 - alpha_t"
        return None
    return hint


@exercise("04.4", "MDLM's discrete-time weights", difficulty=1, importance=3, minutes=5)
def check_weights(fn):
    cases = [(f"{kind}, T={T}", alpha_schedule(kind, T)) for kind, T in
             (("linear", 1), ("linear", 5), ("cosine", 8), ("loglinear", 4))]
    cases.append(("a flat step: alpha = [1, 0.5, 0.5, 0]", torch.tensor([1.0, 0.5, 0.5, 0.0], dtype=torch.float64)))
    for case, alpha in cases:
        got = attempt(fn, alpha.clone(), case=case)
        T = alpha.numel() - 1
        expected = torch.tensor([mdlm_weight(alpha, t) for t in range(1, T + 1)], dtype=torch.float64)
        expect_tensor("w", got, expected, case=case, atol=1e-12, hints=[_denominator_hint(alpha)])
    return f"{len(cases)} schedules match minarmd.masking.mdlm_weight"


# ---- 04.5 ---------------------------------------------------------------------------------------

def reference_estimate(model, x, alpha, K, generator):
    """The recipe the exercise states: K trajectories drawn at once, total NLL per trajectory."""
    T = alpha.numel() - 1
    tau = sample_mask_times(alpha, (K, x.shape[1]), generator)  # (K, N)
    order, blocks = order_from_mask_times(tau, T)
    totals = armd_loss(model, x.expand(K, -1), order, blocks, per_token=True).sum(1)  # (K,)
    return float(totals.mean()), float(totals.std() / math.sqrt(K))


@exercise("04.5", "Monte Carlo estimate with its standard error", difficulty=2, importance=3, minutes=15)
def check_mc(fn):
    model = small_model(seed=1)
    x = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    cases = [("cosine, T=4, K=500", alpha_schedule("cosine", 4), 500, 0),
             ("linear, T=8, K=64", alpha_schedule("linear", 8), 64, 1),
             ("linear, T=2, K=2", alpha_schedule("linear", 2), 2, 2)]
    with torch.no_grad():
        for case, alpha, K, seed in cases:
            got = attempt(fn, model, x.clone(), alpha.clone(), K, torch.Generator().manual_seed(seed), case=case)
            if not isinstance(got, tuple) or len(got) != 2:
                raise CheckFailed(f"returned a {type(got).__name__}, expected a tuple (mean, standard error) "
                                  f"(case: {case})")
            mean, se = reference_estimate(model, x, alpha, K, torch.Generator().manual_seed(seed))
            per_token = {"per token: score the total NLL of each trajectory, not its mean over the tokens":
                         1 / x.shape[1]}
            expect_close("mean", got[0], mean, 1e-9, case=case, hints=[lambda g, e: factor_hint(g, e, per_token)])
            factors = standard_error_hints(K, x.shape[1])
            expect_close("standard error", got[1], se, 1e-9, case=case, hints=[lambda g, e: factor_hint(g, e, factors)])
    return "3 cases match the same draws scored with minarmd.loss.armd_loss"
