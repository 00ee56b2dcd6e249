r"""Checkpoints that survive interruption: atomic save, loud load.

A training run that is killed while writing its checkpoint (``kill -9``, out-of-memory killer,
pre-empted cloud machine, Colab timeout) must not lose the previous checkpoint too. Writing with
``torch.save(state, path)`` truncates ``path`` first, so a kill half-way leaves a file that no
longer holds the old state and not yet the new one. ``save_checkpoint`` uses the classic
write-then-rename recipe instead:

1. write the whole state to ``<path>.tmp`` in the **same directory** (a rename is only atomic
   within one file system);
2. ``flush`` + ``os.fsync`` it, so the bytes are on disk before the name points to them;
3. ``os.replace(tmp, path)`` — an atomic rename on POSIX and Windows: readers see either the old
   file or the new one, never a mix;
4. ``fsync`` the directory (POSIX only, best effort), so that the rename itself survives a power
   cut, not only a killed process.

At every instant ``path`` is therefore either the previous complete checkpoint or the new one. A
kill during step 1 or 2 leaves a stale ``<path>.tmp``, which the next save simply overwrites. Only
one process may save to a given path at a time (in multi-process training: rank 0; two runs on one
directory are stopped by ``runlock.RunLock``).

Three more promises. **Ctrl-C during a write finishes the write** (it takes seconds), then raises
``KeyboardInterrupt``: a half-written checkpoint is never the price of an interrupt. **A full disk**
is one ``CheckpointError`` naming the file, the space it needs and the space free, and saying that
the previous checkpoint is intact. **Non-finite weights are never written**: the entries named in
``finite_keys`` (training passes its weights) must hold only finite floats.

**Integrity on load.** ``torch.save`` writes a zip archive with a CRC-32 of every record, which
``torch.load`` does not check: a file with flipped bytes (a bad disk, a broken copy) would load,
with wrong numbers. ``load_checkpoint`` verifies every CRC first (``zipfile.testzip``, about
1.5 GB/s), so such a file is refused with the record that fails.

``load_checkpoint`` turns every way of failing into a ``CheckpointError`` that names the file and
the fix: no file, a truncated or garbage file, or a file that is not a minarmd checkpoint.

**weights_only.** Files are loaded with ``torch.load(..., weights_only=True)``, which unpickles only
tensors, ``torch.Size``/dtypes and plain Python containers (dict, list, tuple, str, int, float,
bool, None) and cannot run code hidden in a downloaded file. Everything a training loop needs fits:
``model.state_dict()``, ``optimizer.state_dict()`` (AdamW included), ``torch.Generator.get_state()``
and ``rng_state()`` tensors, step counters, and configs stored as ``dataclasses.asdict(cfg)``
(store the dict, not the dataclass). numpy arrays and custom classes do not; pass
``weights_only=False`` only for files you trust.

``load_model`` is the inference side: a training run's checkpoint back as (model, TrainConfig,
tokenizer), the network rebuilt by its kind's recipe (``kinds.py``), EMA weights when it has them.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .kinds import get_kind
from .tokenizer import tokenizer_from_state
from .train_config import TrainConfig

__all__ = ["FORMAT", "CheckpointError", "save_checkpoint", "non_finite_entries", "load_checkpoint", "rng_state",
           "set_rng_state", "load_model"]

FORMAT = "minarmd-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a minarmd checkpoint (the message says which)."""


