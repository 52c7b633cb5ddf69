"""Keypoint cache: built once, reused without calling the estimator, stale entries recomputed;
backend choice; `python -m pfd.pose` on a generated synthetic dataset."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pfd.config import ConfigError, load_config
from pfd.data.datasets import ImageRecord
from pfd.errors import InvalidInputError, MissingFileError
from pfd.pose.base import PoseEstimator
from pfd.pose.cache import KeypointTable, cache_path, load_or_build
from pfd.pose.estimator import build_estimator, resolve_backend
from pfd.pose.formats import read_cache_npz, write_cache_npz


class CountingEstimator(PoseEstimator):
    """Keypoints derived from the pixels (so a changed image gives changed keypoints); counts images seen."""

    name = "counting"

    def __init__(self, identity="counting-v1"):
        self.identity = identity
        self.seen = 0

    def predict(self, images):
        self.seen += len(images)
        means = np.array([np.asarray(img, np.float32).mean() for img in images], np.float32)
        kps = np.zeros((len(images), 17, 3), np.float32)
        kps[:, :, 0] = means[:, None]
        kps[:, :, 1] = np.arange(17)
        kps[:, :, 2] = (means[:, None] > 10).astype(np.float32)  # a black image: "no person"
        return kps


def write_image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 32), (value, value, value)).save(path)


@pytest.fixture
def dataset(tmp_path):
    records = []
    for i, split in enumerate(["bounding_box_train"] * 3 + ["query", "bounding_box_test"]):
        path = tmp_path / "data" / split / f"{i + 1:04d}_c1s1_000001_00.jpg"
        write_image(path, 0 if i == 4 else 40 * (i + 1))
        records.append(ImageRecord(str(path), i, 0))
    cfg = load_config(None, ["MODEL.POSE_CACHE_DIR", str(tmp_path / "cache")])
    return cfg, records


def test_built_once_then_reused_without_estimator_calls(dataset):
    cfg, records = dataset
    estimator = CountingEstimator()
    table = load_or_build(cfg, records, "tiny", backend=estimator)
    assert estimator.seen == 5 and len(table) == 5 and isinstance(table, KeypointTable)
    assert table.detection_rate == pytest.approx(0.8)  # the black image has no person
    np.testing.assert_allclose(table[records[1].path][:, 0], 80.0)
    assert cache_path(cfg, "tiny", "counting").is_file()

    fresh = CountingEstimator()
    again = load_or_build(cfg, records, "tiny", backend=fresh)
    assert fresh.seen == 0
    for record in records:
        np.testing.assert_array_equal(again[record.path], table[record.path])


def test_changed_image_is_recomputed_and_other_splits_are_kept(dataset):
    cfg, records = dataset
    load_or_build(cfg, records, "tiny", backend=CountingEstimator())
    changed = records[2].path
    write_image(Path(changed), 200)
    os.utime(changed, ns=(1, 1))  # a different mtime even on coarse file systems
    estimator = CountingEstimator()
    table = load_or_build(cfg, records[2:4], "tiny", backend=estimator)  # a subset: test.py's query
    assert estimator.seen == 1
    np.testing.assert_allclose(table[changed][:, 0], 200.0)
    assert set(table) == {records[2].path, records[3].path}
    meta, arrays = read_cache_npz(cache_path(cfg, "tiny", "counting"))
    assert len(arrays["paths"]) == 5 and meta["identity"] == "counting-v1"  # train entries still cached

    other = CountingEstimator(identity="counting-v2")  # e.g. other weights: everything is stale
    load_or_build(cfg, records, "tiny", backend=other)
    assert other.seen == 5


def test_missing_image_is_named(dataset, tmp_path):
    cfg, records = dataset
    ghost = ImageRecord(str(tmp_path / "data" / "query" / "ghost.jpg"), 0, 0)
    with pytest.raises(FileNotFoundError, match="ghost.jpg"):
        load_or_build(cfg, records + [ghost], "tiny", backend=CountingEstimator())


def test_auto_backend_choice(tmp_path):
    image = tmp_path / "synthetic" / "query" / "0001_c1s1_000001_00.jpg"
    write_image(image, 100)
    plain = load_config(None, [])
    assert resolve_backend(plain, None, [str(image)]) == "mediapipe"
    assert resolve_backend(load_config(None, ["MODEL.POSE_FILE", "k.csv"]), None, [str(image)]) == "file"
    (tmp_path / "synthetic" / "keypoints.json").write_text(
        json.dumps({"format": "pfd-keypoints-v1", "root": ".", "keypoints": {}}))
    assert resolve_backend(plain, None, [str(image)]) == "synthetic"
    assert resolve_backend(load_config(None, ["MODEL.POSE_WEIGHT", "w.pth"]), None, [str(image)]) == "hrnet"
    assert resolve_backend(plain, "mediapipe", [str(image)]) == "mediapipe"


def test_backend_mistakes_are_user_errors_naming_the_key(tmp_path):
    image = str(tmp_path / "query" / "0001_c1s1_000001_00.jpg")
    plain = load_config(None, [])
    with pytest.raises(InvalidInputError,
                       match="pose backend must be one of auto, hrnet, mediapipe, learned, file, synthetic"):
        resolve_backend(plain, "openpose", [image])
    with pytest.raises(ConfigError, match="MODEL.POSE_BACKEND file needs MODEL.POSE_FILE"):
        build_estimator(plain, "file", [image])
    with pytest.raises(MissingFileError, match="MODEL.POSE_BACKEND synthetic: no keypoints.json"):
        build_estimator(plain, "synthetic", [image])
    with pytest.raises(ConfigError, match="MODEL.POSE_BACKEND hrnet needs MODEL.POSE_WEIGHT"):
        build_estimator(plain, "hrnet", [image])


def test_cli_caches_a_synthetic_dataset_with_its_ground_truth(tmp_path, capsys):
    from pfd.data.synthetic import SyntheticConfig, generate
    from pfd.pose.__main__ import main

    generate(tmp_path / "synthetic", SyntheticConfig(ids_train=2, ids_test=2, images_per_id=2, cameras=2,
                                                     cameras_per_id=2, distractors=1, junk=0), progress=False)
    opts = ["DATASETS.NAMES", "synthetic", "DATASETS.ROOT_DIR", str(tmp_path),
            "MODEL.POSE_CACHE_DIR", str(tmp_path / "cache")]
    main(opts)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["backend"] == "synthetic" and line["dataset"] == "synthetic"

    truth = json.loads((tmp_path / "synthetic" / "keypoints.json").read_text())["keypoints"]
    assert line["images"] == len(truth)
    meta, arrays = read_cache_npz(line["cache"])
    assert meta["backend"] == "synthetic"
    cached = dict(zip(arrays["paths"].tolist(), arrays["keypoints"]))
    for rel, rows in truth.items():
        rows = np.asarray(rows, np.float32)
        np.testing.assert_array_equal(cached[rel], rows[:, [0, 1, 3]])  # x, y, confidence (last value)


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 not really a zip"], ids=["empty", "corrupt"])
def test_damaged_cache_file_is_rebuilt(dataset, damage):
    cfg, records = dataset
    load_or_build(cfg, records, "tiny", backend=CountingEstimator())
    cache_path(cfg, "tiny", "counting").write_bytes(damage)
    estimator = CountingEstimator()
    table = load_or_build(cfg, records, "tiny", backend=estimator)
    assert estimator.seen == 5 and len(table) == 5


def test_auto_prefers_a_named_pose_file_over_generator_keypoints(tmp_path):
    (tmp_path / "keypoints.json").write_text(json.dumps({"format": "pfd-keypoints-v1", "keypoints": {}}))
    image = tmp_path / "query" / "0001_c1s1_000001_00.jpg"
    cfg = load_config(None, ["MODEL.POSE_FILE", str(tmp_path / "mine.json")])
    assert resolve_backend(cfg, image_paths=[str(image)]) == "file"
    assert resolve_backend(load_config(None), image_paths=[str(image)]) == "synthetic"


def test_unreadable_image_counts_as_no_person_and_the_rest_is_cached(dataset, caplog):
    """One broken file must not cost the pass: it is answered with zeros, listed, and tried again next time."""
    cfg, records = dataset
    broken = Path(records[1].path)
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    estimator = CountingEstimator()
    with caplog.at_level("WARNING", logger="pfd.pose.cache"):
        table = load_or_build(cfg, records, "tiny", backend=estimator)
    assert estimator.seen == 4 and len(table) == 5
    assert not table[str(broken)][:, 2].any()  # "no person"
    np.testing.assert_allclose(table[records[2].path][:, 0], 120.0)
    assert "could not be read" in caplog.text and str(broken) in caplog.text
    _, arrays = read_cache_npz(cache_path(cfg, "tiny", "counting"))
    cached = arrays["paths"].tolist()
    assert len(cached) == 4 and not any(name.endswith(broken.name) for name in cached)
    write_image(broken, 90)  # fixed: posed on the next pass, nothing else is
    again = CountingEstimator()
    table = load_or_build(cfg, records, "tiny", backend=again)
    assert again.seen == 1 and table[str(broken)][:, 2].all()


SLOW_POSE_PASS = """
import sys, time
from pathlib import Path
import numpy as np
from pfd.config import load_config
from pfd.data.datasets import ImageRecord
from pfd.pose import cache
from pfd.pose.base import PoseEstimator

