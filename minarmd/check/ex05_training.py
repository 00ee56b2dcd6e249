"""Checkers for exercises/05_training.ipynb: learning rate, curriculum, training batches, estimates."""
from __future__ import annotations

import math

import torch

from . import (CheckFailed, attempt, exercise, expect_close, expect_tensor, factor_hint, hinted,
               standard_error_hints)
from ..data import TokenData
from ..evaluate import Estimate
from ..permutation import ProgressiveSchedule
from ..optim import learning_rate
from ..train_config import TrainConfig


def _describe(cfg) -> str:
    return (f"lr={cfg.lr:g}, warmup={cfg.warmup}, max_steps={cfg.max_steps}, lr_decay={cfg.lr_decay!r}, "
            f"min_lr_frac={cfg.min_lr_frac:g}")


def _lr_hint(cfg, step: int):
    """Names the usual learning-rate mistakes from where on the schedule the wrong value is."""
    def hint(got: float, expected: float) -> str | None:
        if step < cfg.warmup and got == 0:
            return "a learning rate of 0 wastes the first step: warm-up should already be above 0 at step 0"
        if cfg.lr_decay == "constant" and step >= cfg.warmup:
            return "lr_decay='constant': after warm-up the learning rate stays at lr"
        if step > cfg.max_steps:
            return "past max_steps the learning rate stays at its final value (clamp the progress at 1)"
        m = cfg.min_lr_frac
        if cfg.lr_decay == "cosine" and step >= cfg.warmup and 0 < m < 1 \
                and abs(got - cfg.lr * (expected / cfg.lr - m) / (1 - m)) <= 1e-12:
            return "the cosine must end at min_lr_frac x lr, not at 0"
        return None
    return hint


