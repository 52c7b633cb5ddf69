"""The one policy for a query photo's keypoints (pfd.inference.query_pose): the same photo gets the same
keypoints, for the same reason, from `query.py search`, the Python API and the service (FastAPI's TestClient,
in this process), and each branch holds: (a) keypoints the caller gives, (b) the index's own backend when it
reads pixels, (c) the photo's entry in the index's keypoint file, (d) an error saying how to give keypoints,
or the service's chosen fallback, named in its answer."""
import json
import re
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_tiny import build_tiny_index

from pfd.api import Gallery, ReIDModel
from pfd.inference.query_pose import GIVEN, NoQueryKeypoints, QueryPoser
from pfd.pose import build_estimator
from pfd.pose.formats import read_project_json
from pfd.serve import create_app

from engine_tiny import load_script

query_script = load_script("query")
K = 5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny synthetic gallery, its index folder, and a query photo the generator's keypoints.json lists."""
    tiny = build_tiny_index(tmp_path_factory.mktemp("query_pose"))
    photo = sorted((tiny["root"] / "synthetic" / "query").glob("*.jpg"))[0]
    truth = read_project_json(tiny["root"] / "synthetic" / "keypoints.json")[str(photo)]  # [17, 3]
    return dict(tiny, photo=photo, truth=truth, client=TestClient(create_app(tiny["gallery"])))


def cli_search(index, photo, out, capsys, *extra) -> tuple[str, list[tuple[str, float]]]:
    """`query.py search`: (the reason it logs for the query's keypoints, its ranking as (path, distance))."""
    capsys.readouterr()
    query_script.main(["search", "--index", str(index), "--image", str(photo), "--topk", str(K), "--out", str(out),
                       *extra])
    captured = capsys.readouterr()
    reason = re.search(r"query keypoints: (.*)", captured.err).group(1)
    rows = [line.split() for line in captured.out.strip().splitlines()[1:]]
    return reason, [(row[4], float(row[1])) for row in rows]


def upload(client, photo, name=None, **fields):
    with open(photo, "rb") as f:
        return client.post("/api/search", files={"image": (name or photo.name, f.read(), "image/jpeg")},
                           data={"k": str(K), **{k: str(v) for k, v in fields.items()}})


def assert_same_ranking(got: list[tuple[str, float]], matches) -> None:
    assert [path for path, _ in got] == [m.path for m in matches]
    np.testing.assert_allclose([d for _, d in got], [m.distance for m in matches], atol=1e-4)


def test_a_listed_photo_gets_its_file_keypoints_from_the_cli_the_api_and_the_service(tiny, tmp_path, capsys):
    """(c) The demo's case: a query of the synthetic set, sent without keypoints. The service used to pose
    the upload with mediapipe while the command line read the generator's keypoints."""
    photo, gallery = tiny["photo"], tiny["gallery"]
    expected_reason = f"query/{photo.name} in keypoints.json, the index's synthetic keypoints"

    api = gallery.query_pose(str(photo))
    api_matches = gallery.search(str(photo), K)
    cli_reason, cli_ranking = cli_search(tiny["index"], photo, tmp_path / "s.png", capsys)
    answer = upload(tiny["client"], photo)  # only the file name travels with an upload
    assert answer.status_code == 200, answer.text
    service = answer.json()

    assert api.reason == cli_reason == service["query"]["pose_reason"] == expected_reason
    assert api.source == service["query"]["pose"] == "synthetic"
    np.testing.assert_allclose(api.keypoints, tiny["truth"], atol=1e-6)  # the generator's ground truth
    np.testing.assert_allclose(service["query"]["keypoints"], tiny["truth"], atol=0.01)  # rounded to 2 decimals
    assert_same_ranking(cli_ranking, api_matches)  # same keypoints, so the same feature and distances
    assert [m["index"] for m in service["matches"]] == [m.index for m in api_matches]


