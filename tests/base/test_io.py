"""Atomic writes: all-or-nothing, no temp files left behind, ordinary permissions; the file hash."""
import errno
import hashlib
import os
import stat

import pytest
import torch

from pfd.errors import UserError
from pfd.io import DiskFullError, atomic_path, atomic_save, atomic_write, sha256_file


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


KILLED_WRITER = """
import sys, time
from pathlib import Path
from pfd.io import atomic_write

def write(f):
    f.write(b"half of a big file")
    f.flush()
    Path(sys.argv[2]).touch()  # tell the test the temp file exists
    time.sleep(600)

atomic_write(sys.argv[1], write)
"""


def _start_writer(target, ready):
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target), str(ready)])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def test_a_killed_writers_temp_file_is_removed_at_the_next_write(tmp_path):
    """A real `kill -9` mid-write leaves a temp file; the next write of that file removes it, but never
    the temp file of a writer that is still running."""
    target = tmp_path / "last.pth"
    target.write_bytes(b"old")
    killed = _start_writer(target, tmp_path / "ready1")
    killed.kill()
    killed.wait()
    orphans = [p.name for p in tmp_path.glob(".last.pth.tmp-*")]
    assert len(orphans) == 1 and str(killed.pid) in orphans[0] and target.read_bytes() == b"old"

    alive = _start_writer(target, tmp_path / "ready2")
    try:
        atomic_write(target, lambda f: f.write(b"new"))
        left = [p.name for p in tmp_path.glob(".last.pth.tmp-*")]
        assert target.read_bytes() == b"new" and len(left) == 1 and str(alive.pid) in left[0]
        (tmp_path / "other.txt").write_text("not ours")  # other files are never touched
        atomic_write(target, lambda f: f.write(b"newer"))
        assert (tmp_path / "other.txt").exists() and len(list(tmp_path.glob(".last.pth.tmp-*"))) == 1
    finally:
        alive.kill()
        alive.wait()


class _DiskFills:
    """A file wrapper that fails like a full disk after `room` bytes."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def test_a_full_disk_is_named_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "last.pth"
    path.write_bytes(b"old")
    with pytest.raises(DiskFullError, match=r"last\.pth: the disk is full \(No space left on device; .* MiB free"):
        atomic_write(path, lambda f: _DiskFills(f, 10).write(b"x" * 100))
    with pytest.raises(DiskFullError) as err:  # torch.save wraps the OSError in a RuntimeError of its own
        atomic_write(path, lambda f: torch.save({"w": torch.zeros(10_000)}, _DiskFills(f, 1000)))
    assert isinstance(err.value, UserError) and err.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["last.pth"]


def test_a_really_full_file_system(tmp_path):
    """The same on a real 1 MiB tmpfs (needs the right to mount; skipped otherwise)."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); covered by the simulated full disk above")
    try:
        (mount / "last.pth").write_bytes(b"old")
        with pytest.raises(DiskFullError, match="the disk is full"):
            atomic_save({"w": torch.zeros(1 << 20)}, mount / "last.pth")  # 4 MiB into 1 MiB
        assert (mount / "last.pth").read_bytes() == b"old" and os.listdir(mount) == ["last.pth"]
    finally:
        subprocess.run(["umount", str(mount)], check=True)
