"""Keypoint files: every format written and read back exactly, format details, and the `file` backend."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

from pfd.config import load_config
from pfd.errors import InvalidInputError, MissingFileError, OutputExistsError
from pfd.io import claim_output_dir
from pfd.pose.estimator import build_estimator
from pfd.pose.formats import (
    FileEstimator,
    read_coco_json,
    read_keypoints,
    read_openpose_csv,
    read_project_json,
    write_cache_npz,
    write_coco_json,
    write_openpose_csv,
    write_project_json,
)


def random_table(names, seed=0, binary_conf=False):
    """{name: [17, 3]} with some keypoints missing (confidence 0 and x = y = 0)."""
    rng = np.random.default_rng(seed)
    table = {}
    for name in names:
        kps = np.zeros((17, 3), np.float32)
        kps[:, 0] = rng.uniform(0, 64, 17)
        kps[:, 1] = rng.uniform(0, 128, 17)
        kps[:, 2] = 1.0 if binary_conf else rng.uniform(0.05, 1, 17)
        missing = rng.random(17) < 0.3
        kps[missing] = 0
        table[name] = kps
    return table


def assert_same(read, written):
    assert set(read) == set(written)
    for name, kps in written.items():
        assert read[name].dtype == np.float32
        np.testing.assert_array_equal(read[name], kps)


def test_coco_json_round_trip(tmp_path):
    table = random_table(["0001_c1s1_000001_00.jpg", "query/0002_c2s1_000002_00.jpg"])
    path = write_coco_json(tmp_path / "kps.json", table)
    assert_same(read_coco_json(path), table)
    assert_same(read_keypoints(path), table)


def test_coco_ground_truth_flags_and_several_people(tmp_path):
    person = np.zeros((17, 3))
    person[:, :2] = 5
    person[:3, 2] = 2  # visible
    person[3:5, 2] = 1  # labeled, occluded
    small = np.zeros((17, 3))
    small[0, 2] = 2
    data = {"images": [{"id": 7, "file_name": "a.jpg"}, {"id": 8, "file_name": "empty.jpg"}],
            "annotations": [{"image_id": 7, "keypoints": small.ravel().tolist()},
                            {"image_id": 7, "keypoints": person.ravel().tolist()}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    table = read_keypoints(path)
    np.testing.assert_array_equal(table["a.jpg"][:, 2], [1, 1, 1] + [0] * 14)  # the larger person, v=2 -> 1
    assert table["empty.jpg"][:, 2].max() == 0  # an image without annotation: no person


def test_openpose_csv_round_trip_and_layout(tmp_path):
    table = random_table(["0001_c1s1_000001_00.jpg", "0002_c1s1_000002_00.jpg"], binary_conf=True)
    path = write_openpose_csv(tmp_path / "market-annotation-test.csv", table)
    assert_same(read_openpose_csv(path), table)
    assert_same(read_keypoints(path), table)

    # a hand-written row in the shared Market-1501 layout: OpenPose order, y list then x list
    y = [10, 20, 21, 30, 40, 19, 31, 41, 50, 70, 90, 52, 71, 91, 8, 9, 11, 12]
    x = [32, 32, 24, 22, 20, 40, 42, 44, 26, 25, 24, 38, 39, 40, 30, 34, 28, -1]
    csv = tmp_path / "shared.csv"
    csv.write_text(f"name:keypoints_y:keypoints_x\nimg.jpg: {y}: {x}\n")
    kps = read_keypoints(csv)["img.jpg"]
    np.testing.assert_array_equal(kps[0], [32, 10, 1])  # nose
    np.testing.assert_array_equal(kps[5], [40, 19, 1])  # left shoulder = OpenPose 5
    np.testing.assert_array_equal(kps[6], [24, 21, 1])  # right shoulder = OpenPose 2
    np.testing.assert_array_equal(kps[15], [40, 91, 1])  # left ankle = OpenPose 13
    np.testing.assert_array_equal(kps[3], [0, 0, 0])  # left ear = OpenPose 17, x = -1: missing


def test_project_json_round_trip_and_generator_rows(tmp_path):
    images = tmp_path / "data" / "bounding_box_train"
    table = random_table([str(images / "0001_c1s1_000001_00.jpg"), str(images / "0002_c1s1_000002_00.jpg")])
    path = write_project_json(tmp_path / "data" / "keypoints.json", table)
    assert json.loads(path.read_text())["keypoints"].keys() == {"bounding_box_train/0001_c1s1_000001_00.jpg",
                                                                "bounding_box_train/0002_c1s1_000002_00.jpg"}
    assert_same(read_project_json(path), table)
    assert_same(read_keypoints(path), table)

    rows = [[1.5, 2.5, 2, 0.9]] * 17  # the generator's (x, y, visibility, confidence)
    gen = tmp_path / "gen" / "keypoints.json"
    gen.parent.mkdir()
    gen.write_text(json.dumps({"format": "pfd-keypoints-v1", "root": ".", "keypoints": {"q/a.jpg": rows}}))
    kps = read_keypoints(gen)[str(gen.parent / "q" / "a.jpg")]
    np.testing.assert_allclose(kps, [[1.5, 2.5, 0.9]] * 17)


def test_cache_npz_read_as_keypoint_file(tmp_path):
    table = random_table(["train/a.jpg", "query/b.jpg"])
    path = write_cache_npz(tmp_path / "c.npz", {"root": str(tmp_path), "identity": "x"}, list(table),
                           np.stack(list(table.values())), np.array([1, 2]), np.array([3, 4]))
    assert_same(read_keypoints(path), {str(tmp_path / k): v for k, v in table.items()})


def test_bad_files_are_named(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: unknown keypoint file"):
        read_keypoints(bad)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        read_keypoints(tmp_path / "nowhere.json")
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                 "annotations": [{"image_id": 1, "keypoints": [1, 2, 3]}]}))
    with pytest.raises(ValueError, match=r"short.json: annotations\[0\].keypoints must hold 51"):
        read_keypoints(short)


def _coco_file(path, keypoints, file_name="0001_c1s1_000001_00.jpg"):
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": file_name}],
                                "annotations": [{"image_id": 1, "keypoints": keypoints}]}))
    return path


def test_damaged_openpose_csv_rows_name_the_file_and_line(tmp_path):
    """The shared Market-1501 CSV: a bad header, strings, a short row or a missing column name the line."""
    y, x = list(range(18)), list(range(18))
    header = "name:keypoints_y:keypoints_x"
    cases = {
        "header.csv": (f"name,y,x\na.jpg: {y}: {x}\n", r"header\.csv: expected the OpenPose CSV header"),
        "strings.csv": (f"{header}\na.jpg: {y}: {x}\nb.jpg: {['abc'] * 18}: {x}\n".replace("'", '"'),
                        r"strings\.csv:3: expected 'NAME: \[y \* 18\]: \[x \* 18\]'"),
        "short.csv": (f"{header}\na.jpg: {y[:17]}: {x[:17]}\n", r"short\.csv:2: expected 18 y and 18 x values, got 17"),
        "column.csv": (f"{header}\na.jpg: {y}\n", r"column\.csv:2: expected 'NAME: "),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InvalidInputError, match=message):
            read_keypoints(tmp_path / name) if name != "header.csv" else read_openpose_csv(tmp_path / name)


def test_damaged_keypoint_files_name_the_file_and_entry(tmp_path):
    """Strings, wrong row counts, ragged rows, truncated JSON, unknown formats and damaged caches: one
    InvalidInputError (a UserError) naming the file and, where there is one, the entry."""
    rows = np.zeros((17, 3)).tolist()
    strings = [[*row[:2], "abc"] for row in rows]
    cases = {
        "strings.json": (_project_file(tmp_path / "strings.json", {"a.jpg": strings}),
                         r"strings\.json: keypoints\['a\.jpg'\]: expected numbers, got .*'abc'"),
        "short.json": (_project_file(tmp_path / "short.json", {"a.jpg": rows[:16]}),
                       r"short\.json: keypoints\['a\.jpg'\]: expected 17 rows of \[x, y, conf\], got shape \[16, 3\]"),
        "ragged.json": (_project_file(tmp_path / "ragged.json", {"a.jpg": [*rows[:16], [1.0]]}),
                        r"ragged\.json: keypoints\['a\.jpg'\]: expected numbers"),
        "coco_strings.json": (_coco_file(tmp_path / "coco_strings.json", ["abc"] * 51),
                              (r"coco_strings\.json: annotations\[0\]\.keypoints \(image '0001_c1s1_000001_00\.jpg'\): "
                               r"expected numbers, got \['abc'")),
        "coco_images.json": (tmp_path / "coco_images.json",
                             r"coco_images\.json: images\[0\] must be an object with 'id'"),
        "cut.json": (tmp_path / "cut.json", r"cut\.json: invalid JSON at line 1, column \d+: .*truncated"),
        "notes.txt": (tmp_path / "notes.txt", r"notes\.txt: unknown keypoint file"),
        "cache.npz": (tmp_path / "cache.npz", r"cache\.npz: damaged pose cache \.npz"),
    }
    (tmp_path / "coco_images.json").write_text(json.dumps({"images": [{"file_name": "a.jpg"}], "annotations": []}))
    whole = _project_file(tmp_path / "whole.json", {"a.jpg": rows}).read_text()
    (tmp_path / "cut.json").write_text(whole[:len(whole) // 2])
    (tmp_path / "notes.txt").write_text("a.jpg 1 2 3\n")
    (tmp_path / "cache.npz").write_bytes(b"PK\x03\x04 cut short")
    for path, message in cases.values():
        with pytest.raises(InvalidInputError, match=message):
            read_keypoints(path)
    with pytest.raises(MissingFileError, match="nowhere.json"):
        read_keypoints(tmp_path / "nowhere.json")


def test_file_backend_matches_by_trailing_path_and_reports_missing(tmp_path, caplog):
    table = random_table(["bounding_box_train/0001_c1s1_000001_00.jpg", "query/0001_c1s1_000001_00.jpg",
                          "0003_c2s1_000005_00.jpg"])
    path = write_coco_json(tmp_path / "kps.json", table)
    estimator = build_estimator(load_config(None, ["MODEL.POSE_BACKEND", "file", "MODEL.POSE_FILE", str(path)]))
    assert isinstance(estimator, FileEstimator) and estimator.name == "file"
    root = tmp_path / "market1501"
    for rel in ("query/0001_c1s1_000001_00.jpg", "bounding_box_test/0003_c2s1_000005_00.jpg"):  # listed images
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 128)).save(root / rel)
    with caplog.at_level(logging.WARNING):
        kps = estimator.predict_paths([f"{root}/query/0001_c1s1_000001_00.jpg",  # two parts decide
                                       f"{root}/bounding_box_test/0003_c2s1_000005_00.jpg",  # the name decides
                                       f"{root}/bounding_box_test/0001_c1s1_000001_00.jpg",  # ambiguous name
                                       f"{root}/query/9999_c1s1_000001_00.jpg"])  # absent
    np.testing.assert_array_equal(kps[0], table["query/0001_c1s1_000001_00.jpg"])
    np.testing.assert_array_equal(kps[1], table["0003_c2s1_000005_00.jpg"])
    assert kps[2:].sum() == 0
    assert estimator.missing == 2
    assert "2 of 4 images are not in" in caplog.text and "9999_c1s1_000001_00.jpg" in caplog.text
    with pytest.raises(TypeError, match="predict_paths"):
        estimator.predict([])


def _project_file(path, entries):
    path.write_text(json.dumps({"format": "pfd-keypoints-v1", "root": ".", "keypoints": entries}))
    return path


@pytest.mark.parametrize("column, bad, shown", [(2, 50.0, "50.0"), (2, -1.0, "-1.0"), (0, float("nan"), "nan")])
def test_keypoint_values_are_checked_on_load(tmp_path, column, bad, shown):
    """Confidences of -1 or 50 and NaN coordinates are named with file, entry and keypoint."""
    rows = random_table(["a.jpg", "b.jpg"])
    rows["b.jpg"][6] = [10.0, 20.0, 0.5]
    rows["b.jpg"][6, column] = bad
    path = _project_file(tmp_path / "kps.json", {k: v.tolist() for k, v in rows.items()})
    with pytest.raises(ValueError, match=rf"kps\.json: entry '.*b\.jpg', keypoint right_shoulder is .*{shown}.*"
                                         r"expected finite numbers and a confidence in \[0, 1\] \(1 of 2 entries"):
        read_keypoints(path)


def test_coco_values_are_neither_flags_nor_confidences(tmp_path):
    table = random_table(["0001_c1s1_000001_00.jpg"])
    path = write_coco_json(tmp_path / "kps.json", table)
    data = json.loads(path.read_text())
    data["annotations"][0]["keypoints"][2] = 50  # a third value above 1 that is no COCO flag
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"kps\.json: keypoint third values \[50\.0.*neither COCO flags"):
        read_keypoints(path)
    data["annotations"][0]["keypoints"][2] = -1  # confidences: -1 is out of range, not clipped to 0
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"keypoint nose is .*-1\.0.*confidence in \[0, 1\]"):
        read_keypoints(path)


def test_file_backend_refuses_a_present_keypoint_outside_the_image(tmp_path):
    image = tmp_path / "query" / "0001_c1s1_000001_00.jpg"
    image.parent.mkdir()
    Image.new("RGB", (64, 128)).save(image)
    rows = np.zeros((17, 3), np.float32)
    rows[9] = [500.0, 60.0, 0.9]  # left wrist far right of a 64 px wide crop
    path = _project_file(tmp_path / "kps.json", {"query/0001_c1s1_000001_00.jpg": rows.tolist()})
    estimator = FileEstimator(path)
    with pytest.raises(ValueError, match=r"kps\.json \(for image .*0001_c1s1_000001_00\.jpg\): entry "
                                         r"'.*0001_c1s1_000001_00\.jpg', keypoint left_wrist is .* = "
                                         r"\(500\.0, 60\.0, 0\.9\) in an image of 64x128; "
                                         r"expected a keypoint inside its image"):
        estimator.predict_paths([str(image)])
    rows[9, 2] = 0.0  # marked missing: accepted wherever it is
    estimator = FileEstimator(_project_file(path, {"query/0001_c1s1_000001_00.jpg": rows.tolist()}))
    np.testing.assert_array_equal(estimator.predict_paths([str(image)])[0], rows)


def test_an_edit_in_the_middle_of_a_large_keypoint_file_makes_the_cache_stale(tmp_path):
    """The file backend's identity hashes the whole file, not its size and first and last MiB."""
    from pfd.data.datasets import ImageRecord
    from pfd.pose.cache import load_or_build

    image = tmp_path / "data" / "query" / "0001_c1s1_000001_00.jpg"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (64, 128)).save(image)
    filler = {f"filler/{i:05d}_c1s1_000001_00.jpg": [[1.0, 2.0, 0.5]] * 17 for i in range(12000)}
    ours = [[10.0, 20.0, 0.5]] * 17
    entries = {**dict(list(filler.items())[:6000]), "query/0001_c1s1_000001_00.jpg": ours,
               **dict(list(filler.items())[6000:])}
    path = _project_file(tmp_path / "data" / "kps.json", entries)
    assert path.stat().st_size > 3 << 20
    cfg = load_config(None, ["MODEL.POSE_BACKEND", "file", "MODEL.POSE_FILE", str(path),
                             "MODEL.POSE_CACHE_DIR", str(tmp_path / "cache")])
    record = ImageRecord(str(image), 1, 0)
    assert load_or_build(cfg, [record], "tiny")[str(image)][0, 0] == 10.0
    text = path.read_text()
    at = text.index('"query/0001_c1s1_000001_00.jpg": [[10.0')
    assert (1 << 20) < at < path.stat().st_size - (1 << 20)  # in the middle, away from both ends
    path.write_text(text.replace('"query/0001_c1s1_000001_00.jpg": [[10.0', '"query/0001_c1s1_000001_00.jpg": [[30.0'))
    assert load_or_build(cfg, [record], "tiny")[str(image)][0, 0] == 30.0  # same size, new content: recomputed


