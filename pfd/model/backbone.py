"""Visual context encoder (docs/MODEL.md section 1): a timm VisionTransformer adapted the TransReID way.

The timm model is used as it is (its blocks, fused attention, init); this module only
- sets the input size and the patch stride (stride 12 = overlapping patches, "PFD*"),
- adds the side-information camera embedding `SIE_COE * E[c]` after the position embedding,
- returns the tokens after all blocks but the last, with no final norm (the last block and the
  final norm are copied into the model's `b2` branch, see `ViTBackbone.last_block_copy`).
"""
from __future__ import annotations

import copy
import logging

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = ["REFERENCE_VIT_NAMES", "timm_vit_name", "ViTBackbone", "build_backbone"]

_logger = logging.getLogger(__name__)

# The reference (TransReID) factory names and the timm architectures they correspond to.
REFERENCE_VIT_NAMES = {
    "vit_base_patch16_224_TransReID": "vit_base_patch16_224",
    "vit_small_patch16_224_TransReID": "vit_small_patch16_224",
    "deit_small_patch16_224_TransReID": "deit_small_patch16_224",
    "deit_base_patch16_224_TransReID": "deit_base_patch16_224",
}


def timm_vit_name(name: str) -> str:
    """The timm model name for MODEL.TRANSFORMER_TYPE (reference names are mapped)."""
    return REFERENCE_VIT_NAMES.get(name, name)


