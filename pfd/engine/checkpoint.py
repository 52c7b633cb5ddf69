"""Checkpoints as training writes them: everything needed to resume exactly, and the best one on a validation
split (written by pfd.io.atomic_save). Reading one (any checkpoint, ours or a reference one, and what its
stored config says) is pfd.inference.checkpoint's job, which evaluation and the Python API share.

A training checkpoint is a dict (loadable with `torch.load(..., weights_only=True)`):
    format       "pfd-checkpoint-v1"
    model        state dict of the bare model (no `module.` / `_orig_mod.` prefixes)
    optimizer, scheduler, scaler   their state dicts (scaler: {} when unused)
    epoch        number of epochs completed
    best_val_map best validation mAP so far (DATASETS.VAL_IDS; -1 without a validation split)
    evaluation_pending  true while the epoch's evaluation has not finished (written before it; a
                 resume evaluates first); absent in older checkpoints = false
    rng          torch / cuda / numpy / python RNG states (as tensors and plain lists)
    config       the resolved config as YAML text; config_hash
    num_classes, num_cameras   so test.py can build the model without the training set
Files in OUTPUT_DIR: `last.pth` (every epoch), `epoch_NNN.pth` (every CHECKPOINT_PERIOD and the
last epoch), `best.pth` (best validation mAP; only with DATASETS.VAL_IDS, never chosen on a test set).

The stored config lets errors say what a checkpoint is (pfd.inference.checkpoint.describe_checkpoint) and
which config keys differ from the current ones (`config_differences` there): a resumed run may change only
the keys the config schema lets change on resume (pfd.config.RESUME_FREE); MODEL.RESUME itself is not compared.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CHECKPOINT_FILE, require_file
from ..io import atomic_write

__all__ = ["atomic_copy", "unwrap_model", "rng_state", "set_rng_state", "resolve_resume"]


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy a written checkpoint to another name, atomically (no second serialization)."""
    with open(src, "rb") as f:
        return atomic_write(dst, lambda out: shutil.copyfileobj(f, out, 1 << 24))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module under DistributedDataParallel and/or torch.compile."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def rng_state() -> dict:
    """Every RNG the training loop touches, in weights_only-loadable types."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_resume(resume: str, output_dir: str | Path) -> Path | None:
    """`""` -> None; `"auto"` -> OUTPUT_DIR/last.pth if present; else the given path (must exist)."""
    if not resume:
        return None
    if resume == "auto":
        last = Path(output_dir) / "last.pth"
        return last if last.is_file() else None
    return require_file(resume, "MODEL.RESUME / --resume: checkpoint", CHECKPOINT_FILE)
