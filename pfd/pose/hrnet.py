"""HRNet-W32/W48 COCO-17 keypoint networks, parameter-compatible with the public checkpoints.

The module tree reproduces the parameter names of `pose_hrnet_w{32,48}_*.pth` (Sun et al., "Deep
High-Resolution Representation Learning", the `pose_hrnet` of deep-high-resolution-net.pytorch):
stem conv1/bn1/conv2/bn2, `layer1` (4 Bottlenecks), `transition1/2/3`, `stage2/3/4` (modules with
`branches` and `fuse_layers`) and the 1x1 `final_layer`. Places where the original holds `None`
hold an `nn.Identity` here; it has no parameters, so the state-dict keys are identical.

The network maps a [B, 3, H, W] image (ImageNet-normalized) to raw heatmaps [B, 17, H/4, W/4].
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

__all__ = ["HRNet", "build_hrnet", "load_hrnet_weights", "weights_fingerprint", "HRNET_WIDTHS"]

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
        raise ValueError(f"MODEL.POSE_ARCH: unknown HRNet {arch!r}; expected one of {sorted(HRNET_WIDTHS)}")
    return HRNet(HRNET_WIDTHS[arch])


def _unwrap(obj: object, path: str) -> Mapping[str, torch.Tensor]:
    """Accept a bare state dict or {"state_dict": ...} / {"model": ...}; strip `module.` prefixes."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected an HRNet state dict, got {type(obj).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_hrnet_weights(model: HRNet, path: str | os.PathLike) -> HRNet:
    """Load a COCO keypoint checkpoint strictly; errors name the file and the offending keys."""
    path = str(path)
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"MODEL.POSE_WEIGHT: HRNet checkpoint {path!r} not found (expected e.g. pose_hrnet_w48_256x192.pth)"
        )
    state = _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" ... ({len(keys)} in all)" if len(keys) > 5 else "")

        details = [f"{name}: {show(keys)}" for name, keys in
                   (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys]
        raise ValueError(
            f"{path} does not match HRNet-W{model.width} (MODEL.POSE_ARCH hrnet_w{model.width}); "
            + "; ".join(details)
        )
    model.load_state_dict(state, strict=True)
    return model


def weights_fingerprint(path: str | os.PathLike) -> str:
    """A cheap identity of a weight file: sha256 of its size and first and last MiB (not the whole file)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]
