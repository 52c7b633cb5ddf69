"""pfd.data.occlude: occluded copies of Market-layout datasets, on a handful of generated images."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pfd.data.datasets import build_dataset
from pfd.data.occlude import (
    MANIFEST_FILE,
    OccludeConfig,
    box_mask,
    build_occluded,
    hidden_keypoints,
    read_manifest,
    read_mask,
)
from pfd.data.occlude.__main__ import main
from pfd.errors import InvalidInputError, OutputExistsError

H, W = 128, 64


def _write(path: Path, seed: int) -> None:
    """A smooth picture (colour gradients), so JPEG re-encoding changes it little outside an occluder."""
    start, end = np.random.default_rng(seed).integers(30, 225, (2, 1, 1, 3))
    ramp = np.linspace(0, 1, H)[:, None, None] * np.ones((1, W, 1))
    Image.fromarray((start + (end - start) * ramp).astype(np.uint8)).save(path, "JPEG", quality=90)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A Market-layout set: training ids 1-4 and 10 (10 is also a test id), test ids 10-13 on two cameras."""
    root = tmp_path_factory.mktemp("src") / "tiny"
    names = {"bounding_box_train": [f"{pid:04d}_c{c}s1_00000{c}_00.jpg" for pid in (1, 2, 3, 4, 10) for c in (1, 2)],
             "query": [f"{pid:04d}_c1s1_000001_00.jpg" for pid in range(10, 14)],
             "bounding_box_test": [f"{pid:04d}_c2s1_00000{k}_00.jpg" for pid in range(10, 14) for k in (2, 3)]}
    seed = 0
    for folder, files in names.items():
        (root / folder).mkdir(parents=True)
        for name in files:
            _write(root / folder / name, seed)
            seed += 1
    return root


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_writes_a_market_layout_copy_with_occluded_queries_and_the_original_gallery(source, tmp_path):
    out = tmp_path / "occ"
    summary = build_occluded(f"folder:{source}", ".", out, OccludeConfig(seed=3))
    assert summary["queries"] == 4
    ds = build_dataset(f"folder:{out}", ".")
    assert len(ds.query) == 4 and len(ds.gallery) == 8 and len(ds.train) == 10
    for name in ("bounding_box_test", "bounding_box_train"):
        for f in (source / name).iterdir():
            assert (out / name / f.name).read_bytes() == f.read_bytes()
    manifest = read_manifest(out)
    assert sorted(manifest) == sorted(f"query/{f.name}" for f in (source / "query").iterdir())
    for rel, entry in manifest.items():
        original = np.asarray(Image.open(source / rel), np.float32)
        occluded = np.asarray(Image.open(out / rel), np.float32)
        mask = read_mask(out, entry)
        assert mask.shape == (H, W) and entry["fraction"] == pytest.approx(mask.mean(), abs=1e-4)
        assert 0.19 <= entry["fraction"] <= 0.61
        x0, y0, x1, y1 = entry["box"]
        assert mask[y0:y1, x0:x1].sum() == mask.sum()  # the box holds the whole mask
        # pixels change under the occluder (JPEG noise aside) and nowhere else
        change = np.abs(occluded - original).mean(axis=2)
        assert change[~mask].mean() < 6 and change[mask].mean() > change[~mask].mean() + 10


def test_person_occluders_come_from_other_identities(source, tmp_path):
    out = tmp_path / "occ"
    build_occluded(f"folder:{source}", ".", out, OccludeConfig(kinds=("person",), seed=0))
    manifest = read_manifest(out)
    assert {e["kind"] for e in manifest.values()} == {"person"}
    for rel, entry in manifest.items():
        assert entry["source"].startswith("bounding_box_train/")
        assert Path(entry["source"]).name[:4] != Path(rel).name[:4]  # never the query's own identity
        assert entry["placement"] in ("left", "right")
        x0, _, x1, _ = entry["box"]
        assert x0 == 0 or x1 == W  # enters from a side


def test_kinds_are_selectable(source, tmp_path):
    for kind in ("object", "patch"):
        build_occluded(f"folder:{source}", ".", tmp_path / kind, OccludeConfig(kinds=(kind,)))
        assert {e["kind"] for e in read_manifest(tmp_path / kind).values()} == {kind}


def test_same_seed_same_bytes_other_seed_other_bytes(source, tmp_path):
    first, again, other = (tmp_path / n for n in ("a", "b", "c"))
    build_occluded(f"folder:{source}", ".", first, OccludeConfig(seed=7))
    build_occluded(f"folder:{source}", ".", again, OccludeConfig(seed=7))
    build_occluded(f"folder:{source}", ".", other, OccludeConfig(seed=8))
    assert _digests(first) == _digests(again)
    assert _digests(first)[MANIFEST_FILE] != _digests(other)[MANIFEST_FILE]


def test_refuses_a_folder_it_did_not_make_and_replaces_its_own_only_with_force(source, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a folder made by pfd.data.occlude"):
        build_occluded(f"folder:{source}", ".", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    ours = tmp_path / "ours"
    build_occluded(f"folder:{source}", ".", ours, OccludeConfig(seed=1))
    with pytest.raises(OutputExistsError, match="--force"):
        build_occluded(f"folder:{source}", ".", ours, OccludeConfig(seed=2))
    build_occluded(f"folder:{source}", ".", ours, OccludeConfig(seed=2), force=True)
    assert json.loads((ours / MANIFEST_FILE).read_text())["config"]["seed"] == 2
    assert not list(tmp_path.glob("*.tmp-*"))  # no temp folder left behind
    (ours / "query" / "notes.txt").write_text("mine")  # a user's file inside our folder: --force refuses
    with pytest.raises(OutputExistsError, match=r"query/notes\.txt"):
        build_occluded(f"folder:{source}", ".", ours, OccludeConfig(seed=3), force=True)
    assert (ours / "query" / "notes.txt").read_text() == "mine"
    assert json.loads((ours / MANIFEST_FILE).read_text())["config"]["seed"] == 2


def test_bad_settings_are_user_errors_with_exit_status_2(source, tmp_path, capsys):
    with pytest.raises(InvalidInputError, match="kinds"):
        OccludeConfig(kinds=("person", "ghost")).validate()
    with pytest.raises(InvalidInputError, match="coverage"):
        OccludeConfig(coverage=(0.6, 0.2)).validate()
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", f"folder:{source}", "--out", str(tmp_path / "x"), "--coverage", "half"])
    assert exit_info.value.code == 2 and "--coverage" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_hidden_keypoints_are_those_on_the_mask():
    mask = box_mask([0, 64, 64, 128], (H, W))  # the lower half
    keypoints = np.zeros((2, 17, 3), np.float32)
    keypoints[0, :, 1] = np.linspace(0, 127, 17)  # head to feet down the left edge
    keypoints[1, :, :2] = [[-5, 100]] * 8 + [[70, 100]] * 8 + [[10.4, 63.6]]  # outside the crop; rounds to row 64
    hidden = hidden_keypoints(keypoints, mask)
    assert hidden.shape == (2, 17)
    np.testing.assert_array_equal(hidden[0], keypoints[0, :, 1] >= 63.5)
    np.testing.assert_array_equal(hidden[1], [False] * 16 + [True])
