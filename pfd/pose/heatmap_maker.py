"""The heatmaps a model sees for a batch, on its device: Gaussians rendered from the loader's keypoints
(pfd.pose.heatmaps.render_heatmaps), or online HRNet on the batch itself (MODEL.POSE_ONLINE), with the
TEST.NO_POSE whole-body prior for evaluation images without a person.

Kept apart from heatmaps.py (the rendering and decoding functions) because online HRNet decodes with
them: heatmaps.py <- hrnet.py <- online.py <- this module.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .heatmaps import render_heatmaps

__all__ = ["WHOLE_BODY_PRIOR", "HeatmapMaker"]

# TEST.NO_POSE prior: a person standing upright filling the crop, seen from the front (their left on the
# image's right), COCO-17 order; x, y as shares of (width - 1, height - 1), then the confidence.
WHOLE_BODY_PRIOR = (
    (0.50, 0.10, 1.0), (0.53, 0.085, 1.0), (0.47, 0.085, 1.0), (0.57, 0.095, 1.0), (0.43, 0.095, 1.0),
    (0.66, 0.22, 1.0), (0.34, 0.22, 1.0), (0.72, 0.37, 1.0), (0.28, 0.37, 1.0), (0.72, 0.50, 1.0),
    (0.28, 0.50, 1.0), (0.60, 0.52, 1.0), (0.40, 0.52, 1.0), (0.60, 0.72, 1.0), (0.40, 0.72, 1.0),
    (0.60, 0.92, 1.0), (0.40, 0.92, 1.0),
)


class HeatmapMaker(nn.Module):
    """Heatmaps for a batch on its device: rendered from the loader's keypoints, or online HRNet."""

    def __init__(self, cfg, input_hw: Sequence[int], evaluation: bool = False):
        super().__init__()
        self.input_hw = tuple(input_hw)
        self.sigma = cfg.INPUT.HEATMAP_SIGMA
        self.online = None
        if cfg.MODEL.POSE_ONLINE:
            from .online import OnlineHeatmaps

            self.online = OnlineHeatmaps(cfg).eval()
        prior = evaluation and cfg.TEST.NO_POSE == "prior"
        h, w = self.input_hw
        self.register_buffer("prior", torch.tensor(WHOLE_BODY_PRIOR) * torch.tensor([w - 1, h - 1, 1.0])
                             if prior else None, persistent=False)  # [17, 3] input pixels, confidence 1

    @torch.no_grad()
    def forward(self, images: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        # images [B, 3, H, W] normalized; keypoints [B, 17, 3] in input pixels -> [B, 17, H/4, W/4]
        if self.online is not None:
            return self.online(images)
        if self.prior is not None:  # TEST.NO_POSE prior: images without a person get the whole-body prior
            no_pose = keypoints[..., 2].amax(1) <= 0  # [B]
            keypoints = torch.where(no_pose.view(-1, 1, 1), self.prior.to(keypoints.dtype), keypoints)
        return render_heatmaps(keypoints, self.input_hw, self.sigma)
