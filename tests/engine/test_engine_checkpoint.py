"""Checkpoint files: atomic replacement, weights_only loading, RNG round trip, resume path resolution."""
import random

import numpy as np
import pytest
import torch

from pfd.engine.checkpoint import resolve_resume, rng_state, set_rng_state
from pfd.inference.checkpoint import load_checkpoint
from pfd.io import atomic_save


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pth"
    atomic_save({"epoch": 1, "w": torch.ones(3)}, path)
    with pytest.raises(Exception):
        atomic_save({"epoch": 2, "bad": lambda: None}, path)  # unpicklable: fails mid-write
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temp file left behind


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    atomic_save({"rng": rng_state()}, tmp_path / "rng.pth")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "rng.pth")["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_resolve_resume(tmp_path):
    assert resolve_resume("", tmp_path) is None
    assert resolve_resume("auto", tmp_path) is None  # nothing to resume yet: start fresh
    atomic_save({}, tmp_path / "last.pth")
    assert resolve_resume("auto", tmp_path) == tmp_path / "last.pth"
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        resolve_resume(str(tmp_path / "missing.pth"), tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint(tmp_path / "missing.pth")
