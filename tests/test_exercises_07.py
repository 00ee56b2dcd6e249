"""Exercises 07 (scaling up): deliberately wrong answers fail, with a message that says what is wrong.

(That every checker passes its solution and reports the stub as not attempted: tests/test_notebooks.py.)
"""

import numpy as np
import torch

from course import load_solution
from minarmd.check import FAILED, run

solution = load_solution("07_scaling_up")


def verdict(exercise_id, fn):
    result = run(exercise_id, fn)
    return result.status, result.message


def test_07_1_wrong_answers():
    # forgets the PE table of prefix aggregation: off by (max_len + 1) * d_pe
    status, message = verdict("07.1", lambda cfg: solution.count_params(cfg) - (cfg.max_len + 1) * cfg.d_pe)
    assert status == FAILED and "difference of -104" in message and "default" in message
    assert "hint: exactly the prefix aggregation's PE table" in message
    # always counts the LM head separately (ignores tie_weights)
    status, message = verdict("07.1", lambda cfg: solution.count_params(cfg) + cfg.vocab_size * cfg.n_embd
                              * int(cfg.tie_weights))
    assert status == FAILED and "hint: one vocab_size x n_embd matrix too many" in message
    # ignores bias=True: passes the first case, fails on the bias case
    status, message = verdict("07.1", lambda cfg: solution.count_params(cfg) - int(cfg.bias) * 12 * cfg.n_embd)
    assert status == FAILED and "bias=True" in message and "hint:" not in message
    # returns a float
    status, message = verdict("07.1", lambda cfg: float(solution.count_params(cfg)))
    assert status == FAILED and "returned a float, expected an int" in message


def test_07_2_wrong_answers():
    def nanogpt(cfg, n):  # the "GPT-equivalent" rule: forgets the query stream and prefix aggregation
        return 6 * solution.count_params(cfg) + 12 * cfg.n_layer * cfg.n_embd * n
    status, message = verdict("07.2", nanogpt)
    assert status == FAILED and "FLOPs per token: got" in message

    def forward_only(cfg, n):
        return solution.armd_flops_per_token(cfg, n) / 3
    status, message = verdict("07.2", forward_only)
    assert status == FAILED and "hint: a training step is a forward and a backward pass" in message

    def no_bos(cfg, n):  # content stream without its BOS row: right only when there is no X stream
        d, r, L, L2s = cfg.n_embd, cfg.mlp_ratio, cfg.n_layer, cfg.n_two_stream
        full, kv = 2 * (4 + 2 * r) * d * d, 4 * d * d
        f = (max(L2s - 1, 0) * (n * full + 4 * d * n * n) + (n * kv if L2s else 0)
             + L2s * (n * (full - kv) + 4 * d * n * n)
             + (L - L2s) * (n * full + 4 * d * n * n) + 2 * n * n * (cfg.d_pe + d) + 2 * d * cfg.vocab_size * n)
        return 3 * f / n
    status, message = verdict("07.2", no_bos)
    assert status == FAILED and "default" in message


def test_07_3_wrong_answers():
    status, message = verdict("07.3", lambda t, f, p: 100 * t * f / p)
    assert status == FAILED and "not a percentage" in message
    status, message = verdict("07.3", lambda t, f, p: t * f / p)  # no validation
    assert status == FAILED and "raised ZeroDivisionError for peak_flops = 0, expected ValueError" in message

    def zero_only(t, f, p):  # rejects a zero peak but not a negative one
        if p == 0 or f == 0:
            raise ValueError("peak_flops must be > 0")
        return t * f / p
    status, message = verdict("07.3", zero_only)
    assert status == FAILED and "returned without an error for peak_flops < 0" in message
    status, message = verdict("07.3", lambda t, f, p: f / (t * p) if t else 0.0)
    assert status == FAILED and "MFU: got" in message and "hint:" not in message


def test_07_4_wrong_answers():
    status, message = verdict("07.4", lambda cfg, b: (cfg.batch_size * cfg.seq_len,
                                                      -(-b // (cfg.batch_size * cfg.seq_len))))
    assert status == FAILED and "tokens per step: got 32,768, expected 524,288" in message
    assert "hint: one optimiser step accumulates grad_accum micro-batches" in message
    status, message = verdict("07.4", lambda cfg, b: (cfg.batch_size * cfg.grad_accum * cfg.seq_len,
                                                      b // (cfg.batch_size * cfg.grad_accum * cfg.seq_len)))
    assert status == FAILED and "steps: got 19,073, expected 19,074" in message and "hint: round up" in message
    status, message = verdict("07.4", lambda cfg, b: solution.tokens_and_steps(cfg, b)[1])
    assert status == FAILED and "expected a tuple (tokens_per_step, steps)" in message
    status, message = verdict("07.4", lambda cfg, b: tuple(map(float, solution.tokens_and_steps(cfg, b))))
    assert status == FAILED and "returned a float, expected an int" in message


def test_07_5_wrong_answers():
    def as_int32(stream, b, n, g):
        return solution.random_windows(stream, b, n, g).int()
    status, message = verdict("07.5", as_int32)
    assert status == FAILED and "dtype" in message and "shape" not in message

    def transposed(stream, b, n, g):
        return solution.random_windows(stream, b, n, g).T
    status, message = verdict("07.5", transposed)
    assert status == FAILED and "shape: got (16, 4), expected (4, 16)" in message

    def off_by_one(stream, b, n, g):  # never picks the last window
        offsets = torch.randint(0, len(stream) - n, (b,), generator=g)
        return torch.from_numpy(np.stack([stream[o:o + n] for o in offsets.tolist()]).astype(np.int64))
    status, message = verdict("07.5", off_by_one)
    assert status == FAILED and "entries differ" in message

    def global_rng(stream, b, n, g):  # ignores the generator
        return solution.random_windows(stream, b, n, torch.Generator().manual_seed(1234))
    status, message = verdict("07.5", global_rng)
    assert status == FAILED and "entries differ" in message
