"""Exercises 03 (strict causality): deliberately wrong answers fail, with a message that says what is wrong.

(That every checker passes its solution and reports the stub as not attempted: tests/test_notebooks.py.)
"""

import torch

from course import failed, load_solution
from minarmd.check import run
from minarmd.check import ex03_causality as ex03

solution = load_solution("03_strict_causality")

SOLUTIONS = {
    "03.1": (solution.prefix_aggregation,),
    "03.2": (solution.prefix_update, solution.prefix_read),
    "03.3": (solution.dependency_matrix,),
    "03.4": (solution.is_strictly_causal,),
}


def test_checkers_leave_the_global_random_state_alone():
    ex03._armd.cache_clear()
    ex03._gpt.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for exercise_id, answers in SOLUTIONS.items():
        run(exercise_id, *answers)
    assert torch.equal(torch.rand(3), expected)


# ---- 03.1 parallel prefix aggregation -----------------------------------------------------------

def test_prefix_non_strict_mask_fails():
    def wrong(x, pe, pos_x, blocks_x, pos_q, blocks_q):  # B(i) <= B(n): a query sees its own block
        weights = pe[pos_q] @ pe[pos_x].transpose(1, 2)
        return (weights * (blocks_x[:, None, :] <= blocks_q[:, :, None])) @ x
    failed("03.1", wrong, "g0:", "entries differ", "case:", "hint: each query also sees")


def test_prefix_without_mask_fails():
    failed("03.1", lambda x, pe, pos_x, blocks_x, pos_q, blocks_q:
           (pe[pos_q] @ pe[pos_x].transpose(1, 2)) @ x, "entries differ", "hint: every query sees every")


def test_prefix_indexing_pe_by_slot_instead_of_position_fails():
    def wrong(x, pe, pos_x, blocks_x, pos_q, blocks_q):  # PE rows by list index, not original position
        slots_x = torch.arange(pos_x.shape[1]).expand_as(pos_x)
        slots_q = torch.arange(1, pos_q.shape[1] + 1).expand_as(pos_q)
        return solution.prefix_aggregation(x, pe, slots_x, blocks_x, slots_q, blocks_q)
    failed("03.1", wrong, "entries differ", "paper's N=8, S=2", "hint: the PE rows were")


def test_prefix_without_batch_dimension_reports_shape():
    failed("03.1", lambda *args: solution.prefix_aggregation(*args)[0], "g0 shape", "expected (1, 8, 3)",
           "hint: the batch dimension is")


def test_prefix_float32_reports_dtype():
    failed("03.1", lambda *args: solution.prefix_aggregation(*args).float(), "g0 dtype", "float32",
           "hint: torch.float32 is less precise")


# ---- 03.2 recurrent update and read -------------------------------------------------------------

def test_update_that_overwrites_the_state_fails():
    failed("03.2", lambda state, x, pe, pos: pe[pos].transpose(1, 2) @ x, solution.prefix_read,
           "update: new state", "non-empty state", "hint: the new state replaced")


def test_read_transposed_reports_shape():
    failed("03.2", solution.prefix_update, lambda state, pe, pos: state.transpose(1, 2) @ pe[pos].transpose(1, 2),
           "read: g0 shape", "hint: the last two dimensions")


def test_update_summing_embeddings_without_positions_fails():
    def wrong(state, x, pe, pos):  # forgets the outer product with PE: adds x to every row of S
        return state + x.sum(dim=1, keepdim=True)
    failed("03.2", wrong, solution.prefix_read, "update: new state", "entries differ")


def test_read_float32_reports_dtype():
    failed("03.2", solution.prefix_update, lambda state, pe, pos: solution.prefix_read(state, pe, pos).float(),
           "read: g0 dtype", "float32", "hint: torch.float32 is less precise")


def test_read_that_ignores_the_query_position_fails_in_the_read_cases():
    def wrong(state, pe, pos):  # the same row for every query: sum of the PE rows as one query
        return (pe[pos].sum(dim=1, keepdim=True) @ state).expand(-1, pos.shape[1], -1)
    failed("03.2", solution.prefix_update, wrong, "read: g0", "3 queries")


# ---- 03.3 dependency matrix ---------------------------------------------------------------------

def test_dependency_transposed_fails_on_the_shift():
    failed("03.3", lambda f, x: solution.dependency_matrix(f, x).T, "R:", "entries differ", "shift by one",
           "hint: your result is the")


def test_dependency_with_absolute_sums_fails():
    def wrong(f, x):  # sum of |entries| instead of the Frobenius norm
        return torch.autograd.functional.jacobian(f, x).abs().sum(dim=(1, 3))
    failed("03.3", wrong, "R:", "identity", "hint: you summed |entries|")


def test_dependency_full_jacobian_reports_shape():
    failed("03.3", lambda f, x: torch.autograd.functional.jacobian(f, x), "R shape", "expected (5, 5)")


def test_dependency_boolean_pattern_reports_dtype():
    failed("03.3", lambda f, x: solution.dependency_matrix(f, x) > 0, "R dtype", "torch.bool",
           "hint: you returned a True/False")


def test_dependency_by_autograd_grad_rows_must_handle_a_constant_function():
    def wrong(f, x):  # row by row with autograd.grad: right, except where the output never touches x
        x = x.clone().requires_grad_(True)
        out = f(x)
        rows = []
        for n in range(out.shape[0]):
            for d in range(out.shape[1]):
                (grad,) = torch.autograd.grad(out[n, d], x, retain_graph=True)
                rows.append(grad.pow(2).sum(dim=1))
        return torch.stack(rows).reshape(out.shape[0], out.shape[1], -1).sum(dim=1).sqrt()
    failed("03.3", wrong, "your function raised RuntimeError", "constant function")


# ---- 03.4 strictly causal? ----------------------------------------------------------------------

def test_expected_answers_are_the_autograd_references():
    for case, f, x, blocks, expected in ex03.causality_cases():
        assert ex03.reference_is_strictly_causal(f, x, blocks) == expected, case


def test_always_true_fails():
    failed("03.4", lambda f, x, blocks: True, "got True, expected False", "inclusive running sum")


def test_checking_only_the_diagonal_fails():
    def wrong(f, x, blocks):
        return bool((solution.dependency_matrix(f, x).diagonal() <= 1e-12).all())
    failed("03.4", wrong, "expected False", "block mates")


def test_block_causal_instead_of_strict_fails():
    def wrong(f, x, blocks):  # forbids only LATER blocks: allows its own block (M^c instead of M^sc)
        reach = solution.dependency_matrix(f, x)
        return bool((reach[blocks[None, :] > blocks[:, None]] <= 1e-12).all())
    failed("03.4", wrong, "got True, expected False", "inclusive running sum")


def test_ignoring_later_tokens_fails_on_the_anti_causal_shift():
    def wrong(f, x, blocks):  # looks only at the lower triangle (i <= n) and forgets later slots
        reach = solution.dependency_matrix(f, x)
        forbidden = (blocks[None, :] >= blocks[:, None]) & torch.ones_like(reach, dtype=torch.bool).tril()
        return bool((reach[forbidden] <= 1e-12).all())
    failed("03.4", wrong, "got True, expected False", "anti-causal")


def test_returning_a_tensor_is_reported():
    def wrong(f, x, blocks):
        return torch.tensor(solution.is_strictly_causal(f, x, blocks))
    failed("03.4", wrong, "returned a Tensor", "bool(...)")
