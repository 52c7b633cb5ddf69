"""HRNet-W32/W48 COCO-17 keypoint networks, parameter-compatible with the public checkpoints.

The module tree reproduces the parameter names of `pose_hrnet_w{32,48}_*.pth` (Sun et al., "Deep
High-Resolution Representation Learning", the `pose_hrnet` of deep-high-resolution-net.pytorch):
stem conv1/bn1/conv2/bn2, `layer1` (4 Bottlenecks), `transition1/2/3`, `stage2/3/4` (modules with
`branches` and `fuse_layers`) and the 1x1 `final_layer`. Places where the original holds `None`
hold an `nn.Identity` here; it has no parameters, so the state-dict keys are identical.

The network maps a [B, 3, H, W] image (ImageNet-normalized) to raw heatmaps [B, 17, H/4, W/4].
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..config import ConfigError
from ..device import resolve_device
from ..errors import MissingFileError
from ..image import to_rgb
from ..io import sha256_file
from ..precision import autocast, autocast_dtype
from ..state_dict import load_state_dict_strict, read_state_dict
from .base import PoseEstimator
from .heatmaps import decode_heatmaps

__all__ = ["HRNET_WIDTHS", "IMAGENET_MEAN", "IMAGENET_STD", "HRNet", "HRNetEstimator", "build_hrnet",
           "heatmaps_to_keypoints", "hrnet_identity", "load_hrnet_weights"]

HRNET_WIDTHS = {"hrnet_w32": 32, "hrnet_w48": 48}
# (modules, branches) of stages 2, 3, 4; every branch holds 4 BasicBlocks.
STAGES = ((1, 2), (4, 3), (3, 4))
BLOCKS_PER_BRANCH = 4


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """conv (no bias) + BatchNorm (+ ReLU): keys `0.weight`, `1.*` as in the checkpoints."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = conv_bn(cin, cout, kernel=1, relu=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.downsample(x))


def fuse_path(channels: list[int], src: int, dst: int) -> nn.Module:
    """Resample branch `src` to the resolution and width of branch `dst`.

    Lower resolution -> higher: 1x1 conv + BN + nearest upsampling. Higher -> lower: a chain of
    stride-2 3x3 convs (ReLU between them, none after the last). Same branch: identity.
    """
    if src == dst:
        return nn.Identity()
    if src > dst:
        return nn.Sequential(
            nn.Conv2d(channels[src], channels[dst], 1, bias=False),
            nn.BatchNorm2d(channels[dst]),
            nn.Upsample(scale_factor=2 ** (src - dst), mode="nearest"),
        )
    steps = dst - src
    return nn.Sequential(*[
        conv_bn(channels[src], channels[dst] if k == steps - 1 else channels[src], stride=2, relu=k < steps - 1)
        for k in range(steps)
    ])


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every output branch sums all resampled inputs."""

    def __init__(self, channels: list[int], multi_scale_output: bool = True):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c) for _ in range(BLOCKS_PER_BRANCH)]) for c in channels
        )
        outputs = n if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(fuse_path(channels, src, dst) for src in range(n)) for dst in range(outputs)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        return [self.relu(sum(path(x) for path, x in zip(paths, xs))) for paths in self.fuse_layers]


def transition(cin: list[int], cout: list[int]) -> nn.ModuleList:
    """Adapt the previous stage's branches and open a new, half-resolution branch from the last one."""
    layers = [nn.Identity() if cin[i] == cout[i] else conv_bn(cin[i], cout[i]) for i in range(len(cin))]
    # The new branch: the checkpoints wrap its single stride-2 conv in one more Sequential.
    layers.append(nn.Sequential(conv_bn(cin[-1], cout[-1], stride=2)))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """pose_hrnet: [B, 3, H, W] ImageNet-normalized -> raw keypoint heatmaps [B, 17, H/4, W/4]."""

    def __init__(self, width: int = 48, num_joints: int = 17):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *[Bottleneck(256, 64) for _ in range(3)])

        previous = [256]
        for s, (modules, branches) in enumerate(STAGES, start=2):
            channels = [width * 2 ** b for b in range(branches)]
            setattr(self, f"transition{s - 1}", transition(previous, channels))
            last_stage = s == 1 + len(STAGES)
            setattr(self, f"stage{s}", nn.Sequential(*[
                HighResolutionModule(channels, multi_scale_output=not (last_stage and m == modules - 1))
                for m in range(modules)
            ]))
            previous = channels
        self.final_layer = nn.Conv2d(width, num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))  # [B, 64, H/4, W/4]
        xs = [self.layer1(x)]  # one branch [B, 256, H/4, W/4]
        for s in range(2, 2 + len(STAGES)):
            trans = getattr(self, f"transition{s - 1}")
            # existing branches pass through their adapter; the new one grows from the lowest resolution
            inputs = xs + [xs[-1]]
            xs = getattr(self, f"stage{s}")([t(x) for t, x in zip(trans, inputs)])
        return self.final_layer(xs[0])  # [B, 17, H/4, W/4]


