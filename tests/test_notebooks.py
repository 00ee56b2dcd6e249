"""Notebook hygiene: the course is complete, consistent and shippable.

nbval (configured in pyproject.toml) executes every notebook; this file checks what execution
cannot: kernelspec, size, badges and links, the Colab cell, committed outputs, unsolved exercise
stubs, a static figure above every widget, and that no cell reads a file the repo does not ship.
"""
import json
import re
from pathlib import Path

import pytest

from minarmd.check import MODULES, NOT_ATTEMPTED, PASSED, run

from course import ROOT, load_solution, stub

COLAB = "https://colab.research.google.com/github/minarmd/minarmd/blob/main/"
NUMBERS = [f"{i:02d}" for i in range(9)]  # 00 overview .. 08 from GPT to ARMD
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = {"notebooks": 1_500_000, "exercises": 300_000}  # outputs included; figures at 80 dpi
WIDGET_CALLS = ("mask_explorer(", "sampler_stepper(", "live_stepper(")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def source(cell) -> str:
    return "".join(cell["source"])


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def has_image(cell) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def all_notebooks():
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in NOTEBOOKS + EXERCISES]


def test_the_course_is_complete():
    assert [p.name[:2] for p in NOTEBOOKS] == NUMBERS, "notebooks/ must hold 00..08, one each"
    names = {p.name for p in NOTEBOOKS}
    for ex in EXERCISES:  # every exercise notebook has its concept notebook, solution and checkers
        assert ex.name in names, f"{ex.name} has no notebook of the same name in notebooks/"
        assert (ROOT / "exercises" / "solutions" / f"{ex.stem}.py").exists(), f"{ex.stem}: no solution file"
        assert ex.name[:2] in MODULES, f"{ex.name}: no checker module in minarmd.check.MODULES"
        assert (ROOT / "tests" / f"test_exercises_{ex.name[:2]}.py").exists(), f"{ex.name}: no tests"
    assert {ex.name[:2] for ex in EXERCISES} == set(NUMBERS[1:]), "every concept notebook 01..08 has exercises"


@pytest.mark.parametrize("path", all_notebooks())
def test_notebook_hygiene(path: Path):
    nb = load(path)
    rel = path.relative_to(ROOT).as_posix()
    assert nb["metadata"]["kernelspec"]["name"] == "python3", "kernelspec must be python3 (nbval, Colab)"
    assert path.stat().st_size <= MAX_BYTES[path.parent.name], f"{rel} is over its size budget"
    title = source(nb["cells"][0])
    assert nb["cells"][0]["cell_type"] == "markdown" and title.startswith(f"# {path.name[:2]}"), \
        "the first cell is the title, starting with the notebook's number"
    assert f"]({COLAB}{rel})" in title, f"the Colab badge must point at {COLAB}{rel}"
    assert "CPU run time" in title, "the title cell states the CPU run time"
    setup = source(code_cells(nb)[0])
    assert '"google.colab" in sys.modules' in setup, "the first code cell is the guarded Colab setup"
    pip = [line for line in setup.splitlines() if "pip install" in line]
    assert pip and all(not re.search(r"\b(torch|numpy|matplotlib)\b", line) for line in pip), \
        "Colab setup installs only minarmd: never torch, numpy or matplotlib"
    for cell in code_cells(nb):
        text = source(cell)
        assert text.lstrip().startswith("#"), f"every code cell opens with a comment:\n{text[:80]}"
        assert cell["execution_count"] is not None, f"committed without outputs (run it):\n{text[:80]}"
        assert not any(out["output_type"] == "error" for out in cell["outputs"]), f"error output:\n{text[:80]}"
        # files: nothing absolute, nothing from a run folder; relative paths must exist in the repo
        assert not re.search(r"[\"'](/work|/home|/root|/tmp|[A-Z]:\\)", text), f"absolute path in:\n{text[:80]}"
        assert "runs/" not in text, f"reads a run folder the repo does not ship:\n{text[:80]}"
        for literal in re.findall(r"[\"']([\w.\-]+/[\w./\-]+\.\w+)[\"']", text):
            if not literal.startswith(("http", "git+")):
                assert (path.parent / literal).exists() or (ROOT / literal).exists(), \
                    f"{literal!r} is not shipped with the repo"
    for cell in nb["cells"]:  # relative links in markdown resolve
        if cell["cell_type"] == "markdown":
            for link in re.findall(r"\]\(([^)\s]+)\)", source(cell)):
                if not link.startswith(("http", "#")):
                    assert (path.parent / link.split("#")[0]).exists(), f"broken link {link!r} in {rel}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in NOTEBOOKS])
def test_concept_notebook_layout(path: Path):
    nb = load(path)
    title = source(nb["cells"][0])
    if path.name[:2] != "00":
        assert "Learning goals" in title and f"../exercises/{path.name}" in title
    text = "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "## Summary" in text and "## Check yourself" in text and "<details>" in text, \
        "a notebook ends with a Summary and check-yourself questions with folded answers"
    cells = nb["cells"]
    for k, cell in enumerate(cells):  # a static figure above every widget (widgets don't render on GitHub)
        if cell["cell_type"] == "code" and any(call in source(cell) for call in WIDGET_CALLS):
            assert any(has_image(c) for c in cells[:k] if c["cell_type"] == "code"), \
                f"{path.name}: no static figure above the widget cell:\n{source(cell)[:80]}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in EXERCISES])
def test_exercise_stubs_are_unsolved_and_checked(path: Path):
    nb = load(path)
    number = path.name[:2]
    cells = code_cells(nb)
    stubs = {}
    for cell in cells:
        for ex_id in re.findall(rf'raise NotImplementedError\("({number}\.\d+)', source(cell)):
            name = re.search(r"^def (\w+)\(", source(cell), re.M)
            assert name, f"stub {ex_id} is not a function definition"
            stubs[ex_id] = name.group(1)
    assert 3 <= len(stubs) <= 6, f"{path.name}: 3 to 6 exercises, found {sorted(stubs)}"
    solution = load_solution(path.stem)
    for ex_id, fn in stubs.items():
        assert callable(getattr(solution, fn, None)), f"solution file lacks {fn} (exercise {ex_id})"
        check_cells = [c for c in cells if re.search(rf'check\("{re.escape(ex_id)}"', source(c))]
        assert check_cells, f"exercise {ex_id} has no check cell"
        printed = "".join("".join(o.get("text", "")) for c in check_cells for o in c["outputs"])
        assert "not attempted yet" in printed, \
            f"exercise {ex_id}: the committed notebook must keep the stub unsolved (its check says not attempted)"


def check_cells(path: Path) -> list[tuple[str, list[str]]]:
    """[(exercise id, [names of the learner's functions it checks]), ...] from the check cells."""
    calls = re.findall(r'check\("(\d\d\.\d+)",\s*([\w, ]+)\)', "".join(source(c) for c in code_cells(load(path))))
    return [(ex_id, [name.strip() for name in names.split(",")]) for ex_id, names in calls]


@pytest.mark.parametrize("path, exercise_id, names", [
    pytest.param(path, ex_id, names, id=ex_id) for path in EXERCISES for ex_id, names in check_cells(path)])
def test_every_checker_passes_its_solution_and_spots_the_stub(path: Path, exercise_id: str, names: list[str]):
    # the wrong implementations that each checker must fail are in tests/test_exercises_NN.py
    solution = load_solution(path.stem)
    verdict = run(exercise_id, *[getattr(solution, name) for name in names])
    assert verdict.status == PASSED, verdict
    assert run(exercise_id, *[stub(exercise_id) for _ in names]).status == NOT_ATTEMPTED
