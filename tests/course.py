"""Helpers for the course tests: load an exercise solution file, make an untouched stub."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_solution(name: str):
    """Import exercises/solutions/<name>.py (its file name starts with a digit, so not importable by name)."""
    path = ROOT / "exercises" / "solutions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"solution_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub(exercise_id: str):
    """A function like the exercise notebooks' stubs: it raises NotImplementedError at once."""
    def untouched(*args, **kwargs):
        raise NotImplementedError(f"{exercise_id}: your code here")
    return untouched


def failed(exercise_id: str, *answers_then_words) -> str:
    """``failed(id, fn..., "word", ..., "hint: words")``: the answers FAIL, the message contains every word.

    Callables are the answers (one per function the exercise asks for), strings the expected words.
    A word starting with "hint: " must be in the message's hint line; without one the message must
    have no hint at all: a wrong answer gets the hint its mistake deserves, or none, never a misleading one.
    """
    from minarmd.check import FAILED, run

    answers = [a for a in answers_then_words if callable(a)]
    words = [w for w in answers_then_words if isinstance(w, str) and not w.startswith("hint: ")]
    hints = [w[len("hint: "):] for w in answers_then_words if isinstance(w, str) and w.startswith("hint: ")]
    result = run(exercise_id, *answers)
    assert result.status == FAILED, str(result)
    for word in words:
        assert word in result.message, (word, result.message)
    hint_line = next((line for line in result.message.split("\n") if line.startswith("hint: ")), None)
    if hints:
        assert hint_line is not None, ("no hint", hints, result.message)
        for hint in hints:
            assert hint in hint_line, (hint, result.message)
    else:
        assert hint_line is None, ("a hint nobody asked for", result.message)
    return result.message
