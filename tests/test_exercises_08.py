"""Exercises 08 (from GPT to ARMD): deliberately wrong answers fail, with a message that says what is wrong.

(That every checker passes its solution and reports the stub as not attempted: tests/test_notebooks.py.)
"""

import torch

from course import failed, load_solution
from minarmd.adapt import neighbour_pe
from minarmd.check import PASSED, run

solution = load_solution("08_from_gpt_to_armd")


# ---- 08.1 the GPT's view of the content stream

def test_08_1_positions_without_the_bos_shift_fail():
    # BOS takes position 0, so listed token sigma_k sits at sigma_k + 1; order itself is off by one
    def unshifted(tokens, order, bos):
        t, p = solution.gpt_view(tokens, order, bos)
        return t, torch.cat([p[:, :1], order], 1)
    failed("08.1", unshifted, "positions:", "entries differ", "left to right", "hint: BOS takes position 0")


def test_08_1_no_bos_fails():
    failed("08.1", lambda t, o, b: (t, o + 1), "tokens shape: got (3, 9), expected (3, 10)",
           "hint: dimension 1 has one")


def test_08_1_bos_id_zero_fails():
    failed("08.1", lambda t, o, b: solution.gpt_view(t, o, 0), "tokens:", "entries differ",
           "hint: only the first column")


def test_08_1_positions_of_the_slots_not_of_the_tokens_fail():
    # 0..N (the slot in generation order) is right only left to right: it fails on the reversed order
    def slots(tokens, order, bos):
        t, _ = solution.gpt_view(tokens, order, bos)
        return t, torch.arange(t.shape[1]).expand_as(t)
    failed("08.1", slots, "positions:", "reversed")


def test_08_1_argsort_instead_of_order_fails():
    # argsort(order) is where each position was listed, not each listed token's position
    def inverse(tokens, order, bos):
        return solution.gpt_view(tokens, order.argsort(1), bos)
    failed("08.1", inverse, "positions:", "random order")


def test_08_1_float_positions_and_not_a_pair_fail():
    failed("08.1", lambda t, o, b: tuple(x.float() if i else x for i, x in enumerate(solution.gpt_view(t, o, b))),
           "positions dtype", "hint: a float result where")
    failed("08.1", lambda t, o, b: solution.gpt_view(t, o, b)[0], "expected a pair")


# ---- 08.2 where GPT layer i goes

def test_08_2_forgets_to_subtract_the_two_stream_layers():
    failed("08.2", lambda i, l2s: f"two_stream.{i}" if i < l2s else f"causal.{i}",
           "got 'causal.2', but armd_from_gpt puts GPT layer 2 into 'causal.0'", "hint: the causal stack counts")


def test_08_2_off_by_one_at_the_boundary():
    failed("08.2", lambda i, l2s: f"two_stream.{i}" if i <= l2s else f"causal.{i - l2s}",
           "got 'two_stream.2'", "'causal.0'", "hint: layer n_two_stream is already")


def test_08_2_reversed_stacks_fail():
    # the causal stack first: wrong as soon as both stacks exist
    failed("08.2", lambda i, l2s: solution.layer_name(i, l2s).replace("two_stream", "X").replace("causal", "two_stream")
           .replace("X", "causal"), "got 'causal.0'")


def test_08_2_returns_an_index_fails():
    failed("08.2", lambda i, l2s: i, "returned a int", "expected a module name")


# ---- 08.3 a whole state dict

def test_08_3_keeps_the_bos_row_in_the_vocabulary():
    def keeps_bos(state, L, l2s):
        out = solution.convert_state_dict(state, L, l2s)
        out["wte.weight"] = state["net.wte.weight"]
        return out
    failed("08.3", keeps_bos, "wte.weight shape: got (12, 8), expected (11, 8)", "hint: the GPT's vocabulary has")


def test_08_3_bos_from_row_0_fails():
    def row0(state, L, l2s):
        out = solution.convert_state_dict(state, L, l2s)
        out["bos"] = state["net.wte.weight"][0]
        return out
    failed("08.3", row0, "bos:", "entries differ", "hint: that is row 0")


def test_08_3_missing_bos_fails():
    def no_bos(state, L, l2s):
        out = solution.convert_state_dict(state, L, l2s)
        del out["bos"]
        return out
    failed("08.3", no_bos, "missing ARMD names ['bos']")


def test_08_3_unshifted_causal_layers_fail():
    def unshifted(state, L, l2s):  # GPT layer i -> causal.{i}, not causal.{i - L2s}
        out = {}
        for k, v in solution.convert_state_dict(state, L, l2s).items():
            if k.startswith("causal."):
                _, j, rest = k.split(".", 2)
                k = f"causal.{int(j) + l2s}.{rest}"
            out[k] = v
        return out
    failed("08.3", unshifted, "missing ARMD names ['causal.0.", "n_two_stream=1")


