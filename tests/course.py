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
    """``failed(id, fn..., "word", ...)``: the answers FAIL and the message contains every word; returns it.

    Callables are the answers (one per function the exercise asks for), strings the expected words.
    """
    from minarmd.check import FAILED, run

    answers = [a for a in answers_then_words if callable(a)]
    words = [w for w in answers_then_words if isinstance(w, str)]
    result = run(exercise_id, *answers)
    assert result.status == FAILED, str(result)
    for word in words:
        assert word in result.message, (word, result.message)
    return result.message
