"""ImageNet ViT weights from a local file into the backbone's timm ViT (never from the hub).

Accepted: timm-named state dicts in .pth / .bin / .safetensors (e.g. `jx_vit_base_p16_224-80ecf9dd.pth`:
`pos_embed` [1, 197, 768], `head.*`), optionally wrapped in {"state_dict"|"model": ...} and/or
`module.`-prefixed, and Google's .npz files through timm's own loader. Position embeddings are
resampled bilinearly (cls position kept) onto the patch grid, as TransReID does. A missing file,
missing keys or shapes that do not fit raise an error naming the file and the keys.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from ..state_dict import load_state_dict_strict, read_state_dict

__all__ = ["load_vit_pretrained"]

_logger = logging.getLogger(__name__)

# Classifier heads and distillation tokens of ImageNet checkpoints: never part of the backbone.
_IGNORED_PREFIXES = ("head.", "head_dist.", "fc.", "pre_logits.", "dist_token", "fc_norm.")


def _fit_pos_embed(pos_embed: torch.Tensor, vit: VisionTransformer) -> torch.Tensor:
    """[1, 1 + G*G, D] from a square ImageNet grid -> [1, 1 + gh*gw, D] for this model's patch grid."""
    target = vit.pos_embed.shape
    if pos_embed.shape == target or pos_embed.ndim != 3 or pos_embed.shape[-1] != target[-1]:
        return pos_embed  # equal, or a mismatch reported by the shape check
    side = math.isqrt(pos_embed.shape[1] - 1)
    if side * side != pos_embed.shape[1] - 1:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=list(vit.patch_embed.grid_size), old_size=[side, side],
                                  num_prefix_tokens=1, interpolation="bilinear", antialias=False)


def load_vit_pretrained(vit: VisionTransformer, path: str | Path) -> None:
    """Load ImageNet weights from `path` into `vit` in place (every backbone key must be present)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MODEL.PRETRAIN_PATH: pretrained ViT weights not found: {path}")
    if path.suffix == ".npz":
        vit.load_pretrained(str(path))  # timm's JAX/npz loader resamples pos_embed itself (bilinear)
        _logger.info("loaded ImageNet ViT weights (npz) from %s", path)
        return
    weights = read_state_dict(path)
    ignored = sorted(k for k in weights if k.startswith(_IGNORED_PREFIXES))
    weights = {k: v for k, v in weights.items() if k not in set(ignored)}
    if "pos_embed" in weights:
        weights["pos_embed"] = _fit_pos_embed(weights["pos_embed"], vit)

    extra = load_state_dict_strict(
        vit, weights, path, "the ViT built from MODEL.TRANSFORMER_TYPE/VIT_DEPTH/INPUT.SIZE_TRAIN",
        allow_unexpected=True)
    if extra:  # e.g. blocks beyond MODEL.VIT_DEPTH when a shallower model starts from ImageNet ViT
        _logger.warning("%s: %d keys not used by this ViT: %s", path, len(extra), extra[:8])
    _logger.info("loaded ImageNet ViT weights from %s (ignored: %s)", path, ignored or "none")
