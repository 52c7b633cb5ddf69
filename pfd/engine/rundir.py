"""One training per OUTPUT_DIR: a run already there is never overwritten, two runs never share it.

The trainer calls both before any work starts:
- `refuse_existing_run`: a folder that holds a run (`last.pth`, `best.pth`, `epoch_NNN.pth`,
  `metrics.jsonl`) is refused unless the training resumes, with a message offering `--resume` or a
  new OUTPUT_DIR (nothing is ever deleted: to start over, the user moves or removes the old run);
- `RunLock.acquire`: OUTPUT_DIR/train.lock is held (an exclusive `flock`, which the kernel drops when the holder
  dies, even by SIGKILL) until `RunLock.release()`; it records the holder's pid, host and start time.
  A second training into the folder is refused naming that holder. A lock file left by a killed run
  is stale (nobody holds the flock): it is taken over with a warning naming the dead pid.
Under DDP only rank 0 takes the lock.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from ..errors import UserError

__all__ = ["LOCK_FILE", "OutputDirInUseError", "RunLock", "existing_run", "refuse_existing_run"]

LOCK_FILE = "train.lock"
RUN_PATTERNS = ("last.pth", "best.pth", "epoch_*.pth", "metrics.jsonl")

log = logging.getLogger("pfd")


class OutputDirInUseError(UserError):
    """OUTPUT_DIR holds a finished or running training."""


def existing_run(output_dir: str | os.PathLike) -> list[str]:
    """Names of the files of an earlier run in `output_dir` (sorted; empty when there is none)."""
    folder = Path(output_dir)
    return sorted({p.name for pattern in RUN_PATTERNS for p in folder.glob(pattern) if p.is_file()})


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _holder(text: str) -> dict:
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict) -> str:
    if not info:
        return "holder unknown"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid')} on {info.get('host')}, started {started}"


class RunLock:
    """An exclusive lock on OUTPUT_DIR/train.lock; `release()` (idempotent) removes the file."""

    def __init__(self, path: Path, file):
        self.path = path
        self._file = file  # the open lock file: closing it (or the process dying) drops the flock

    @classmethod
    def acquire(cls, path: Path) -> "RunLock":
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            file = open(path, "a+")
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = _describe(_holder(file.read()))
                file.close()
                raise OutputDirInUseError(
                    f"OUTPUT_DIR {path.parent} is in use by another training ({holder}; lock {path}); wait for "
                    "it to end or train into another OUTPUT_DIR") from None
            try:  # the holder may have released (removed the file) between our open and flock: retry
                same = os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            file.close()
        file.seek(0)
        previous = _holder(file.read())
        if previous:
            pid = previous.get("pid")
            dead = previous.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_running(pid)
            log.warning("%s: taking over a stale lock left by a training that ended without releasing it (%s%s)",
                        path, _describe(previous), ", no longer running" if dead else "")
        file.seek(0)
        file.truncate()
        file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
        file.flush()
        return cls(path, file)

    def release(self) -> None:
        if self._file.closed:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self._file.fileno()).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self._file.close()


def refuse_existing_run(output_dir: str | os.PathLike) -> None:
    """An error offering --resume or a new OUTPUT_DIR when `output_dir` holds a run."""
    found = existing_run(output_dir)
    if found:
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
        raise OutputDirInUseError(
            f"OUTPUT_DIR {output_dir} already holds a run ({shown}); continue it with --resume "
            "(MODEL.RESUME auto), or train into a new OUTPUT_DIR. Nothing was written.")
