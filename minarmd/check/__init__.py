"""Self-checking exercises: a learner's function is compared with the library on fixed and edge cases.

Every exercise notebook (``exercises/NN_*.ipynb``) has one-line check cells::

    from minarmd.check import check
    check("02.2", block_causal)      # prints one of:
    # ✓ [02.2] block-causal mask M^c: passed (7 cases match minarmd.masks.block_causal_mask)
    # · [02.2] block-causal mask M^c: not attempted yet (the stub still raises NotImplementedError: ...)
    # ✗ [02.2] block-causal mask M^c: FAILED - M^c shape: got (3, 3), expected (1, 3, 3) (case: blocks [[1, 1, 2]])
    #       hint: the batch dimension is missing (an [0] or .squeeze() too many?)

What is wrong is said in plain words, in this order: the function raised (with the line of your
code that did), it returned the wrong type, the wrong shape, the wrong dtype, then the wrong values
(how many entries, the first one and the largest difference). Under the message a ``hint:`` line
names the likely cause when the comparison shows a common mistake: the generic ones (every entry
off by one, transposed, inverted, negated, scaled, reversed, shifted; a missing batch dimension;
a float dtype from ``/``) are recognised here in ``expect_tensor`` and ``expect_close``, the
exercise-specific ones in each checker module (passed as ``hints=``). ``run`` returns the same
verdict as a ``Result`` without printing it; the tests call every checker on its solution
(passes), on wrong answers (fails, with the hint the mistake deserves and no other) and on the stub.

The checkers live in one module per notebook (``ex01_forward.py`` ... ``ex08_adapt.py``) and
register themselves with the ``exercise`` decorator, together with the exercise's difficulty,
importance and time estimate (the ``badge`` each exercise notebook shows under its heading). A
checker raises ``CheckFailed`` with the message, or returns a short description of what it compared.
"""
from __future__ import annotations

import importlib
import math
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

# Notebook number -> the module holding its checkers (imported on first use).
MODULES = {"01": "ex01_forward", "02": "ex02_masks", "03": "ex03_causality", "04": "ex04_loss",
           "05": "ex05_training", "06": "ex06_generation", "07": "ex07_scaling", "08": "ex08_adapt"}

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted yet"
MARKS = {PASSED: "✓", FAILED: "✗", NOT_ATTEMPTED: "·"}  # the first character of a printed verdict


@dataclass(frozen=True)
class Exercise:
    """One registered exercise: what it builds, its checker, and how hard and how central it is."""
    title: str
    checker: Callable
    difficulty: int  # 1..5
    importance: int  # 1..5
    minutes: int  # "spend up to N minutes" before opening the hints or the solution

    @property
    def badge(self) -> str:
        """The line each exercise notebook shows under the exercise's heading (tested to match)."""
        return (f"Difficulty {'🔴' * self.difficulty}{'⚪' * (5 - self.difficulty)} · "
                f"Importance {'🔵' * self.importance}{'⚪' * (5 - self.importance)} · "
                f"spend up to {self.minutes} minutes")


EXERCISES: dict[str, Exercise] = {}  # "02.1" -> Exercise


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
        head = f"{MARKS[self.status]} [{self.exercise}] {self.title}"
        if self.status == FAILED:  # the message's later lines (where it raised, the hint) indented
            return f"{head}: FAILED - " + self.message.replace("\n", "\n    ")
        return f"{head}: {self.status} ({self.message})"


def exercise(exercise_id: str, title: str, *, difficulty: int, importance: int, minutes: int):
    """Register the decorated function as the checker of ``exercise_id`` ("NN.k").

    ``difficulty`` and ``importance`` (1..5) and ``minutes`` are shown in the exercise notebook
    (``Exercise.badge``); they are kept here, beside the checker, so that there is one home for them.
    """
    if not (1 <= difficulty <= 5 and 1 <= importance <= 5 and minutes > 0):
        raise ValueError(f"{exercise_id}: difficulty and importance in 1..5, minutes > 0")

    def register(checker: Callable) -> Callable:
        EXERCISES[exercise_id] = Exercise(title, checker, difficulty, importance, minutes)
        return checker
    return register


def _load(exercise_id: str) -> Exercise:
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
    registered = _load(exercise_id)
    title = registered.title
    try:
        compared = registered.checker(*answers)
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


def hinted(message: str, hint: str | None) -> str:
    """``message`` with a ``hint:`` line naming the likely cause (printed indented under the verdict)."""
    return f"{message}\nhint: {hint}" if hint else message


# ---- where the learner's code raised ------------------------------------------------------------

