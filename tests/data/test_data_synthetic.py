"""The embedded synthetic occluded re-ID dataset: layout, splits, occlusion, keypoints, determinism."""
import importlib
import json
import re
from collections import defaultdict
from dataclasses import astuple, fields, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pfd.data.synthetic import (
    KEYPOINTS_FILE,
    MARKER_FILE,
    META_FILE,
    SPLIT_DIRS,
    SyntheticConfig,
    generate,
    is_complete,
    make_identities,
    render_person,
)
from pfd.data.synthetic.__main__ import main
from pfd.data.synthetic.identity import ATTRIBUTES, Identity, attribute_counts
from pfd.data.synthetic.person import observe_keypoints, sample_pose
from pfd.errors import OutputExistsError
from pfd.io import WRITTEN_RECORD
from pfd.pose.keypoints import COCO_KEYPOINTS

from engine_tiny import exit_status

NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
TINY = SyntheticConfig(ids_train=6, ids_test=4, images_per_id=5, cameras=4, cameras_per_id=2,
                       queries_per_camera=1, gallery_per_camera=3, distractors=4, junk=2, seed=3)
generate_module = importlib.import_module("pfd.data.synthetic.generate")  # the package exports generate()
KP = {name: i for i, name in enumerate(COCO_KEYPOINTS)}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _records(root: Path) -> dict[str, list[tuple[int, int]]]:
    """split -> [(pid, camera)] parsed from the file names."""
    records = defaultdict(list)
    for split, folder in SPLIT_DIRS.items():
        for path in (root / folder).iterdir():
            match = NAME.match(path.name)
            assert match, f"bad file name {path.name}"
            records[split].append((int(match.group(1)), int(match.group(2))))
    return records


def _train_cameras(root: Path) -> dict[int, set[int]]:
    """Training pid -> the cameras it was seen by."""
    cams = defaultdict(set)
    for pid, cam in _records(root)["train"]:
        cams[pid].add(cam)
    return cams


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "synthetic"
    generate(root, TINY, progress=False)
    return root


def test_layout_names_and_image_size(tiny):
    expected = [*SPLIT_DIRS.values(), KEYPOINTS_FILE, META_FILE, MARKER_FILE, WRITTEN_RECORD]
    assert sorted(p.name for p in tiny.iterdir()) == sorted(expected)
    assert is_complete(tiny)
    for path in tiny.rglob("*.jpg"):
        assert NAME.match(path.name), path.name
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 128))


def test_counts_and_disjoint_splits(tiny):
    records = _records(tiny)
    assert len(records["train"]) == TINY.ids_train * TINY.images_per_id
    assert len(records["query"]) == TINY.ids_test * TINY.cameras_per_id * TINY.queries_per_camera
    assert len(records["gallery"]) == (TINY.ids_test * TINY.cameras_per_id * TINY.gallery_per_camera
                                       + TINY.distractors + TINY.junk)
    train_ids = {pid for pid, _ in records["train"]}
    test_ids = {pid for pid, _ in records["query"]}
    assert train_ids == set(range(1, TINY.ids_train + 1))
    assert test_ids == {pid for pid, _ in records["gallery"] if pid > 0}
    assert len(test_ids) == TINY.ids_test and not train_ids & test_ids
    assert sum(pid == 0 for pid, _ in records["gallery"]) == TINY.distractors
    assert sum(pid == -1 for pid, _ in records["gallery"]) == TINY.junk
    assert all(1 <= cam <= TINY.cameras for split in records.values() for _, cam in split)


def test_every_query_has_a_cross_camera_match_and_train_ids_span_cameras(tiny):
    records = _records(tiny)
    gallery = set(records["gallery"])
    for pid, cam in records["query"]:
        assert any(g_pid == pid and g_cam != cam for g_pid, g_cam in gallery), (pid, cam)
    assert all(len(c) >= 2 for c in _train_cameras(tiny).values())


def test_queries_occluded_gallery_and_train_mostly_not(tiny):
    images = json.loads((tiny / META_FILE).read_text())["images"]
    by_split = defaultdict(list)
    for path, info in images.items():
        by_split[path.split("/")[0]].append(info)
    assert all(0.2 <= q["occluded_fraction"] <= 0.6 and q["occluder"] for q in by_split["query"])
    for folder in ("bounding_box_train", "bounding_box_test"):
        occluded = [info["occluder"] is not None for info in by_split[folder]]
        assert 0 < sum(occluded) < 0.35 * len(occluded), folder
    kinds = {info["occluder"] for info in images.values()} - {None}
    assert len(kinds) >= 3  # several kinds of occluder, not one


