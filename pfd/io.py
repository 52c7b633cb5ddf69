"""Files of every package: crash-safe writing and content hashing.

Every writer of the project (checkpoints, caches, indexes, metrics, plots) writes a temp file in
the target folder, fsyncs it, then `os.replace`s it into place, so a crash leaves either the old
file or the new one, never a half-written one. A temp file is named after its target, host and
process (`.NAME.tmp-HOST-PID-XXXX.tmp`): one orphaned by a killed writer is removed at the next write
of the same target (only when its process is gone; a live writer's temp file is never touched).
A full disk is reported as `DiskFullError`, naming the file. `sha256_file` is the one content hash of
a file (checkpoint identities, index integrity, keypoint files).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import torch

from .errors import UserError

__all__ = ["DiskFullError", "atomic_write", "atomic_path", "atomic_save", "sha256_file"]

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(UserError, OSError):
    """No space left (or quota exceeded) while writing a file; the old file is unchanged."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def remove_orphaned_temps(path: Path) -> list[Path]:
    """Delete temp files of `path` left by writers of this host whose process is gone; returns them."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.tmp-(?P<host>.+)-(?P<pid>\d+)-[^-]*\.tmp$")
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.tmp-*.tmp"):
        match = pattern.match(candidate.name)
        if match and match["host"] == socket.gethostname() and _process_gone(int(match["pid"])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _disk_full(err: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT OSError behind `err` (torch.save wraps it in a RuntimeError), if any."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in _FULL:
            return err
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path` for a writer that needs a file name (e.g. faiss.write_index);
    on success it becomes `path` (with the usual umask permissions), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as err:
        full = _disk_full(err)
        if full is None:
            raise
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free / 2 ** 20
        error = DiskFullError(f"{path}: the disk is full ({full.strerror}; {free:.0f} MiB free in {path.parent}); "
                              "nothing was replaced. Free some space or write elsewhere")
        error.errno = full.errno
        raise error from err
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(binary_file)` on a temp file next to `path`, then move it into place atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save through `atomic_write`: never a half-written checkpoint."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file's whole content, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
