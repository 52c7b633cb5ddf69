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

__all__ = ["read_state_dict", "load_vit_pretrained"]

_logger = logging.getLogger(__name__)

# Classifier heads and distillation tokens of ImageNet checkpoints: never part of the backbone.
_IGNORED_PREFIXES = ("head.", "head_dist.", "fc.", "pre_logits.", "dist_token", "fc_norm.")


def _unwrap(obj: dict, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside common checkpoint wrappers, `module.` / `_orig_mod.` prefixes removed."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{path}: no tensors found (top-level keys: {sorted(obj)[:10]})")
    out = {}
    for key, value in tensors.items():
        for prefix in ("module.", "_orig_mod."):
            key = key[len(prefix):] if key.startswith(prefix) else key
        out[key] = value
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .pth / .pt / .bin / .safetensors file on CPU (weights_only), unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(path), device="cpu")
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return _unwrap(obj, path)


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

    own = vit.state_dict()
    missing = sorted(set(own) - set(weights))
    mismatched = [f"{k}: file {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or mismatched:
        raise ValueError(
            f"{path}: these weights do not fit the ViT built from MODEL.TRANSFORMER_TYPE/VIT_DEPTH/INPUT.SIZE_TRAIN; "
            f"missing keys: {missing[:12]}{' ...' if len(missing) > 12 else ''}; "
            f"shape mismatches: {mismatched[:12]}{' ...' if len(mismatched) > 12 else ''}")
    extra = sorted(set(weights) - set(own))
    if extra:  # e.g. blocks beyond MODEL.VIT_DEPTH when a shallower model starts from ImageNet ViT
        _logger.warning("%s: %d keys not used by this ViT: %s", path, len(extra), extra[:8])
    vit.load_state_dict({k: weights[k] for k in own}, strict=True)
    _logger.info("loaded ImageNet ViT weights from %s (ignored: %s)", path, ignored or "none")
