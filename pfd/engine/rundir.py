"""One training per OUTPUT_DIR: a run already there is never overwritten, two runs never share it.

The trainer claims OUTPUT_DIR first (`claim_run_dir`, pfd.io's guard: a new or empty folder, or one
holding a run of ours; a user's folder with files in it is refused), then, before any work starts:
- `refuse_existing_run`: a folder that holds a run (`last.pth`, `best.pth`, `epoch_NNN.pth`,
  `metrics.jsonl`) is refused unless the training resumes, with a message offering `--resume` or a
  new OUTPUT_DIR (or `--replace`, below; nothing is deleted otherwise);
- `RunLock.acquire`: OUTPUT_DIR/train.lock is held (an exclusive `flock`, which the kernel drops when the holder
  dies, even by SIGKILL) until `RunLock.release()`; it records the holder's pid, host and start time.
  A second training into the folder is refused naming that holder. A lock file left by a killed run
  is stale (nobody holds the flock): it is taken over with a warning naming the dead pid.
Under DDP only rank 0 takes the lock.

`--replace` (`replace_run`) starts over in a run folder of ours: under the lock, the earlier run's
files are deleted, only when every file in the folder is one a run or its evaluation writes
(`RUN_FILES`); a file of the user's in it refuses the replacement, naming it. test.py claims its
OUTPUT_DIR with `claim_eval_dir`: an evaluation folder, or a run folder (it evaluates beside the run).
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from ..errors import OutputExistsError, UserError
from ..io import OUTPUT_MARKER, claim_output_dir, foreign_entries, output_kind, remove_inside

__all__ = ["LOCK_FILE", "OutputDirInUseError", "RunLock", "claim_eval_dir", "claim_run_dir", "existing_run",
           "refuse_existing_run", "replace_run"]

LOCK_FILE = "train.lock"
RUN_PATTERNS = ("last.pth", "best.pth", "epoch_*.pth", "metrics.jsonl")
# test.py's, per test set: the report with its pictures and the run's curves copied beside it (tester.write_report)
EVAL_FILES = ("metrics.json", "cmc.png", "ranked_lists.png", "ranked_*.png", "report.html", "training_curves.png",
              "log.txt")
TEMP_FILES = ".*.tmp-*.tmp"  # pfd.io.atomic_write's temp files
RUN_FILES = (*RUN_PATTERNS, LOCK_FILE, TEMP_FILES, *EVAL_FILES,
             *(f"*/{name}" for name in (*EVAL_FILES, TEMP_FILES)))  # + test.py's beside it (per test set)

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
            file = _open_lock(path)
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
                remove_inside(self.path.parent, self.path)
        except FileNotFoundError:
            pass
        self._file.close()


def _open_lock(path: Path):
    """The lock file opened for reading and appending, created when absent; a symbolic link in its place
    is refused rather than followed (the lock is truncated and written)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise OutputDirInUseError(f"{path} is a symbolic link where the run's lock file belongs; remove it, or "
                                  "train into another OUTPUT_DIR") from None
    return os.fdopen(fd, "a+")


def refuse_existing_run(output_dir: str | os.PathLike) -> None:
    """An error offering --resume or a new OUTPUT_DIR when `output_dir` holds a run."""
    found = existing_run(output_dir)
    if found:
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
        raise OutputDirInUseError(
            f"OUTPUT_DIR {output_dir} already holds a run ({shown}); continue it with --resume "
            "(MODEL.RESUME auto), start it over with --replace, or train into a new OUTPUT_DIR. Nothing was written.")


def claim_run_dir(output_dir: str | os.PathLike) -> Path:
    """OUTPUT_DIR as a pfd run folder (pfd.io.claim_output_dir, kind "run"); a folder holding a run of
    an earlier version (no marker yet) is adopted."""
    return claim_output_dir(output_dir, "run", adopt=lambda folder: bool(existing_run(folder)),
                            hint="train into a new or empty OUTPUT_DIR")


def _older_eval(folder: Path) -> bool:
    """An evaluation folder of an earlier version: only test.py's files, and a metrics.json of ours."""
    records = list(folder.glob("metrics.json")) + list(folder.glob("*/metrics.json"))
    return bool(records) and not foreign_entries(folder, EVAL_FILES + tuple(f"*/{f}" for f in EVAL_FILES)) and all(
        '"provenance"' in path.read_text(errors="replace") for path in records)


def claim_eval_dir(output_dir: str | os.PathLike) -> Path:
    """test.py's OUTPUT_DIR: an evaluation folder (kind "eval") or a run folder of ours, where it
    evaluates beside the run (an unmarked run of an earlier version is adopted as a run)."""
    if output_kind(output_dir) is None and existing_run(output_dir):
        return claim_run_dir(output_dir)
    return claim_output_dir(output_dir, "eval", shares=("run",), adopt=_older_eval,
                            hint="evaluate into a new or empty OUTPUT_DIR")


def refuse_foreign_files(output_dir: Path) -> None:
    """An OutputExistsError naming the files in `output_dir` that no run wrote (`--replace` keeps them)."""
    foreign = foreign_entries(output_dir, RUN_FILES)
    if foreign:
        shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
        raise OutputExistsError(f"--replace: OUTPUT_DIR {output_dir} holds files no training wrote ({shown}); "
                                "nothing was replaced: move them out, or train into a new OUTPUT_DIR")


def replace_run(output_dir: Path) -> list[str]:
    """Delete the earlier run in `output_dir` (a run folder of ours, whose lock the caller holds):
    every file but the lock and the marker, then the emptied sub-folders; returns the deleted paths.
    A symbolic link in it is a foreign entry (refused), and no removal follows one (pfd.io.remove_inside)."""
    refuse_foreign_files(output_dir)
    deleted = []
    for dirpath, dirnames, filenames in os.walk(output_dir, topdown=False):  # files before their folders
        folder = Path(dirpath)
        for name in filenames:
            rel = (folder / name).relative_to(output_dir).as_posix()
            if rel not in (LOCK_FILE, OUTPUT_MARKER):
                remove_inside(output_dir, folder / name)
                deleted.append(rel)
        for name in dirnames:
            remove_inside(output_dir, folder / name)  # when emptied
    return sorted(deleted)