_CHECK_DIR = Path(__file__).resolve().parent
# Code that is not the learner's: this package (minarmd, its checkers included), torch, numpy and
# the Python installation. An error raised in there is shown at the learner's last line that called it.
_LIBRARY_DIRS = tuple({_CHECK_DIR.parent, Path(torch.__file__).resolve().parent,
                       *(Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "purelib", "platlib"))})


def _inside(filename: str, folder: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def _file_label(filename: str) -> str:
    """"your cell" for notebook code (ipykernel's /tmp/ipykernel_*/NNN.py, IPython's <ipython-input-...>)."""
    if "ipykernel_" in filename or filename.startswith("<ipython-input"):
        return "your cell"
    return filename if filename.startswith("<") else Path(filename).name


def where_raised(err: BaseException) -> str | None:
    """"at your cell, line 3: return x / 0" — the learner's line that raised ``err`` (or called what did).

    Frames inside minarmd.check (the checker calling the learner) are skipped; when the error comes
    from a library the learner called (torch, minarmd, ...), the learner's last frame is shown and
    the library named. None when no frame is the learner's (a library function passed as the answer).
    """
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not _inside(f.filename, _CHECK_DIR)]
    mine = [f for f in frames if not any(_inside(f.filename, d) for d in _LIBRARY_DIRS)]
    if not mine:
        return None
    frame = mine[-1]
    text = f"at {_file_label(frame.filename)}, line {frame.lineno}"
    if frame.line:
        text += f": {frame.line.strip()}"
    if frame is not frames[-1]:  # raised deeper, inside a library function this line called
        inner = Path(frames[-1].filename).resolve()
        library = next((d.name for d in _LIBRARY_DIRS if inner.is_relative_to(d) and d.name in ("torch", "minarmd")),
                       "a library function")
        text += f" (the error came from inside {library}, called here)"
    return text


def _raised(err: Exception, prefix: str, suffix: str = "") -> str:
    """"your function raised IndexError: ... (case)" and, on the next line, the learner's line."""
    message = f"{prefix} {type(err).__name__}: {err}{suffix}"
    place = where_raised(err)
    return f"{message}\n{place}" if place else message


