"""query.py: index a folder, search it, and refuse indexes of another model or config."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pfd.api import Gallery
from pfd.config import load_config
from pfd.engine.evaluator import ranks_reported
from pfd.engine.trainer import Trainer
from pfd.errors import InvalidInputError
from pfd.inference.checkpoint import read_eval_checkpoint
from pfd.io import sha256_file
from pfd.query import search_pose
from pfd.retrieval import IndexLoadError, load_index
from pfd.retrieval.index_folder import MANIFEST_FILE, META_FILE
from pfd.retrieval.plots import BORDER, KEYPOINT_COLOURS, PAD, QUERY_GAP

from engine_tiny import DEMO_CONFIG, load_script, make_data, tiny_config, tiny_opts

query_script = load_script("query")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data, an (untrained) checkpoint of our format, and a flat index of the gallery folder."""
    root = make_data(tmp_path_factory.mktemp("engine_query"))
    trainer = Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false"))
    trainer.save(0, improved=False)
    weights = root / "run" / "last.pth"
    opts = tiny_opts(root, root / "run")
    gallery = root / "synthetic" / "bounding_box_test"
    query_script.main(["index", "--config", str(DEMO_CONFIG), "--weights", str(weights), "--gallery", str(gallery),
                       "--out", str(root / "index"), *opts])
    return {"root": root, "weights": weights, "opts": opts, "gallery": gallery, "index": root / "index"}


def meta_path(index):
    return index / json.loads((index / MANIFEST_FILE).read_text())["version"] / META_FILE


