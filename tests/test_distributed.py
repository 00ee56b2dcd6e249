"""torchrun + DDP on the CPU (gloo, 2 processes): the same losses as one process with the same global batch,
and a clean end (the process group is gone before Python shuts down).

Each torchrun launch costs a few seconds of process start-up; the runs are tiny (2 layers, width 32).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minarmd import distributed
from minarmd.train_config import TrainConfig
from minarmd.training import train_model

SHAPE = dict(n_layer=2, n_head=2, n_embd=32, seq_len=32, batch_size=4, grad_accum=4, max_steps=4, warmup=2,
             eval_every=0, eval_windows=2, ckpt_every=2, device="cpu", i_ar=1, i_perm=3, rho=4)


def losses(out) -> list[float]:
    return [r["loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r]


def flags(values: dict) -> list[str]:
    return [arg for k, v in values.items() for arg in (f"--{k.replace('_', '-')}", str(v))]


ROOT = Path(__file__).resolve().parents[1]
# python -m minarmd.train, then each rank lists the threads it still has (Linux: /proc/self/task)
TRAIN_THEN_LIST_THREADS = """
import os, sys
from minarmd.train import main
main(sys.argv[1:])
if os.path.isdir("/proc/self/task"):
    names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    print(f"rank {os.environ['RANK']} threads after the run: {names}", flush=True)
"""


def torchrun(out, nproc: int, **overrides) -> subprocess.CompletedProcess:
    script = Path(out).parent / "train_then_list_threads.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(TRAIN_THEN_LIST_THREADS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(script), "--out", str(out), *flags({**SHAPE, **overrides})]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def threads_left(run: subprocess.CompletedProcess) -> list[str]:
    return [line for line in run.stdout.splitlines() if "threads after the run" in line]


@pytest.mark.parametrize("model", ["armd", "ar", "mdm"])
def test_two_processes_match_one_process(tmp_path, model):
    torch.set_num_threads(1)
    single = train_model(TrainConfig.from_preset("tiny", model=model, out=str(tmp_path / "single"), **SHAPE))
    run = torchrun(tmp_path / "ddp", 2, model=model)
    assert run.returncode == 0, run.stderr[-3000:]
    one, two = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(two) == SHAPE["max_steps"]
    # float32; the gradients are averaged in another order (all-reduce of 2 partial sums), so the
    # trajectories agree to rounding, not bit for bit
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-4, (one, two)
    assert two[0] == pytest.approx(one[0], abs=1e-6)  # step 1: same weights, same inputs
    # rank 0 alone wrote the log and the checkpoint, and the model loads
    assert (tmp_path / "ddp" / "ckpt.pt").exists() and single["steps"] == SHAPE["max_steps"]
    # teardown freed the process group: no gloo thread is left to meet the interpreter's shutdown,
    # where one that needs the GIL aborts the process (distributed.py, "A clean end")
    if os.path.isdir("/proc/self/task"):
        left = threads_left(run)
        assert len(left) == 2 and not any("gloo" in line for line in left), left


def test_resume_on_another_number_of_processes_continues_the_same_run(tmp_path):
    torch.set_num_threads(1)
    train_model(TrainConfig.from_preset("tiny", out=str(tmp_path / "single"), **SHAPE))
    first = torchrun(tmp_path / "ddp", 2, max_steps=2)  # 2 steps on 2 processes ...
    assert first.returncode == 0, first.stderr[-3000:]
    cmd = [sys.executable, "-m", "minarmd.train", "--resume", "--out", str(tmp_path / "ddp"), *flags(SHAPE)]
    second = subprocess.run(cmd, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True, text=True,
                            timeout=300)  # ... then 2 more on one
    assert second.returncode == 0, second.stderr[-3000:]
    one, resumed = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(resumed) == 4 and max(abs(a - b) for a, b in zip(one, resumed)) < 1e-4, (one, resumed)


def test_world_size_must_divide_grad_accum(tmp_path):
    ctx = distributed.Context(rank=1, world=3)
    with pytest.raises(ValueError, match=r"world size \(3 processes\) must divide grad_accum=4.*\(e.g. 6\).*divides 4"):
        distributed.micro_batches(4, ctx)
    assert list(distributed.micro_batches(6, ctx)) == [2, 3]  # rank 1 of 3: the middle third
    run = torchrun(tmp_path / "bad", 3, grad_accum=4)  # the whole command fails with the message
    assert run.returncode != 0 and "must divide grad_accum=4" in run.stderr


def test_device_and_bf16_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available.*--device cpu"):
        train_model(TrainConfig.from_preset("tiny", device="cuda", out=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="bf16=True needs a CUDA GPU.*--no-bf16"):
        train_model(TrainConfig.from_preset("tiny", bf16=True, out=str(tmp_path / "b")))
    with pytest.raises(ValueError, match="bf16=True needs a CUDA GPU"):  # the GPU presets say so on a CPU
        train_model(TrainConfig.from_preset("gpt2-small", data="shakespeare", tokenizer="char", out=str(tmp_path / "c")))
    assert distributed.resolve_device("auto").type == "cpu"