def attempt(fn: Callable, *args, case: str = "", **kwargs):
    """Call the learner's ``fn``; NotImplementedError -> NotAttempted, any other error -> CheckFailed."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        raise NotAttempted(str(err)) from None
    except Exception as err:  # noqa: BLE001 - any error of the learner's code is reported, not raised
        raise CheckFailed(_raised(err, "your function raised", f" ({case})" if case else "")) from None


# ---- generic hints: the common mistakes a comparison reveals ------------------------------------
# Each detector looks at the learner's tensor and the expected one (same shape and dtype, values
# differ) and names the likely cause, or says nothing. Exercise-specific detectors (``hints=``) run
# first; these apply to every checker.

def same(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-12, rtol: float = 1e-9) -> bool:
    """Equal shapes and values (floats within atol + rtol x |b|): the test of every hint detector."""
    if a.shape != b.shape:
        return False
    if b.is_floating_point():  # infinities of the same sign count as equal
        return bool(torch.isclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True).all())
    return torch.equal(a, b)


def _square(t: torch.Tensor) -> bool:
    return t.dim() >= 2 and t.shape[-1] == t.shape[-2] and t.shape[-1] > 1


def value_hint(got: torch.Tensor, expected: torch.Tensor, atol: float = 0.0, rtol: float = 0.0) -> str | None:
    """The likely cause of a value mismatch between two tensors of the same shape and dtype."""
    atol = max(atol, 1e-12 if expected.is_floating_point() else 0.0)
    if expected.is_floating_point() and torch.isinf(got).any() and torch.isfinite(expected).all():
        return ("your result contains inf where the expected values are finite: a log of 0 (log(softmax(x)) "
                "underflows, torch.log_softmax does not) or a division by 0")
    if expected.dtype == torch.bool:
        if torch.equal(got, ~expected):
            return "True and False are swapped everywhere: the mask is inverted (the opposite comparison?)"
        if _square(expected):
            off_diagonal = ~torch.eye(expected.shape[-1], dtype=torch.bool)
            if torch.equal(got & off_diagonal, expected & off_diagonal):
                return ("only the diagonal differs (a token and itself): a strict vs non-strict comparison, "
                        "< instead of <= or the other way round?")
    if _square(expected) and not same(expected, expected.mT, atol, rtol) and same(got, expected.mT, atol, rtol):
        return ("your result is the transpose of the expected one: rows and columns are swapped "
                "(the first index is the row, e.g. the attending token)")
    if expected.dtype != torch.bool and got.numel() >= 2:
        g, e = got.double(), expected.double()
        if e.abs().max() > 0 and same(g, -e, atol, rtol):
            return "every entry has the wrong sign: a minus sign too many or too few (a - b instead of b - a?)"
        offset = (g - e).flatten()[0].item()
        if offset != 0 and same(g - offset, e, atol, rtol):
            cause = " (an off-by-one: 0-based vs 1-based, or < vs <=?)" if abs(offset) == 1 else ""
            return f"every entry is off by the same amount, {offset:+.6g}{cause}"
        big = int(e.abs().flatten().argmax())
        if (e != 0).sum() >= 2 and e.flatten()[big] != 0:
            factor = (g.flatten()[big] / e.flatten()[big]).item()
            if factor not in (1.0, 0.0) and math.isfinite(factor) and same(g, factor * e, atol, max(rtol, 1e-9)):
                return (f"every entry is {factor:.6g} x the expected one: a constant factor too many or too "
                        f"few (a sum instead of a mean, a missing 1/2, N or sqrt(K)?)")
    for dim in range(expected.dim()):
        n = expected.shape[dim]
        if n < 2:
            continue
        flipped = expected.flip(dim)
        if not same(flipped, expected, atol, rtol) and same(got, flipped, atol, rtol):
            return f"your result is the expected one reversed along dimension {dim}: counted from the wrong end?"
        if n >= 3 and not same(expected.narrow(dim, 1, n - 1), expected.narrow(dim, 0, n - 1), atol, rtol):
            for step, (a, b) in ((+1, (1, 0)), (-1, (0, 1))):
                if same(got.narrow(dim, a, n - 1), expected.narrow(dim, b, n - 1), atol, rtol):
                    return (f"your result is the expected one shifted by {step:+d} position along dimension "
                            f"{dim}: an index or a slice off by one?")
    return None


def shape_hint(got: tuple, expected: tuple) -> str | None:
    """The likely cause of a shape mismatch."""
    if len(expected) >= 2 and got == expected[1:]:
        return "the batch dimension is missing (an [0] or .squeeze() too many?)"
    if got == (1, *expected):
        return "one leading dimension of size 1 too many (a [None] or .unsqueeze(0) too many?)"
    if got == (*expected, 1):
        return "one trailing dimension of size 1 too many (keepdim=True or a [..., None] too many?)"
    if len(got) == 0 or (len(expected) >= 1 and len(got) == len(expected) - 1 and got == expected[:-1]):
        return "you reduced a dimension that the answer keeps (a .mean() or .sum() too many?)"
    if len(got) >= 2 and got == (*expected[:-2], expected[-1], expected[-2]):
        return "the last two dimensions are swapped (a transpose too many?)"
    if len(got) == len(expected):
        diff = [(d, g - e) for d, (g, e) in enumerate(zip(got, expected)) if g != e]
        if len(diff) == 1 and abs(diff[0][1]) == 1:
            d, extra = diff[0]
            return f"dimension {d} has one entry too {'many' if extra > 0 else 'few'}: a range or a slice off by one?"
    return None


def dtype_hint(got: torch.dtype, expected: torch.dtype) -> str | None:
    """The likely cause of a dtype mismatch."""
    if expected == torch.bool:
        return "a comparison (<, <=, ==) already gives a bool tensor: return it without converting"
    if got == torch.bool:
        return "you returned a True/False mask: use it to choose the values (e.g. torch.where(mask, a, b))"
    if not expected.is_floating_point and got.is_floating_point:
        return ("a float result where integers are expected: / always gives floats (use //), or convert "
                "with .long()")
    if expected == torch.int64 and got in (torch.int32, torch.int16, torch.uint8):
        return f"convert with .long(): {got} is not int64, the dtype of indices and token ids"
    if expected.is_floating_point and not got.is_floating_point:
        return "an integer result where floats are expected: convert the inputs to floats before computing"
    if expected.is_floating_point and got.is_floating_point and got.itemsize < expected.itemsize:
        return (f"{got} is less precise than {expected}: a tensor made without dtype= is float32; "
                f"compute in (or upcast to) {expected}")
    return None


def expect_tensor(name: str, got, expected: torch.Tensor, case: str = "", atol: float = 0.0,
                  rtol: float = 0.0, hints: Sequence[Callable] = ()) -> None:
    """Compare a returned tensor with the library's: type, then shape, then dtype, then values.

    Integer and bool tensors must match exactly; floating ones within ``atol + rtol * |expected|``.
    ``hints``: exercise-specific detectors ``(got, expected) -> str | None`` (CPU tensors of the same
    shape and dtype), tried before the generic ``value_hint`` when the values differ.
    """
    where = f" (case: {case})" if case else ""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{name}: returned a {type(got).__name__}, expected a torch.Tensor of shape "
                          f"{tuple(expected.shape)} and dtype {expected.dtype}{where}")
    if got.shape != expected.shape:
        raise CheckFailed(hinted(f"{name} shape: got {tuple(got.shape)}, expected {tuple(expected.shape)}{where}",
                                 shape_hint(tuple(got.shape), tuple(expected.shape))))
    if got.dtype != expected.dtype:
        raise CheckFailed(hinted(f"{name} dtype: got {got.dtype}, expected {expected.dtype}{where}",
                                 dtype_hint(got.dtype, expected.dtype)))
    got, expected = got.detach().cpu(), expected.detach().cpu()
    if expected.is_floating_point():
        if torch.isnan(got).any() and not torch.isnan(expected).any():
            raise CheckFailed(hinted(f"{name}: contains NaN{where}",
                                     "NaN comes from 0 / 0, inf - inf, or the std of a single value"))
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
        hint = next((h for h in (d(got, expected) for d in hints) if h), None) or value_hint(got, expected, atol, rtol)
        raise CheckFailed(hinted(f"{name}: {int(bad.sum())} of {bad.numel()} entries differ, first {detail}{where}",
                                 hint))


def factor_hint(got: float, expected: float, factors: dict[str, float], rel: float = 1e-9) -> str | None:
    """The hint of the first factor f with got = f x expected (for a number off by a telling factor)."""
    for hint, f in factors.items():
        if expected != 0 and f != 1 and abs(got - f * expected) <= rel * abs(f * expected):
            return hint
    return None


def standard_error_hints(K: int, n_tokens: int | None = None) -> dict[str, float]:
    """factor_hint's table for a standard error (shared by 04.5 and 05.4): got = factor x expected."""
    hints = {"that is the standard deviation of one draw: the standard error of a mean of K draws divides "
             "it by sqrt(K)": math.sqrt(K)}
    if K > 1:
        hints["the variance was divided by K: the sample variance divides by K - 1"] = math.sqrt((K - 1) / K)
    if n_tokens:
        hints["per token: score the total NLL of each trajectory, not its mean over the tokens"] = 1 / n_tokens
    return hints


