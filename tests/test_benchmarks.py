"""The benchmark scripts still run (``--quick`` smoke runs) and their built-in checks hold.

Timings are not asserted (the machine is shared and noisy): speed targets live in
``benchmarks/RESULTS.md``, measured by the full runs."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *extra: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *extra],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_loss_passes_quick():
    out = run("loss_passes.py")
    assert "| T | non-empty blocks |" in out
    float64_diff = float(re.search(r"max abs diff per token = (\S+)", out).group(1))
    assert float64_diff <= 1e-10  # single pass == T-pass in float64


def test_generation_quick_with_profile():
    out = run("generation.py", "--profile")
    for row in ("ARMD S=1, prompt N/2, no cache", "cache speed-up with a prompt of N/2", "where a cached call's time goes"):
        assert row in out
    calls = [int(m) for m in re.findall(r"^\| [124] \| (\d+) \|", out, flags=re.M)]
    assert calls == [32, 2 + 16 - 1, 4 + 8 - 1]  # S + N/S - 1 at N = 32


def test_train_step_quick():
    out = run("train_step.py")
    assert "ARMD auto" in out and "ARMD dense" in out and "FLOP bound" in out
    loss_diff, grad_diff = map(float, re.search(r"\|loss auto - loss dense\| = (\S+), "
                                                r"max \|grad auto - grad dense\| = (\S+)", out).groups())
    assert loss_diff <= 1e-5 and grad_diff <= 1e-5  # the fused causal path computes what the masks do


def _load_benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_throughput_smoke_on_cpu(tmp_path):
    """``gpu_throughput.py --smoke``: every run, the batch search, the summary and the JSON, at tiny shapes."""
    import json

    path = tmp_path / "smoke.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--smoke",
                           "--find-batch", "--json", str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for text in ("ARMD/AR time per token", "FLOP bound", "projected ARMD wall time, 400000 steps x 524288 tokens",
                 "projected ARMD wall time, 10B tokens", "8 GPUs (ideal scaling)", "largest micro-batch that fits: 16"):
        assert text in out, text
    result = json.loads(path.read_text())
    assert result["device"] == "cpu" and result["smoke"] and not result["bf16"] and not result["compile"]
    runs = result["runs"]
    assert list(runs) == ["armd", "ar", "mdm", "armd-sbp"]
    for name, r in runs.items():
        assert r["tokens_per_s"] > 0 and r["steps_timed"] >= 3 and r["micro_batch"] == 2, name
        assert r["flops_per_token"] > 0 and r["flops_per_token_gpt"] > 0 and r["warmup_s"] >= 0, name
        assert r["mfu"] is None and r["peak_mem_gib"] is None  # no GPU, no peak
        assert r["final_loss"] > 0
    assert runs["armd"]["order"] == "progressive" and runs["armd-sbp"]["order"] == "sbp"
    assert runs["armd"]["flops_per_token"] > runs["armd"]["flops_per_token_gpt"]  # the query stream counted
    s = result["summary"]
    assert s["armd_ar_time_per_token"] == runs["ar"]["tokens_per_s"] / runs["armd"]["tokens_per_s"]
    assert s["armd_ar_flop_bound"] == runs["armd"]["flops_per_token"] / runs["ar"]["flops_per_token"]
    p = s["projection"]
    assert (p["run_steps"], p["run_tokens_per_step"]) == (400_000, 512 * 1024)
    assert abs(p["10B_hours_1gpu"] - 1e10 / runs["armd"]["tokens_per_s"] / 3600) < 1e-6 * p["10B_hours_1gpu"]
    assert p["run_hours_8gpu_ideal"] == p["run_hours_1gpu"] / 8
    assert set(result["find_batch"]) == {"armd", "ar", "mdm"}  # not SBP: it would recompile flex per size
    assert result["find_batch"]["armd"] == {"largest_micro_batch": 16, "tries": [[8, True], [16, True]],
                                            "every_try_fitted": True}  # --smoke caps the search at 16


def test_gpu_throughput_batch_search_and_errors(monkeypatch):
    """The micro-batch search survives out-of-memory errors (simulated on the CPU), re-raises other
    errors, and asking for CUDA where there is none is a clear error."""
    import argparse

    import pytest
    import torch

    gt = _load_benchmark("gpu_throughput")
    assert gt.largest_batch(lambda b: b <= 40) == (40, [(8, True), (16, True), (32, True), (64, False),
                                                        (48, False), (40, True)])
    assert gt.largest_batch(lambda b: False) == (0, [(8, False)])
    assert gt.largest_batch(lambda b: True, 8, 20) == (16, [(8, True), (16, True)])

    real_loss = gt.training_loss

    def loss_or_oom(model, cfg, x, *args, **kwargs):
        if x.shape[0] > 24:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_loss(model, cfg, x, *args, **kwargs)

    args = argparse.Namespace(preset="gpt2-small", smoke=True, bf16=False, no_input_checks=False, vocab=64,
                              max_batch=1024)
    monkeypatch.setattr(gt, "training_loss", loss_or_oom)
    found = gt.find_batch(args, "ar", torch.device("cpu"))
    assert found["largest_micro_batch"] == 24 and not found["every_try_fitted"]
    assert found["tries"] == [(8, True), (16, True), (32, False), (24, True)]

    def broken(*args, **kwargs):
        raise RuntimeError("not a memory problem")

    monkeypatch.setattr(gt, "training_loss", broken)
    with pytest.raises(RuntimeError, match="not a memory problem"):
        gt.find_batch(args, "ar", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="CUDA was asked for"):
            gt.main(["--seconds", "1"])


def test_gpu_adapt_smoke_on_cpu():
    """``gpu_adapt.py --smoke``: a tiny random GPT-2 saved, loaded by init_from_hf, trained 3 steps."""
    pytest.importorskip("transformers")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_adapt.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout.splitlines()[0])
    assert row["device"] == "cpu" and row["steps"] == 3 and row["params"] > 0
    assert math.isfinite(row["loss_first3"]) and math.isfinite(row["tokens_per_s"])
    skipped = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_adapt.py")], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert skipped.returncode == 0 and "skipped" in skipped.stdout


def test_table2_reuses_only_finished_fine_tuning(tmp_path):
    """A fine-tuning run cut short (its last checkpoint below max_steps) is redone, never sampled as if done."""
    from minarmd.checkpoint import save_checkpoint
    table2 = _load_benchmark("table2")
    assert not table2._complete(tmp_path / "missing" / "ckpt.pt")
    save_checkpoint(tmp_path / "cut" / "ckpt.pt", {"step": 200, "config": {"max_steps": 400}})
    save_checkpoint(tmp_path / "done" / "ckpt.pt", {"step": 400, "config": {"max_steps": 400}})
    assert not table2._complete(tmp_path / "cut" / "ckpt.pt") and table2._complete(tmp_path / "done" / "ckpt.pt")


def test_table2_reprints_its_committed_record(tmp_path):
    """RESULTS §7's tables come back from benchmarks/table2.json in seconds: every row, each cell the mean over
    the record's seeds; a file that is not a record gets one error naming --from-record."""
    def reprint(path):
        return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "table2.py"), "--from-record", str(path)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    record = json.loads((ROOT / "benchmarks" / "table2.json").read_text())
    assert len(record["seeds"]) >= 3
    out = reprint(ROOT / "benchmarks" / "table2.json")
    assert out.returncode == 0, out.stderr[-2000:]
    for name, per_seed in record["rows"].items():
        assert len(per_seed) == len(record["seeds"])
        mean = sum(r["gen_ppl"] for r in per_seed) / len(per_seed)
        assert re.search(rf"^\| {re.escape(name)} \| \d+ \| {mean:.3f} ± ", out.stdout, flags=re.M), name
    (tmp_path / "bad.json").write_text("{}")
    bad = reprint(tmp_path / "bad.json")
    assert bad.returncode != 0 and "--from-record" in bad.stderr and "Traceback" not in bad.stderr