@pytest.mark.parametrize("write", [write_coco_json, write_openpose_csv, write_project_json])
def test_writers_refuse_a_users_file_and_a_folder_of_ours(write, tmp_path):
    """The output rule for the library writers: a user's file at the path (here a keypoint file of the
    same format, written by another tool) is refused untouched; so is a path inside an index folder."""
    table = random_table([str(tmp_path / "a.jpg")])
    users = tmp_path / "theirs.json"
    users.write_text('{"format": "pfd-keypoints-v1", "root": ".", "keypoints": {}}')
    with pytest.raises(OutputExistsError, match="not a keypoint file written by pfd"):
        write(users, table)
    assert users.read_text() == '{"format": "pfd-keypoints-v1", "root": ".", "keypoints": {}}'
    index = tmp_path / "index"
    claim_output_dir(index, "index")
    with pytest.raises(OutputExistsError, match="inside a pfd index folder"):
        write(index / "kps.json", table)


@pytest.mark.parametrize("write", [write_coco_json, write_project_json])
def test_json_writers_replace_their_own_file(write, tmp_path):
    path = write(tmp_path / "kps.json", random_table([str(tmp_path / "a.jpg")]))
    table = random_table([str(tmp_path / "b.jpg")])
    write(path, table)
    assert_same(read_keypoints(path), table)


def test_an_openpose_csv_is_never_replaced(tmp_path):
    """The CSV has no field to say who wrote it, so even our own is kept (delete it to rewrite)."""
    path = write_openpose_csv(tmp_path / "kps.csv", random_table(["a.jpg"], binary_conf=True))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="delete it first"):
        write_openpose_csv(path, random_table(["b.jpg"], binary_conf=True))
    assert path.read_bytes() == before
