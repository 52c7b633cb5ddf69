"""The one eval forward loop: features of every batch of a test-style loader, with the test-time flip.

Evaluation (pfd.engine.evaluator) and the Python API (pfd.api) both run it, so both compute the same
features for the same images.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from tqdm import tqdm

from ..pose.heatmap_maker import HeatmapMaker
from ..pose.keypoints import flip_keypoints
from ..precision import autocast

__all__ = ["loader_features"]


@torch.no_grad()
def loader_features(model: nn.Module, loader: Iterable[dict], device: torch.device, heatmaps: HeatmapMaker,
                    amp_dtype: torch.dtype | None, desc: str = "features", progress: bool = True,
                    flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode features of every batch of a test-style loader (samples with `image`, `keypoints`,
    `camid`, `index`): (features [N, F] float32, their `index` values [N]), both on `device`.

    flip (TEST.FLIP_FEATS): each feature is the mean of the image's and its mirror image's (keypoints
    mirrored with left and right swapped), the usual test-time flip of re-ID libraries.

    The one forward loop of evaluation and of the Python API (pfd.api), so both compute the same features.
    """
    was_training = model.training
    model.eval()
    # Start from empty rows so that an empty loader (a rank with no share) still returns [0, F].
    feats = [torch.empty(0, model.feature_dim, device=device)]  # [0, F]
    order = [torch.empty(0, dtype=torch.long, device=device)]  # [0]
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        images = batch["image"].to(device, non_blocking=True)
        kps = batch["keypoints"].to(device, non_blocking=True)
        camids = batch["camid"].to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            out = model(images, heatmaps(images, kps), camids)  # [B, F]
            if flip:
                mirrored = images.flip(-1)  # [B, 3, H, W]
                mirrored_heat = heatmaps(mirrored, flip_keypoints(kps, images.shape[-1]))  # [B, 17, H/4, W/4]
                out = (out + model(mirrored, mirrored_heat, camids)) / 2
        feats.append(out.float())
        order.append(batch["index"].to(device))
    model.train(was_training)
    return torch.cat(feats), torch.cat(order)

