"""Plain ViT baseline (`MODEL.NAME: vit_baseline`): the same backbone, a global BNNeck and the same losses.

No pose, no part groups, no decoder: what PFD adds is measured against this. The ViT runs all its
blocks and its final norm; the cls token is the feature (TransReID without JPM). Module names
follow TransReID's `build_transformer` (`bottleneck`, `classifier`).
"""
from __future__ import annotations

import torch
from torch import nn

from .backbone import ViTBackbone
from .parts import BNNeck, make_classifier
from .pfd import PFDOutput

__all__ = ["ViTBaseline"]


class ViTBaseline(nn.Module):
    """forward(images [B, 3, H, W], heatmaps (ignored), camids [B]) -> PFDOutput (train) / feature [B, D] (eval).

    The eval feature is the cls feature before the BNNeck (`neck_feat="before"`, TransReID's
    TEST.NECK_FEAT default) or after it ("after").
    """

    def __init__(self, backbone: ViTBackbone, num_classes: int, neck_feat: str = "before"):
        super().__init__()
        if neck_feat not in ("before", "after"):
            raise ValueError(f"TEST.NECK_FEAT must be before or after, got {neck_feat!r}")
        self.base_vit = backbone
        self.bottleneck = BNNeck(backbone.embed_dim)
        self.classifier = make_classifier(backbone.embed_dim, num_classes)
        self.neck_feat = neck_feat

    @property
    def feature_dim(self) -> int:
        return self.base_vit.embed_dim

    def forward(self, images: torch.Tensor, heatmaps: torch.Tensor | None = None,
                camids: torch.Tensor | None = None):
        vit = self.base_vit.vit
        g = vit.norm(vit.blocks[-1](self.base_vit(images, camids))[:, 0])  # [B, D]
        g_bn = self.bottleneck(g)
        if not self.training:
            return g if self.neck_feat == "before" else g_bn
        return PFDOutput(enc_scores=self.classifier(g_bn).unsqueeze(0), enc_feats=g.unsqueeze(0))  # [1, B, *]
