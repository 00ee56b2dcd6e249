"""The exercise-checking harness: verdicts, plain-words messages, and bad exercise ids."""
import pytest
import torch

from minarmd import check as harness
from minarmd.check import (FAILED, NOT_ATTEMPTED, PASSED, CheckFailed, attempt, expect_close, expect_raises,
                           expect_tensor)


@harness.exercise("00.1", "double a tensor", difficulty=1, importance=1, minutes=1)
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


# ---- where the learner's code raised ------------------------------------------------------------

def test_a_raise_names_the_learners_file_line_and_source(tmp_path):
    (tmp_path / "learner_answer.py").write_text(
        "import torch\n\n"
        "def double(x):\n"
        "    y = x * 2\n"
        "    return y / undefined_name\n\n"
        "def via_torch(x):\n"
        "    return torch.cat([x, x[None]])  # torch raises inside cat\n")
    import importlib.util
    spec = importlib.util.spec_from_file_location("learner_answer", tmp_path / "learner_answer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    message = harness.run("00.1", module.double).message
    assert "your function raised NameError: name 'undefined_name' is not defined" in message
    assert "\nat learner_answer.py, line 5: return y / undefined_name" in message
    message = harness.run("00.1", module.via_torch).message
    assert "at learner_answer.py, line 8: return torch.cat([x, x[None]])" in message
    assert "came from inside" not in message  # torch.cat raises in C++: the learner's line is the last frame


def test_a_raise_in_a_notebook_cell_says_your_cell():
    import linecache
    cell = "def halve(x):\n    return x.reshape(3)\n"  # a (2,) tensor cannot be reshaped to 3 entries
    for filename, label in (("/tmp/ipykernel_4242/1234567.py", "your cell"), ("<ipython-input-3-abc>", "your cell"),
                            ("<learner>", "<learner>")):
        linecache.cache[filename] = (len(cell), None, cell.splitlines(True), filename)  # as IPython does
        namespace = {}
        exec(compile(cell, filename, "exec"), namespace)
        message = harness.run("00.1", namespace["halve"]).message
        assert message.startswith("your function raised RuntimeError: shape '[3]' is invalid"), message
        assert f"\nat {label}, line 2: return x.reshape(3)" in message, message
    namespace = {}
    exec(compile("def f(x):\n    return 1 / 0\n", "<no source>", "exec"), namespace)  # no source known
    assert "\nat <no source>, line 2\n" in harness.run("00.1", namespace["f"]).message + "\n"


def test_a_raise_inside_a_library_shows_the_learners_last_line():
    from minarmd.masks import block_causal_mask

    def calls_the_library(x):
        return block_causal_mask(x)  # a 1-D float tensor: the library raises, deeper down
    message = harness.run("00.1", calls_the_library).message
    assert f"at test_check.py, line {calls_the_library.__code__.co_firstlineno + 1}: " \
           "return block_causal_mask(x)" in message, message
    assert "(the error came from inside " in message
    # a library function passed as the answer has no line of the learner's: only the error is shown
    assert "\nat " not in harness.run("00.1", torch.linalg.inv).message


def test_verdicts_carry_a_mark():
    assert str(harness.run("00.1", lambda x: 2 * x)).startswith("✓ [00.1] double a tensor: passed (")
    failed = str(harness.run("00.1", lambda x: 3 * x))
    assert failed.startswith("✗ [00.1] double a tensor: FAILED - 2x: 2 of 2 entries differ")
    assert "\n    hint: every entry is 1.5 x the expected one" in failed  # later lines indented

    def stub(x):
        raise NotImplementedError("00.1: return 2 x")
    assert str(harness.run("00.1", stub)).startswith("· [00.1] double a tensor: not attempted yet (")


# ---- generic hints ------------------------------------------------------------------------------

def hint_of(got, expected, **tol):
    with pytest.raises(CheckFailed) as err:
        expect_tensor("t", got, expected, **tol)
    lines = [line for line in str(err.value).split("\n") if line.startswith("hint: ")]
    return lines[0] if lines else None


MASK = torch.tensor([[True, False, False], [True, True, False], [True, True, True]])
BLOCKS = torch.tensor([[1, 2, 2, 3, 4, 4]])
VALUES = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.25, -4.0]], dtype=torch.float64)


@pytest.mark.parametrize("got, expected, words", [
    (~MASK, MASK, "the mask is inverted"),
    (MASK & ~torch.eye(3, dtype=torch.bool), MASK, "only the diagonal differs"),
    (MASK.T, MASK, "the transpose of the expected one"),
    (-VALUES, VALUES, "the wrong sign"),
    (BLOCKS - 1, BLOCKS, "off by the same amount, -1 (an off-by-one"),
    (VALUES + 0.5, VALUES, "off by the same amount, +0.5"),
    (VALUES * 4, VALUES, "every entry is 4 x the expected one"),
    (BLOCKS.flip(1), BLOCKS, "reversed along dimension 1"),
    (torch.cat([BLOCKS[:, :1], BLOCKS[:, :-1]], 1), BLOCKS, "shifted by +1 position along dimension 1"),
    (torch.tensor([1.0, float("inf")]), torch.tensor([1.0, 800.0]), "contains inf"),
])
def test_each_generic_value_hint_names_its_mistake(got, expected, words):
    assert words in (hint_of(got, expected) or ""), hint_of(got, expected)


