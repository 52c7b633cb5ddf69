"""The one eval forward loop: features of every batch of a test-style loader, with the test-time flip, and
where a feature's part blocks are when TEST.PART_DISTANCE visible compares them.

Evaluation (pfd.engine.evaluator) and the Python API (pfd.api) both use them, so both compute and compare
the same features for the same images.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from tqdm import tqdm

from ..config import ConfigError
from ..pose.heatmap_maker import HeatmapMaker
from ..pose.keypoints import flip_keypoints
from ..precision import autocast
from ..retrieval.part_distance import PartLayout

__all__ = ["loader_features", "part_layout"]


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


def part_layout(model: nn.Module, cfg) -> PartLayout | None:
    """The model's part blocks when TEST.PART_DISTANCE visible asks for them, else None; a feature without
    parts (the ViT baseline, MODEL.FEAT_KIND global*) is refused with the keys to change."""
    if cfg.TEST.PART_DISTANCE != "visible":
        return None
    layout = getattr(model, "part_layout", None)
    if layout is None:
        raise ConfigError(f"TEST.PART_DISTANCE visible compares part features, which MODEL.NAME {cfg.MODEL.NAME} "
                          f"with MODEL.FEAT_KIND {cfg.MODEL.FEAT_KIND} has not: use PFD with MODEL.FEAT_KIND full, "
                          "or TEST.PART_DISTANCE concat")
    return layout._replace(weight=cfg.TEST.PART_WEIGHT)
