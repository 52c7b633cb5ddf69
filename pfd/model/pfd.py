"""The PFD model (docs/MODEL.md sections 2-10) on top of the adapted timm ViT.

Module names follow the reference implementation where they exist (`base_vit`, `b2`,
`query_embed`, `pose_decoder_linear`, `bottleneck`, `bottleneck_decoder`, `non_skt_decoder`,
`classifier_encoder`, `classifier_decoder`); its 17 per-part BNNecks / classifiers are stacked
into one module each (`bottleneck_parts`, `classifier_parts`, `bottleneck_decoder_parts`,
`classifier_decoder_parts`) so that all parts run in one op. `pfd.model.convert` maps the names.

Unused by the forward, as in the reference: the ViT's own last block and final norm
(`base_vit.vit.blocks[-1]`, `base_vit.vit.norm`), kept only as the pretrained source of `b2`.
They are frozen (requires_grad False), which changes nothing (they never receive a gradient)
and lets DDP run without find_unused_parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pfd.pose.keypoints import NUM_KEYPOINTS
from pfd.retrieval.part_distance import PartLayout

from .backbone import ViTBackbone
from .decoder import PartViewDecoder, PartViewDecoderLayer
from .parts import (
    BNNeck,
    PartBNNecks,
    PartClassifiers,
    disentangle,
    heat_weight,
    keypoint_visibility,
    make_classifier,
    pfa,
    pose_pool,
    pose_token_mask,
    pvm,
)

__all__ = ["PFDOutput", "PFD"]


@dataclass
class PFDOutput:
    """Training outputs; index 0 of each stack is the global entry, 1.. the parts.

    enc_scores [1+K, B, C]: Cls_enc(g_bn), Cls_i(l_i_bn)
    enc_feats  [1+K, B, D]: g_bn (the reference feeds the BNNeck output to the triplet), l_i
    dec_scores [1+Nq, B, C]: Cls_dec(f_h_bn), Cls_dj(Dp_j_bn)     (None for the ViT baseline)
    dec_feats  [1+Nq, B, D]: f_h_bn, Dp_j                          (None for the ViT baseline)
    f_h_bn, f_l_bn [B, D]: inputs of the push loss                 (None for the ViT baseline)
    """

    enc_scores: torch.Tensor
    enc_feats: torch.Tensor
    dec_scores: torch.Tensor | None = None
    dec_feats: torch.Tensor | None = None
    f_h_bn: torch.Tensor | None = None
    f_l_bn: torch.Tensor | None = None


class PFD(nn.Module):
    """Pose-guided feature disentangling.

    forward(images [B, 3, H, W], heatmaps [B, 17, H/4, W/4], camids [B] int64) ->
    PFDOutput in train() mode, the inference feature [B, feature_dim] in eval() mode.
    """

    def __init__(self, backbone: ViTBackbone, num_classes: int, *, input_size: tuple[int, int],
                 num_views: int = 17, num_decoder_layers: int = 2, num_heads: int = 8, ffn_dim: int = 2048,
                 dropout: float = 0.1, ffn_residual: bool = False, pvm_mode: str = "reference",
                 visibility_threshold: float = 0.3, feat_kind: str = "full", heat_weighting: bool = True,
                 use_pfa: bool = True, use_pvm: bool = True, use_disentangle: bool = True, part_pool: str = "cls",
                 token_mask: str = "none", token_mask_radius: int = 1, token_mask_shape: str = "square"):
        super().__init__()
        dim, k = backbone.embed_dim, NUM_KEYPOINTS
        if backbone.num_patches < k:
            raise ValueError(f"{backbone.num_patches} patch tokens (grid {backbone.grid_size}) cannot be split into "
                             f"{k} part groups: use a larger INPUT.SIZE_TRAIN or a smaller MODEL.STRIDE_SIZE")
        if pvm_mode == "reference" and num_views != k:
            raise ValueError(f"MODEL.QUERY_NUM={num_views} needs MODEL.PVM_MODE paper (reference PVM needs {k})")
        if part_pool not in ("cls", "pose"):
            raise ValueError(f"MODEL.PART_POOL must be cls or pose, got {part_pool!r}")
        if token_mask not in ("none", "pose"):
            raise ValueError(f"MODEL.TOKEN_MASK must be none or pose, got {token_mask!r}")
        if token_mask_shape not in ("square", "column"):
            raise ValueError(f"MODEL.TOKEN_MASK_SHAPE must be square or column, got {token_mask_shape!r}")
        if feat_kind not in ("full", "global", "global_visible"):
            raise ValueError(f"MODEL.FEAT_KIND must be full, global or global_visible, got {feat_kind!r}")
        self.num_keypoints, self.num_views, self.embed_dim = k, num_views, dim
        self.heatmap_size = (input_size[0] // 4, input_size[1] // 4)
        self.pvm_mode, self.visibility_threshold, self.feat_kind = pvm_mode, visibility_threshold, feat_kind
        if not use_pvm and num_views != k:
            raise ValueError(f"MODEL.PVM false pairs view j with keypoint j, so it needs MODEL.QUERY_NUM={k}, "
                             f"got {num_views}")
        # Ablation switches (all True = the reference model; see docs/ARCHITECTURE.md).
        self.heat_weighting, self.use_pfa, self.use_pvm = heat_weighting, use_pfa, use_pvm
        self.use_disentangle, self.part_pool = use_disentangle, part_pool
        self.token_mask_radius, self.token_mask_shape = token_mask_radius, token_mask_shape
        # MODEL.TOKEN_MASK pose: the learned patch that stands in for what the pose says is not the visible person
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim)) if token_mask == "pose" else None
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)

        self.base_vit = backbone
        self.part_features = nn.Identity()  # marks L [B, K, D] for forward hooks (pfd.export's matching check)
        self.b2 = backbone.last_block_copy()  # [last block copy, final norm copy]
        for p in [*backbone.vit.blocks[-1].parameters(), *backbone.vit.norm.parameters()]:
            p.requires_grad_(False)
        # pose inputs
        self.pose_decoder_linear = nn.Linear(self.heatmap_size[0] * self.heatmap_size[1], dim)
        # part-view decoder
        self.query_embed = nn.Parameter(torch.randn(num_views, dim))  # Q [Nq, D], nn.Embedding's N(0, 1)
        layer = PartViewDecoderLayer(dim, num_heads, ffn_dim, dropout, ffn_residual)
        self.decoder = PartViewDecoder(layer, num_decoder_layers, dim)
        # encoder heads
        self.bottleneck = BNNeck(dim)
        self.classifier_encoder = make_classifier(dim, num_classes)
        self.bottleneck_parts = PartBNNecks(k, dim)
        self.classifier_parts = PartClassifiers(k, dim, num_classes)
        # decoder heads
        self.bottleneck_decoder = BNNeck(dim)  # f_h
        self.non_skt_decoder = BNNeck(dim)  # f_l
        self.classifier_decoder = make_classifier(dim, num_classes)
        self.bottleneck_decoder_parts = PartBNNecks(num_views, dim)
        self.classifier_decoder_parts = PartClassifiers(num_views, dim, num_classes)

    @property
    def feature_dim(self) -> int:
        """Width of the eval-mode feature for MODEL.FEAT_KIND."""
        blocks = {"full": 2 + self.num_keypoints + self.num_views, "global": 1, "global_visible": 2}
        return blocks[self.feat_kind] * self.embed_dim

    @property
    def part_layout(self) -> PartLayout | None:
        """Where the K part blocks l_k_bn / K sit in the eval feature (FEAT_KIND full), for the visibility-aware
        distance (TEST.PART_DISTANCE visible); None for the shorter features, which have no parts."""
        return PartLayout(self.embed_dim, self.num_keypoints, self.embed_dim) if self.feat_kind == "full" else None

    @property
    def matching_free_dim(self) -> int:
        """Leading width of the eval feature that no argmax matching (PFA, PVM) touches: g_bn, and the
        l_i_bn for FEAT_KIND full; what follows (f_h_bn, Dp) depends on which view each keypoint matched."""
        return (1 + self.num_keypoints if self.feat_kind == "full" else 1) * self.embed_dim

    def encode_parts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Part features L [B, K, D] from F [B, 1+N, D]: b2 on cls + each of K contiguous token groups.

        Groups 0..K-2 hold p = N // K tokens each and run through b2 in one call; the last group
        (the remaining N - (K-1)p tokens) runs in a second call. Only the cls output is normalized.
        """
        b, n, d = tokens.shape[0], tokens.shape[1] - 1, tokens.shape[2]
        k = self.num_keypoints
        p = n // k
        cls = tokens[:, :1]  # [B, 1, D]
        equal = tokens[:, 1:1 + (k - 1) * p].reshape(b * (k - 1), p, d)  # [B*(K-1), p, D]
        cls_rep = cls.expand(b, k - 1, d).reshape(b * (k - 1), 1, d)  # [B*(K-1), 1, D]
        block, norm = self.b2[0], self.b2[1]
        head = block(torch.cat([cls_rep, equal], dim=1))[:, 0].view(b, k - 1, d)  # [B, K-1, D]
        last = block(torch.cat([cls, tokens[:, 1 + (k - 1) * p:]], dim=1))[:, :1]  # [B, 1, D]
        return norm(torch.cat([head, last], dim=1))  # L [B, K, D]

    def forward(self, images: torch.Tensor, heatmaps: torch.Tensor, camids: torch.Tensor | None = None):
        b = images.shape[0]
        if heatmaps.shape[0] != b or tuple(heatmaps.shape[1:]) != (self.num_keypoints, *self.heatmap_size):
            raise ValueError(f"heatmaps: expected [{b}, {self.num_keypoints}, {self.heatmap_size[0]}, "
                             f"{self.heatmap_size[1]}] (input size / 4), got {list(heatmaps.shape)}")
        heat = heatmaps.flatten(2)  # Mf [B, K, h*w]
        keypoint_feats = self.pose_decoder_linear(heat)  # P [B, K, D]
        visible = keypoint_visibility(heat, self.visibility_threshold)  # v [B, K] bool
        hidden = None  # [B, N] bool: patches replaced by the mask token (MODEL.TOKEN_MASK pose)
        if self.mask_token is not None:
            hidden = pose_token_mask(heatmaps, visible, self.base_vit.grid_size, self.token_mask_radius,
                                     self.token_mask_shape)
        if not self.use_disentangle:  # ablation: every keypoint counts as visible, nothing is set apart
            visible = torch.ones_like(visible)

        tokens = self.base_vit(images, camids, hidden, self.mask_token)  # F [B, 1+N, D]
        if self.heat_weighting:
            weight = heat_weight(heat, self.embed_dim)  # a [B, 1, D]
            g = tokens[:, 0] * weight[:, 0] + tokens[:, 0]  # [B, D]
            memory = tokens * weight  # [B, 1+N, D]
        else:  # ablation: the raw cls token and tokens
            g, memory = tokens[:, 0], tokens
        g_bn = self.bottleneck(g)
        if not self.training and self.feat_kind == "global":
            return g_bn  # the compact index needs neither parts nor decoder
        if self.part_pool == "pose":  # parts at the keypoints; the hidden ones zero in the eval feature
            block, norm = self.b2[0], self.b2[1]
            local = pose_pool(norm(block(tokens)), heatmaps, self.base_vit.grid_size, visible)  # L [B, K, D]
        else:
            local = self.encode_parts(tokens)  # L [B, K, D]
        local = self.part_features(local)
        local_bn = self.bottleneck_parts(local)  # [B, K, D]

        views = self.decoder(self.query_embed, memory)  # V [B, Nq, D]
        aligned = pfa(local, keypoint_feats) if self.use_pfa else local  # A [B, K, D]
        if self.use_pvm:
            outputs, matched = pvm(aligned, views, self.pvm_mode)  # O [B, Nq, D], m [B, Nq]
        else:  # ablation: view j is paired with keypoint j, no matching
            outputs = views + aligned
            matched = torch.arange(self.num_views, device=views.device).expand(b, -1)  # [B, Nq]
        f_h, f_l, parts = disentangle(outputs, matched, visible)  # [B, D], [B, D], Dp [B, Nq, D]
        f_h_bn = self.bottleneck_decoder(f_h)

        if not self.training:
            if self.part_pool == "pose":
                local_bn = local_bn * visible.unsqueeze(-1).to(local_bn.dtype)  # hidden parts: zero blocks
            return self._inference_feature(g_bn, local_bn, f_h_bn, parts)
        parts_bn = self.bottleneck_decoder_parts(parts)  # [B, Nq, D]
        enc_scores = torch.cat([self.classifier_encoder(g_bn).unsqueeze(0), self.classifier_parts(local_bn)])
        dec_scores = torch.cat([self.classifier_decoder(f_h_bn).unsqueeze(0), self.classifier_decoder_parts(parts_bn)])
        return PFDOutput(
            enc_scores=enc_scores,  # [1+K, B, C]
            enc_feats=torch.cat([g_bn.unsqueeze(0), local.transpose(0, 1)]),  # [1+K, B, D]
            dec_scores=dec_scores,  # [1+Nq, B, C]
            dec_feats=torch.cat([f_h_bn.unsqueeze(0), parts.transpose(0, 1)]),  # [1+Nq, B, D]
            f_h_bn=f_h_bn,
            f_l_bn=self.non_skt_decoder(f_l),
        )

    def _inference_feature(self, g_bn, local_bn, f_h_bn, parts) -> torch.Tensor:
        """Spec section 10: [g_bn, l_i_bn / K, f_h_bn, Dp_j / Nq] (full) or [g_bn, f_h_bn] (global_visible)."""
        if self.feat_kind == "global_visible":
            return torch.cat([g_bn, f_h_bn], dim=1)
        return torch.cat([g_bn, local_bn.flatten(1) / self.num_keypoints, f_h_bn,
                          parts.flatten(1) / self.num_views], dim=1)
