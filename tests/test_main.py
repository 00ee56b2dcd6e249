"""The README's main command: `python -m minarmd` trains, evaluates and samples (short run here)."""
import math

from minarmd.__main__ import main


def test_main_job_short_run(tmp_path, capsys):
    result = main(["--max-steps", "3", "--out", str(tmp_path), "--eval-windows", "2", "--sample-len", "16"])
    out = capsys.readouterr().out
    for heading in ("1. Training", "2. Validation", "3. Samples", "strided, S=4", "no KV cache",
                    "4. Text in, text out", "python -m minarmd.sample --ckpt", "5. Infilling"):
        assert heading in out
    assert set(result["results"]) == {"l2r", "random", "mask"}
    assert all(math.isfinite(e.nats) for e in result["results"].values())
    assert all(len(s) == 16 for s in result["samples"].values())
    assert "7 network calls" in out  # S = 4, N = 16: S + N/S - 1 = 7 calls
    assert (tmp_path / "ckpt.pt").exists() and (tmp_path / "loss.png").exists()
