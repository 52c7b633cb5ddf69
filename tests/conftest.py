"""Shared test fixtures. Tests never touch the network; only `cuda`-marked tests touch a GPU, and they
skip where CUDA is absent (run them with `pytest -m cuda`, as bench/gpu_check.sh does)."""
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CUHK03 = SHARED / "data" / "cuhk03"
FIXTURES = SHARED / "fixtures"

torch.set_num_threads(2)


def pytest_collection_modifyitems(config, items):
    """Skip the `cuda`-marked tests, with the reason, on a machine without CUDA."""
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


@pytest.fixture
def single_faiss_thread():
    """FAISS's OpenMP threads spin-wait; on 2 shared cores that turns 0.1 s into 10 s. Tiny data needs one."""
    import faiss
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
