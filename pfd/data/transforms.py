"""Keypoint-aware augmentation: the reference PFD/TransReID pipeline, keypoints carried along.

Train: resize (bicubic) -> horizontal flip (INPUT.PROB) -> pad INPUT.PADDING + random crop ->
to tensor + normalize (INPUT.PIXEL_MEAN/STD) -> random erasing (INPUT.RE_PROB, timm's "pixel"
mode: one box of 2%-33% of the area, aspect 0.3-3.3, filled with N(0, 1) noise).
Test: resize -> normalize.

Keypoints [17, 3] = (x, y, conf) come in the source image's pixels and leave in input pixels,
with pixel i's centre at coordinate i (the convention of pfd.pose.heatmaps). A flip mirrors x
and swaps the COCO left/right pairs; keypoints pushed off the image by the crop, or hidden by
the erased box, get confidence 0 (a pose estimator would not see them).

All randomness comes from the `rng` argument (a numpy Generator), so the samplers can make a run
reproducible from (seed, epoch) whatever the number of workers.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from ..pose.keypoints import NUM_KEYPOINTS, flip_keypoints

ERASE_AREA = (0.02, 1 / 3)  # fraction of the image, as timm RandomErasing
ERASE_LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))
ERASE_ATTEMPTS = 10


def check_keypoints(keypoints: np.ndarray, where: str = "keypoints") -> np.ndarray:
    """`keypoints` as a float32 [17, 3] copy; raises naming `where` on any other shape."""
    kp = np.array(keypoints, dtype=np.float32)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"{where}: expected a [{NUM_KEYPOINTS}, 3] array (x, y, conf), got shape {kp.shape}")
    return kp


class ReIDTransform:
    """Callable `(PIL image, keypoints [17, 3], rng) -> (image [3, H, W] float, keypoints [17, 3] float)`."""

    def __init__(self, size_hw: tuple[int, int], pixel_mean, pixel_std, flip_prob: float = 0.0,
                 padding: int = 0, erase_prob: float = 0.0,
                 resample: Image.Resampling = Image.Resampling.BICUBIC):
        if len(size_hw) != 2 or min(size_hw) < 1:
            raise ValueError(f"INPUT.SIZE_TRAIN/SIZE_TEST: expected [height, width], got {list(size_hw)}")
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ValueError(f"INPUT.PIXEL_MEAN/PIXEL_STD: expected 3 values each (std > 0), "
                             f"got {list(pixel_mean)} / {list(pixel_std)}")
        self.height, self.width = int(size_hw[0]), int(size_hw[1])
        self.flip_prob, self.padding, self.erase_prob = float(flip_prob), int(padding), float(erase_prob)
        self.resample = resample
        # ToTensor and Normalize folded into one affine map of the uint8 values.
        self.scale_mean = torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1) * 255.0  # [3, 1, 1]
        self.scale_std = torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1) * 255.0  # [3, 1, 1]

    def __call__(self, image: Image.Image, keypoints: np.ndarray, rng: np.random.Generator | None = None):
        kp = check_keypoints(keypoints)
        if rng is None:
            rng = np.random.default_rng()
        image, kp = self.resize(image, kp)
        if self.flip_prob > 0 and rng.random() < self.flip_prob:
            image, kp = self.flip(image, kp)
        if self.padding > 0:
            image, kp = self.pad_crop(image, kp, rng)
        tensor = self.normalize(image)
        if self.erase_prob > 0 and rng.random() < self.erase_prob:
            tensor, kp = self.erase(tensor, kp, rng)
        kp[~self.inside(kp), 2] = 0.0
        return tensor, torch.from_numpy(kp)

    def resize(self, image: Image.Image, kp: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        src_w, src_h = image.size
        if (src_h, src_w) != (self.height, self.width):
            image = image.resize((self.width, self.height), self.resample)
            kp[:, 0] = (kp[:, 0] + 0.5) * (self.width / src_w) - 0.5
            kp[:, 1] = (kp[:, 1] + 0.5) * (self.height / src_h) - 0.5
        return image, kp

    def flip(self, image: Image.Image, kp: np.ndarray) -> tuple[Image.Image, np.ndarray]:
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), flip_keypoints(kp, self.width)

    def pad_crop(self, image: Image.Image, kp: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
        """Pad with black on every side, then crop the original size at a random offset (one PIL crop)."""
        dx, dy = (int(v) - self.padding for v in rng.integers(0, 2 * self.padding + 1, size=2))  # crop origin
        image = image.crop((dx, dy, dx + self.width, dy + self.height))  # outside the image = black padding
        kp[:, 0] -= dx
        kp[:, 1] -= dy
        return image, kp

    def normalize(self, image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # [3, H, W] uint8
        return pixels.float().sub_(self.scale_mean).div_(self.scale_std)  # permuting uint8 first is ~2x faster

    def erase(self, tensor: torch.Tensor, kp: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
        """timm RandomErasing (pixel mode, one box); keypoints under the box lose their confidence."""
        area = self.height * self.width
        for _ in range(ERASE_ATTEMPTS):
            target_area = rng.uniform(*ERASE_AREA) * area
            aspect = math.exp(rng.uniform(*ERASE_LOG_ASPECT))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < self.width and h < self.height:
                top = int(rng.integers(0, self.height - h + 1))
                left = int(rng.integers(0, self.width - w + 1))
                noise = rng.standard_normal((3, h, w), dtype=np.float32)
                tensor[:, top:top + h, left:left + w] = torch.from_numpy(noise)
                col, row = np.rint(kp[:, 0]), np.rint(kp[:, 1])  # pixel each keypoint falls in
                hidden = (col >= left) & (col < left + w) & (row >= top) & (row < top + h)
                kp[hidden, 2] = 0.0
                break
        return tensor, kp

    def inside(self, kp: np.ndarray) -> np.ndarray:
        """[17] bool: the keypoint falls on a pixel of the input image."""
        x, y = kp[:, 0], kp[:, 1]
        return (x >= -0.5) & (x < self.width - 0.5) & (y >= -0.5) & (y < self.height - 0.5)


def build_transforms(cfg, is_train: bool) -> ReIDTransform:
    """The train (augmenting) or test (resize + normalize) transform of `cfg.INPUT`.

    As in the reference: bicubic resizing for training, bilinear (torchvision's default) for testing,
    so reference checkpoints see the inputs they were evaluated on.
    """
    inp = cfg.INPUT
    if is_train:
        return ReIDTransform(inp.SIZE_TRAIN, inp.PIXEL_MEAN, inp.PIXEL_STD, flip_prob=inp.PROB,
                             padding=inp.PADDING, erase_prob=inp.RE_PROB)
    return ReIDTransform(inp.SIZE_TEST, inp.PIXEL_MEAN, inp.PIXEL_STD, resample=Image.Resampling.BILINEAR)
