"""HRNet on every augmented batch (MODEL.POSE_ONLINE), as the reference implementation does.

The reference feeds HRNet's raw heatmaps, unchanged, to PFD: values are whatever HRNet gives
(roughly in [0, 1] around a peak, small negatives elsewhere); the visibility threshold tau then
applies to their peaks. This module keeps them as they are. It is frozen: eval mode whatever the
parent's mode, no gradients, weights never in an optimizer (they need no grad).

Input (MODEL.POSE_INPUT_NORM): `reference` hands HRNet the ViT's input tensor as it is (normalized
with INPUT.PIXEL_MEAN/STD, 0.5/0.5), as the reference does and as its released checkpoints were
trained; `imagenet` re-normalizes to HRNet's own ImageNet statistics (better keypoints, a departure).
Precision: always float32, autocast or not, so training, evaluation and the benchmarks (which all
call this module) see the same heatmaps whatever SOLVER.AMP / TEST.AMP say.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ConfigError
from .hrnet import IMAGENET_MEAN, IMAGENET_STD, build_hrnet, load_hrnet_weights

__all__ = ["OnlineHeatmaps"]


class OnlineHeatmaps(nn.Module):
    """The ViT's input images [B, 3, H, W] -> HRNet heatmaps [B, 17, H/4, W/4] (float32)."""

    def __init__(self, cfg):
        super().__init__()
        if not cfg.MODEL.POSE_WEIGHT:
            raise ConfigError("MODEL.POSE_ONLINE needs HRNet weights in MODEL.POSE_WEIGHT "
                              "(e.g. weights/pose_hrnet_w48_256x192.pth)")
        self.hrnet = load_hrnet_weights(build_hrnet(cfg.MODEL.POSE_ARCH), cfg.MODEL.POSE_WEIGHT)
        self.hrnet.requires_grad_(False).eval()
        self.hrnet.to(memory_format=torch.channels_last)
        scale, shift = torch.ones(3), torch.zeros(3)  # reference: the ViT's input as it is
        if cfg.MODEL.POSE_INPUT_NORM == "imagenet":  # x * scale + shift: undo the ViT's normalization, apply ImageNet's
            vit_mean, vit_std = torch.tensor(cfg.INPUT.PIXEL_MEAN), torch.tensor(cfg.INPUT.PIXEL_STD)
            net_mean, net_std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
            scale, shift = vit_std / net_std, (vit_mean - net_mean) / net_std
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "OnlineHeatmaps":
        """Stay in eval mode (frozen BatchNorm statistics) whatever the parent does."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(images.device.type, enabled=False):  # float32 under any caller's autocast
            x = images.float() * self.scale + self.shift  # [B, 3, H, W]
            return self.hrnet(x.contiguous(memory_format=torch.channels_last))  # [B, 17, H/4, W/4], raw values