def test_08_3_includes_the_new_table_or_misses_positions():
    def with_pe(state, L, l2s):
        out = solution.convert_state_dict(state, L, l2s)
        out["prefix.pe.weight"] = torch.zeros(10, 10, dtype=torch.float64)
        return out
    failed("08.3", with_pe, "prefix.pe.weight", "that table is new")

    def no_positions(state, L, l2s):  # forgets GPT-2's learned position table
        return {k: v for k, v in solution.convert_state_dict(state, L, l2s).items() if k != "wpe.weight"}
    failed("08.3", no_positions, "missing ARMD names ['wpe.weight']", "GPT-2 architecture")


def test_08_3_untied_head_with_the_bos_row_fails():
    def head(state, L, l2s):
        out = solution.convert_state_dict(state, L, l2s)
        out["lm_head.weight"] = state["net.lm_head.weight"]
        return out
    failed("08.3", head, "lm_head.weight shape", "expected (11, 8)", "hint: the GPT's vocabulary has")


# ---- 08.4 a neighbour table

def test_08_4_every_correct_table_passes():
    # the library's Cholesky factor, the incidence matrix, and both turned by an orthogonal matrix
    def rotated(n, d):
        rotation = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64))[0]
        return solution.neighbour_table(n, d) @ rotation
    for fn in (neighbour_pe, solution.neighbour_table, rotated):
        assert run("08.4", fn).status == PASSED, run("08.4", fn)


def test_08_4_identity_fails():
    def identity(n, d):
        if d < n - 1:
            raise ValueError("too narrow")
        return torch.eye(n, d, dtype=torch.float64)
    failed("08.4", identity, "<PE_0, PE_1> = 0, expected 1 (neighbours)")


def test_08_4_half_weight_neighbours_fail():
    def half(n, d):  # <PE_p, PE_p+1> = 0.5: the Cholesky factor of I + 0.5 (ones beside the diagonal)
        if d < n:
            raise ValueError("too narrow")
        off = torch.full((n - 1,), 0.5, dtype=torch.float64)
        table = torch.zeros(n, d, dtype=torch.float64)
        table[:, :n] = torch.linalg.cholesky(torch.eye(n, dtype=torch.float64) + torch.diag(off, 1) + torch.diag(off, -1))
        return table
    failed("08.4", half, "= 0.5, expected 1 (neighbours)")


def test_08_4_second_neighbours_fail():
    def two_apart(n, d):  # ones for |p - q| <= 2: positions two apart share a column
        table = torch.zeros(n, d, dtype=torch.float64)
        for e in range(n - 1):
            table[e, e] = table[e + 1, e] = 1.0
            if e + 2 < n:
                table[e + 2, e] = 1.0
        return table
    failed("08.4", two_apart, "expected 0 (not neighbours)")


def test_08_4_too_few_columns_and_wrong_dtype_fail():
    failed("08.4", lambda n, d: solution.neighbour_table(n, n), "shape: got (5, 5), expected (5, 8)")
    failed("08.4", lambda n, d: solution.neighbour_table(n, d).float(), "dtype: got torch.float32")

    def never_raises(n, d):
        return solution.neighbour_table(n, max(d, n - 1))[:, :d]
    failed("08.4", never_raises, "returned without an error for n_positions=5, d_pe=1")


# ---- 08.5 steps to a target

def test_08_5_training_records_do_not_count():
    def any_record(records, target, rel=0.01):
        return next((r["step"] for r in records if r.get("val", r.get("loss")) <= (1 + rel) * target), None)
    failed("08.5", any_record, "got step 3, expected step", "hint: that step has no")


def test_08_5_strict_inequality_fails_on_the_boundary():
    def strict(records, target, rel=0.01):
        return next((r["step"] for r in records if "val" in r and r["val"] < (1 + rel) * target), None)
    failed("08.5", strict, "got step 20, expected step 10", "rel=0.0", "hint: a validation loss exactly")


def test_08_5_symmetric_window_fails():
    # "within rel" of a loss target: below the target counts as reached
    def symmetric(records, target, rel=0.01):
        return next((r["step"] for r in records if "val" in r and abs(r["val"] - target) <= rel * target), None)
    failed("08.5", symmetric, "returned None, expected the step 60", "rel=0 (must reach the target itself)")


def test_08_5_last_step_value_and_minus_one_fail():
    def last(records, target, rel=0.01):
        hits = [r["step"] for r in records if "val" in r and r["val"] <= (1 + rel) * target]
        return hits[-1] if hits else None
    failed("08.5", last, "got step 60, expected step 40", "hint: that is a later")

    def value(records, target, rel=0.01):
        return next((r["val"] for r in records if "val" in r and r["val"] <= (1 + rel) * target), None)
    failed("08.5", value, "expected the step")

    def minus_one(records, target, rel=0.01):
        found = solution.steps_to_within(records, target, rel)
        return -1 if found is None else found
    failed("08.5", minus_one, "got -1, expected None")
