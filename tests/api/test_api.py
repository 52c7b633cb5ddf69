"""pfd.api on a tiny synthetic set and an untrained checkpoint: embed equals evaluation, galleries are
interchangeable with query.py's, bad input is named, and README's "Query a gallery" Python example runs."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import pfd
from pfd.api import Gallery, Match, ReIDModel
from pfd.data.datasets import build_dataset
from pfd.data.sets import load_keypoints
from pfd.engine.evaluator import extract_features
from pfd.engine.trainer import Trainer
from pfd.errors import UserError
from pfd.image import ImageReadError
from pfd.pose.heatmap_maker import HeatmapMaker
from pfd.pose.keypoints import FLIP_INDEX
from pfd.retrieval import IndexLoadError

from engine_tiny import DEMO_CONFIG, demo_layout, load_script, make_data, readme_section, tiny_config, tiny_opts

query_script = load_script("query")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny data, an untrained checkpoint of our format (batches of 8 at test time), its model, a saved gallery."""
    root = make_data(tmp_path_factory.mktemp("api"))
    Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false", "TEST.IMS_PER_BATCH", "8")).save(0, improved=False)
    weights = root / "run" / "last.pth"
    model = ReIDModel.from_checkpoint(weights, device="cpu")  # the config comes from the checkpoint
    gallery_dir = root / "synthetic" / "bounding_box_test"
    Gallery.build(model, gallery_dir).save(root / "api_index")
    return {"root": root, "weights": weights, "model": model, "gallery_dir": gallery_dir, "index": root / "api_index",
            "dataset": build_dataset("synthetic", str(root))}


def evaluation_features(model: ReIDModel, records) -> np.ndarray:
    """test.py's features of `records`: pose cache, the evaluator's extraction, the ranking's L2 normalization."""
    cfg = model.cfg
    keypoints = load_keypoints(cfg, records, "synthetic")
    feats = extract_features(model.model, cfg, records, keypoints, model.device,
                             HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST), None).feats
    return F.normalize(feats, dim=1).numpy(), keypoints


def test_package_exports_the_api_lazily():
    assert pfd.ReIDModel is ReIDModel and pfd.Gallery is Gallery and pfd.Match is Match
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        pfd.nothing
    # `import pfd` alone stays light: tests/project/test_package_layers.py checks it in a fresh process


def test_embed_equals_evaluation_features(setup):
    model = setup["model"]
    records = setup["dataset"].query[:10]  # two batches of 8 and 2
    expected, keypoints = evaluation_features(model, records)
    paths, camids = [r.path for r in records], [r.camid for r in records]

    feats = model.embed(paths, camids=camids)  # keypoints from the configured (synthetic) pose backend
    assert feats.shape == (10, model.feature_dim) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)

    kps = np.stack([keypoints[p] for p in paths])  # [10, 17, 3]
    np.testing.assert_allclose(model.keypoints(paths), kps)
    pictures = [Image.open(p) for p in paths]
    np.testing.assert_allclose(model.embed(pictures, kps, camids), expected, atol=1e-5)
    arrays = np.stack([np.asarray(p.convert("RGB")) for p in pictures])  # [10, H, W, 3] uint8
    np.testing.assert_allclose(model.embed(arrays, kps, camids), expected, atol=1e-5)


def test_flip_feats_average_the_mirror_image(setup):
    """TEST.FLIP_FEATS: the mean of the image's feature and its mirror image's (keypoints mirrored, left and
    right swapped), in test.py's extraction and in embed alike."""
    plain = ReIDModel.from_checkpoint(setup["weights"], device="cpu", opts=["TEST.FEAT_NORM", "no"])
    flipped = ReIDModel.from_checkpoint(setup["weights"], device="cpu",
                                        opts=["TEST.FEAT_NORM", "no", "TEST.FLIP_FEATS", "true"])
    assert flipped.config_hash != plain.config_hash
    records = setup["dataset"].query[:3]
    paths, camids = [r.path for r in records], [r.camid for r in records]
    kps = plain.keypoints(paths)  # [3, 17, 3]
    mirrors = [Image.open(p).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT) for p in paths]
    mirrored_kps = kps[:, list(FLIP_INDEX)]
    mirrored_kps[..., 0] = 63 - mirrored_kps[..., 0]  # 64 pixels wide
    expected = (plain.embed(paths, kps, camids) + plain.embed(mirrors, mirrored_kps, camids)) / 2
    np.testing.assert_allclose(flipped.embed(paths, kps, camids), expected, atol=1e-5)
    assert not np.allclose(expected, plain.embed(paths, kps, camids), atol=1e-3)  # the mirror image counts
    cfg = flipped.cfg
    evaluated = extract_features(flipped.model, cfg, records, load_keypoints(cfg, records, "synthetic"), flipped.device,
                                 HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST), None).feats
    np.testing.assert_allclose(evaluated.numpy(), expected, atol=1e-5)


