"""Self-checking exercises: a learner's function is compared with the library on fixed and edge cases.

Every exercise notebook (``exercises/NN_*.ipynb``) has one-line check cells::

    from minarmd.check import check
    check("02.1", my_block_causal_mask)      # prints one of:
    # [02.1] block-causal mask: passed (5 cases match minarmd.masks.block_causal_mask)
    # [02.1] block-causal mask: not attempted yet (the stub still raises NotImplementedError)
    # [02.1] block-causal mask: FAILED - shape: got (3, 3), expected (1, 3, 3) (case: blocks [[1, 1, 2]])

What is wrong is said in plain words, in this order: the function raised, it returned the wrong
type, the wrong shape, the wrong dtype, then the wrong values (how many entries, the first one and
the largest difference). ``run`` returns the same verdict as a ``Result`` without printing it;
the tests call every checker on its solution (passes), on wrong answers (fails) and on the stub.

The checkers live in one module per notebook (``ex01_forward.py`` ... ``ex08_adapt.py``) and
register themselves with the ``exercise`` decorator. A checker raises ``CheckFailed`` with the
message, or returns a short description of what it compared.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch

# Notebook number -> the module holding its checkers (imported on first use).
MODULES = {"01": "ex01_forward", "02": "ex02_masks", "03": "ex03_causality", "04": "ex04_loss",
           "05": "ex05_training", "06": "ex06_generation", "07": "ex07_scaling", "08": "ex08_adapt"}

EXERCISES: dict[str, tuple[str, Callable]] = {}  # "02.1" -> (title, checker)

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted yet"


class NotAttempted(Exception):
    """The learner's function still raises NotImplementedError (the untouched stub)."""


class CheckFailed(Exception):
    """The learner's answer disagrees with the library; the message says how, in plain words."""


@dataclass
class Result:
    exercise: str  # "02.1"
    title: str  # what the exercise builds
    status: str  # PASSED, FAILED or NOT_ATTEMPTED
    message: str  # what was compared, or what is wrong

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def __str__(self) -> str:
        if self.status == FAILED:
            return f"[{self.exercise}] {self.title}: FAILED - {self.message}"
        return f"[{self.exercise}] {self.title}: {self.status} ({self.message})"


def exercise(exercise_id: str, title: str):
    """Register the decorated function as the checker of ``exercise_id`` ("NN.k")."""
    def register(checker: Callable) -> Callable:
        EXERCISES[exercise_id] = (title, checker)
        return checker
    return register


def _load(exercise_id: str) -> tuple[str, Callable]:
    if exercise_id in EXERCISES:  # already registered (its module was imported before)
        return EXERCISES[exercise_id]
    prefix = exercise_id.split(".")[0] if isinstance(exercise_id, str) else None
    if prefix not in MODULES:
        raise ValueError(f"unknown exercise id {exercise_id!r}: ids look like '02.1' with a notebook "
                         f"number in {sorted(MODULES)}")
    importlib.import_module(f"{__name__}.{MODULES[prefix]}")
    if exercise_id not in EXERCISES:
        known = sorted(k for k in EXERCISES if k.startswith(prefix + "."))
        raise ValueError(f"unknown exercise id {exercise_id!r}; notebook {prefix} has {known}")
    return EXERCISES[exercise_id]


def run(exercise_id: str, *answers) -> Result:
    """Check ``answers`` (the learner's functions) for one exercise and return the verdict."""
    title, checker = _load(exercise_id)
    try:
        compared = checker(*answers)
    except NotAttempted:
        return Result(exercise_id, title, NOT_ATTEMPTED,
                      "the stub still raises NotImplementedError: fill it in and run this cell again")
    except CheckFailed as err:
        return Result(exercise_id, title, FAILED, str(err))
    return Result(exercise_id, title, PASSED, compared or "all cases match the library")


def check(exercise_id: str, *answers) -> None:
    """Check and print the verdict (the one-line check cells of the exercise notebooks).

    It returns nothing, so a check cell shows the verdict once; ``run`` returns it instead.
    """
    print(run(exercise_id, *answers))


