"""Checkers for exercises/07_scaling_up.ipynb: parameters, FLOPs, MFU, step budgets and memmap batches."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from . import CheckFailed, attempt, exercise, expect_close, expect_raises, expect_tensor, factor_hint, hinted
from .. import throughput
from ..config import ARMDConfig
from ..data import TokenData
from ..model import ARMD
from ..train_config import TrainConfig

_SMALL = dict(vocab_size=23, max_len=12, n_layer=4, n_head=2, n_embd=16, d_pe=8, pe_init="random")
_GPT2_SMALL = ARMDConfig(vocab_size=50257, max_len=1024, n_layer=12, n_head=12, n_embd=768)  # the preset's ARMD


def _armd_cases() -> list[tuple[str, ARMDConfig]]:
    """Small ARMD configs that differ in every field the counts depend on."""
    variants = [("default (L2s = L/2)", {}), ("bias=True", {"bias": True}),
                ("tie_weights=False", {"tie_weights": False}), ("mlp_ratio=2", {"mlp_ratio": 2}),
                ("n_two_stream=0", {"n_two_stream": 0}), ("n_two_stream=1", {"n_two_stream": 1}),
                ("n_two_stream=L", {"n_two_stream": 4}), ("max_len=40, d_pe=4", {"max_len": 40, "d_pe": 4}),
                ("1 layer, width 8", {"n_layer": 1, "n_embd": 8, "n_two_stream": 1})]
    return [(name, ARMDConfig(**{**_SMALL, **change})) for name, change in variants]


def _expect_int(name: str, got, expected: int, case: str, hints: dict[int, str] | None = None) -> None:
    """An exact integer; ``hints`` maps a telling difference (got - expected) to its likely cause."""
    if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.is_floating_point():
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
        raise CheckFailed(f"{name}: returned a {type(got).__name__}, expected an int (case: {case})")
    if got != expected:
        raise CheckFailed(hinted(f"{name}: got {int(got):,}, expected {expected:,}, a difference of "
                                 f"{int(got) - expected:+,} (case: {case})", (hints or {}).get(int(got) - expected)))


@exercise("07.1", "parameters of an ARMD config", difficulty=3, importance=3, minutes=25)
def check_count_params(fn):
    cases = _armd_cases()
    for name, cfg in cases:
        torch.manual_seed(0)
        expected = ARMD(cfg).num_params()  # the library: the built model itself
        pe_table, matrix = (cfg.max_len + 1) * cfg.d_pe, cfg.vocab_size * cfg.n_embd
        _expect_int("parameters", attempt(fn, cfg, case=name), expected, name, hints={
            -pe_table: "exactly the prefix aggregation's PE table, (max_len + 1) x d_pe, is missing",
            matrix: "one vocab_size x n_embd matrix too many: a tied LM head shares the embedding's weights",
            -matrix: "one vocab_size x n_embd matrix too few: an untied LM head has weights of its own"})
    big = _GPT2_SMALL
    _expect_int("parameters", attempt(fn, big, case="GPT-2 small shape"), throughput.param_count(big),
                "GPT-2 small shape")
    return f"{len(cases) + 1} configs match ARMD(cfg).num_params() (GPT-2 small: {throughput.param_count(big):,})"


@exercise("07.2", "FLOPs per token of an ARMD training step", difficulty=4, importance=3, minutes=30)
def check_flops_per_token(fn):
    cases = [(name, cfg, cfg.max_len) for name, cfg in _armd_cases() if "bias" not in name and "tie" not in name]
    cfg = cases[0][1]
    cases += [("seq_len=5 < max_len", cfg, 5), ("seq_len=1", cfg, 1),
              ("GPT-2 small shape", _GPT2_SMALL, 1024)]
    for name, cfg, n in cases:
        expected = throughput.flops_per_token(cfg, seq_len=n)
        got = attempt(fn, cfg, n, case=name)
        factors = {"a training step is a forward and a backward pass: about 3 x the forward FLOPs": 1 / 3}
        expect_close("FLOPs per token", got, expected, tol=1e-9 * expected, case=f"{name}, seq_len={n}",
                     hints=[lambda g, e: factor_hint(g, e, factors)])
    return f"{len(cases)} configs match minarmd.throughput.flops_per_token"


@exercise("07.3", "model FLOPs utilisation", difficulty=1, importance=2, minutes=5)
def check_mfu(fn):
    cases = [(245_624, 1.084e9, 989e12, "RESULTS.md: ARMD on an H200"), (277_343, 8.54e8, 989e12, "AR on an H200"),
             (1.3e4, 6.9e6, 312e12, "tiny on an A100"), (0, 1e9, 989e12, "nothing trained yet"),
             (2.5, 4.0, 8.0, "small round numbers")]
    for tok_s, fpt, peak, name in cases:
        expected = throughput.mfu(tok_s, fpt, peak)
        got = attempt(fn, tok_s, fpt, peak, case=name)
        if isinstance(got, (int, float)) and not isinstance(got, bool) and expected > 0 \
                and abs(got - 100 * expected) <= 1e-9 * 100 * expected:
            raise CheckFailed(f"got {got:.6g}, expected {expected:.6g}: return a fraction (0.21), not a "
                              f"percentage (21) (case: {name})")
        expect_close("MFU", got, expected, tol=1e-12 + 1e-9 * expected, case=name)
    for args, what in (((1000, 1e9, 0), "peak_flops = 0"), ((1000, 1e9, -989e12), "peak_flops < 0"),
                       ((-5, 1e9, 989e12), "tokens_per_s < 0"), ((1000, 0, 989e12), "flops_per_token = 0")):
        expect_raises(fn, args, ValueError, what)
    return f"{len(cases)} values match minarmd.throughput.mfu; 4 impossible inputs raise ValueError"


@exercise("07.4", "tokens per optimiser step and steps for a token budget", difficulty=1, importance=3, minutes=10)
def check_tokens_and_steps(fn):
    cases = [("gpt2-small, 10B tokens", TrainConfig.from_preset("gpt2-small"), 10 ** 10),
             ("gpt2-small, the paper's 400K steps", TrainConfig.from_preset("gpt2-small"), 400_000 * 524_288),
             ("tiny, 1M tokens", TrainConfig.from_preset("tiny"), 10 ** 6),
             ("tiny, grad_accum=3, an exact multiple", TrainConfig.from_preset("tiny", grad_accum=3), 5 * 3 * 32 * 128),
             ("tiny, one token more than 2 steps", TrainConfig.from_preset("tiny", batch_size=4, seq_len=8), 2 * 32 + 1),
             ("a budget of 0 tokens", TrainConfig.from_preset("tiny"), 0)]
    for name, cfg, budget in cases:
        got = attempt(fn, cfg, budget, case=name)
        if not isinstance(got, tuple) or len(got) != 2:
            kind = f"a tuple of {len(got)}" if isinstance(got, tuple) else f"a {type(got).__name__}"
            raise CheckFailed(f"returned {kind}, expected a tuple (tokens_per_step, steps) (case: {name})")
        per_step = throughput.tokens_per_step(cfg)
        _expect_int("tokens per step", got[0], per_step, name, hints={
            per_step // cfg.grad_accum - per_step: "one optimiser step accumulates grad_accum micro-batches"})
        _expect_int("steps", got[1], throughput.steps_for_tokens(budget, per_step), name, hints={
            -1: "round up: a last, partial step is still a step (a ceiling division)"})
    return f"{len(cases)} cases match minarmd.throughput.tokens_per_step and steps_for_tokens"


def _stream(folder: Path, n_tokens: int, seed: int) -> np.memmap:
    """A uint16 token file like train.bin (ids up to 50256), opened read-only as a memmap."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50257, (n_tokens,), generator=g).numpy().astype(np.uint16)
    path = folder / f"tokens{seed}.bin"
    ids.tofile(path)
    return np.memmap(path, dtype=np.uint16, mode="r")


@exercise("07.5", "a random batch of windows from a uint16 memmap", difficulty=2, importance=3, minutes=15)
def check_random_windows(fn):
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        streams = {1000: _stream(Path(tmp), 1000, 0), 40: _stream(Path(tmp), 40, 1)}
        cases = [(1000, 4, 16, 0), (1000, 1, 64, 1), (1000, 8, 1, 2), (40, 3, 40, 3), (40, 5, 39, 4)]
        for length, batch, n, seed in cases:
            stream = streams[length]
            data = TokenData("openwebtext", None, 50257, stream, stream)  # the library's sampler
            expected = data.batch("train", batch, n, torch.Generator().manual_seed(seed))
            case = f"stream of {length} tokens, batch_size={batch}, n={n}, seed {seed}"
            got = attempt(fn, stream, batch, n, torch.Generator().manual_seed(seed), case=case)
            expect_tensor("windows", got, expected, case=case)
        del streams, stream, data  # close the memmaps before the folder goes
    return f"{len(cases)} draws equal minarmd.data.TokenData.batch with the same generator"