def test_embed_any_size_and_cameras(setup):
    model = setup["model"]
    path = setup["dataset"].query[0].path
    big = np.asarray(Image.open(path).convert("RGB").resize((150, 300)))  # another size than 128x64
    kps = model.keypoints(path) * np.array([150 / 64, 300 / 128, 1], np.float32)
    assert model.embed(big, kps).shape == (1, model.feature_dim)
    # The camera embedding is on in the tiny config: the camera changes the feature; unknown = camera 0.
    cam0, cam3, unknown = (model.embed(path, camids=[c]) for c in (0, 3, -1))
    assert not np.allclose(cam0, cam3)
    np.testing.assert_array_equal(cam0, unknown)


def test_gallery_search_finds_the_image_itself(setup):
    gallery = Gallery.load(setup["index"], setup["model"])
    assert len(gallery) == 79
    image = sorted(setup["gallery_dir"].glob("0017_*.jpg"))[0]
    matches = gallery.search(image, k=5)
    assert len(matches) == 5 and all(isinstance(m, Match) for m in matches)
    first = matches[0]
    assert (first.path, first.id, first.camera) == (str(image.resolve()), 17, int(image.name.split("_c")[1][0]) - 1)
    assert first.distance < 1e-3 and [m.distance for m in matches] == sorted(m.distance for m in matches)
    feature = setup["model"].embed(image, camids=[first.camera])[0]  # [F]
    assert [m.path for m in gallery.search(feature, k=5)] == [m.path for m in matches]
    # Loaded without a model: queries go through the model stored with the gallery.
    assert [m.path for m in Gallery.load(setup["index"]).search(image, k=5)] == [m.path for m in matches]


def test_query_py_and_the_api_read_each_others_indexes(setup, capsys, tmp_path):
    image = sorted(setup["gallery_dir"].glob("0017_*.jpg"))[0]
    capsys.readouterr()
    query_script.main(["search", "--index", str(setup["index"]), "--image", str(image), "--topk", "3",
                       "--out", str(tmp_path / "search.png")])
    assert capsys.readouterr().out.strip().splitlines()[1].split()[4] == str(image.resolve())

    root = setup["root"]
    query_script.main(["index", "--config", str(DEMO_CONFIG), "--weights", str(setup["weights"]),
                       "--gallery", str(setup["gallery_dir"]), "--out", str(tmp_path / "cli_index"),
                       *tiny_opts(root, root / "run")])
    cli = Gallery.load(tmp_path / "cli_index", setup["model"])
    api = Gallery.load(setup["index"]).meta
    for key in ("paths", "pids", "camids", "config_hash", "model_id", "feature_kind", "feature_dim", "weights"):
        assert cli.meta[key] == api[key], key
    assert [m.path for m in cli.search(image, k=5)] == [m.path for m in Gallery.load(setup["index"]).search(image, k=5)]


def test_embed_refuses_bad_input_in_one_line(setup, tmp_path, monkeypatch):
    """Issue 23: embed(5), grey 2-D and empty arrays, huge images and out-of-range keypoints are one
    UserError each, naming what was given; keypoints get the keypoint files' own check."""
    model = setup["model"]
    path = setup["dataset"].query[0].path
    cases = [
        (5, r"images: expected an image path, .* got int"),
        (np.zeros((128, 64), np.uint8), r"images: got a uint8 array of shape \[128, 64\]; expected .*\[H, W, 3\]"),
        (np.zeros((0, 0, 3), np.uint8), r"images\[0\]: expected a uint8 RGB array \[H, W, 3\] with H, W >= 1, got "
                                         r"uint8 array of shape \[0, 0, 3\]"),
        ([Image.new("RGB", (0, 0))], r"images\[0\]: image of 0x0 pixels"),
    ]
    for images, message in cases:
        with pytest.raises(UserError, match=message):
            model.embed(images, keypoints=np.zeros((1, 17, 3)))
    monkeypatch.setattr("pfd.image.MAX_PIXELS", 100 * 100)
    for big in (Image.new("RGB", (200, 100)), np.zeros((100, 200, 3), np.uint8)):
        with pytest.raises(UserError, match=r"images\[0\]: image of 200x100 pixels is over pfd.image.MAX_PIXELS"):
            model.embed(big, keypoints=np.zeros((17, 3)))
    monkeypatch.undo()
    width, height = Image.open(path).size
    for row, message in (([5.0, 6.0, 1.5], r"keypoint left_eye is .* = \(5\.0, 6\.0, 1\.5\).* confidence in \[0, 1\]"),
                         ([width + 50.0, 6.0, 0.8], rf"keypoint left_eye is .* in an image of {width}x{height}; "
                                                    r"expected a keypoint inside its image")):
        kps = np.zeros((2, 17, 3), np.float32)
        kps[1, 1] = row
        with pytest.raises(UserError, match=r"keypoints: entry 'images\[1\]', " + message):
            model.embed([path, path], keypoints=kps)
    kps[1, 1, 2] = 0.0  # marked missing: accepted wherever it lies, as in a keypoint file
    assert model.embed([path, path], keypoints=kps).shape == (2, model.feature_dim)