def test_keypoints_the_caller_gives_win_everywhere(tiny, tmp_path, capsys):
    """(a) --keypoints FILE, keypoints=, the `keypoints` field: the same array, the same reason."""
    photo, gallery = tiny["photo"], tiny["gallery"]
    given = tiny["truth"].copy()
    given[5:, 2] = 0.0  # everything below the head hidden: another feature than the file's keypoints'
    file = tmp_path / "kps.json"
    file.write_text(json.dumps(given.tolist()))

    api = gallery.query_pose(str(photo), given)
    api_matches = gallery.search(str(photo), K, keypoints=given)
    cli_reason, cli_ranking = cli_search(tiny["index"], photo, tmp_path / "s.png", capsys, "--keypoints", str(file))
    service = upload(tiny["client"], photo, keypoints=json.dumps(given.tolist())).json()

    assert api.reason == cli_reason == service["query"]["pose_reason"] == GIVEN
    assert api.source == service["query"]["pose"] == "request"
    np.testing.assert_array_equal(api.keypoints, given)
    assert_same_ranking(cli_ranking, api_matches)
    assert [m["index"] for m in service["matches"]] == [m.index for m in api_matches]
    unchanged = gallery.search(str(photo), K)
    assert [m.distance for m in unchanged] != [m.distance for m in api_matches]  # the given keypoints were used