def build_hrnet(arch: str) -> HRNet:
    """`hrnet_w32` or `hrnet_w48`, randomly initialized."""
    if arch not in HRNET_WIDTHS:
        raise ConfigError(f"MODEL.POSE_ARCH: unknown HRNet {arch!r}; expected one of {sorted(HRNET_WIDTHS)}")
    return HRNet(HRNET_WIDTHS[arch])


def _require_checkpoint(path: str | os.PathLike) -> str:
    path = str(path)
    if not path or not os.path.isfile(path):
        raise MissingFileError(
            f"MODEL.POSE_WEIGHT: HRNet checkpoint {path!r} not found (expected e.g. pose_hrnet_w48_256x192.pth)"
        )
    return path


def load_hrnet_weights(model: HRNet, path: str | os.PathLike) -> HRNet:
    """Load a COCO keypoint checkpoint strictly; errors name the file and the offending keys."""
    path = _require_checkpoint(path)
    load_state_dict_strict(model, read_state_dict(path), path,
                           f"HRNet-W{model.width} (MODEL.POSE_ARCH hrnet_w{model.width})")
    return model


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def hrnet_identity(arch: str, weight_path: str, input_hw: tuple[int, int] = (256, 128)) -> str:
    """The architecture, the SHA-256 of the weights file, and the input size."""
    return f"hrnet-{arch}-{sha256_file(_require_checkpoint(weight_path))[:16]}-{input_hw[0]}x{input_hw[1]}"


class HRNetEstimator(PoseEstimator):
    """HRNet on person crops, batched on GPU or CPU.

    Each crop is resized to `input_hw` (256x128 as in PFD, heatmaps 64x32) and ImageNet-normalized;
    keypoints are the sub-pixel heatmap peaks (pfd.pose.heatmaps.decode_heatmaps) mapped back to
    the crop's pixels, confidence = peak value clipped to [0, 1].
    """

    name = "hrnet"

    def __init__(self, arch: str, weight_path: str, device: str | torch.device = "cpu",
                 input_hw: tuple[int, int] = (256, 128), batch_size: int = 64):
        self.model = load_hrnet_weights(build_hrnet(arch), weight_path).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.model.to(self.device, memory_format=torch.channels_last)
        self.input_hw = tuple(input_hw)
        self.batch_size = batch_size
        self.identity = hrnet_identity(arch, weight_path, self.input_hw)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_config(cls, cfg) -> "HRNetEstimator":
        if not cfg.MODEL.POSE_WEIGHT:
            raise ConfigError("MODEL.POSE_BACKEND hrnet needs MODEL.POSE_WEIGHT "
                              "(e.g. weights/pose_hrnet_w48_256x192.pth)")
        device = resolve_device(cfg.MODEL.DEVICE)
        return cls(cfg.MODEL.POSE_ARCH, cfg.MODEL.POSE_WEIGHT, device, batch_size=cfg.TEST.IMS_PER_BATCH)

    def _batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Crops -> ImageNet-normalized [N, 3, H, W] on the device, channels_last."""
        size = (self.input_hw[1], self.input_hw[0])
        arrays = np.stack([np.asarray(to_rgb(img).resize(size, Image.BILINEAR)) for img in images])
        x = torch.from_numpy(arrays).to(self.device).permute(0, 3, 1, 2).float().div_(255)  # [N, 3, H, W]
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def heatmaps(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """HRNet's raw heatmaps [N, 17, H/4, W/4] (float32, on the device) for the resized crops."""
        dtype = autocast_dtype("auto", self.device)
        outs = []
        for start in range(0, len(images), self.batch_size):
            with autocast(self.device, dtype):
                outs.append(self.model(self._batch(images[start:start + self.batch_size])).float())
        return torch.cat(outs) if outs else torch.zeros(0, 17, self.input_hw[0] // 4, self.input_hw[1] // 4)

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        return heatmaps_to_keypoints(self.heatmaps(images), [img.size for img in images])


def heatmaps_to_keypoints(heatmaps: torch.Tensor, crop_sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """Heatmaps [N, 17, h, w] of resized crops -> keypoints [N, 17, 3] in each crop's own pixels.

    Sub-pixel peaks (decode_heatmaps), mapped with pixel edges aligned (the resize to the network
    input preserves them too); confidence = peak value clipped to [0, 1]. `crop_sizes` are (W, H).
    """
    h, w = heatmaps.shape[-2:]
    kps = decode_heatmaps(heatmaps.float()).cpu()  # [N, 17, 3], (x, y) in heatmap pixels
    scale = torch.tensor(crop_sizes, dtype=torch.float32).view(-1, 1, 2) / torch.tensor([w, h])  # [N, 1, 2]
    xy = (kps[..., :2] + 0.5) * scale - 0.5  # [N, 17, 2] crop pixels
    return torch.cat([xy, kps[..., 2:].clamp(0, 1)], dim=-1).numpy().astype(np.float32)