def test_embed_reads_a_sixteen_bit_image_like_its_eight_bit_copy(setup, tmp_path):
    """BAD 6 through the API: an in-memory 16-bit grey image and its 16-bit PNG give the 8-bit copy's feature."""
    model = setup["model"]
    grey = np.asarray(Image.open(setup["dataset"].query[0].path).convert("L"))
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)
    sixteen.save(tmp_path / "g16.png")
    Image.fromarray(grey).save(tmp_path / "g8.png")
    kps = np.zeros((3, 17, 3), np.float32)
    feats = model.embed([sixteen, str(tmp_path / "g16.png"), str(tmp_path / "g8.png")], keypoints=kps)
    np.testing.assert_allclose(feats[0], feats[2], atol=1e-6)
    np.testing.assert_allclose(feats[1], feats[2], atol=1e-6)


def test_bad_input_is_named(setup, tmp_path):
    model = setup["model"]
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(ImageReadError, match=r"not an image .*notes\.txt"):
        model.embed([notes])
    with pytest.raises(ImageReadError, match=r"not found: .*missing\.jpg"):
        model.embed(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="images: got an empty list"):
        model.embed([])
    with pytest.raises(ValueError, match=r"images\[0\]: expected a uint8 RGB array \[H, W, 3\].*got float32"):
        model.embed(np.zeros((128, 64, 3), np.float32))
    path = setup["dataset"].query[0].path
    with pytest.raises(ValueError, match=r"keypoints: expected shape \[2, 17, 3\].*got \[2, 17, 2\]"):
        model.embed([path, path], keypoints=np.zeros((2, 17, 2)))
    with pytest.raises(ValueError, match="synthetic looks keypoints up by image path"):
        model.embed(Image.open(path))  # in-memory image, file-based pose backend, no keypoints given
    with pytest.raises(ValueError, match="query: a feature must have shape"):
        Gallery.load(setup["index"], model).search(np.zeros((2, model.feature_dim), np.float32))


def test_gallery_of_another_model_is_refused(setup, tmp_path):
    other_config = ReIDModel.from_checkpoint(setup["weights"], device="cpu", opts=["MODEL.FEAT_KIND", "global"])
    with pytest.raises(IndexLoadError, match=r"meta\.json was built with config_hash="):
        Gallery.load(setup["index"], other_config)
    other_weights = tmp_path / "other.pth"
    other_weights.write_bytes(setup["weights"].read_bytes() + b"\0")  # another file: another model id
    with pytest.raises(IndexLoadError, match=r"meta\.json was built with model_id="):
        Gallery.load(setup["index"], ReIDModel.from_checkpoint(other_weights, device="cpu"))


def test_checkpoint_without_config_needs_one(setup, tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save(setup["model"].model.state_dict(), bare)  # like a reference checkpoint: weights only
    with pytest.raises(ValueError, match=r"bare\.pth carries no config.*pass config="):
        ReIDModel.from_checkpoint(bare)


def test_readme_python_example_runs(setup, tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", readme_section("Query a gallery"), re.S).group(1)
    demo_layout(setup, tmp_path)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    exec(compile(code, "README.md (Query a gallery)", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("(4, ") and len(lines) == 1 + 5  # the shape line, then 5 matches
    assert all(line.split()[-1].startswith(str(tmp_path)) for line in lines[1:])
    assert (tmp_path / "demo_output" / "my_index" / "manifest.json").is_file()


def test_embed_names_a_lazily_opened_image_that_fails_to_decode(setup, tmp_path):
    whole = open(setup["dataset"].query[0].path, "rb").read()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ImageReadError, match=rf"images\[0\] \({cut}\): cannot decode the image"):
        setup["model"].embed(Image.open(cut), keypoints=np.zeros((17, 3)))


def test_keypoints_a_user_gives_are_checked_with_a_named_tolerance(setup):
    """The strict range check is for keypoints a user gives (an estimator's are marked missing instead),
    and its message names the tolerance."""
    model = setup["model"]
    path = setup["dataset"].query[0].path
    width, height = Image.open(path).size
    kps = np.zeros((17, 3), np.float32)
    kps[15] = [width / 2, height + 0.9, 0.7]  # within the 1 px tolerance: accepted
    assert model.embed(path, keypoints=kps).shape == (1, model.feature_dim)
    kps[15] = [width / 2, height + 3.0, 0.7]
    with pytest.raises(UserError, match=r"keypoint left_ankle .* expected a keypoint inside its image, at most 1 px "
                                        r"outside it \(the tolerance\)"):
        model.embed(path, keypoints=kps)
