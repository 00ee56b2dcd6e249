"""The `python -m minarmd.demo` demo: it runs, teaches every section, and its losses agree."""
import re
import subprocess
import sys

import pytest

from minarmd.demo import main

SECTIONS = ("1. A sentence", "2. Masking trajectory", "3. Generation order", "4. Attention masks",
            "5. One forward pass", "What next")


def differences(out: str) -> list[float]:
    """Every number reported as a |difference|, mean and per-token."""
    found = re.findall(r"\|difference\| = (\S+)  \(max over tokens (\S+);", out)
    return [float(v) for pair in found for v in pair]


def test_demo_default(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for section in SECTIONS:
        assert section in out
    assert "|The quick brown fox jumps over the lazy dog.|" in out
    assert "x_4 " in out and "M^sc original order" in out and "OK:" in out
    assert re.search(r"\s1 network call ", out) and re.search(r"\s4 network calls", out)  # 4 non-empty blocks
    assert "44 network calls" in out  # T = N
    diffs = differences(out)
    assert len(diffs) == 4 and max(diffs) <= 1e-10


@pytest.mark.parametrize("argv", [["--T", "12", "--seed", "3"],  # tau needs two digit rows
                                  ["--sentence", "Ça va? " * 12, "--T", "2"]])  # non-ASCII, N > 64
def test_demo_options(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert all(section in out for section in SECTIONS)
    assert max(differences(out)) <= 1e-10


@pytest.mark.parametrize("argv, message", [(["--T", "0"], "--T must be an integer >= 1"),
                                           (["--T", "-3"], "--T must be an integer >= 1"),
                                           (["--T", "two"], "invalid int value"),
                                           (["--sentence", ""], "--sentence must not be empty"),
                                           (["--sentence", "x" * 300], "at most 256")])
def test_bad_arguments_are_clean_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2  # argparse's usage error, not a traceback
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "minarmd.demo", "--sentence", "Hello, world!"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "OK:" in proc.stdout and max(differences(proc.stdout)) <= 1e-10


def test_disagreement_exits_nonzero(monkeypatch):
    import minarmd.demo as demo

    reference = demo.t_pass_loss

    def off_by_a_bit(*args, **kwargs):  # a broken reference: the demo must refuse to say OK
        return reference(*args, **kwargs) + 1e-6

    monkeypatch.setattr(demo, "t_pass_loss", off_by_a_bit)
    with pytest.raises(SystemExit) as exc:
        main(["--sentence", "abc"])
    assert "FAILED" in str(exc.value.code)