@exercise("05.1", "learning rate: warm-up then decay", difficulty=2, importance=3, minutes=15)
def check_lr(fn):
    configs = [
        TrainConfig.from_preset("tiny"),  # warm-up 50, cosine to 10 % at step 600
        TrainConfig.from_preset("tiny", lr_decay="constant", warmup=20, lr=3e-4),  # MDLM-style: flat after warm-up
        TrainConfig.from_preset("tiny", warmup=0, max_steps=10),  # no warm-up: cosine from step 0
        TrainConfig.from_preset("tiny", warmup=1, max_steps=5, min_lr_frac=0.0),  # decays to 0
        TrainConfig.from_preset("tiny", warmup=8, max_steps=8),  # warm-up is the whole run
    ]
    count = 0
    for cfg in configs:
        W, S = cfg.warmup, cfg.max_steps
        for step in sorted({0, 1, max(W - 1, 0), W, W + 1, (W + S) // 2, S - 1, S, S + 7}):
            case = f"{_describe(cfg)}, step={step}"
            got = attempt(fn, cfg, step, case=case)
            expect_close("learning rate", got, learning_rate(cfg, step), tol=1e-12, case=case,
                         hints=[_lr_hint(cfg, step)])
            count += 1
    return f"{count} (config, step) pairs match minarmd.optim.learning_rate"


@exercise("05.2", "progressive schedule k(step)", difficulty=2, importance=3, minutes=15)
def check_k(fn):
    schedules = [(200, 450, 4), (0, 10, 4), (5, 5, 3), (3, 9, 2), (3, 9, 0), (10, 60, 32), (9000, 48000, 32)]
    count = 0
    for i_ar, i_perm, rho in schedules:
        ref = ProgressiveSchedule(i_ar, i_perm, rho)
        steps = range(0, i_perm + 20) if i_perm < 1000 else [0, i_ar - 1, i_ar, i_ar + 1, 20_000, 28_500,
                                                            i_perm - 1, i_perm, 400_000]
        for step in steps:
            case = f"step={step}, i_ar={i_ar}, i_perm={i_perm}, rho={rho}"
            got = attempt(fn, step, i_ar, i_perm, rho, case=case)
            if not isinstance(got, int) or isinstance(got, bool):
                raise CheckFailed(f"k: returned a {type(got).__name__} ({got!r}), expected an int "
                                  f"(a number of tokens) (case: {case})")
            if got != ref.k(step):
                hint = None
                if step == i_ar and got == 0:
                    hint = ("shuffling starts AT step i_ar, with k = 2 (the smallest shuffle is a swap): "
                            "< vs <=, or a ramp starting at 0?")
                elif got == 1:
                    hint = ("k = 1 never happens (one token cannot leave its slot alone): the ramp starts at 2, "
                            "k = 2 + floor(frac x (rho - 2))")
                elif abs(got - ref.k(step)) == 1:
                    hint = "k is off by one inside the ramp: it starts at 2 and rounds down (int(), not round())"
                raise CheckFailed(hinted(f"k: got {got}, expected {ref.k(step)} (case: {case})", hint))
            count += 1
    return f"{count} steps of {len(schedules)} schedules match minarmd.permutation.ProgressiveSchedule.k"


@exercise("05.3", "random training windows", difficulty=1, importance=3, minutes=10)
def check_windows(fn):
    g = torch.Generator().manual_seed(3)
    cases = [
        (torch.arange(20), 3, 5, 0),  # easy to read: each row is 5 consecutive numbers
        (torch.arange(20), 2, 20, 1),  # n = the whole stream: only offset 0 exists
        (torch.arange(7), 4, 1, 2),  # n = 1: single tokens
        (torch.arange(100, 130), 1, 6, 3),  # batch of one
        (torch.randint(0, 65, (1000,), generator=g), 8, 16, 4),  # a random stream
        (torch.randint(0, 65, (50,), generator=g).to(torch.int32), 3, 4, 5),  # int32 stream -> int64 windows
    ]
    for stream, B, n, seed in cases:
        shown = stream.tolist() if len(stream) <= 20 else f"{len(stream)} tokens ({stream.dtype})"
        case = f"stream {shown}, batch_size={B}, n={n}, generator seeded {seed}"
        got = attempt(fn, stream.clone(), B, n, torch.Generator().manual_seed(seed), case=case)
        data = TokenData("toy", None, int(stream.max()) + 1, stream, stream)
        expected = data.batch("train", B, n, torch.Generator().manual_seed(seed))
        expect_tensor("windows", got, expected, case=case)
    return f"{len(cases)} cases draw the same windows as minarmd.data.TokenData.batch with the same seed"


def _pair(got, case: str) -> tuple:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        kind = f"a {type(got).__name__}" + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
        raise CheckFailed(f"returned {kind}, expected a pair of two numbers (case: {case})")
    return got


@exercise("05.4", "estimate and standard error from per-draw means", difficulty=1, importance=3, minutes=10)
def check_estimate(fn):
    g = torch.Generator().manual_seed(4)
    cases = [
        [3.1, 3.3],  # K = 2
        [2.0, 2.0, 2.0, 2.0],  # identical draws: SE 0
        [1.977],  # one draw (an exact protocol): SE 0
        [5.0, 5.0, 5.0, 5.1],
        (3.0 + 0.05 * torch.randn(8, generator=g, dtype=torch.float64)).tolist(),  # K = 8 like compare.py
        (2.5 + 0.2 * torch.randn(64, generator=g, dtype=torch.float64)).tolist(),  # K = 64
    ]
    for means in cases:
        case = f"per-draw means {[round(m, 4) for m in means][:8]}{' ...' if len(means) > 8 else ''} (K={len(means)})"
        mean, se = _pair(attempt(fn, list(means), case=case), case + "; return (mean, standard error)")
        ref = Estimate.from_draws("random", means)
        expect_close("mean", mean, ref.nats, tol=1e-12, case=case)
        factors = standard_error_hints(len(means))
        expect_close("standard error", se, ref.se, tol=1e-12, case=case, hints=[lambda g, e: factor_hint(g, e, factors)])
    return f"{len(cases)} cases match the mean and SE of minarmd.evaluate.estimate"


@exercise("05.5", "nats per token -> bits per character and perplexity", difficulty=1, importance=2, minutes=5)
def check_units(fn):
    cases = [(2.03, 1.0), (1.8510, 1.0), (0.0, 1.0), (3.3, 4.2), (math.log(50257), 3.7), (2.9, 0.5)]
    for nats, chars_per_token in cases:
        case = f"nats={nats:.4f}, chars_per_token={chars_per_token}"
        bpc, ppl = _pair(attempt(fn, nats, chars_per_token, case=case), case + "; return (bits_per_char, perplexity)")
        ref = Estimate("l2r", nats, 0.0, 1)
        bits = ref.bits_per_char(chars_per_token)
        bpc_hints = {"bits use log base 2: that is log base 10": math.log(2) / math.log(10),
                     "per token -> per character: divide by chars_per_token, do not multiply": chars_per_token ** 2}

        def bpc_hint(got, expected, nats=nats):
            if abs(got - math.exp(nats)) <= 1e-9 * math.exp(nats):
                return "that is the perplexity: the pair is (bits_per_char, perplexity), in this order"
            return factor_hint(got, expected, bpc_hints)

        def ppl_hint(got, expected, nats=nats, cpt=chars_per_token):
            if abs(got - 2 ** nats) <= 1e-9 * 2 ** nats:
                return "nats are natural-log units: the perplexity is e^nats, not 2^nats"
            if cpt != 1 and abs(got - math.exp(nats / cpt)) <= 1e-9 * math.exp(nats / cpt):
                return "the perplexity is per token: e^(nats per token), not per character"
            return None
        expect_close("bits per character", bpc, bits, tol=1e-9 * max(1.0, bits), case=case, hints=[bpc_hint])
        expect_close("perplexity", ppl, ref.ppl, tol=1e-9 * ref.ppl, case=case, hints=[ppl_hint])
    return f"{len(cases)} cases match minarmd.evaluate.Estimate.bits_per_char and .ppl"
