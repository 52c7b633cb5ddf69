"""Shared test fixtures. Tests never touch the network; only `cuda`-marked tests touch a GPU, and they
skip where CUDA is absent (run them with `pytest -m cuda`, as bench/gpu_check.sh does)."""
import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CUHK03 = SHARED / "data" / "cuhk03"
FIXTURES = SHARED / "fixtures"

# Two cores: one torch thread per pytest-xdist worker (`make test` runs two) and per process it starts
# (OMP_NUM_THREADS is inherited); both threads for a serial run.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


def pytest_collection_modifyitems(config, items):
    """Files holding `slow`-marked tests first (pytest-xdist hands out whole files in this order, so the
    long ones start early and the two workers end together); skip the `cuda`-marked tests, with the
    reason, on a machine without CUDA."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file keeps its own order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: run `pytest -m cuda` on a GPU machine (bench/gpu_check.sh)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


def require(path: Path) -> Path:
    """Skip (with the reason) when the team-only ../shared folder is absent, e.g. for users."""
    if not path.exists():
        pytest.skip(f"{path} is not present (it ships only with the team's ../shared folder)")
    return path


@pytest.fixture(scope="session")
def cuhk03_root() -> Path:
    return require(CUHK03)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return require(FIXTURES)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, request) -> Path:
    """DATASETS.ROOT_DIR holding the tiny synthetic set (engine_tiny.make_data): generated once per session,
    copied once per module, so each module's runs, pose cache and indexes sit beside a copy of its own."""
    from engine_tiny import make_data  # imported on first use, as the modules did: conftest loads no pfd module
    return make_data(tmp_path_factory.mktemp(request.module.__name__))


@pytest.fixture
def single_faiss_thread():
    """FAISS's OpenMP threads spin-wait; on 2 shared cores that turns 0.1 s into 10 s. Tiny data needs one."""
    import faiss
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount_tmpfs(options) -> a fresh tmpfs mounted with `options`; unmounted after the test."""
    mounted = []

    def mount(options: str) -> Path:
        where = tmp_path / f"mount{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): the read-only and "
                        "full-disk cases need one (root ignores permission bits)")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=True)