def rewrite_meta(index, text: str) -> None:
    """Put `text` in the index's meta.json with a matching checksum in its manifest (an index written
    that way by another program, not a damaged one)."""
    meta_path(index).write_text(text)
    manifest = json.loads((index / MANIFEST_FILE).read_text())
    manifest["files"][META_FILE] = sha256_file(meta_path(index))
    (index / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_index_metadata(setup):
    meta = load_index(setup["index"]).meta
    images = sorted(setup["gallery"].glob("*.jpg"))
    assert meta["num_items"] == len(images) == 79
    assert meta["paths"] == [str(p.resolve()) for p in images]
    first = images[0].name  # e.g. -1_c4s1_..., junk crops keep their parsed id -1
    assert meta["pids"][0] == int(first.split("_")[0]) and meta["camids"][0] == int(first.split("_c")[1][0]) - 1
    assert meta["model_name"] == "pfd" and meta["feature_kind"] == "full" and len(meta["config_hash"]) == 12


def test_search_finds_the_image_itself(setup, capsys):
    image = sorted(setup["gallery"].glob("0017_*.jpg"))[0]
    out_png = setup["root"] / "search.png"
    capsys.readouterr()
    # No --config/--weights: both come from the index's metadata.
    query_script.main(["search", "--index", str(setup["index"]), "--image", str(image), "--topk", "5",
                       "--out", str(out_png)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["rank", "distance"] and len(lines) == 6
    rank, distance, pid, cam, path = lines[1].split()
    assert (rank, pid, cam, path) == ("1", "17", image.name.split("_c")[1][0], str(image.resolve()))
    assert float(distance) < 1e-3
    with Image.open(out_png) as im:  # the query's keypoints are drawn over it
        query_cell = np.asarray(im.convert("RGB"))[PAD + BORDER:PAD + BORDER + 128, PAD + BORDER:PAD + BORDER + 64]
    assert (query_cell == KEYPOINT_COLOURS["visible"]).all(-1).sum() > 10


def test_search_refuses_another_config_or_model(setup, tmp_path):
    image = sorted(setup["gallery"].glob("*.jpg"))[5]
    args = ["search", "--index", str(setup["index"]), "--image", str(image), "--config", str(DEMO_CONFIG)]
    with pytest.raises(IndexLoadError, match="config_hash"):
        query_script.main(args + ["--debug", "--weights", str(setup["weights"]), *setup["opts"],
                                  "MODEL.FEAT_KIND", "global"])
    other = tmp_path / "other.pth"
    other.write_bytes(setup["weights"].read_bytes() + b"\0")  # a different file: another model id
    with pytest.raises(IndexLoadError, match="model_id"):
        query_script.main(args + ["--debug", "--weights", str(other), *setup["opts"]])
    with pytest.raises(IndexLoadError, match="missing"):
        query_script.main(["search", "--debug", "--index", str(tmp_path / "no_index"), "--image", str(image),
                           "--config", str(DEMO_CONFIG), "--weights", str(setup["weights"]), *setup["opts"]])
    with pytest.raises(FileNotFoundError, match="nobody.jpg"):
        query_script.main(["search", "--debug", "--index", str(setup["index"]),
                           "--image", str(tmp_path / "nobody.jpg")])


def test_existing_index_is_replaced_or_grown_only_when_asked(setup, capsys, tmp_path):
    index = tmp_path / "idx"
    shutil.copytree(setup["index"], index)
    argv = ["index", "--config", str(DEMO_CONFIG), "--weights", str(setup["weights"]), "--gallery",
            str(setup["gallery"]), "--out", str(index), *setup["opts"]]
    err = _user_error(capsys, argv[:1] + ["--index-type", "ivfpq"] + argv[1:])
    assert f"{index} already holds a gallery index" in err and "--replace" in err and "--append" in err
    err = _user_error(capsys, argv[:1] + ["--replace", "--append"] + argv[1:])
    assert "--replace and --append exclude each other" in err
    # --append of the same folder: every image is already there (same path and content): nothing embedded.
    query_script.main(argv[:1] + ["--append"] + argv[1:])
    assert json.loads((index / MANIFEST_FILE).read_text())["version"] == "v0002"
    assert load_index(index).meta["paths"] == load_index(setup["index"]).meta["paths"]

    query_script.main(argv[:1] + ["--index-type", "ivfpq", "--replace"] + argv[1:])
    meta = load_index(index).meta
    assert meta["index_type"] == "ivfpq" and 0.0 <= meta["recall_at_10"] <= 1.0 and meta["num_items"] == 79
    assert sorted(p.name for p in index.iterdir()) == [".pfd-output.json", MANIFEST_FILE, "v0003"]


def test_index_into_a_users_folder_is_refused(setup, capsys, tmp_path):
    """Issue 23 BAD 3: a folder of the user's holding a meta.json is never written into."""
    user = tmp_path / "notes"
    user.mkdir()
    (user / "meta.json").write_text("my own notes")
    err = _user_error(capsys, ["index", "--config", str(DEMO_CONFIG), "--weights", str(setup["weights"]),
                               "--gallery", str(setup["gallery"]), "--out", str(user), *setup["opts"]])
    assert f"{user} is not empty and was not made by pfd" in err
    assert [p.name for p in user.iterdir()] == ["meta.json"] and (user / "meta.json").read_text() == "my own notes"


def test_search_with_config_takes_weights_from_the_index(setup, capsys):
    image = sorted(setup["gallery"].glob("0017_*.jpg"))[0]
    capsys.readouterr()
    query_script.main(["search", "--index", str(setup["index"]), "--image", str(image), "--topk", "3",
                       "--config", str(DEMO_CONFIG), "--out", str(setup["root"] / "cfg_search.png"), *setup["opts"]])
    assert capsys.readouterr().out.strip().splitlines()[1].split()[4] == str(image.resolve())


def test_search_refuses_an_index_without_its_config(setup, tmp_path):
    index = tmp_path / "no_config"
    shutil.copytree(setup["index"], index)
    meta = json.loads(meta_path(index).read_text())
    del meta["config"]
    rewrite_meta(index, json.dumps(meta))
    image = sorted(setup["gallery"].glob("*.jpg"))[0]
    with pytest.raises(ValueError, match=r"meta\.json stores no config"):
        query_script.main(["search", "--debug", "--index", str(index), "--image", str(image)])


def _user_error(capsys, argv) -> str:
    """The one-line message query.py prints (exit status 2) for an expected error."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        query_script.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


def test_search_errors_are_one_line_and_exit_2(setup, capsys, tmp_path):
    image = str(sorted(setup["gallery"].glob("*.jpg"))[0])
    err = _user_error(capsys, ["search", "--index", str(setup["index"]), "--image", image, "--topk", "0"])
    assert "--topk must be at least 1" in err and "got 0" in err
    index = tmp_path / "truncated"
    shutil.copytree(setup["index"], index)
    text = meta_path(index).read_text()
    meta_path(index).write_text(text[: len(text) // 2])  # a copy cut short
    err = _user_error(capsys, ["search", "--index", str(index), "--image", image])
    assert str(meta_path(index)) in err and "does not match its checksum" in err
    with pytest.raises(IndexLoadError, match="does not match its checksum"):  # --debug: the exception itself
        query_script.main(["search", "--debug", "--index", str(index), "--image", image])


def test_search_photo_without_keypoints_says_what_works_for_this_index(setup, capsys, tmp_path):
    """The demo index reads ground-truth keypoints; a photo of one's own has none there. The hint used to
    suggest searching with MODEL.POSE_BACKEND mediapipe, which this index then refuses (config hash): it
    now says to index the gallery with such a backend, and a search with another backend is refused at
    once, before any pose estimation."""
    photo = tmp_path / "me.jpg"
    shutil.copy(sorted(setup["gallery"].glob("*.jpg"))[0], photo)
    err = _user_error(capsys, ["search", "--index", str(setup["index"]), "--image", str(photo)])
    assert f"--image {photo}: no keypoints" in err and "index's pose backend (MODEL.POSE_BACKEND synthetic" in err
    assert "index the gallery again with a pose backend that reads pixels, `python query.py index ... " \
           "MODEL.POSE_BACKEND mediapipe`" in err and "search that index" in err
    assert "pfd.data.synthetic" not in err
    err = _user_error(capsys, ["search", "--index", str(setup["index"]), "--image", str(photo),
                               "MODEL.POSE_BACKEND", "mediapipe"])  # what the old hint said: refused at once
    assert "was built with config_hash=" in err
    keypoint_file = setup["root"] / "synthetic" / "keypoints.json"  # an index of the file backend, without the photo
    cfg = load_config(DEMO_CONFIG, [*setup["opts"], "MODEL.POSE_BACKEND", "file",
                                    "MODEL.POSE_FILE", str(keypoint_file)])
    with pytest.raises(InvalidInputError, match=rf"{keypoint_file} does not list it\).*add the photo's keypoints to "
                                                rf"{keypoint_file} \(MODEL.POSE_FILE.*MODEL.POSE_BACKEND mediapipe"):
        search_pose(Gallery.load(setup["index"]), cfg, photo)


def test_paths_that_exist_are_not_reported_missing(setup, capsys, tmp_path):
    """Issue 23: a folder given as the checkpoint, or a file given as the gallery, said "not found"."""
    image = sorted(setup["gallery"].glob("*.jpg"))[0]
    index = ["index", "--config", str(DEMO_CONFIG), "--out", str(tmp_path / "idx"), *setup["opts"]]
    err = _user_error(capsys, [*index, "--weights", str(setup["weights"]), "--gallery", str(image)])
    assert f"gallery folder {image} is a file, expected a folder of images" in err
    err = _user_error(capsys, [*index, "--weights", str(setup["weights"].parent), "--gallery", str(setup["gallery"])])
    assert f"--weights: checkpoint {setup['weights'].parent} is a folder, expected a checkpoint file" in err
    err = _user_error(capsys, ["search", "--index", str(setup["index"]), "--image", str(setup["gallery"])])
    assert f"--image {setup['gallery']} is a folder, expected an image file" in err
    with pytest.raises(InvalidInputError, match=rf"checkpoint {setup['weights'].parent} is a folder, expected a "
                                                r"checkpoint file \(e\.g\. last\.pth"):
        read_eval_checkpoint(setup["weights"].parent)  # test.py's TEST.WEIGHT


def test_unknown_query_id_does_not_match_unknown_gallery_ids(setup):
    image = sorted(setup["gallery"].glob("-1_*.jpg"))[0]  # junk crop, id -1: rank 1 is itself
    out_png = setup["root"] / "unknown.png"
    query_script.main(["search", "--index", str(setup["index"]), "--image", str(image), "--topk", "1",
                       "--out", str(out_png)])
    cfg = tiny_config(setup["root"], setup["root"] / "run")
    first_cell_x = PAD + QUERY_GAP + cfg.INPUT.SIZE_TEST[1] + 2 * BORDER + PAD
    frame = Image.open(out_png).convert("RGB").getpixel((first_cell_x + 1, PAD + 1))
    assert frame[0] > 150 and frame[1] < 100  # red frame ("other identity"), not green


def test_ranks_reported_skips_ranks_beyond_a_small_gallery():
    cmc = np.array([0.5, 0.75, 1.0])
    assert ranks_reported(cmc, (1, 5, 10)) == {"rank1": 0.5}
    assert ranks_reported(np.linspace(0, 1, 20), (1, 5, 10, 20)).keys() == {"rank1", "rank5", "rank10", "rank20"}


def test_epoch_without_batches_and_log_period_zero(setup, tmp_path):
    trainer = Trainer(tiny_config(setup["root"], tmp_path / "run", "TEST.EVAL", "false", "SOLVER.LOG_PERIOD", "0"))
    trainer.train_loader = []  # e.g. fewer images than one P x K batch
    stats = trainer.train_one_epoch(0)
    assert stats["acc"] == 0 and "lr" in stats


def test_index_refuses_a_zero_byte_image_before_posing(setup, capsys, tmp_path):
    """Issue 23: a zero-byte image in the gallery folder failed only after the whole gallery was posed."""
    gallery = tmp_path / "gallery"
    shutil.copytree(setup["gallery"], gallery)
    (gallery / "0001_c1s1_000099_00.jpg").write_bytes(b"")
    cache = setup["root"] / "pose_cache"
    before = sorted(cache.iterdir())
    err = _user_error(capsys, ["index", "--config", str(DEMO_CONFIG), "--weights", str(setup["weights"]),
                               "--gallery", str(gallery), "--out", str(tmp_path / "idx"), *setup["opts"]])
    assert f"gallery folder {gallery}: not an image PIL can read: {gallery / '0001_c1s1_000099_00.jpg'}" in err
    assert sorted(cache.iterdir()) == before and not (tmp_path / "idx").exists()  # nothing posed, nothing written


def test_overrides_may_come_between_options_as_for_train_py(setup, tmp_path, capsys):
    """Issue 31: `--out X MODEL.VIT_DEPTH 2 --replace ...` was refused by query.py, accepted by train.py."""
    args = query_script.parse_args(["index", "--config", "c.yaml", "--out", "X", "MODEL.VIT_DEPTH", "2", "--replace",
                                    "--weights", "w.pth", "MODEL.DEVICE", "cpu", "--gallery", "g"])
    assert (args.command, args.out, args.replace, args.weights, args.gallery) == ("index", "X", True, "w.pth", "g")
    assert args.opts == ["MODEL.VIT_DEPTH", "2", "MODEL.DEVICE", "cpu"]
    image = sorted(setup["gallery"].glob("0017_*.jpg"))[0]
    capsys.readouterr()
    query_script.main(["search", "--index", str(setup["index"]), "--config", str(DEMO_CONFIG), *setup["opts"][:4],
                       "--image", str(image), *setup["opts"][4:], "--topk", "2", "--out", str(tmp_path / "s.png")])
    assert capsys.readouterr().out.strip().splitlines()[1].split()[4] == str(image.resolve())


def test_exclude_camera_without_a_number_leaves_the_overrides_after_it_alone():
    """`--exclude-camera` alone means the query's camera; overrides right after it are not its number."""
    common = ["search", "--index", "idx", "--image", "p.jpg"]
    args = query_script.parse_args([*common, "--exclude-camera", "MODEL.DEVICE", "cpu"])
    assert args.exclude_camera == "query" and args.opts == ["MODEL.DEVICE", "cpu"]
    assert query_script.parse_args([*common, "--exclude-camera"]).exclude_camera == "query"
    assert query_script.parse_args([*common, "--exclude-camera", "3", "MODEL.DEVICE", "cpu"]).exclude_camera == 3
    args = query_script.parse_args([*common, "--exclude-camera", "--topk", "2"])
    assert (args.exclude_camera, args.topk) == ("query", 2)


def test_index_with_mediapipe_poses_crops_that_cut_the_feet(setup, cuhk03_root, tmp_path):
    """Issue 31: `query.py index ... MODEL.POSE_BACKEND mediapipe` (the remedy the no-keypoint message
    offers) failed after the whole pose pass on crops whose feet BlazePose places below the image."""
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ("1004_c2s1_000005_00.jpg", "1034_c2s1_000005_00.jpg", "1022_c2s1_000005_00.jpg"):
        shutil.copy(cuhk03_root / "query" / name, gallery / name)
    query_script.main(["index", "--config", str(DEMO_CONFIG), "--weights", str(setup["weights"]), "--gallery",
                       str(gallery), "--out", str(tmp_path / "index"), *setup["opts"], "MODEL.POSE_BACKEND",
                       "mediapipe", "MODEL.POSE_CACHE_DIR", str(tmp_path / "cache")])
    assert len(load_index(tmp_path / "index")) == 3
