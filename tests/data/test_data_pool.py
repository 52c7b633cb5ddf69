"""Several training sets in DATASETS.NAMES (e.g. cuhk03,cuhk01): pooled identities and cameras."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pfd.config import load_config
from pfd.data.datasets import DatasetError, build_dataset
from pfd.data.sets import load_training_set
from pfd.engine.evaluator import prepare_test_sets


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for name in names:
        Image.fromarray(np.full((32, 16, 3), 128, np.uint8)).save(folder / name)


@pytest.fixture
def root(tmp_path) -> Path:
    """ROOT_DIR with cuhk03 (train ids 1-3 on cameras 1-2, test ids 10-11) and cuhk01 (train-only, ids 1-2)."""
    _images(tmp_path / "cuhk03" / "bounding_box_train", [f"000{p}_c{c}s1_0000{c}_00.jpg" for p in (1, 2, 3)
                                                         for c in (1, 2)])
    _images(tmp_path / "cuhk03" / "query", ["0010_c1s1_000001_00.jpg", "0011_c1s1_000001_00.jpg"])
    _images(tmp_path / "cuhk03" / "bounding_box_test", ["0010_c2s1_000002_00.jpg", "0011_c2s1_000002_00.jpg"])
    _images(tmp_path / "cuhk01" / "bounding_box_train", [f"200{p}_c{c}s1_0000{c}_00.jpg" for p in (1, 2)
                                                         for c in (1, 2, 3)])
    return tmp_path


def config(root: Path, names: str, test_names: str = "cuhk03"):
    return load_config(None, ["DATASETS.ROOT_DIR", str(root), "DATASETS.NAMES", names, "DATASETS.TEST_NAMES",
                              test_names, "MODEL.POSE_ONLINE", "true",
                              "SOLVER.IMS_PER_BATCH", "8"])  # 2 ids x 4: the tiny pool holds 5 ids


def test_a_training_only_set_parses_without_query_or_gallery(root):
    ds = build_dataset("cuhk01", root)
    assert len(ds.train) == 6 and ds.query == [] and ds.gallery == [] and ds.num_train_pids == 2


def test_pooled_training_keeps_identities_and_cameras_apart(root):
    ds, keypoints = load_training_set(config(root, "cuhk03, cuhk01"))
    assert keypoints is None  # online poses: no table
    assert ds.num_train_pids == 5 and ds.num_cameras == 5  # 3 + 2 ids, cameras 0-1 then 2-4
    by_source = {r.path.split("/")[-3]: set() for r in ds.train}
    for r in ds.train:
        by_source[r.path.split("/")[-3]].add((r.pid, r.camid))
    assert {p for p, _ in by_source["cuhk03"]} == {0, 1, 2} and {c for _, c in by_source["cuhk03"]} == {0, 1}
    assert {p for p, _ in by_source["cuhk01"]} == {3, 4} and {c for _, c in by_source["cuhk01"]} == {2, 3, 4}
    assert [r.path for r in ds.query] == [r.path for r in build_dataset("cuhk03", root).query]
    single, _ = load_training_set(config(root, "cuhk03"))
    assert single.train == build_dataset("cuhk03", root).train


def test_a_training_only_set_cannot_be_a_test_set(root):
    with pytest.raises(DatasetError, match="DATASETS.TEST_NAMES"):
        prepare_test_sets(config(root, "cuhk03,cuhk01", test_names="cuhk03,cuhk01"))
