"""A full disk under every command that writes (issue 23): the command ends with one `error:` line
naming the file it could not write and saying the disk is full, exit status 2, no traceback, and the
output folder holds only whole files (no temp file, no half-written checkpoint, index or picture).

Each command runs as a real process on a tmpfs of a few pages, so its log file is closed before the
unmount and the exit status is the script's own. Root only (`mount`); elsewhere the tests skip,
saying so.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from pfd.engine.trainer import Trainer

from engine_tiny import (
    DEMO_CONFIG,
    SMALL_SYNTHETIC,
    load_script,
    reference_layout,
    run_python,
    tiny_config,
    tiny_opts,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root_with_index(data_root) -> Path:
    """The tiny data with an (untrained) checkpoint of ours, its reference-layout copy and a flat index."""
    trainer = Trainer(tiny_config(data_root, data_root / "run", "TEST.EVAL", "false"))
    trainer.save(0, improved=False)
    torch.save({"state_dict": reference_layout(trainer.model.state_dict())}, data_root / "reference.pth")
    load_script("query").main(["index", "--config", str(DEMO_CONFIG), "--weights", str(data_root / "run" / "last.pth"),
                               "--gallery", str(data_root / "synthetic" / "bounding_box_test"), "--out",
                               str(data_root / "index"), *tiny_opts(data_root, data_root / "run")])
    return data_root


def argv(name: str, root: Path, out: Path) -> list[str]:
    """The command line of command `name` writing its output under `out` (a folder on the full disk)."""
    weights, opts = str(root / "run" / "last.pth"), tiny_opts(root, out)
    return {
        "synthetic": ["-m", "pfd.data.synthetic", "--out", str(out / "data"), *SMALL_SYNTHETIC],
        "occlude": ["-m", "pfd.data.occlude", "--dataset", f"folder:{root / 'synthetic'}", "--out", str(out / "occ")],
        "pose": ["-m", "pfd.pose", "--config", str(DEMO_CONFIG), *opts, "MODEL.POSE_CACHE_DIR", str(out)],
        "train": ["train.py", "--config", str(DEMO_CONFIG), *opts, "SOLVER.MAX_EPOCHS", "1"],
        "test": ["test.py", "--config", str(DEMO_CONFIG), *opts, "TEST.WEIGHT", weights],
        "compare": ["-m", "pfd.compare", "--config", str(DEMO_CONFIG), "--out", str(out), *opts,
                    "SOLVER.MAX_EPOCHS", "1"],
        "export": ["-m", "pfd.export", "--weights", weights, "--out", str(out / "model.onnx")],
        "convert": ["-m", "pfd.model.convert", str(root / "reference.pth"), str(out / "ours.pth")],
        "index": ["query.py", "index", "--config", str(DEMO_CONFIG), "--weights", weights, "--gallery",
                  str(root / "synthetic" / "bounding_box_test"), "--out", str(out), *tiny_opts(root, root / "run")],
        "search": ["query.py", "search", "--index", str(root / "index"), "--image",
                   str(next((root / "synthetic" / "query").glob("*.jpg"))), "--out", str(out / "search.png")],
    }[name]


def assert_whole(folder: Path) -> None:
    """Everything left under `folder` is whole: no temp file, and each JSON, picture and checkpoint reads."""
    for path in folder.rglob("*"):
        assert ".tmp" not in path.name and ".old-" not in path.name, path
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            Image.open(path).load()
        elif path.suffix == ".pth":
            torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix in (".onnx", ".faiss", ".npz"):
            raise AssertionError(f"{path}: a {path.suffix} file cannot be whole on a disk too small for it")


@pytest.mark.parametrize("name", ["synthetic", "occlude", "pose", "test", "compare", "export", "convert", "index",
                                  "search"])
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_only_whole_files(name, root_with_index, mount_tmpfs):
    full = mount_tmpfs("size=16k")
    out = full / "out"
    done = run_python(*argv(name, root_with_index, out))
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "the disk is full" in last and str(out) in last, done.stderr
    assert "Traceback" not in done.stderr and "seek of closed file" not in done.stderr
    assert_whole(full)


def test_the_synthetic_generator_leaves_nothing_on_a_full_disk(mount_tmpfs):
    full = mount_tmpfs("size=16k")
    done = run_python("-m", "pfd.data.synthetic", "--out", str(full / "data"), *SMALL_SYNTHETIC)
    assert done.returncode == 2
    assert list(full.iterdir()) == []  # the half-rendered temp folder is gone


def test_the_pose_pass_leaves_nothing_on_a_full_disk(root_with_index, mount_tmpfs):
    """No cache, no temp file, and not the cache folder it made (it held only its marker)."""
    full = mount_tmpfs("size=16k")
    done = run_python(*argv("pose", root_with_index, full / "cache"))
    assert done.returncode == 2
    assert list(full.iterdir()) == []


def test_training_on_a_full_disk_names_last_pth(root_with_index, mount_tmpfs):
    """train.py (the parametrized test's rules, plus): with a few more pages the checkpoint write is what
    fails; it is named, and no checkpoint is left."""
    full = mount_tmpfs("size=64k")
    out = full / "run"
    done = run_python(*argv("train", root_with_index, out))
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "the disk is full" in last and str(out / "last.pth") in last
    assert "Traceback" not in done.stderr
    assert_whole(full)
    assert not list(out.glob("*.pth"))
