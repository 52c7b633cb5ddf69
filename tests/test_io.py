"""Atomic writes: all-or-nothing, no temp files left behind, ordinary permissions; the file hash."""
import hashlib
import os
import stat

import pytest

from pfd.io import atomic_path, atomic_write, sha256_file


def test_replaces_with_normal_permissions(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    old = os.umask(0o022)
    try:
        atomic_write(path, lambda f: f.write(b"new"))
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert os.listdir(path.parent) == ["metrics.json"]


def test_failure_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "index.faiss"
    path.write_bytes(b"old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["index.faiss"]


def test_sha256_file_hashes_the_whole_content(tmp_path):
    path = tmp_path / "ckpt.pth"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:1_500_000] + b"x" + data[1_500_001:])  # an edit in the middle changes it
    assert sha256_file(path) != hashlib.sha256(data).hexdigest()
