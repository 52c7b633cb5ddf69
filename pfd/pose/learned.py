"""The project's own keypoint and visibility estimator (MODEL.POSE_BACKEND learned, issue 34 section 3).

Mediapipe finds no person in about a third of occluded re-ID crops and calls keypoints under an
occluder visible about as often as not; PFD needs to know exactly that. This network is trained by
`pfd-train-pose` (pfd.engine.pose_training) on a teacher's keypoints of clean training crops, with
occluders pasted on the fly: it learns where every keypoint is, covered or not, and whether it is seen.

A crop is resized to INPUT_HW (128x64, a re-ID crop's own size) and goes through a small timm
backbone (regnetx_002 by default, no pretrained weights: nothing is downloaded); its stride 4-32
features are summed top-down (FPN-style) into one stride-4 map, from which a 1x1 conv predicts per
keypoint a location map and a visibility map, and one occluder map (which pixels an occluder covers,
trained on the pasted masks: a local, densely supervised task). The location is the sub-pixel peak of
the location map's spatial softmax. The confidence P(seen) is the sigmoid of [the visibility map
averaged under that softmax + a logit read from the whole stride-32 map (the crop's layout: which
side another person enters from, how much of the body is left)] times the chance that no occluder
lies there (1 - the occluder map's probability averaged under the same softmax).
Every crop gets a pose: re-ID crops hold a person.

The weights file is a plain dict (FORMAT, backbone, state_dict, teacher ...) read with
weights_only=True.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ..errors import InvalidInputError
from ..image import to_rgb
from ..io import sha256_file
from ..skeleton import NUM_KEYPOINTS
from ..state_dict import load_state_dict_strict, load_torch_file
from .base import PoseEstimator
from .heatmaps import decode_heatmaps, to_input_coords
from .keypoints import mark_outside

__all__ = ["FORMAT", "INPUT_HW", "KeypointNet", "LearnedPoseEstimator", "is_learned_pose_file", "learned_identity",
           "input_scale", "normalize", "read_learned_pose", "resize_crop"]

FORMAT = "pfd-learned-pose-v1"
INPUT_HW = (128, 64)  # network input (height, width)
BACKBONE = "regnetx_002"  # timm name; fast on 2 CPU cores in float32 (bench/learned_pose.py)
WIDTH = 64  # channels of the fused feature map
LAYOUT_WIDTH = 32  # channels of the stride-32 map the layout logit reads (flattened: 32 x 4 x 2)
BATCH = 64  # crops per forward: on 2 CPU cores the network ran 1.3x (a whole pass 1.1x) as fast as at 128
PIXEL_MEAN = PIXEL_STD = 0.5  # input normalization: (x / 255 - 0.5) / 0.5


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, 3, H, W] -> the network's float input in [-1, 1]."""
    return (images.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD


def resize_crop(image: Image.Image) -> np.ndarray:
    """A crop at the network's size: uint8 [128, 64, 3] RGB (training and inference resize alike); a writable
    copy, so torch.from_numpy may wrap it."""
    return np.array(to_rgb(image).resize((INPUT_HW[1], INPUT_HW[0]), Image.BILINEAR))


def input_scale(sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Network-input pixels per crop pixel [N, 1, 2] (x, y) of crops of `sizes` (width, height); a point
    maps as (xy + 0.5) * scale - 0.5, pixel edges aligned (pfd.pose.heatmaps)."""
    return torch.tensor([INPUT_HW[1], INPUT_HW[0]], dtype=torch.float32) / torch.tensor(
        sizes, dtype=torch.float32).view(-1, 1, 2)


class KeypointNet(nn.Module):
    """Normalized crops [B, 3, 128, 64] -> (location logits [B, 17, 32, 16], P(seen) [B, 17], occluder logits
    [B, 1, 32, 16])."""

    def __init__(self, backbone: str = BACKBONE):
        super().__init__()
        import timm

        self.body = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
        self.lateral = nn.ModuleList(nn.Conv2d(c, WIDTH, 1) for c in self.body.feature_info.channels())
        self.fuse = nn.Sequential(nn.Conv2d(WIDTH, WIDTH, 3, padding=1, bias=False), nn.BatchNorm2d(WIDTH),
                                  nn.ReLU(inplace=True))
        self.head = nn.Conv2d(WIDTH, 2 * NUM_KEYPOINTS + 1, 1)
        coarse = INPUT_HW[0] // 32 * (INPUT_HW[1] // 32)  # stride-32 cells
        self.layout = nn.Sequential(nn.Conv2d(self.body.feature_info.channels()[-1], LAYOUT_WIDTH, 1),
                                    nn.ReLU(inplace=True), nn.Flatten(),
                                    nn.Linear(LAYOUT_WIDTH * coarse, NUM_KEYPOINTS))  # [B, 17] layout logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.body(x)  # strides 4, 8, 16, 32
        fused = self.lateral[-1](feats[-1])
        for lateral, feat in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            fused = lateral(feat) + F.interpolate(fused, size=feat.shape[-2:], mode="nearest")
        location, visibility, occluder = self.head(self.fuse(fused)).float().split(
            [NUM_KEYPOINTS, NUM_KEYPOINTS, 1], dim=1)  # [B, 17, h, w], [B, 17, h, w], [B, 1, h, w]
        where = location.flatten(2).softmax(-1)  # [B, 17, h*w]
        seen = ((where * visibility.flatten(2)).sum(-1) + self.layout(feats[-1]).float()).sigmoid()  # [B, 17]
        covered = (where * occluder.flatten(2).sigmoid()).sum(-1)  # [B, 17] P(an occluder where the keypoint is)
        return location, seen * (1.0 - covered), occluder

    @torch.no_grad()
    def keypoints(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized crops [B, 3, H, W] -> keypoints [B, 17, 3] = (x, y in input pixels, confidence)."""
        location, seen, _ = self(x.contiguous(memory_format=torch.channels_last))
        xy = decode_heatmaps(location.flatten(2).softmax(-1).view_as(location))[..., :2]  # [B, 17, 2] map pixels
        xy = to_input_coords(xy, tuple(location.shape[-2:]), tuple(x.shape[-2:]))
        return torch.cat([xy, seen.unsqueeze(-1)], dim=-1)


def is_learned_pose_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a weights file `pfd-train-pose` wrote (the guard lets it be replaced)."""
    try:
        obj = load_torch_file(path)
    except (OSError, InvalidInputError):
        return False
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def read_learned_pose(path: str | os.PathLike) -> tuple[KeypointNet, dict]:
    """The network of a `pfd-train-pose` weights file (eval mode, frozen) and the file's dict."""
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise InvalidInputError(f"{path}: not a learned pose estimator written by pfd-train-pose (expected a dict "
                                f"with format {FORMAT!r}); HRNet weights go in MODEL.POSE_WEIGHT")
    net = KeypointNet(obj["backbone"])
    load_state_dict_strict(net, obj["state_dict"], path, f"the learned pose estimator ({obj['backbone']})")
    # channels_last, as in training: the forward alone ran 1.4-1.5x as many crops/s on 1 and 2 CPU cores (64-crop
    # batches); bench/learned_pose.py's whole posing pass could not tell the two apart from its noise
    return net.eval().requires_grad_(False).to(memory_format=torch.channels_last), obj


def learned_identity(path: str | os.PathLike) -> str:
    """The backend name and the weights file's SHA-256: retrained weights make the caches stale."""
    return f"learned-{sha256_file(path)[:16]}-{INPUT_HW[0]}x{INPUT_HW[1]}-bilinear-inside"


class LearnedPoseEstimator(PoseEstimator):
    """The learned estimator on CPU (float32, so every CPU gives the same keypoints), BATCH crops at a time."""

    name = "learned"

    def __init__(self, path: str | os.PathLike):
        self.net, self.meta = read_learned_pose(path)
        self.identity = learned_identity(path)
        self.batch_size = BATCH

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB crops -> keypoints [N, 17, 3] in each crop's pixels; confidence = P(seen)."""
        out = [self._predict_batch(images[i:i + BATCH]) for i in range(0, len(images), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)

    def _predict_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        arrays = np.stack([resize_crop(img) for img in images])  # [B, 128, 64, 3]
        kps = self.net.keypoints(normalize(torch.from_numpy(arrays).permute(0, 3, 1, 2)))  # [B, 17, 3] input px
        sizes = [img.size for img in images]
        kps[..., :2] = (kps[..., :2] + 0.5) / input_scale(sizes) - 0.5  # crop pixels
        return mark_outside(kps.numpy(), sizes)