def expect_close(name: str, got, expected: float, tol: float, case: str = "",
                 hints: Sequence[Callable] = ()) -> None:
    """Compare a returned number (a Python float or a one-element tensor) with the library's.

    ``hints``: exercise-specific detectors ``(got, expected) -> str | None`` for a wrong value.
    """
    where = f" (case: {case})" if case else ""
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise CheckFailed(f"{name}: returned a tensor of shape {tuple(got.shape)}, expected one number{where}")
        got = got.item()
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise CheckFailed(f"{name}: returned a {type(got).__name__}, expected a number{where}")
    if not abs(got - expected) <= tol:
        hint = next((h for h in (d(got, expected) for d in hints) if h), None)
        if hint is None and math.isnan(got):
            hint = "NaN comes from 0 / 0, inf - inf, or the std of a single value"
        if hint is None and expected != 0 and abs(got + expected) <= tol:
            hint = "the sign is wrong: a minus sign too many or too few?"
        raise CheckFailed(hinted(f"{name}: got {got:.6g}, expected {expected:.6g} (tolerance {tol:g}){where}", hint))


def expect_raises(fn: Callable, args: tuple, error: type[Exception], case: str) -> None:
    """The learner's function must reject bad input by raising ``error``."""
    try:
        fn(*args)
    except NotImplementedError as err:
        raise NotAttempted(str(err)) from None
    except error:
        return
    except Exception as err:  # noqa: BLE001
        place = where_raised(err)
        raise CheckFailed(f"raised {type(err).__name__} for {case}, expected {error.__name__}"
                          + (f"\n{place}" if place else "")) from None
    raise CheckFailed(f"returned without an error for {case}; it should raise {error.__name__}")


__all__ = ["check", "run", "Result", "Exercise", "EXERCISES", "exercise", "CheckFailed", "NotAttempted", "attempt",
           "expect_tensor", "expect_close", "expect_raises", "short", "hinted", "where_raised", "value_hint",
           "shape_hint", "dtype_hint", "factor_hint", "standard_error_hints", "same", "PASSED", "FAILED",
           "NOT_ATTEMPTED", "MARKS"]
