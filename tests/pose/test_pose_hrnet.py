"""HRNet: the public checkpoints' layout loads strictly, shapes, decoding, errors, online heatmaps."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pfd.config import ConfigError, load_config
from pfd.errors import MissingFileError
from pfd.pose.heatmaps import render_heatmaps
from pfd.pose.hrnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    HRNetEstimator,
    build_hrnet,
    heatmaps_to_keypoints,
    load_hrnet_weights,
)
from pfd.pose.online import OnlineHeatmaps


@pytest.fixture(autouse=True)
def one_torch_thread():
    """HRNet runs ~300 small ops; on a busy 2-core machine every 2-thread op waits ~8 ms for the
    second thread (80x slower than 1 thread), so these tests run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fixture_state_dict(fixtures_dir, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the keys and shapes of the public pose_hrnet_w{width} checkpoints."""
    layout = json.loads((fixtures_dir / f"hrnet_w{width}_state_dict.json").read_text())["keys"]
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


@pytest.fixture(scope="module")
def w32_file(fixtures_dir, tmp_path_factory):
    """The W32 layout saved as a DataParallel checkpoint: {"state_dict": {"module.<key>": ...}}."""
    state = fixture_state_dict(fixtures_dir, 32)
    path = tmp_path_factory.mktemp("hrnet") / "pose_hrnet_w32_256x192.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    return path, state


def test_w32_checkpoint_file_loads_strictly_and_gives_64x32_heatmaps(w32_file):
    path, state = w32_file
    model = load_hrnet_weights(build_hrnet("hrnet_w32"), path).eval()
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 128))
    assert out.shape == (2, 17, 64, 32)


def test_w48_layout_loads_strictly_and_gives_64x32_heatmaps(fixtures_dir):
    model = build_hrnet("hrnet_w48")
    result = model.load_state_dict(fixture_state_dict(fixtures_dir, 48), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 256, 128))
    assert out.shape == (1, 17, 64, 32) and torch.isfinite(out).all()


def test_mismatched_checkpoint_names_file_and_keys(w32_file, tmp_path):
    path, _ = w32_file
    with pytest.raises(ValueError) as err:  # W32 weights into a W48 network
        load_hrnet_weights(build_hrnet("hrnet_w48"), path)
    assert str(path) in str(err.value) and "wrong shape" in str(err.value) and "final_layer.weight" in str(err.value)

    state = build_hrnet("hrnet_w32").state_dict()
    del state["final_layer.bias"]
    state["extra_head.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError) as err:
        load_hrnet_weights(build_hrnet("hrnet_w32"), bad)
    message = str(err.value)
    assert str(bad) in message and "missing: final_layer.bias" in message and "unexpected: extra_head.weight" in message


def test_missing_checkpoint_names_file(tmp_path):
    missing = tmp_path / "pose_hrnet_w48_256x192.pth"
    with pytest.raises(MissingFileError, match="pose_hrnet_w48_256x192.pth"):
        load_hrnet_weights(build_hrnet("hrnet_w48"), missing)
    with pytest.raises(ConfigError, match="hrnet_w64"):
        build_hrnet("hrnet_w64")


def test_decoding_recovers_rendered_peaks_in_crop_pixels():
    """Gaussians rendered at sub-pixel crop positions decode back within 0.5 crop px, for crops of
    different sizes sharing the network's 64x32 heatmap grid."""
    g = torch.Generator().manual_seed(0)
    crops = [(64, 128), (150, 300), (41, 97)]  # (W, H)
    heatmaps, truth = [], []
    for w, h in crops:
        kps = torch.rand(1, 17, 3, generator=g)
        kps[..., 0] = 2 + kps[..., 0] * (w - 4)
        kps[..., 1] = 2 + kps[..., 1] * (h - 4)
        kps[..., 2] = 0.3 + 0.7 * kps[..., 2]
        heatmaps.append(render_heatmaps(kps, (h, w), sigma=2.0, heatmap_hw=(64, 32)))
        truth.append(kps)
    decoded = heatmaps_to_keypoints(torch.cat(heatmaps), crops)  # [3, 17, 3]
    truth = torch.cat(truth).numpy()
    assert np.abs(decoded[..., :2] - truth[..., :2]).max() < 0.5  # crop pixels (up to 4.7 per heatmap pixel)
    np.testing.assert_allclose(decoded[..., 2], truth[..., 2], atol=1e-4)


def test_estimator_on_crops_of_any_size(w32_file):
    path, _ = w32_file
    estimator = HRNetEstimator("hrnet_w32", str(path), batch_size=2)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
              for h, w in ((128, 64), (90, 50), (256, 128))]
    kps = estimator.predict(images)
    assert kps.shape == (3, 17, 3) and kps.dtype == np.float32
    assert (kps[..., 2] >= 0).all() and (kps[..., 2] <= 1).all()
    # every keypoint is the peak of a heatmap cell, so it lies inside its own crop
    sizes = np.array([img.size for img in images], np.float32)[:, None, :]
    assert (kps[..., :2] >= -0.5).all() and (kps[..., :2] <= sizes - 0.5).all()
    assert estimator.identity.startswith("hrnet-hrnet_w32-")


def test_online_heatmaps_renormalize_and_stay_frozen(w32_file):
    path, _ = w32_file
    cfg = load_config(None, ["MODEL.POSE_ARCH", "hrnet_w32", "MODEL.POSE_WEIGHT", str(path),
                             "INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]", "INPUT.PIXEL_STD", "[0.5, 0.5, 0.5]"])
    online = OnlineHeatmaps(cfg)
    online.train()  # a parent's train() must not unfreeze it
    assert not online.training and not online.hrnet.training
    assert not any(p.requires_grad for p in online.parameters())

    images01 = torch.rand(2, 3, 128, 64)
    vit_input = (images01 - 0.5) / 0.5
    heatmaps = online(vit_input)
    assert heatmaps.shape == (2, 17, 32, 16) and not heatmaps.requires_grad
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        direct = online.hrnet((images01 - mean) / std)
    torch.testing.assert_close(heatmaps, direct, atol=1e-4, rtol=1e-4)  # raw HRNet values, unchanged


def test_online_needs_weights():
    with pytest.raises(ConfigError, match="MODEL.POSE_WEIGHT"):
        OnlineHeatmaps(load_config(None, ["MODEL.POSE_ONLINE", "true"]))
