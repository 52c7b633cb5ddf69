"""PFD and the plain ViT baseline, their losses, and checkpoint loading.

    model = build_model(cfg, num_classes, num_cameras)
    loss_fn = build_loss(cfg)
    out = model(images, heatmaps, camids)           # train(): PFDOutput; eval(): [B, model.feature_dim]
    parts = loss_fn(out, pids)                      # {"total", "enc_id", "enc_tri", "dec_id", "dec_tri", "push"}
    load_checkpoint_into(model, path)               # ours or a reference PFD / TransReID checkpoint
"""
from .build import build_model
from .convert import load_checkpoint_into
from .losses import build_loss
from .pfd import PFD, PFDOutput

__all__ = ["build_model", "build_loss", "load_checkpoint_into", "PFD", "PFDOutput"]
