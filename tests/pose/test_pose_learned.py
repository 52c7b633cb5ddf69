"""The learned keypoint and visibility estimator (MODEL.POSE_BACKEND learned): network outputs, the weights file,
the coordinate mapping back to each crop, and the config's choice of backend."""
import numpy as np
import pytest
import torch
from PIL import Image

from pfd.config import ConfigError, load_config
from pfd.errors import InvalidInputError, MissingFileError
from pfd.io import atomic_save
from pfd.pose.estimator import build_estimator, estimator_identity, resolve_backend
from pfd.pose.learned import FORMAT, INPUT_HW, KeypointNet, LearnedPoseEstimator, is_learned_pose_file

from engine_tiny import DEMO_CONFIG


def write_weights(path, seed: int = 0):
    torch.manual_seed(seed)
    net = KeypointNet()
    atomic_save({"format": FORMAT, "backbone": "regnetx_002", "state_dict": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("learned") / "learned.pth")


def test_the_network_maps_crops_to_locations_a_seen_probability_and_an_occluder_map():
    net = KeypointNet().eval()
    location, seen, occluder = net(torch.randn(2, 3, *INPUT_HW))
    assert location.shape == (2, 17, INPUT_HW[0] // 4, INPUT_HW[1] // 4) and seen.shape == (2, 17)
    assert occluder.shape == (2, 1, INPUT_HW[0] // 4, INPUT_HW[1] // 4) and ((seen > 0) & (seen < 1)).all()
    kps = net.keypoints(torch.randn(2, 3, *INPUT_HW))
    assert kps.shape == (2, 17, 3)
    assert ((kps[..., 0] >= -0.5) & (kps[..., 0] < INPUT_HW[1]) & (kps[..., 1] >= -0.5)
            & (kps[..., 1] < INPUT_HW[0])).all()
    assert ((kps[..., 2] > 0) & (kps[..., 2] < 1)).all()


def test_keypoints_come_back_in_each_crops_own_pixels(weights, monkeypatch):
    """Input pixel (x, y) of the 128x64 network input -> ((x + 0.5) * W / 64 - 0.5, (y + 0.5) * H / 128 - 0.5)."""
    estimator = LearnedPoseEstimator(weights)
    fixed = torch.tensor([[10.0, 20.0, 0.9]]).repeat(17, 1)  # [17, 3] input pixels

    def keypoints(x):
        return fixed.expand(x.shape[0], 17, 3).clone()

    monkeypatch.setattr(estimator.net, "keypoints", keypoints)
    kps = estimator.predict([Image.new("RGB", (64, 128)), Image.new("RGB", (128, 256)), Image.new("RGB", (40, 100))])
    np.testing.assert_allclose(kps[0, 0], [10.0, 20.0, 0.9], atol=1e-5)
    np.testing.assert_allclose(kps[1, 0], [20.5, 40.5, 0.9], atol=1e-5)
    np.testing.assert_allclose(kps[2, 0], [10.5 * 40 / 64 - 0.5, 20.5 * 100 / 128 - 0.5, 0.9], atol=1e-5)


def test_the_estimator_gives_every_crop_a_pose_in_its_pixels(weights, tmp_path, monkeypatch):
    crops = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8))
             for i, (h, w) in enumerate([(128, 64), (300, 110), (90, 40)])]
    estimator = LearnedPoseEstimator(weights)
    monkeypatch.setattr("pfd.pose.learned.BATCH", 2)  # two batches
    kps = estimator.predict(crops)
    paths = [str(tmp_path / f"{i}.png") for i in range(len(crops))]
    for crop, path in zip(crops, paths):
        crop.save(path)
    np.testing.assert_array_equal(estimator.predict_paths(paths), kps)  # files: the same poses
    assert kps.shape == (3, 17, 3) and kps.dtype == np.float32
    for crop, k in zip(crops, kps):
        inside = (k[:, 0] >= -0.5) & (k[:, 0] < crop.width - 0.5) & (k[:, 1] >= -0.5) & (k[:, 1] < crop.height - 0.5)
        assert (inside | (k[:, 2] == 0)).all()  # off the crop: marked missing
    assert LearnedPoseEstimator(weights).predict([]).shape == (0, 17, 3)


def test_the_weights_file_is_recognized_and_anything_else_refused_naming_it(weights, tmp_path):
    assert is_learned_pose_file(weights)
    other = tmp_path / "hrnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    text = tmp_path / "notes.txt"
    text.write_text("mine")
    assert not is_learned_pose_file(other) and not is_learned_pose_file(text)
    with pytest.raises(InvalidInputError, match=f"{other}: not a learned pose estimator"):
        LearnedPoseEstimator(other)


def test_auto_picks_learned_from_its_weights_and_the_identity_follows_the_file(weights, tmp_path):
    cfg = load_config(DEMO_CONFIG, ["MODEL.POSE_LEARNED_WEIGHT", str(weights), "MODEL.POSE_BACKEND", "auto"])
    assert resolve_backend(cfg) == "learned"
    assert build_estimator(cfg).identity == estimator_identity(cfg, "learned")
    retrained = write_weights(tmp_path / "retrained.pth", seed=1)
    cfg2 = load_config(DEMO_CONFIG, ["MODEL.POSE_LEARNED_WEIGHT", str(retrained)])
    assert estimator_identity(cfg2, "learned") != estimator_identity(cfg, "learned")  # the cache goes stale


def test_learned_without_its_weights_is_a_users_mistake(tmp_path):
    with pytest.raises(ConfigError, match="MODEL.POSE_LEARNED_WEIGHT"):
        estimator_identity(load_config(DEMO_CONFIG, ["MODEL.POSE_BACKEND", "learned"]), "learned")
    missing = tmp_path / "absent.pth"
    with pytest.raises(MissingFileError, match=str(missing)):
        build_estimator(load_config(DEMO_CONFIG, ["MODEL.POSE_BACKEND", "learned",
                                                  "MODEL.POSE_LEARNED_WEIGHT", str(missing)]))
