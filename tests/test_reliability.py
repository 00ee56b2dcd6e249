"""Issue 16: no run loses or corrupts another's work, no bad setting trains silently, every user error is one line.

Each test here failed on the code before the fix (the closing note of issue 16 lists them). The data
folder's manifest is tested in test_prepared_data.py, the distributed teardown in test_distributed.py.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import torch

import minarmd.checkpoint as checkpoint_module
from minarmd import ARMD
from minarmd.__main__ import main as quickstart_main
from minarmd.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from minarmd.config import ARMDConfig
from minarmd.evaluate import estimate
from minarmd.loss import armd_loss, t_pass_loss
from minarmd.runlock import LOCK_NAME, RunLock
from minarmd.train import main as train_main
from minarmd.train_config import TrainConfig
from minarmd.training import NonFiniteError, train_model

SMALL = dict(n_layer=2, n_head=2, n_embd=32, seq_len=32, batch_size=4, max_steps=4, warmup=1,
             eval_every=0, eval_windows=2, ckpt_every=2, i_ar=1, i_perm=3, rho=4)


def small(tmp_path, name="run", **overrides) -> TrainConfig:
    return TrainConfig.from_preset(out=str(tmp_path / name), **{**SMALL, **overrides})


# --- 1. one writer per run directory ------------------------------------------------------------

def test_a_second_run_on_the_same_directory_stops_before_touching_anything(tmp_path):
    cfg = small(tmp_path)
    with RunLock(cfg.out):  # another run holds the directory
        before = sorted(os.listdir(cfg.out))
        with pytest.raises(ValueError, match=rf"in use by another run \(PID {os.getpid()} on host"):
            train_model(cfg)
        assert sorted(os.listdir(cfg.out)) == before == [LOCK_NAME]  # no ckpt.pt, no metrics.jsonl
    train_model(cfg)  # released: the directory is free again
    assert sorted(os.listdir(cfg.out)) == ["ckpt.pt", "loss.png", "metrics.jsonl"]  # a clean end removes the lock
    train_model(small(tmp_path, "other"))  # other directories never wait


def test_the_lock_is_held_across_processes_and_freed_by_a_killed_holder(tmp_path):
    holder = ("import sys, time; from minarmd.runlock import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
              "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"PID {proc.pid} on host"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()  # kill -9: no clean-up ran
        proc.wait()
    lock = RunLock(tmp_path).acquire()  # the kernel dropped the dead process's lock
    assert lock.took_over["pid"] == proc.pid and "has ended" in lock.stale_note()
    lock.release()
    assert RunLock(tmp_path).acquire().took_over is None  # a clean release leaves no stale record


def test_two_concurrent_cli_runs_on_one_directory_one_refused(tmp_path):
    args = [sys.executable, "-m", "minarmd.train", "--model", "ar", "--n-layer", "1", "--n-embd", "32",
            "--n-head", "2", "--seq-len", "16", "--batch-size", "2", "--max-steps", "100000", "--warmup", "1",
            "--ckpt-every", "1", "--eval-every", "0", "--out", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C as in a terminal
    try:
        for _ in range(600):  # until the first run has saved a checkpoint
            if (tmp_path / "run" / "ckpt.pt").exists():
                break
            time.sleep(0.1)
        second = subprocess.run(args + ["--overwrite"], env=env, capture_output=True, text=True, timeout=300)
        assert first.poll() is None  # the two really overlapped
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C: the first run saves and stops
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err[-2000:]
    assert second.returncode == 2 and second.stderr.startswith("error: --out") and "in use by another run" in second.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, len(steps) + 1))  # one run's records, not two interleaved
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == len(steps)


# --- 2. checkpoints you can trust -----------------------------------------------------------------

def test_flipped_bytes_inside_a_checkpoint_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.randn(256, 256)})
    archive = zipfile.ZipFile(path)
    record = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    offset = record.header_offset + 30 + len(record.filename) + len(record.extra) + 1000  # inside the tensor
    data = bytearray(path.read_bytes())
    data[offset:offset + 64] = bytes(b ^ 0xFF for b in data[offset:offset + 64])
    path.write_bytes(bytes(data))
    assert zipfile.is_zipfile(path)  # the cheap test passes: only the CRC can tell
    with pytest.raises(CheckpointError, match=r"data/0' fails its CRC check"):
        load_checkpoint(path)


@pytest.fixture
def ctrl_c(request):
    """Ctrl-C's handler for one test (default: Python's, as in a terminal; a test runner started in the
    background, ``nohup pytest &``, inherits Ctrl-C ignored), restored afterwards."""
    previous = signal.signal(signal.SIGINT, getattr(request, "param", signal.default_int_handler))
    yield signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, previous)


def _ctrl_c_mid_write(monkeypatch):
    real_save = torch.save

    def interrupted_save(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives mid-write
        real_save(obj, f)

    monkeypatch.setattr(checkpoint_module.torch, "save", interrupted_save)


def test_ctrl_c_during_a_write_finishes_it_then_raises(tmp_path, monkeypatch, ctrl_c):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})
    _ctrl_c_mid_write(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 2 and not (tmp_path / "c.pt.tmp").exists()  # written, complete
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


@pytest.mark.parametrize("ctrl_c", [signal.SIG_IGN], indirect=True)
def test_an_ignored_ctrl_c_stays_ignored_during_a_write(tmp_path, monkeypatch, ctrl_c):
    _ctrl_c_mid_write(monkeypatch)
    save_checkpoint(tmp_path / "c.pt", {"step": 2})  # a `nohup ... &` run: Ctrl-C never stops it
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 2 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_callers_ctrl_c_handler_runs_once_after_the_write(tmp_path, monkeypatch, ctrl_c):
    calls = []
    signal.signal(signal.SIGINT, lambda signum, frame: calls.append(load_checkpoint(tmp_path / "c.pt")["step"]))
    _ctrl_c_mid_write(monkeypatch)
    save_checkpoint(tmp_path / "c.pt", {"step": 2})  # the caller's handler decides: here it does not raise
    assert calls == [2]  # once, and only after the file was complete


def test_ctrl_c_during_a_training_checkpoint_saves_once_and_says_so(tmp_path, monkeypatch, capsys, ctrl_c):
    calls, real_save = [], torch.save

    def save_with_ctrl_c(obj, f):
        calls.append(obj["step"])
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the step-2 checkpoint is being written
        real_save(obj, f)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train_model(small(tmp_path))
    assert calls == [2] and load_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 2  # written once, complete
    assert "interrupted: state after step 2 saved" in capsys.readouterr().out


def test_a_full_disk_is_one_clear_error_and_the_previous_checkpoint_survives(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs Linux's /dev/full")
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1, "w": torch.zeros(1000)})
    (tmp_path / "c.pt.tmp").symlink_to("/dev/full")  # every write to the temporary file: ENOSPC
    with pytest.raises(CheckpointError, match=r"disk full: could not write .*c\.pt \(needs about .* MB free\); "
                                              r"the previous checkpoint there is intact"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(1000)})
    assert load_checkpoint(path)["step"] == 1


def test_non_finite_weights_are_never_written(tmp_path):
    bad = {"w": torch.tensor([1.0, float("nan")]), "n": torch.tensor([3])}
    with pytest.raises(CheckpointError, match=r"state\['model'\] holds NaN or Inf values \(in w\)"):
        save_checkpoint(tmp_path / "c.pt", {"model": bad}, finite_keys=("model",))
    assert not (tmp_path / "c.pt").exists()
    save_checkpoint(tmp_path / "c.pt", {"model": bad})  # other callers decide for themselves


def test_load_model_names_what_a_checkpoint_lacks(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"model": {}})
    with pytest.raises(CheckpointError, match=r"no 'config', 'vocab_size'"):
        load_model(tmp_path / "c.pt")


# --- 3. the non-finite guard -----------------------------------------------------------------------

def test_a_diverging_run_stops_before_its_update_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = small(tmp_path, lr=1e6, max_steps=6, ckpt_every=1)
    with pytest.raises(NonFiniteError, match=r"training stopped at step (\d) before its update: the loss is nan; "
                                             r"the last finite loss was .* at step \d\. .*ckpt\.pt still holds step "
                                             r"\d\. Try: lower --lr \(now 1e\+06\)") as info:
        train_model(cfg)
    stopped = int(re.search(r"step (\d)", str(info.value)).group(1))
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt["step"] == stopped - 1  # the state before the bad step, every weight finite
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    with pytest.raises(NonFiniteError, match="or enable clipping with --grad-clip 1.0"):  # the hint fits the run
        train_model(small(tmp_path, "noclip", lr=1e6, max_steps=6, grad_clip=0.0))


def test_evaluation_says_when_a_model_is_broken():
    model = ARMD(ARMDConfig(vocab_size=10, max_len=16, n_layer=2, n_head=2, n_embd=16, d_pe=8,
                            pe_init="random"))
    windows = torch.randint(0, 10, (4, 16), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(torch.tensor(estimate(model, windows, "l2r").nats))
    with torch.no_grad():
        model.wte.weight[3, 0] = float("nan")
    with pytest.raises(ValueError, match="'l2r' loss is not finite"):
        estimate(model, windows, "l2r")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        estimate(model, windows, "l2r", batch_size=0)
    with pytest.raises(ValueError, match=r"schedule must be one of \('linear'"):
        estimate(model, windows, "mask", schedule="bogus")


def test_t_pass_loss_reads_blocks_none_as_singletons_like_armd_loss():
    torch.manual_seed(0)
    model = ARMD(ARMDConfig(vocab_size=10, max_len=8, n_layer=2, n_head=2, n_embd=16, d_pe=8,
                            pe_init="random")).double()
    x, order = torch.randint(0, 10, (2, 8)), torch.stack([torch.randperm(8) for _ in range(2)])
    assert torch.allclose(t_pass_loss(model, x, order), armd_loss(model, x, order), atol=1e-12, rtol=0)


# --- 4. every TrainConfig field checked up front -----------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("min_lr_frac", -0.5, r"min_lr_frac must be in \[0, 1\]"),
    ("grad_clip", -1.0, r"grad_clip must be >= 0 \(0 switches clipping off\)"),
    ("lr", float("inf"), "lr must be a finite number"),
    ("lr", float("nan"), "lr must be a finite number"),
    ("lr", 0.0, "lr must be > 0"),
    ("eval_every", -1, r"eval_every must be >= 0 \(0: evaluate only at the end\)"),
    ("eval_windows", 0, "eval_windows must be >= 1"),
    ("out", "", "out must not be empty"),
    ("max_steps", True, "max_steps must be an integer"),
    ("batch_size", 2.5, "batch_size must be an integer"),
    ("seed", -1, "seed must be >= 0"),
    ("beta2", 1.0, r"beta2 must be in \[0, 1\)"),
    ("weight_decay", -0.1, "weight_decay must be >= 0"),
    ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
    ("data", "wikipedia", "data must be one of"),
    ("tokenizer", "bpe", "tokenizer must be one of"),
    ("attn_backend", "fast", "attn_backend must be one of"),
    ("i_perm", 0, "i_perm=0 must be >= i_ar=1"),
    ("n_embd", 33, "n_embd=33 must be divisible by n_head=2"),
    ("compile", 1, "compile must be True or False"),
])
def test_every_bad_field_is_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_preset(**{**SMALL, field: value})


def test_ckpt_every_zero_saves_only_at_the_end(tmp_path):
    train_model(small(tmp_path, ckpt_every=0, max_steps=3))
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 3


def test_settings_that_do_not_fit_the_run_fail_before_anything_is_written(tmp_path):
    cases = [(small(tmp_path, "a", warmup=9), {}, r"warmup=9 exceeds max_steps=4"),
             (small(tmp_path, "b", attn_backend="flex", device="cpu"), {}, "attn_backend='flex' needs a CUDA GPU"),
             (small(tmp_path, "c", init_from=str(tmp_path / "missing.pt")), {}, "--init-from .*missing.pt: no such"),
             (small(tmp_path, "d"), {"resume": True}, r"--resume: there is no checkpoint .*d/ckpt\.pt")]
    for cfg, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            train_model(cfg, **kwargs)
        assert not os.path.exists(cfg.out)  # not even the directory
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        train_model(small(tmp_path, "file"))


def test_resuming_below_the_checkpoint_step_is_refused(tmp_path):
    train_model(small(tmp_path))
    with pytest.raises(ValueError, match=r"--resume --max-steps 2: the run .* has already done 4 steps"):
        train_model(small(tmp_path, max_steps=2), resume=True)



# --- 9. what resume guarantees: bit for bit with the same numerics, and it says when they change ---------

def weights(path):
    return torch.load(path, weights_only=False)["model"]


def cli_train(out, steps, threads, *extra):
    """A fresh process (as a user runs it) with an explicit thread count."""
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**SMALL, "max_steps": steps, "ckpt_every": 0}.items()]
    run = subprocess.run([sys.executable, "-m", "minarmd.train", *flags, "--out", str(out), *extra], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.mark.parametrize("threads", [1, 2])
def test_a_resume_in_a_fresh_process_with_the_same_threads_is_bit_identical(tmp_path, threads):
    # 10 steps at constant lr, then 10 more after a resume (a schedule that does not depend on max_steps),
    # against 20 uninterrupted steps: every weight equal, at 1 and at 2 threads
    cli_train(tmp_path / "full", 20, threads, "--lr-decay", "constant")
    cli_train(tmp_path / "cut", 10, threads, "--lr-decay", "constant")
    out = cli_train(tmp_path / "cut", 20, threads, "--lr-decay", "constant", "--resume")
    assert "note:" not in out, out
    full, resumed = weights(tmp_path / "full" / "ckpt.pt"), weights(tmp_path / "cut" / "ckpt.pt")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_a_resume_with_another_thread_count_says_it_is_not_bit_identical(tmp_path):
    cli_train(tmp_path / "cut", 10, 2, "--lr-decay", "constant")
    assert torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=False)["numerics"]["threads"] == 2
    out = cli_train(tmp_path / "cut", 20, 1, "--lr-decay", "constant", "--resume")
    assert "note: this run was checkpointed with other numerics (threads 2 -> 1)" in out, out
    assert "not bit for bit" in out and "OMP_NUM_THREADS=2" in out


def test_extending_a_cosine_run_says_how_the_schedule_changes(tmp_path, capsys):
    train_model(small(tmp_path, max_steps=4, lr_decay="cosine"))
    capsys.readouterr()
    train_model(small(tmp_path, max_steps=8, lr_decay="cosine"), resume=True)
    out = capsys.readouterr().out
    extended, planned = small(tmp_path, max_steps=8), small(tmp_path, max_steps=4)
    from minarmd.optim import learning_rate
    assert (f"note: --max-steps 8 (the run planned 4): the cosine schedule is redrawn for 8 steps, so the "
            f"learning rate of step 5 is {learning_rate(extended, 4):.3g} (it would have been "
            f"{learning_rate(planned, 4):.3g})") in out, out
    train_model(small(tmp_path, name="flat", max_steps=4, lr_decay="constant"))
    capsys.readouterr()
    train_model(small(tmp_path, name="flat", max_steps=8, lr_decay="constant"), resume=True)
    assert "note:" not in capsys.readouterr().out  # a constant schedule does not change

def test_extending_a_run_with_a_fractional_curriculum_says_it_moves(tmp_path, capsys):
    train_model(small(tmp_path, max_steps=6, lr_decay="constant", i_ar=1 / 3, i_perm=0.5, rho=4))
    capsys.readouterr()
    train_model(small(tmp_path, max_steps=12, lr_decay="constant", i_ar=1 / 3, i_perm=0.5, rho=4), resume=True)
    out = capsys.readouterr().out
    assert ("note: --max-steps 12 (the run planned 6): the curriculum is a fraction of max_steps (i_ar=0.333, "
            "i_perm=0.5), so it moves from steps 2/3 to 4/6") in out, out

# --- 6. command lines: one error line, exit status 2 ---------------------------------------------------

@pytest.mark.parametrize("main, argv, message", [
    (train_main, ["--lr", "inf"], "lr must be a finite number"),
    (train_main, ["--eval-windows", "0"], "eval_windows must be >= 1"),
    (train_main, ["--max-steps", "10"], "warmup=50 exceeds max_steps=10"),
    (train_main, ["--init-from", "missing.pt", "--warmup", "1", "--max-steps", "2"], "--init-from missing.pt"),
    (quickstart_main, ["--max-steps", "0"], "max_steps must be >= 1, got 0"),
    (quickstart_main, ["--sample-len", "500"], "--sample-len 500 exceeds"),
])
def test_cli_user_errors_are_one_line_and_status_2(main, argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        main(argv + ["--out", str(tmp_path / "out"), "--debug"])  # --debug: the exception itself


def test_cli_from_the_shell_exits_2_without_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "minarmd.train", "--grad-clip", "-1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr == "error: grad_clip must be >= 0 (0 switches clipping off), got -1.0\n"
