"""Keypoint-aware augmentation keeps the image and the keypoints consistent."""
import numpy as np
import pytest
import torch
from PIL import Image

from pfd.config import load_config
from pfd.data.transforms import ReIDTransform, build_transforms
from pfd.pose.keypoints import FLIP_INDEX

SRC_HW = (96, 48)  # source image
OUT_HW = (128, 64)  # network input
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def source_keypoints() -> np.ndarray:
    """17 distinct positions spread over the source image (on pixel centres), distinct confidences."""
    grid = [(x, y) for y in range(8, 90, 16) for x in (6, 18, 30, 42)][:17]
    kp = np.array([(x, y, 0.5 + k / 40) for k, (x, y) in enumerate(grid)], dtype=np.float32)
    return kp


def dot_image(x: float, y: float) -> Image.Image:
    """A dark source image with a bright 3x3 dot centred on pixel (x, y)."""
    pixels = np.zeros((*SRC_HW, 3), dtype=np.uint8)
    pixels[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 255
    return Image.fromarray(pixels)


def brightness_centroid(image: torch.Tensor) -> tuple[float, float]:
    """Intensity-weighted centre (x, y) of a normalized image, black = 0 weight."""
    pixels = image * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)  # back to [0, 1]
    weight = pixels.mean(0).clamp_min(0)  # [H, W]
    ys, xs = torch.meshgrid(torch.arange(weight.shape[0]), torch.arange(weight.shape[1]), indexing="ij")
    total = weight.sum()
    return float((weight * xs).sum() / total), float((weight * ys).sum() / total)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_dots_follow_keypoints_through_resize_flip_pad_crop(flip_prob):
    transform = ReIDTransform(OUT_HW, MEAN, STD, flip_prob=flip_prob, padding=6)
    kp = source_keypoints()
    for seed in (0, 1, 2):
        for k in range(17):
            image, out_kp = transform(dot_image(kp[k, 0], kp[k, 1]), kp, np.random.default_rng(seed))
            assert image.shape == (3, *OUT_HW) and out_kp.shape == (17, 3)
            slot = FLIP_INDEX[k] if flip_prob else k  # where keypoint k ends up (left <-> right on a flip)
            assert out_kp[slot, 2] == pytest.approx(kp[k, 2]) or out_kp[slot, 2] == 0  # conf travels along
            if out_kp[slot, 2] > 0:
                cx, cy = brightness_centroid(image)
                assert abs(cx - out_kp[slot, 0]) < 0.3 and abs(cy - out_kp[slot, 1]) < 0.3, (seed, k)


def test_flip_swaps_left_and_right():
    transform = ReIDTransform(SRC_HW, MEAN, STD, flip_prob=1.0)  # no resize, no crop
    kp = source_keypoints()
    _, out = transform(dot_image(*kp[0, :2]), kp, np.random.default_rng(0))
    out = out.numpy()
    # left_shoulder (5) becomes right_shoulder (6) at the mirrored x; the nose (0) stays the nose
    assert out[6, 0] == SRC_HW[1] - 1 - kp[5, 0] and out[6, 1] == kp[5, 1] and out[6, 2] == kp[5, 2]
    assert out[5, 0] == SRC_HW[1] - 1 - kp[6, 0] and out[5, 2] == kp[6, 2]
    assert out[0, 0] == SRC_HW[1] - 1 - kp[0, 0] and out[0, 2] == kp[0, 2]
    assert sorted(out[:, 2].tolist()) == sorted(kp[:, 2].tolist())


def test_crop_pushes_keypoints_out():
    """A keypoint on the left border is lost (conf 0, dot cropped away) exactly when the crop shifts right."""
    transform = ReIDTransform(SRC_HW, MEAN, STD, padding=4)
    kp = np.zeros((17, 3), dtype=np.float32)
    kp[0] = (1, 40, 1.0)  # dot covers columns 0..2
    seen = set()
    for seed in range(40):
        image, out = transform(dot_image(1, 40), kp, np.random.default_rng(seed))
        visible = out[0, 2].item() > 0
        seen.add(visible)
        assert visible == (-0.5 <= out[0, 0].item())
        if visible:
            assert abs(brightness_centroid(image)[0] - out[0, 0].item()) < 0.6  # the dot may be cut in half
        else:
            assert out[0, 0].item() < -0.5
    assert seen == {True, False}


