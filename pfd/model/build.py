"""`build_model(cfg, num_classes, num_cameras)`: the model of MODEL.NAME with its starting weights.

MODEL.PRETRAIN_CHOICE
- imagenet: ImageNet ViT weights from MODEL.PRETRAIN_PATH (a local file); empty path = from scratch.
- self: a whole-model checkpoint from MODEL.PRETRAIN_PATH (ours, or a reference one, converted).
- none: from scratch.
"""
from __future__ import annotations

import logging

from torch import nn

from .backbone import build_backbone
from .baseline import ViTBaseline
from .convert import load_checkpoint_into
from .pfd import PFD
from .pretrained import load_vit_pretrained

__all__ = ["build_model"]

_logger = logging.getLogger(__name__)


def build_model(cfg, num_classes: int, num_cameras: int, load_pretrained: bool = True) -> nn.Module:
    """PFD (`pfd`) or the plain ViT baseline (`vit_baseline`) for `num_classes` train ids and `num_cameras`.

    `load_pretrained=False` skips MODEL.PRETRAIN_* (for evaluation, where a checkpoint supplies every weight).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    backbone = build_backbone(cfg, num_cameras)
    choice, path = cfg.MODEL.PRETRAIN_CHOICE, cfg.MODEL.PRETRAIN_PATH
    if not load_pretrained:
        choice = "none"
    elif choice == "imagenet" and path:
        load_vit_pretrained(backbone.vit, path)  # before the model copies the last block into b2
    elif choice != "self":
        _logger.info("MODEL.PRETRAIN_CHOICE=%s, PRETRAIN_PATH=%r: training the ViT from scratch", choice, path)

    if cfg.MODEL.NAME == "vit_baseline":
        model = ViTBaseline(backbone, num_classes, neck_feat=cfg.TEST.NECK_FEAT)
    elif cfg.MODEL.NAME == "pfd":
        model = PFD(backbone, num_classes, input_size=tuple(cfg.INPUT.SIZE_TRAIN), num_views=cfg.MODEL.QUERY_NUM,
                    num_decoder_layers=cfg.MODEL.NUM_DECODER_LAYER, num_heads=cfg.MODEL.NUM_HEAD,
                    ffn_dim=cfg.MODEL.DECODER_FFN_DIM, dropout=cfg.MODEL.DECODER_DROPOUT,
                    ffn_residual=cfg.MODEL.DECODER_FFN_RESIDUAL, pvm_mode=cfg.MODEL.PVM_MODE,
                    visibility_threshold=cfg.MODEL.SKT_THRES, feat_kind=cfg.MODEL.FEAT_KIND,
                    heat_weighting=cfg.MODEL.HEAT_WEIGHT, use_pfa=cfg.MODEL.PFA, use_pvm=cfg.MODEL.PVM,
                    use_disentangle=cfg.MODEL.DISENTANGLE, part_pool=cfg.MODEL.PART_POOL,
                    token_mask=cfg.MODEL.TOKEN_MASK, token_mask_radius=cfg.MODEL.TOKEN_MASK_RADIUS,
                    token_mask_shape=cfg.MODEL.TOKEN_MASK_SHAPE)
    else:
        raise ValueError(f"MODEL.NAME must be pfd or vit_baseline, got {cfg.MODEL.NAME!r}")

    if choice == "self":
        if not path:
            raise ValueError("MODEL.PRETRAIN_CHOICE self needs MODEL.PRETRAIN_PATH (a model checkpoint)")
        load_checkpoint_into(model, path)
    return model