# ---- tools for the checkers ---------------------------------------------------------------------

def short(value, limit: int = 60) -> str:
    """A compact description of an input, for messages ("tensor (1, 3) int64 [[1, 1, 2]]")."""
    if isinstance(value, torch.Tensor):
        text = str(value.tolist()) if value.numel() <= 16 else "..."
        return f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')} {text}"[:limit]
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def attempt(fn: Callable, *args, case: str = "", **kwargs):
    """Call the learner's ``fn``; NotImplementedError -> NotAttempted, any other error -> CheckFailed."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        raise NotAttempted(str(err)) from None
    except Exception as err:  # noqa: BLE001 - any error of the learner's code is reported, not raised
        where = f" ({case})" if case else ""
        raise CheckFailed(f"your function raised {type(err).__name__}: {err}{where}") from None


def expect_tensor(name: str, got, expected: torch.Tensor, case: str = "", atol: float = 0.0,
                  rtol: float = 0.0) -> None:
    """Compare a returned tensor with the library's: type, then shape, then dtype, then values.

    Integer and bool tensors must match exactly; floating ones within ``atol + rtol * |expected|``.
    """
    where = f" (case: {case})" if case else ""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{name}: returned a {type(got).__name__}, expected a torch.Tensor of shape "
                          f"{tuple(expected.shape)} and dtype {expected.dtype}{where}")
    if got.shape != expected.shape:
        raise CheckFailed(f"{name} shape: got {tuple(got.shape)}, expected {tuple(expected.shape)}{where}")
    if got.dtype != expected.dtype:
        raise CheckFailed(f"{name} dtype: got {got.dtype}, expected {expected.dtype}{where}")
    got, expected = got.detach().cpu(), expected.detach().cpu()
    if expected.is_floating_point():
        if torch.isnan(got).any() and not torch.isnan(expected).any():
            raise CheckFailed(f"{name}: contains NaN{where}")
        diff = (got - expected).abs()
        bad = ~(diff <= atol + rtol * expected.abs())
    else:
        bad = got != expected
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        index = first if len(first) != 1 else first[0]
        detail = f"at index {index}: got {got[first].item():.6g}, expected {expected[first].item():.6g}"
        if expected.is_floating_point():
            detail += f"; largest difference {diff.max().item():.3g} (tolerance {atol:g} + {rtol:g} x |expected|)"
        raise CheckFailed(f"{name}: {int(bad.sum())} of {bad.numel()} entries differ, first {detail}{where}")


def expect_close(name: str, got, expected: float, tol: float, case: str = "") -> None:
    """Compare a returned number (a Python float or a one-element tensor) with the library's."""
    where = f" (case: {case})" if case else ""
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise CheckFailed(f"{name}: returned a tensor of shape {tuple(got.shape)}, expected one number{where}")
        got = got.item()
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise CheckFailed(f"{name}: returned a {type(got).__name__}, expected a number{where}")
    if not abs(got - expected) <= tol:
        raise CheckFailed(f"{name}: got {got:.6g}, expected {expected:.6g} (tolerance {tol:g}){where}")


def expect_raises(fn: Callable, args: tuple, error: type[Exception], case: str) -> None:
    """The learner's function must reject bad input by raising ``error``."""
    try:
        fn(*args)
    except NotImplementedError as err:
        raise NotAttempted(str(err)) from None
    except error:
        return
    except Exception as err:  # noqa: BLE001
        raise CheckFailed(f"raised {type(err).__name__} for {case}, expected {error.__name__}") from None
    raise CheckFailed(f"returned without an error for {case}; it should raise {error.__name__}")


__all__ = ["check", "run", "Result", "exercise", "CheckFailed", "NotAttempted", "attempt",
           "expect_tensor", "expect_close", "expect_raises", "short", "PASSED", "FAILED", "NOT_ATTEMPTED"]
