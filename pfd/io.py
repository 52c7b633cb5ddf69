"""Files of every package: crash-safe writing and content hashing.

Every writer of the project (checkpoints, caches, indexes, metrics, plots) writes a temp file in
the target folder, fsyncs it, then `os.replace`s it into place, so a crash leaves either the old
file or the new one, never a half-written one. `sha256_file` is the one content hash of a file
(checkpoint identities, index integrity).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import torch

__all__ = ["atomic_write", "atomic_path", "atomic_save", "sha256_file"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path` for a writer that needs a file name (e.g. faiss.write_index);
    on success it becomes `path` (with the usual umask permissions), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
