"""Exercises 06 (generation): deliberately wrong answers fail, with a message that says what is wrong.

(That every checker passes its solution and reports the stub as not attempted: tests/test_notebooks.py.)
"""

import torch

from course import failed, load_solution

solution = load_solution("06_generation")


# ---- 06.1 strided order

def test_strided_one_based_fails():
    failed("06.1", lambda n, s: (solution.sbp_order(n, s)[0] + 1, solution.sbp_order(n, s)[1]),
            "order:", "entries differ", "hint: every entry is off")


def test_strided_singleton_blocks_fail():
    failed("06.1", lambda n, s: (solution.sbp_order(n, s)[0], torch.arange(1, n + 1)), "blocks:",
           "hint: one block per token")


def test_strided_batched_shape_fails():
    failed("06.1", lambda n, s: tuple(t[None] for t in solution.sbp_order(n, s)), "order shape",
           "hint: one leading dimension of")


def test_strided_float_dtype_fails():
    failed("06.1", lambda n, s: tuple(t.float() for t in solution.sbp_order(n, s)), "order dtype",
           "hint: a float result where")


def test_strided_without_error_fails():
    def no_check(n, s):
        return solution.sbp_order(n - n % s, s) if n % s else solution.sbp_order(n, s)
    failed("06.1", no_check, "ValueError")


def test_strided_not_a_pair_fails():
    failed("06.1", lambda n, s: solution.sbp_order(n, s)[0], "pair")


# ---- 06.2 network calls

def test_calls_forgetting_the_heads_fails():
    failed("06.2", lambda n, given, s: (n - given) // s, "calls, expected", "hint: the S stream heads")


def test_calls_ignoring_given_tokens_fails():
    failed("06.2", lambda n, given, s: s + n // s - 1, "given=4", "hint: the given tokens need")


def test_calls_float_fails():
    failed("06.2", lambda n, given, s: s + (n - given) / s - 1, "expected an int")


# ---- 06.3 sampling from logits

def test_sample_without_temperature_fails():
    failed("06.3", lambda logits, t, k, g: solution.sample_logits(logits, 1.0, k, g), "frequency")


def test_sample_top_k_off_by_one_fails():
    def keep_one_more(logits, t, k, g):
        return solution.sample_logits(logits, t, None if k is None else k + 1, g)
    failed("06.3", keep_one_more, "not among the top")


def test_sample_gumbel_right_distribution_other_draws_fails():
    def gumbel(logits, t, k, g):  # the right distribution, but not the library's draws
        scaled = logits.double() / t
        if k is not None and k < scaled.shape[-1]:
            kth = scaled.topk(k, dim=-1).values[..., -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        u = torch.rand(scaled.shape, generator=g, dtype=torch.float64)
        return (scaled - torch.log(-torch.log(u))).argmax(-1)
    failed("06.3", gumbel, "same seed")


def test_sample_keepdim_shape_fails():
    failed("06.3", lambda logits, t, k, g: solution.sample_logits(logits, t, k, g)[..., None], "shape",
           "hint: one trailing dimension of")


# ---- 06.4 infilling template

def test_template_free_zero_fails():
    failed("06.4", lambda *a: solution.infill_template(*a).clamp(min=0), "template:", "entries differ",
           "hint: only the free positions")


def test_template_suffix_misplaced_fails():
    def suffix_after_prompt(n, batch, prompt, suffix):
        t = solution.infill_template(n, batch, prompt, None if suffix is None else [])
        if suffix is not None:
            s = torch.as_tensor(suffix).long().expand(batch, -1)
            P = 0 if prompt is None else torch.as_tensor(prompt).shape[-1]
            t[:, P:P + s.shape[1]] = s
        return t
    failed("06.4", suffix_after_prompt, "template:")


def test_template_float_fails():
    failed("06.4", lambda *a: solution.infill_template(*a).double(), "template dtype", "hint: a float result where")


def test_template_without_error_fails():
    def no_check(n, batch, prompt, suffix):
        try:
            return solution.infill_template(n, batch, prompt, suffix)
        except ValueError:
            return torch.zeros(batch, n, dtype=torch.long)
    failed("06.4", no_check, "ValueError")


# ---- 06.5 block spans

def test_spans_inclusive_end_fails():
    failed("06.5", lambda b: [(s, e - 1) for s, e in solution.spans(b)], "span 0", "hint: end is exclusive, like")


def test_spans_one_per_token_fails():
    failed("06.5", lambda b: [(k, k + 1) for k in range(b.shape[1])], "spans, expected")


def test_spans_tensor_fails():
    failed("06.5", lambda b: torch.tensor(solution.spans(b)), "expected a list")