def test_random_erasing_hides_keypoints():
    transform = ReIDTransform(OUT_HW, MEAN, STD, erase_prob=1.0)
    ys, xs = np.meshgrid(np.arange(4, 128, 8), np.arange(4, 64, 8), indexing="ij")
    grid = np.stack([xs.ravel(), ys.ravel()], 1)[::7][:17]  # 17 points across the image
    kp = np.concatenate([grid, np.ones((17, 1))], 1).astype(np.float32)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*OUT_HW, 3), dtype=np.uint8))
    hidden_total = 0
    for seed in range(20):
        out_image, out = transform(image, kp, np.random.default_rng(seed))
        # the erased box holds N(0, 1) noise, never an exact normalized 8-bit value
        pixel = out_image * torch.tensor(STD).view(3, 1, 1) * 255 + torch.tensor(MEAN).view(3, 1, 1) * 255
        erased = ((pixel - pixel.round()).abs() > 1e-2).any(0)  # [H, W]
        assert 0.015 * erased.numel() < erased.sum() < 0.34 * erased.numel()
        under_box = erased[kp[:, 1].astype(int), kp[:, 0].astype(int)].numpy()
        np.testing.assert_array_equal(out[:, 2].numpy() == 0, under_box)
        hidden_total += under_box.sum()
    assert hidden_total > 0


def test_normalization_and_test_transform():
    cfg = load_config(None, ["INPUT.SIZE_TEST", "[64, 32]", "INPUT.PIXEL_MEAN", "[0.5, 0.4, 0.3]",
                             "INPUT.PIXEL_STD", "[0.5, 0.25, 0.2]"])
    transform = build_transforms(cfg, is_train=False)
    kp = np.zeros((17, 3), dtype=np.float32)
    kp[3] = (10.0, 20.0, 0.9)
    image, out = transform(Image.new("RGB", (16, 32), (255, 51, 0)), kp)
    assert image.shape == (3, 64, 32)
    expected = torch.tensor([(1.0 - 0.5) / 0.5, (0.2 - 0.4) / 0.25, (0.0 - 0.3) / 0.2])
    torch.testing.assert_close(image[:, 10, 10], expected)
    # resize by 2 with pixel centres at integers: x' = (x + 0.5) * 2 - 0.5
    torch.testing.assert_close(out[3], torch.tensor([20.5, 40.5, 0.9]))
    again, _ = transform(Image.new("RGB", (16, 32), (255, 51, 0)), kp)
    torch.testing.assert_close(image, again)


def test_train_transform_reads_config():
    cfg = load_config(None, ["INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.PROB", "0.25", "INPUT.RE_PROB", "0.75",
                             "INPUT.PADDING", "3"])
    t = build_transforms(cfg, is_train=True)
    assert (t.height, t.width, t.flip_prob, t.erase_prob, t.padding) == (64, 32, 0.25, 0.75, 3)
    a = t(dot_image(10, 10), source_keypoints(), np.random.default_rng(7))
    b = t(dot_image(10, 10), source_keypoints(), np.random.default_rng(7))
    torch.testing.assert_close(a, b)  # the rng alone decides the augmentation


def test_bad_keypoints_shape():
    transform = ReIDTransform(OUT_HW, MEAN, STD)
    with pytest.raises(ValueError, match=r"\[17, 3\].*\(17, 4\)"):
        transform(dot_image(5, 5), np.zeros((17, 4)))


def test_resize_filters_match_the_reference():
    """Bicubic for training, bilinear (torchvision's default, as the reference evaluates) for testing."""
    from PIL import Image

    from pfd.config import load_config
    from pfd.data.transforms import build_transforms

    cfg = load_config(None)
    assert build_transforms(cfg, is_train=True).resample == Image.Resampling.BICUBIC
    assert build_transforms(cfg, is_train=False).resample == Image.Resampling.BILINEAR
