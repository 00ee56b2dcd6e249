"""The exercise-checking harness: verdicts, plain-words messages, and bad exercise ids."""
import pytest
import torch

from minarmd import check as harness
from minarmd.check import (FAILED, NOT_ATTEMPTED, PASSED, CheckFailed, attempt, expect_close, expect_raises,
                           expect_tensor)


@harness.exercise("00.1", "double a tensor")
def _check_double(fn):
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    expect_tensor("2x", attempt(fn, x, case="x = [1, 2]"), 2 * x, case="x = [1, 2]", atol=1e-12)
    return "1 case matches"


def test_verdicts_and_printing(capsys):
    assert harness.run("00.1", lambda x: 2 * x).status == PASSED
    assert harness.run("00.1", lambda x: 3 * x).status == FAILED

    def stub(x):
        raise NotImplementedError("00.1: your code here")
    assert harness.check("00.1", stub) is None  # prints only: a check cell shows the verdict once
    result = harness.run("00.1", stub)
    assert result.status == NOT_ATTEMPTED and not result.passed
    assert capsys.readouterr().out.strip() == str(result)
    assert "not attempted yet" in str(result)


@pytest.mark.parametrize("answer, words", [
    (lambda x: (2 * x)[None], "shape: got (1, 2), expected (2,)"),
    (lambda x: (2 * x).float(), "dtype: got torch.float32, expected torch.float64"),
    (lambda x: (2 * x).tolist(), "returned a list, expected a torch.Tensor"),
    (lambda x: x + torch.tensor([1.0, 3.0], dtype=torch.float64), "1 of 2 entries differ, first at index 1: got 5"),
    (lambda x: x / 0 * 0, "contains NaN"),
    (lambda x: x.nonexistent(), "your function raised AttributeError"),
])
def test_failures_say_what_is_wrong_shape_and_dtype_first(answer, words):
    result = harness.run("00.1", answer)
    assert result.status == FAILED and words in result.message, result.message


def test_integer_comparison_is_exact_and_close_and_raises():
    with pytest.raises(CheckFailed, match="2 of 3 entries differ"):
        expect_tensor("blocks", torch.tensor([1, 3, 4]), torch.tensor([1, 2, 3]))
    expect_close("w", torch.tensor(0.5), 0.5, 1e-12)
    with pytest.raises(CheckFailed, match="got 0.6, expected 0.5"):
        expect_close("w", 0.6, 0.5, 1e-3)
    with pytest.raises(CheckFailed, match="expected a number"):
        expect_close("w", "0.5", 0.5, 1e-3)
    expect_raises(lambda v: int("x"), ("x",), ValueError, "a bad string")
    with pytest.raises(CheckFailed, match="returned without an error"):
        expect_raises(lambda v: v, (1,), ValueError, "a bad value")


def test_unknown_ids_are_clear():
    with pytest.raises(ValueError, match="ids look like '02.1'"):
        harness.run("2.1", lambda: None)
    with pytest.raises(ValueError, match="ids look like '02.1'"):
        harness.run("00.9", lambda: None)  # notebook 00 has no exercises (only the test's 00.1 above)
