"""One writer per run directory: ``out/run.lock`` says who is training there.

Two runs started with the same ``--out`` would both write ``ckpt.pt`` and ``metrics.jsonl``: the
first run's weights are lost and the log interleaves both. ``RunLock(out)`` stops the second run
before it touches anything, with a message naming the holder::

    with RunLock("runs/armd"):        # ValueError if another process trains there
        ...                           # the lock is released on exit, also on an error or Ctrl-C

How it works. The lock is an operating-system lock (``fcntl.flock``) on ``out/run.lock``, held as
long as the process keeps the file open. The kernel drops it when the process ends in any way
(exit, crash, ``kill -9``), so a lock can never be left behind by a dead run: a later run simply
takes it. The file's text records the holder (PID, host, start time, command line); it is only
read for messages. A run that ends normally removes the file; one that is killed leaves it, a
*stale* record whose lock is free: the next run says so ("... has ended ... without releasing it")
and takes over. Locks are per directory, so runs in different directories never wait for each other.

Limits: ``flock`` is advisory (it stops minarmd runs, not ``rm``) and on some network file systems
it is local to one machine; where ``fcntl`` is missing (Windows) the lock is an exclusively created
file instead, and a stale one is detected by its PID when it names this host.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["LOCK_NAME", "RunLock"]

LOCK_NAME = "run.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: "does it exist?", sends nothing
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _describe(info: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (f"PID {info.get('pid', '?')} on host {info.get('host', '?')}, started {started}"
            f"{': ' + info['command'] if info.get('command') else ''}")


class RunLock:
    """An exclusive lock on a run directory, released on ``release()`` or at the end of a ``with`` block."""

    def __init__(self, out: str | os.PathLike):
        self.out, self.path, self._file, self.took_over = Path(out), Path(out) / LOCK_NAME, None, None

    def _record(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _busy(self, info: dict) -> ValueError:
        return ValueError(f"--out {self.out} is in use by another run ({_describe(info)}); its lock is "
                          f"{self.path}. Wait for it to finish, or choose another --out")

    def acquire(self) -> "RunLock":
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {self.out} is a file, not a directory: choose a directory for the run")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o644)
        except FileExistsError:  # no fcntl: the file itself is the lock
            info = self._record()
            if info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid", -1))):
                self.path.unlink(missing_ok=True)
                self.took_over = info
                return self.acquire()
            raise self._busy(info) from None
        except OSError as err:
            raise ValueError(f"--out {self.out}: cannot write there ({err.strerror}): choose a directory "
                             f"you can write to") from None
        f = os.fdopen(fd, "r+")
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by a live process
                info = self._record()
                f.close()
                raise self._busy(info) from None
            if not self.path.exists() or os.stat(self.path).st_ino != os.fstat(f.fileno()).st_ino:
                f.close()  # the holder released and removed the file between our open and our lock
                return self.acquire()
            previous = self._record()
            if previous:  # the lock was free, so whoever this names has ended
                self.took_over = previous
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(sys.argv)}
        f.seek(0)
        f.truncate()
        f.write(json.dumps(info))
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is None:
            return
        # remove the file while still holding the lock (a run that opened it meanwhile sees, once it
        # gets the lock, that the name no longer points to its file, and starts over), then unlock
        self.path.unlink(missing_ok=True)
        self._file.close()  # closing drops the flock
        self._file = None

    def stale_note(self) -> str | None:
        """A sentence about the stale record this lock replaced (a run that ended without releasing), or None."""
        if not self.took_over:
            return None
        return (f"note: {self.path} named a run that has ended ({_describe(self.took_over)}) without "
                f"releasing it (killed or crashed?); this run takes over the directory")

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
