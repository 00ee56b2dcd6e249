"""Atomic checkpoints: round trip, overwrite, every broken-file case, and a real kill -9 mid-write."""
import os
import random
import select
import signal
import sys
import time

import pytest
import torch

from minarmd import checkpoint
from minarmd.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _tiny_training_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(2):  # populate exp_avg / exp_avg_sq / step
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    gen = torch.Generator().manual_seed(7)
    return model, opt, {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "rng": checkpoint.rng_state(),
        "step": 2,
        "config": {"n_layer": 2, "lr": 1e-2, "schedule": "cosine", "sizes": [1, 2], "pair": (3, 4), "x": None},
    }


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_restores_model_optimizer_and_generators(tmp_path):
    model, opt, state = _tiny_training_state()
    path = tmp_path / "run" / "deep" / "ckpt.pt"  # parent directories are created
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    _assert_same(state, loaded)
    assert "format" not in loaded
    assert not (tmp_path / "run" / "deep" / "ckpt.pt.tmp").exists()

    # the loaded state really restores training: same next step from a fresh model + optimizer
    model2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optimizer"])
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    gen = torch.Generator()
    gen.set_state(loaded["generator"])
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=torch.Generator().manual_seed(7)))


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", {"rng": checkpoint.rng_state()})
    expected = torch.rand(4)
    checkpoint.set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert torch.equal(torch.rand(4), expected)
    with pytest.raises(ValueError, match="rng_state"):
        checkpoint.set_rng_state({"cuda": []})


def test_overwrite_keeps_only_the_new_state(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "w": torch.zeros(3)})
    save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path) == {"step": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_failed_save_removes_tmp_and_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}
    assert not (tmp_path / "ckpt.pt.tmp").exists()


def test_bad_state_arguments(tmp_path):
    with pytest.raises(ValueError, match="state must be a dict"):
        save_checkpoint(tmp_path / "c.pt", [1, 2])
    with pytest.raises(ValueError, match="'format' key"):
        save_checkpoint(tmp_path / "c.pt", {"format": "mine"})
    assert not list(tmp_path.iterdir())


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="no checkpoint at") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "check the path" in str(info.value)
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["half", "last_byte", "zero_bytes", "random_bytes"])
def test_broken_files_raise_checkpoint_error_naming_the_path(tmp_path, damage):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"w": torch.arange(10_000.0), "step": 5})
    data = path.read_bytes()
    broken = {"half": data[: len(data) // 2], "last_byte": data[:-1], "zero_bytes": b"",
              "random_bytes": random.Random(0).randbytes(4096)}[damage]
    path.write_bytes(broken)
    with pytest.raises(CheckpointError, match="corrupt or incomplete") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "delete it" in str(info.value)


def test_foreign_files_are_not_minarmd_checkpoints(tmp_path):
    for i, obj in enumerate([{"model": torch.zeros(2)}, {"format": "other-v9"}, [1, 2, 3]]):
        path = tmp_path / f"foreign{i}.pt"
        torch.save(obj, path)
        with pytest.raises(CheckpointError, match="not a minarmd checkpoint") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)


def test_weights_only_refuses_unsafe_objects_unless_asked(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"when": slice(1, 2)})  # a picklable object outside the allow-list
    with pytest.raises(CheckpointError, match="weights_only") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert load_checkpoint(path, weights_only=False) == {"when": slice(1, 2)}


def _saver_child(path, write_fd):
    """Forked child: save 8 MB checkpoints back to back forever, reporting each finished save."""
    try:
        torch.set_num_threads(1)  # as in DataLoader workers: no OpenMP pool inherited across fork
        counter = 0
        while True:
            counter += 1
            save_checkpoint(path, {"counter": counter, "x": torch.full((2_000_000,), float(counter))})
            os.write(write_fd, b"%d\n" % counter)
    finally:
        os._exit(1)  # never return into pytest (only reached if saving raised)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="needs os.fork and SIGKILL")
def test_kill_9_at_random_moments_never_leaves_a_broken_checkpoint(tmp_path):
    """SIGKILL a process that saves continuously; the file must always be a complete checkpoint.

    Fork (not subprocess) so that each writer starts in milliseconds instead of re-importing torch.
    The child saves back to back, so most kills land while a save is in progress; a left-over
    ``.tmp`` file after the kill proves that one did.
    """
    path = tmp_path / "ckpt.pt"
    rng = random.Random(1234)
    mid_write = 0
    for trial in range(8):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _saver_child(path, write_fd)
        os.close(write_fd)
        try:
            # wait (at most 30 s, never forever) until the child finished its first save
            ready, _, _ = select.select([read_fd], [], [], 30.0)
            assert ready, "the saving child produced no checkpoint within 30 s"
            time.sleep(rng.uniform(0.0, 0.05))  # then kill at a pseudo-random moment
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                f"the saving child exited by itself (status {status}): save_checkpoint raised in it"
            chunks = []
            while chunk := os.read(read_fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(read_fd)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        reported = int(b"".join(chunks).split()[-1])  # last save the child saw complete
        mid_write += (tmp_path / "ckpt.pt.tmp").exists()
        state = load_checkpoint(path)
        counter = state["counter"]
        # complete and consistent: payload matches its counter, and it is the last reported save or
        # the one after it (killed between the rename and the report)
        assert counter in (reported, reported + 1), (trial, counter, reported)
        assert state["x"].shape == (2_000_000,) and bool((state["x"] == counter).all())
        path.unlink()  # next trial starts from nothing, so its first save is a fresh one
    assert mid_write >= 1, "no kill landed during a save; the test did not exercise the crash case"