def _tmp_path(path: Path) -> Path:
    # Same directory as the target: os.replace is atomic only within one file system. A fixed name
    # (not a random one) means a stale file left by a kill is overwritten, not accumulated.
    return path.with_name(path.name + ".tmp")


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable. Best effort: Windows cannot open directories."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (network, FUSE) refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _tensors(obj):
    """Every tensor inside nested dicts / lists / tuples."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def non_finite_entries(state: dict) -> list[str]:
    """Names of the floating-point tensors of a (state-dict-like) mapping that hold a NaN or an Inf."""
    return [name for name, t in state.items() if isinstance(t, torch.Tensor) and t.is_floating_point()
            and not bool(torch.isfinite(t).all())]


@contextmanager
def _finish_before_interrupt():
    """Hold a Ctrl-C until the block ends, then deliver it: a checkpoint write is never cut short.
    Delivered means what Ctrl-C did before the block: Python's default raises KeyboardInterrupt, a
    caller's handler is called, an ignored Ctrl-C (a ``nohup ... &`` run) stays ignored.
    (Signals reach only the main thread; elsewhere the block runs unprotected.)"""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):  # None: not set from Python
        yield
        return
    pending = []

    def hold(signum, frame):
        if not pending:
            print("\nCtrl-C: finishing the checkpoint write first ...", file=sys.stderr, flush=True)
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        if callable(previous):  # Python's default_int_handler raises KeyboardInterrupt itself
            previous(signal.SIGINT, None)
        else:  # SIG_DFL: the process would have ended; end it the way Python reports a Ctrl-C
            raise KeyboardInterrupt


def _disk_full(err: BaseException) -> bool:
    """Whether an error (or one it was raised while handling: torch wraps the OSError) is a full disk."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        err = err.__cause__ or err.__context__
    return False


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *, finite_keys: tuple[str, ...] = ()) -> None:
    """Atomically write ``state`` (a dict with str keys) to ``path``, creating parent directories.

    The file holds ``{"format": FORMAT, **state}``; ``load_checkpoint`` returns ``state`` again.
    ``state[k]`` for k in ``finite_keys`` (state dicts, or None) must hold only finite floats: a
    NaN or Inf there raises ``CheckpointError`` before anything is written.
    """
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"state must be a dict with str keys, got {type(state).__name__}")
    if "format" in state:
        raise ValueError("state must not have a 'format' key: save_checkpoint adds it to mark the file "
                         "as a minarmd checkpoint; rename your key")
    path = Path(path)
    tmp = _tmp_path(path)
    with _finish_before_interrupt():  # a Ctrl-C from here on waits for the file to be complete
        for key in finite_keys:
            bad = non_finite_entries(state[key] or {})
            if bad:
                raise CheckpointError(f"not writing {path}: state[{key!r}] holds NaN or Inf values (in "
                                      f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); the previous "
                                      f"checkpoint is kept")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                torch.save({"format": FORMAT, **state}, f)
                f.flush()  # Python's buffer -> OS
                os.fsync(f.fileno())  # OS cache -> disk, before the rename makes the file visible
            os.replace(tmp, path)
        except BaseException as err:
            # an ordinary error (disk full, unpicklable object): leave no half-written tmp behind; the
            # previous checkpoint at `path` is untouched either way
            tmp.unlink(missing_ok=True)
            if isinstance(err, Exception) and _disk_full(err):
                needed = sum(t.numel() * t.element_size() for t in _tensors(state)) / 2**20
                free = shutil.disk_usage(path.parent).free / 2**20
                intact = "the previous checkpoint there is intact" if path.exists() else "no earlier checkpoint existed"
                raise CheckpointError(f"disk full: could not write {path} (needs about {needed:.0f} MB, {free:.0f} "
                                      f"MB free); {intact}. Free some space (or choose another --out), then "
                                      f"--resume") from None
            raise
        _fsync_dir(path.parent)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *,
                    weights_only: bool = True) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; returns the saved ``state`` dict.

    ``map_location`` is passed to ``torch.load`` ("cpu" by default, so a GPU checkpoint opens on
    any machine; move the model afterwards). Raises ``CheckpointError`` naming the path and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: check the path (a training run writes "
                              f"OUT/ckpt.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path {path} is not a file (a directory?): give the checkpoint "
                              f"file itself")
    corrupt = (f"checkpoint {path} is corrupt or incomplete (was it copied or written by something other "
               f"than save_checkpoint, or cut short?): delete it and train from scratch, or resume from "
               f"an earlier checkpoint")
    # torch.save writes a zip archive whose directory sits at the very end, so any truncated,
    # zero-byte or random file fails this cheap test; checking first keeps torch's confusing
    # messages (EOFError, "failed finding central directory", ...) out of the user's way.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(corrupt)
    try:  # torch.load does not check the records' CRCs: flipped bytes would load as wrong numbers
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()  # the first record whose CRC fails, or None
    except Exception as err:  # a damaged header or directory entry
        raise CheckpointError(corrupt) from err
    if broken is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: record {broken!r} fails its CRC check (its bytes "
                              f"changed after it was written: a disk or copy error). Delete it and resume from "
                              f"a copy or an earlier checkpoint, or train from scratch")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as err:
        if weights_only and "weights only" in str(err).lower():
            raise CheckpointError(
                f"checkpoint {path} holds objects that weights_only=True refuses to unpickle (numpy "
                f"arrays, dataclasses, custom classes), or it is corrupt: store plain dicts/lists/"
                f"numbers/tensors, or, only if you trust the file, load it with weights_only=False"
            ) from err
        raise CheckpointError(corrupt) from err
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path} is not a minarmd checkpoint (expected format {FORMAT!r}, found "
                              f"{found!r}): write it with minarmd.checkpoint.save_checkpoint, or load it "
                              f"with torch.load directly")
    obj.pop("format")
    return obj


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU, and every CUDA device if CUDA is initialised).

    Explicit ``torch.Generator`` objects do not cover everything: ``nn.Dropout`` and attention
    dropout draw from the global generator of the device they run on, so an exactly reproducible
    resume with ``dropout > 0`` must save these too. Python's ``random`` is not captured (minarmd
    does not use it).
    """
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # list of uint8 tensors, one per device
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned (the CUDA part only where CUDA is available)."""
    if not isinstance(state, dict) or "cpu" not in state:
        raise ValueError("state must be the dict returned by rng_state() (with a 'cpu' entry)")
    torch.set_rng_state(state["cpu"].cpu())  # map_location may have moved it; the setter wants CPU
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) != torch.cuda.device_count():
            raise ValueError(f"state holds RNG states for {len(cuda)} CUDA devices but "
                             f"{torch.cuda.device_count()} are visible: resume on the same number of "
                             f"GPUs, or skip set_rng_state (results then differ only by dropout noise)")
        torch.cuda.set_rng_state_all(cuda)


def load_model(path: str | os.PathLike, use_ema: bool = True, device: str = "cpu"):
    """(model, TrainConfig, tokenizer or None) from a training checkpoint; EMA weights when it has them."""
    ckpt = load_checkpoint(path)
    missing = [k for k in ("config", "vocab_size", "model") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is a minarmd checkpoint but not a training run's (it has no "
                              f"{', '.join(repr(k) for k in missing)}): load_model reads what train_model "
                              f"writes; open other checkpoints with load_checkpoint")
    cfg = TrainConfig.from_saved(ckpt["config"])
    model = get_kind(cfg.model).build(cfg, ckpt["vocab_size"])
    state = ckpt["ema"] if use_ema and ckpt.get("ema") else ckpt["model"]
    model.load_state_dict(state)
    tok = tokenizer_from_state(ckpt["tokenizer"]) if ckpt.get("tokenizer") else None
    return model.to(device).eval(), cfg, tok
