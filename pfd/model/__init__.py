"""PFD and the plain ViT baseline, their losses, and checkpoint loading.

    model = build_model(cfg, num_classes, num_cameras)
    loss_fn = build_loss(cfg)
    out = model(images, heatmaps, camids)           # train(): PFDOutput; eval(): [B, model.feature_dim]
    parts = loss_fn(out, pids)                      # {"total", "enc_id", "enc_tri", "dec_id", "dec_tri", "push"}
    load_checkpoint_into(model, path)               # ours or a reference PFD / TransReID checkpoint

The exports below load on first use, so importing one of its modules (pfd.model.convert, say) does not
import the rest.
"""
from ..lazy import lazy_exports

_EXPORTS = {"build_model": "build", "build_loss": "losses", "load_checkpoint_into": "convert", "PFD": "pfd",
            "PFDOutput": "pfd"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