def test_cli_keypoints_file_is_checked_against_the_photo(tiny, tmp_path, capsys):
    photo = tiny["photo"]
    outside = tiny["truth"].copy()
    outside[0] = [500.0, 10.0, 1.0]  # a 64-pixel-wide photo
    for text, words in ((json.dumps(outside.tolist()), "keypoint nose is (x, y, confidence) = (500.0"),
                        ("[[1, 2, 0.5]]", "expected shape [17, 3]"), ("[[1, 2", "not JSON")):
        file = tmp_path / "kps.json"
        file.write_text(text)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            query_script.main(["search", "--index", str(tiny["index"]), "--image", str(photo), "--keypoints", str(file),
                               "--out", str(tmp_path / "s.png")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"--keypoints {file}" in err and words in err, err


def test_a_photo_the_file_does_not_list_is_refused_saying_how_to_give_keypoints(tiny, tmp_path):
    """(d) The API and the service refuse it in one line naming the index's backend; the service no longer
    poses it with mediapipe behind the user's back. (The command line's message: test_engine_query.py.)"""
    photo = tmp_path / "me.jpg"
    shutil.copy(tiny["photo"], photo)
    refused = (rf"query {photo}: no keypoints for this photo \(the synthetic backend's keypoint file .*keypoints\.json "
               r"does not list it\).*MODEL\.POSE_BACKEND synthetic.*give the photo's keypoints \(keypoints=\[17, 3\]\)")
    with pytest.raises(NoQueryKeypoints, match=refused):
        tiny["gallery"].search(str(photo), K)
    with pytest.raises(NoQueryKeypoints, match="a photo in memory has no file name"):
        tiny["gallery"].search(Image.open(tiny["photo"]), K)  # nothing to look up an in-memory image by

    answer = upload(tiny["client"], photo)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith("image 'me.jpg': no keypoints for this photo") and "\n" not in error
    assert "the request's `keypoints` field" in error and "--pose-backend mediapipe" in error
    health = tiny["client"].get("/api/health").json()
    assert (health["upload_pose_backend"], health["pose_fallback"]) == ("synthetic", None)


def test_the_service_s_fallback_is_chosen_by_its_operator_and_named_in_each_answer(tiny, tmp_path):
    """(d) with `--pose-backend mediapipe`: an unlisted photo is posed by mediapipe, and the answer says so;
    a listed one still gets its file keypoints."""
    client = TestClient(create_app(tiny["gallery"], pose_backend="mediapipe"))
    assert client.get("/api/health").json()["pose_fallback"] == "mediapipe"
    unlisted = upload(client, tiny["photo"], name="me.jpg").json()["query"]
    assert unlisted["pose"] == "mediapipe"
    assert unlisted["pose_reason"] == ("mediapipe, the fallback for photos the index's synthetic keypoints lack (the "
                                       "synthetic backend's keypoint file keypoints.json does not list it)")
    mediapipe = build_estimator(tiny["model"].cfg, "mediapipe")
    try:
        with Image.open(tiny["photo"]) as image:
            expected = mediapipe.predict([image.convert("RGB")])[0]
    finally:
        mediapipe.close()
    np.testing.assert_allclose(unlisted["keypoints"], expected, atol=0.01)
    listed = upload(client, tiny["photo"]).json()["query"]
    assert listed["pose"] == "synthetic" and listed["pose_reason"].startswith(f"query/{tiny['photo'].name} in ")


def test_an_index_of_a_pixel_backend_poses_every_photo_with_it(tiny, cuhk03_root, tmp_path, capsys):
    """(b) An index built with mediapipe (real CUHK03 crops, where BlazePose finds people): the photo is posed
    by mediapipe in all three, even a photo some keypoint file lists (the synthetic query here)."""
    model = ReIDModel.from_checkpoint(tiny["root"] / "run" / "last.pth", device="cpu",
                                      opts=["MODEL.POSE_BACKEND", "mediapipe"])
    crops = sorted((cuhk03_root / "query").glob("*.jpg"))
    built = Gallery.build(model, [str(p) for p in crops[:3]])
    built.save(tmp_path / "index")
    gallery = Gallery.load(tmp_path / "index", model)
    photo = crops[3]
    api = gallery.query_pose(str(photo))
    api_matches = gallery.search(str(photo), 3)
    cli_reason, _ = cli_search(tmp_path / "index", photo, tmp_path / "s.png", capsys, "--topk", "3")
    service = TestClient(create_app(gallery)).post(
        "/api/search", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}, data={"k": "3"}).json()

    assert api.reason == cli_reason == service["query"]["pose_reason"] == "mediapipe, the index's pose backend"
    assert api.source == service["query"]["pose"] == "mediapipe" and api.keypoints[:, 2].max() > 0
    np.testing.assert_allclose(service["query"]["keypoints"], api.keypoints, atol=0.01)
    assert [m["index"] for m in service["matches"]] == [m.index for m in api_matches]
    assert gallery.query_pose(str(tiny["photo"])).source == "mediapipe"


def test_an_index_of_a_keypoint_file_looks_photos_up_by_path_or_file_name(tiny, tmp_path):
    """(c) for MODEL.POSE_FILE: a path or an uploaded photo's bare name finds its entry; an unlisted photo is
    refused naming the file and how to add the photo to it."""
    keypoint_file = tmp_path / "poses.json"
    shutil.copy(tiny["root"] / "synthetic" / "keypoints.json", keypoint_file)  # entries relative to its folder
    shutil.copytree(tiny["root"] / "synthetic" / "query", tmp_path / "query")
    cfg = tiny["model"].cfg.clone()
    cfg.defrost()
    cfg.MODEL.POSE_BACKEND, cfg.MODEL.POSE_FILE = "file", str(keypoint_file)
    poser = QueryPoser(cfg, str(tiny["root"] / "synthetic" / "bounding_box_test"), give="keypoints=")
    photo = tmp_path / "query" / tiny["photo"].name
    by_path = poser.pose(str(photo))
    with Image.open(photo) as image:
        by_name = poser.pose(image.convert("RGB"), name=photo.name)
    for pose in (by_path, by_name):
        assert pose.source == "file" and pose.reason == f"query/{photo.name} in poses.json, the index's file keypoints"
        np.testing.assert_allclose(pose.keypoints, tiny["truth"], atol=1e-6)
    with pytest.raises(NoQueryKeypoints, match=rf"{keypoint_file} does not list it\).*add the photo's keypoints to "
                                               rf"{keypoint_file} \(MODEL\.POSE_FILE\)"):
        poser.pose(str(tmp_path / "me.jpg"))
    poser.close()


def test_with_online_poses_the_model_poses_the_photo_itself(tiny):
    cfg = tiny["model"].cfg.clone()
    cfg.defrost()
    cfg.MODEL.POSE_ONLINE = True
    pose = QueryPoser(cfg, None, give="keypoints=").pose(str(tiny["photo"]), tiny["truth"])
    assert pose.keypoints is None and pose.source == "online" and "MODEL.POSE_ONLINE" in pose.reason


def test_a_milvus_gallery_finds_its_keypoint_file_from_the_folder_it_was_built_from(tiny, tmp_path):
    """A Milvus gallery has no list of paths to read: its metadata's folder locates the synthetic keypoint file
    an upload is looked up in (and `auto` is resolved from), with no query to the collection."""
    pytest.importorskip("milvus_lite")
    folder = tiny["root"] / "synthetic" / "bounding_box_test"
    gallery = Gallery.build(tiny["model"], folder, store=f"milvus:{tmp_path / 'g'}.db")
    try:
        answer = upload(TestClient(create_app(gallery)), tiny["photo"]).json()
        assert answer["query"]["pose_reason"] == (f"query/{tiny['photo'].name} in keypoints.json, the index's "
                                                  f"synthetic keypoints")
        cfg = tiny["model"].cfg.clone()
        cfg.defrost()
        cfg.MODEL.POSE_BACKEND = "auto"  # resolved from the gallery's folder, as `query.py index` resolved it
        assert QueryPoser(cfg, gallery.meta["gallery"], "keypoints=").backend == "synthetic"
        assert QueryPoser(cfg, str(tmp_path), "keypoints=").backend == "mediapipe"  # no keypoints.json there
    finally:
        gallery.close()
