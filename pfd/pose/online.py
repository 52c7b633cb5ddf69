"""HRNet on every augmented batch (MODEL.POSE_ONLINE), as the reference implementation does.

The reference feeds HRNet's raw heatmaps, unchanged, to PFD: values are whatever HRNet gives
(roughly in [0, 1] around a peak, small negatives elsewhere); the visibility threshold tau then
applies to their peaks. This module keeps them as they are. It is frozen: eval mode whatever the
parent's mode, no gradients, weights never in an optimizer (they need no grad).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .hrnet import IMAGENET_MEAN, IMAGENET_STD, build_hrnet, load_hrnet_weights

__all__ = ["OnlineHeatmaps"]


class OnlineHeatmaps(nn.Module):
    """ViT-normalized images [B, 3, H, W] -> HRNet heatmaps [B, 17, H/4, W/4] (float32)."""

    def __init__(self, cfg):
        super().__init__()
        if not cfg.MODEL.POSE_WEIGHT:
            raise ValueError("MODEL.POSE_ONLINE needs HRNet weights in MODEL.POSE_WEIGHT "
                             "(e.g. weights/pose_hrnet_w48_256x192.pth)")
        self.hrnet = load_hrnet_weights(build_hrnet(cfg.MODEL.POSE_ARCH), cfg.MODEL.POSE_WEIGHT)
        self.hrnet.requires_grad_(False).eval()
        self.hrnet.to(memory_format=torch.channels_last)
        # x_imagenet = x_vit * scale + shift: undo the ViT normalization, apply ImageNet's
        vit_mean, vit_std = torch.tensor(cfg.INPUT.PIXEL_MEAN), torch.tensor(cfg.INPUT.PIXEL_STD)
        net_mean, net_std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("scale", (vit_std / net_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((vit_mean - net_mean) / net_std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "OnlineHeatmaps":
        """Stay in eval mode (frozen BatchNorm statistics) whatever the parent does."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images * self.scale + self.shift).contiguous(memory_format=torch.channels_last)  # [B, 3, H, W]
        return self.hrnet(x).float()  # [B, 17, H/4, W/4], raw HRNet values
