"""Shared test fixtures. Tests never touch the network or a GPU."""
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CUHK03 = SHARED / "data" / "cuhk03"
FIXTURES = SHARED / "fixtures"

torch.set_num_threads(2)


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