class Slow(PoseEstimator):  # the tests' CountingEstimator, 50 ms per image; marks its third chunk
    name, identity, calls = "counting", "counting-v1", 0
    def predict(self, images):
        self.calls += 1
        if self.calls == 3:  # chunks 1 and 2 are saved: tell the test the pass is midway
            Path(sys.argv[2]).touch()
        time.sleep(0.05 * len(images))
        means = np.array([np.asarray(img, np.float32).mean() for img in images], np.float32)
        kps = np.zeros((len(images), 17, 3), np.float32)
        kps[:, :, 0], kps[:, :, 1], kps[:, :, 2] = means[:, None], np.arange(17), (means[:, None] > 10)
        return kps

cache.CHUNK, cache.SAVE_PERIOD_S = 4, 0.0  # save after every chunk of 4 images
paths = sys.argv[3:]
cfg = load_config(None, ["MODEL.POSE_CACHE_DIR", sys.argv[1]])
cache.load_or_build(cfg, [ImageRecord(p, 0, 0) for p in paths], "big", backend=Slow())
"""


def test_sigkill_mid_pass_keeps_what_was_posed(tmp_path):
    """A real `kill -9` of a long pose pass: the rerun poses only the images that were left."""
    import subprocess
    import sys
    import time

    paths = []
    for i in range(60):
        path = tmp_path / "data" / "bounding_box_train" / f"{i + 1:04d}_c1s1_000001_00.jpg"
        write_image(path, 20 + 3 * i)
        paths.append(str(path))
    cfg = load_config(None, ["MODEL.POSE_CACHE_DIR", str(tmp_path / "cache")])
    file, midway = cache_path(cfg, "big", "counting"), tmp_path / "midway"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_POSE_PASS, str(tmp_path / "cache"), str(midway), *paths])
    deadline = time.monotonic() + 240  # only a guard against a hang: the kill waits for the marker
    while not midway.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the pose pass ended before its third chunk"
        time.sleep(0.01)
    proc.kill()
    assert proc.wait() != 0  # killed, not finished
    kept = len(read_cache_npz(file)[1]["paths"])
    assert 4 <= kept < 60

    estimator = CountingEstimator()
    resumed = load_or_build(cfg, [ImageRecord(p, 0, 0) for p in paths], "big", backend=estimator)
    assert estimator.seen == 60 - kept
    fresh = CountingEstimator().predict([Image.open(p).convert("RGB") for p in paths])
    np.testing.assert_array_equal(np.stack([resumed[p] for p in paths]), fresh)


def test_a_copied_dataset_keeps_its_poses_by_content(dataset, tmp_path):
    """`cp -r` to another disk gives every image a new mtime: same content, no posing; a new content is posed."""
    cfg, records = dataset
    load_or_build(cfg, records, "tiny", backend=CountingEstimator())
    copy = tmp_path / "scratch" / "data"
    shutil.copytree(tmp_path / "data", copy, copy_function=shutil.copy)  # new mtimes, as a plain cp
    moved = [ImageRecord(str(copy / Path(r.path).relative_to(tmp_path / "data")), r.pid, r.camid) for r in records]
    for record in moved:
        os.utime(record.path, ns=(7, 7))  # a different mtime even on coarse file systems
    write_image(Path(moved[1].path), 100)  # same size as before (a uniform 16x32 JPEG), other pixels
    assert os.path.getsize(moved[1].path) == os.path.getsize(records[1].path)
    os.utime(moved[1].path, ns=(7, 7))
    estimator = CountingEstimator()
    table = load_or_build(cfg, moved, "tiny", backend=estimator)
    assert estimator.seen == 1  # only the changed image
    np.testing.assert_allclose(table[moved[1].path][:, 0], 100.0, atol=1)
    np.testing.assert_allclose(table[moved[2].path][:, 0], 120.0, atol=1)
    meta, arrays = read_cache_npz(cache_path(cfg, "tiny", "counting"))
    assert meta["root"] == str(copy) and set(arrays["mtime_ns"].tolist()) == {7}  # recorded: the next start reads none
    again = CountingEstimator()
    load_or_build(cfg, moved, "tiny", backend=again)
    assert again.seen == 0


def test_a_cache_without_digests_poses_an_image_whose_mtime_changed(dataset):
    """Caches written before content digests: the mtime rule as before."""
    cfg, records = dataset
    load_or_build(cfg, records, "tiny", backend=CountingEstimator())
    file = cache_path(cfg, "tiny", "counting")
    meta, arrays = read_cache_npz(file)
    write_cache_npz(file, {k: v for k, v in meta.items() if k != "format"}, arrays["paths"].tolist(),
                    arrays["keypoints"], arrays["file_size"], arrays["mtime_ns"])
    assert set(read_cache_npz(file)[1]["digest"].tolist()) == {""}
    os.utime(records[0].path, ns=(9, 9))
    estimator = CountingEstimator()
    load_or_build(cfg, records, "tiny", backend=estimator)
    assert estimator.seen == 1