@pytest.mark.parametrize("got_shape, expected_shape, words", [
    ((3, 3), (1, 3, 3), "the batch dimension is missing"),
    ((1, 8), (8,), "one leading dimension of size 1 too many"),
    ((5, 1), (5,), "one trailing dimension of size 1 too many"),
    ((), (2, 5), "you reduced a dimension"),
    ((5, 3), (3, 5), "the last two dimensions are swapped"),
    ((4,), (5,), "dimension 0 has one entry too few"),
])
def test_each_shape_hint_names_its_mistake(got_shape, expected_shape, words):
    assert words in hint_of(torch.zeros(got_shape), torch.zeros(expected_shape))


@pytest.mark.parametrize("got, expected, words", [
    (MASK.float(), MASK, "a comparison (<, <=, ==) already gives a bool tensor"),
    (BLOCKS > 2, BLOCKS, "you returned a True/False mask"),
    (BLOCKS / 1, BLOCKS, "/ always gives floats"),
    (BLOCKS.int(), BLOCKS, "convert with .long()"),
    (VALUES.long(), VALUES, "an integer result where floats are expected"),
    (VALUES.float(), VALUES, "torch.float32 is less precise than torch.float64"),
])
def test_each_dtype_hint_names_its_mistake(got, expected, words):
    assert words in hint_of(got, expected)


@pytest.mark.parametrize("got, expected", [
    (torch.tensor([[True, True, False], [True, True, False], [False, True, True]]), MASK),  # scattered errors
    (torch.tensor([[1, 3, 2, 3, 4, 5]]), BLOCKS),
    (torch.tensor([[0.5, 1.0, 2.0], [3.0, 0.25, -4.5]], dtype=torch.float64), VALUES),
    (torch.tensor([7]), torch.tensor([3])),  # one number: no pattern to see
    (torch.zeros(2, 3, dtype=torch.float64), VALUES),  # all zeros is not "0 x the expected"
    (torch.zeros(2, 4), torch.zeros(3, 5)),  # two dimensions differ
    (torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int32)),  # int64 where int32 is wanted
])
def test_unrelated_wrong_answers_get_no_misleading_hint(got, expected):
    assert hint_of(got, expected) is None


def test_a_correct_answer_gets_no_hint_and_numbers_have_their_own_hints():
    expect_tensor("t", VALUES.clone(), VALUES)  # passes: nothing raised
    for got, words in ((-0.5, "the sign is wrong"), (float("nan"), "NaN comes from 0 / 0")):
        with pytest.raises(CheckFailed, match=words):
            expect_close("w", got, 0.5, 1e-9)
    with pytest.raises(CheckFailed) as err:
        expect_close("w", 0.7, 0.5, 1e-9)  # unrelated: no hint
    assert "hint:" not in str(err.value)
    assert harness.factor_hint(3.0, 1.5, {"twice": 2.0}) == "twice"
    assert harness.factor_hint(3.1, 1.5, {"twice": 2.0}) is None


# ---- the exercise notebooks show what the checkers register ------------------------------------

import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

EXERCISE_NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "exercises").glob("[0-9][0-9]_*.ipynb"))


def markdown_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_shows_its_registered_badge_and_folded_hints(path: Path):
    prefix = path.name[:2]
    harness._load(f"{prefix}.1")  # registers the notebook's checkers
    shown = {}
    for text in markdown_cells(path):
        match = re.match(r"## Exercise (\d\d\.\d+)", text)
        if match:
            shown[match.group(1)] = text
    registered = {k for k in harness.EXERCISES if k.startswith(prefix + ".")}
    assert set(shown) == registered, (sorted(shown), sorted(registered))
    for exercise_id, text in shown.items():
        assert harness.EXERCISES[exercise_id].badge in text, f"{exercise_id}: badge differs from its checker's"
        hints = re.findall(r"<details><summary>Hint (\d)</summary>", text)
        assert hints in (["1"], ["1", "2"]), f"{exercise_id}: one or two folded hints, found {hints}"


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_notebook_links_are_real_and_resolve(path: Path):
    root = path.parents[1]
    for text in markdown_cells(path):
        assert not re.search(r"(?<!\[)`[\w./-]+\.(py|ipynb|md)`", text.replace("`*.py`", "")), \
            f"{path.name}: a file named as code, not linked: {text[:80]}"
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "#")):
                continue
            file = (path.parent / target.split("#")[0]).resolve()
            assert file.exists() and file.is_relative_to(root), f"{path.name}: link {target} does not resolve"