class ViTBackbone(nn.Module):
    """timm ViT with a configurable patch stride and the camera embedding.

    forward(images [B, 3, H, W], camids [B] int64 or None) -> F [B, 1 + N, D]: the cls token and
    the N patch tokens (row-major) after blocks 1..depth-1. `vit.blocks[-1]` and `vit.norm` are
    not used here: they are the pretrained source of the model's `b2` copy (and the baseline's
    last stage).
    """

    def __init__(self, vit: VisionTransformer, stride: tuple[int, int], num_cameras: int, sie_coe: float,
                 patch_embed: str = "linear"):
        super().__init__()
        if not isinstance(vit, VisionTransformer) or vit.cls_token is None or vit.num_prefix_tokens != 1 \
                or vit.no_embed_class or vit.pos_embed is None:
            raise ValueError(
                f"{type(vit).__name__}: expected a timm VisionTransformer with a class token, no register "
                "tokens and a learned position embedding that includes the class position")
        self.vit = vit
        self.embed_dim = vit.embed_dim
        self._set_patch_stride(stride)
        if patch_embed == "conv_stem":
            self._use_conv_stem(stride)
        elif patch_embed != "linear":
            raise ValueError(f"patch_embed must be linear or conv_stem, got {patch_embed!r}")
        self.sie_coe = sie_coe
        # E [C, 1, D], TransReID init; absent with a single camera (or SIE off).
        self.sie_embed = nn.Parameter(torch.zeros(num_cameras, 1, self.embed_dim)) if num_cameras > 1 else None
        if self.sie_embed is not None:
            nn.init.trunc_normal_(self.sie_embed, std=0.02)

    def _set_patch_stride(self, stride: tuple[int, int]) -> None:
        """Reconfigure timm's patch embedding conv to `stride` and size pos_embed for the new grid."""
        pe = self.vit.patch_embed
        if tuple(stride) == tuple(pe.proj.stride):
            return
        (img_h, img_w), (k_h, k_w) = pe.img_size, pe.patch_size
        grid = ((img_h - k_h) // stride[0] + 1, (img_w - k_w) // stride[1] + 1)  # N = grid[0] * grid[1]
        pe.proj.stride = tuple(stride)
        pe.grid_size, pe.num_patches = grid, grid[0] * grid[1]
        # New table [1, 1 + N, D], timm's init; pretrained weights are resampled onto it when loaded.
        self.vit.pos_embed = nn.Parameter(torch.zeros(1, 1 + pe.num_patches, self.embed_dim))
        nn.init.trunc_normal_(self.vit.pos_embed, std=0.02)

    def _use_conv_stem(self, stride: tuple[int, int]) -> None:
        """Replace the 16x16 patch conv by timm's ConvStem (Xiao et al. 2021, "Early convolutions help
        transformers see better"): three 3x3 stride-2 conv-BN-ReLU layers (1/8 resolution), then a 2x2
        projection with stride `stride / 8`. It sees the same 16x16 window per token, so the grid and
        position embedding are unchanged; a ViT trained from scratch learns far faster with it."""
        from timm.models.vision_transformer_hybrid import ConvStem  # timm's hybrid-ViT stem

        pe, dim = self.vit.patch_embed, self.embed_dim
        if tuple(pe.patch_size) != (16, 16) or any(s not in (8, 16) for s in stride):
            raise ValueError(f"conv_stem needs a patch-16 ViT and strides of 8 or 16, got patch "
                             f"{list(pe.patch_size)}, stride {list(stride)}")
        pe.proj = ConvStem(in_chans=3, depth=4, channels=(dim // 8, dim // 4, dim // 2, dim), kernel_size=(3, 3, 3, 2),
                           stride=(2, 2, 2, (stride[0] // 8, stride[1] // 8)), padding=(1, 1, 1, 0))

    @property
    def num_patches(self) -> int:
        return self.vit.patch_embed.num_patches

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.vit.patch_embed.grid_size)

    def embed(self, images: torch.Tensor, camids: torch.Tensor | None, hidden: torch.Tensor | None = None,
              mask_token: torch.Tensor | None = None) -> torch.Tensor:
        """Patch tokens + cls, position and camera embeddings: [B, 1 + N, D]. Patches where `hidden` [B, N] is
        True are replaced by `mask_token` [1, 1, D] before the position embedding (MODEL.TOKEN_MASK)."""
        vit = self.vit
        x = vit.patch_embed(images)  # [B, N, D]
        if hidden is not None:
            x = torch.where(hidden.unsqueeze(-1), mask_token.to(x.dtype), x)
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + vit.pos_embed
        if self.sie_embed is not None:
            if camids is None:
                raise ValueError("this model has a camera embedding (MODEL.SIE_CAMERA with >1 camera): "
                                 "pass camids [B] int64")
            x = x + self.sie_coe * self.sie_embed[camids]  # [B, 1, D] broadcast over tokens
        return vit.norm_pre(vit.patch_drop(vit.pos_drop(x)))

    def forward(self, images: torch.Tensor, camids: torch.Tensor | None = None, hidden: torch.Tensor | None = None,
                mask_token: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(images, camids, hidden, mask_token)
        for block in self.vit.blocks[:-1]:
            x = block(x)
        return x  # F [B, 1 + N, D], no final norm

    def last_block_copy(self) -> nn.Sequential:
        """`b2 = [copy of the last block, copy of the final norm]` with its own parameters."""
        return nn.Sequential(copy.deepcopy(self.vit.blocks[-1]), copy.deepcopy(self.vit.norm))


def build_backbone(cfg, num_cameras: int) -> ViTBackbone:
    """The timm ViT of MODEL.TRANSFORMER_TYPE at INPUT.SIZE_TRAIN, never downloading weights."""
    size_train, size_test = tuple(cfg.INPUT.SIZE_TRAIN), tuple(cfg.INPUT.SIZE_TEST)
    if size_train != size_test:
        raise ValueError(f"INPUT.SIZE_TRAIN {list(size_train)} and INPUT.SIZE_TEST {list(size_test)} differ; the "
                         "ViT position embedding is sized for one input size, so they must be equal")
    name = timm_vit_name(cfg.MODEL.TRANSFORMER_TYPE)
    kwargs = dict(pretrained=False, num_classes=0, img_size=size_train, drop_path_rate=cfg.MODEL.DROP_PATH,
                  pos_drop_rate=cfg.MODEL.DROP_OUT, proj_drop_rate=cfg.MODEL.DROP_OUT,
                  attn_drop_rate=cfg.MODEL.ATT_DROP_RATE)
    if cfg.MODEL.VIT_DEPTH > 0:
        kwargs["depth"] = cfg.MODEL.VIT_DEPTH
    try:
        vit = timm.create_model(name, **kwargs)
    except RuntimeError as err:  # timm: "Unknown model (...)"
        raise ValueError(f"MODEL.TRANSFORMER_TYPE {cfg.MODEL.TRANSFORMER_TYPE!r}: not a timm ViT ({err})") from err
    if len(vit.blocks) < 2:
        raise ValueError(f"MODEL.VIT_DEPTH={len(vit.blocks)}: PFD needs at least 2 blocks (the last one is b2)")
    stride = tuple(cfg.MODEL.STRIDE_SIZE)
    if len(stride) != 2 or min(stride) < 1:
        raise ValueError(f"MODEL.STRIDE_SIZE must be two positive ints, got {list(stride)}")
    cameras = num_cameras if cfg.MODEL.SIE_CAMERA else 0
    return ViTBackbone(vit, stride, cameras, cfg.MODEL.SIE_COE, cfg.MODEL.PATCH_EMBED)