def test_keypoints_cover_every_image_and_respect_visibility(tiny):
    payload = json.loads((tiny / KEYPOINTS_FILE).read_text())
    assert payload["format"] == "pfd-keypoints-v1" and payload["root"] == "."
    table = payload["keypoints"]
    assert set(table) == {p.relative_to(tiny).as_posix() for p in tiny.rglob("*.jpg")}
    kps = np.array(list(table.values()), dtype=np.float64)  # [N, 17, 4]
    assert kps.shape == (len(table), 17, 4)
    x, y, vis, conf = np.moveaxis(kps, -1, 0)
    outside = (x < 0) | (x >= 64) | (y < 0) | (y >= 128)
    assert outside.any() and (conf[outside] == 0).all() and (vis[outside] == 0).all()
    assert ((vis == 2) == (conf >= 0.85)).all()  # visible <=> confident
    assert (conf[vis == 0] == 0).all() and (conf <= 1).all()
    hidden = (conf == 0).sum(axis=1)  # [N] keypoints lost per image
    query = np.array([k.startswith("query/") for k in table])
    unoccluded = np.array([k.startswith("bounding_box_test/0") for k in table])
    assert hidden[query].mean() > hidden[unoccluded].mean() + 2


def test_occluded_keypoints_get_zero_confidence():
    identity = make_identities(1, np.random.default_rng(0))[0]
    rng = np.random.default_rng(0)
    pose = sample_pose(identity, "front", rng, height=110, center_x=32, foot_y=125)
    mask = np.zeros((128, 64), dtype=bool)
    mask[70:] = True  # something in front of the legs
    kps = observe_keypoints(pose, mask, rng, (128, 64))
    below = pose.points[:17, 1] >= 70
    assert below.sum() >= 4 and (~below).sum() >= 7
    assert (kps[below, 3] == 0).all() and (kps[below, 2] == 1).all()
    assert (kps[~below, 3] > 0).all()
    assert np.abs(kps[:, :2] - pose.points[:17]).max() < 4  # jitter of a pixel or so


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = SyntheticConfig(ids_train=3, ids_test=2, images_per_id=4, cameras=3, cameras_per_id=2,
                          distractors=2, junk=1, seed=11)
    generate(tmp_path / "a", cfg, progress=False)
    generate(tmp_path / "b", cfg, progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    generate(tmp_path / "c", replace(cfg, seed=12), progress=False)
    a, c = _files(tmp_path / "a"), _files(tmp_path / "c")
    assert len(a) == len(c) and a[KEYPOINTS_FILE] != c[KEYPOINTS_FILE]
    assert not {v for k, v in a.items() if k.endswith(".jpg")} & {v for k, v in c.items() if k.endswith(".jpg")}


def test_bytes_do_not_depend_on_worker_processes(tiny, tmp_path):
    """TINY's 68 images make two tasks of at most 64: two worker processes, or one in this process."""
    generate(tmp_path / "one", TINY, progress=False, workers=1)
    generate(tmp_path / "two", TINY, progress=False, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two") == _files(tiny)


def test_train_cameras_per_id_changes_only_the_training_split(tiny, tmp_path):
    """Training ids walk past all 4 cameras; the query and gallery files are the very same bytes."""
    generate(tmp_path / "all", replace(TINY, train_cameras_per_id=4), progress=False)
    before, after = _files(tiny), _files(tmp_path / "all")
    for split in ("query", "gallery"):
        folder = SPLIT_DIRS[split] + "/"
        assert {k: v for k, v in before.items() if k.startswith(folder)} == \
               {k: v for k, v in after.items() if k.startswith(folder)}
    cams = _train_cameras(tmp_path / "all")
    assert len(cams) == TINY.ids_train and all(len(c) == 4 for c in cams.values())  # 5 images over 4 cameras
    assert max(len(c) for c in _train_cameras(tiny).values()) == TINY.cameras_per_id


def test_identities_share_every_attribute_value_but_differ_as_tuples():
    assert [f.name for f in fields(Identity)] == list(ATTRIBUTES)
    for seed in range(3):
        identities = make_identities(50, np.random.default_rng(seed))
        assert len({astuple(i) for i in identities}) == 50
        counts = attribute_counts(identities)
        for name, values in ATTRIBUTES.items():
            assert set(counts[name]) == set(values), name  # every palette value is used
            assert min(counts[name].values()) >= 2, (name, counts[name])


def test_left_right_follow_coco_semantics():
    identities = make_identities(8, np.random.default_rng(5))
    for seed, identity in enumerate(identities):
        image, kps = render_person(identity, view="front", size=(128, 64), seed=seed)
        assert image.size == (64, 128) and kps.shape == (17, 4)
        assert (kps[:, 3] > 0.8).all()  # facing the camera, unoccluded: everything visible
        for part in ("shoulder", "hip", "eye", "ear"):  # a front-facing person's left is on the image right
            assert kps[KP[f"left_{part}"], 0] > kps[KP[f"right_{part}"], 0], (seed, part)
        _, back = render_person(identity, view="back", size=(256, 128), seed=seed)
        assert back[KP["left_shoulder"], 0] < back[KP["right_shoulder"], 0]
        assert (back[:3, 3] < 0.85).all()  # the face is hidden from behind


TINY_ARGS = ["--ids-train", "2", "--ids-test", "2", "--images-per-id", "2", "--cameras", "2",
             "--cameras-per-id", "2", "--distractors", "1", "--junk", "0", "--quiet"]


def test_force_never_replaces_a_folder_the_generator_did_not_make(tmp_path, capsys):
    """A folder of the user's (a thesis, a Market-1501 copy) survives --force, and the refusal
    names what is in it without inviting --force."""
    out = tmp_path / "mine"
    (out / "Market-1501" / "bounding_box_train").mkdir(parents=True)
    (out / "thesis.tex").write_text("keep me")
    args = ["--out", str(out), *TINY_ARGS]
    for extra in ([], ["--force"]):
        assert exit_status(main, args + extra) == 2
        err = capsys.readouterr().err
        assert "not a folder made by the synthetic generator" in err and "thesis.tex" in err and "Market-1501/" in err
        assert "--force" not in err
    with pytest.raises(OutputExistsError, match="thesis.tex"):  # --debug: the exception itself
        main(args + ["--force", "--debug"])
    assert (out / "thesis.tex").read_text() == "keep me" and (out / "Market-1501" / "bounding_box_train").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temp folder left


def test_force_replaces_only_the_generators_own_folder(tmp_path, capsys):
    out = tmp_path / "synthetic"
    args = ["--out", str(out), *TINY_ARGS]
    assert exit_status(main, args) == 0 and (out / MARKER_FILE).is_file()
    capsys.readouterr()
    assert exit_status(main, args) == 2  # its own folder: refused without --force, which the message offers
    assert "made by the synthetic generator; pass --force to replace it" in capsys.readouterr().err
    assert exit_status(main, args + ["--force", "--seed", "5"]) == 0
    assert "query 2 ids/4 images (100% occluded)" in capsys.readouterr().out
    assert json.loads((out / META_FILE).read_text())["config"]["seed"] == 5 and is_complete(out)
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]  # no temp or old folders left

    (out / "notes.txt").write_text("added by the user")  # the user's file inside the generated folder
    assert exit_status(main, args + ["--force"]) == 2 and "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "added by the user"
    (out / "notes.txt").unlink()
    (out / MARKER_FILE).unlink()  # without the marker it is not recognisably the generator's
    assert exit_status(main, args + ["--force"]) == 2 and is_complete(out)


def test_a_crash_leaves_no_dataset(tmp_path, monkeypatch):
    real_render, calls = generate_module.render_image, []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("simulated crash")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(generate_module, "render_image", failing_render)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(tmp_path / "synthetic", TINY, progress=False, workers=1)  # in this process: the patch holds
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match="cameras_per_id=5"):
        SyntheticConfig(cameras=4, cameras_per_id=5).validate()
    with pytest.raises(ValueError, match="train_occluded"):
        SyntheticConfig(train_occluded=1.5).validate()
    with pytest.raises(ValueError, match="train_cameras_per_id=7"):
        SyntheticConfig(cameras=6, train_cameras_per_id=7).validate()


def test_negative_workers_is_refused_before_any_file(tmp_path):
    with pytest.raises(ValueError, match="workers=-1"):
        generate(tmp_path / "synthetic", TINY, progress=False, workers=-1)
    assert list(tmp_path.iterdir()) == []
