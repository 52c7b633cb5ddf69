"""Checkpoints: everything needed to resume exactly, and the best one on a validation split (written by
pfd.io.atomic_save).

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

The stored config lets errors say what a checkpoint is (`describe_checkpoint`) and which config keys
differ from the current ones (`config_differences`): a resumed run may change only the keys the config
schema lets change on resume (pfd.config.RESUME_FREE); MODEL.RESUME itself is not compared.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from ..config import RESUME_FREE, SCHEMA, SILENT, get_cfg_defaults
from ..errors import CHECKPOINT_FILE, InvalidInputError, require_file
from ..io import atomic_write
from ..state_dict import load_torch_file

__all__ = [
    "FORMAT", "atomic_copy", "load_checkpoint", "unwrap_model", "rng_state", "set_rng_state",
    "resolve_resume", "is_own_checkpoint", "config_differences", "describe_checkpoint", "format_differences",
    "RESUME_FREE", "resume_blockers", "misfit_error",
]

FORMAT = "pfd-checkpoint-v1"


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy a written checkpoint to another name, atomically (no second serialization)."""
    with open(src, "rb") as f:
        return atomic_write(dst, lambda out: shutil.copyfileobj(f, out, 1 << 24))


def load_checkpoint(path: str | Path) -> dict:
    """Load any checkpoint on CPU with weights_only=True; errors name a missing or unreadable file."""
    path = require_file(path, "checkpoint", CHECKPOINT_FILE)
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def is_own_checkpoint(ckpt: dict) -> bool:
    return ckpt.get("format") == FORMAT


def _flat(values: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def config_differences(stored_yaml: str, cfg) -> dict[str, tuple[Any, Any]]:
    """{key: (stored value, current value)} for every key of `cfg` whose value differs from the config
    a checkpoint stores (keys the stored config lacks count with their default). SILENT keys (MODEL.RESUME:
    how this run starts, not what it trains) are not compared."""
    stored = _flat(yaml.safe_load(get_cfg_defaults().dump())) | _flat(yaml.safe_load(stored_yaml) or {})
    current = _flat(yaml.safe_load(cfg.dump()))
    return {key: (stored.get(key), value) for key, value in current.items()
            if stored.get(key) != value and SCHEMA[key].resume != SILENT}


def format_differences(diffs: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key} {old!r} there, {new!r} here" for key, (old, new) in diffs.items())


def resume_blockers(diffs: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """The differences a resumed run cannot absorb (every key outside RESUME_FREE)."""
    return {k: v for k, v in diffs.items() if k not in RESUME_FREE}


def misfit_error(path: str | Path, cfg, err: Exception) -> Exception:
    """`err` (weights that do not fit the configured model) restated for one of our checkpoints: what
    it is and which MODEL / INPUT keys differ from the config it stores; `err` itself otherwise."""
    ckpt = load_checkpoint(path)
    if not (is_own_checkpoint(ckpt) and ckpt.get("config")):
        return err
    diffs = {k: v for k, v in resume_blockers(config_differences(ckpt["config"], cfg)).items()
             if k.startswith(("MODEL.", "INPUT."))}
    if not diffs:
        return err
    return InvalidInputError(f"{path} is {describe_checkpoint(ckpt)}; it does not fit the configured model, whose "
                             f"config differs: {format_differences(diffs)}. Set these keys as the checkpoint has them")


def describe_checkpoint(ckpt: dict) -> str:
    """What an own checkpoint holds, e.g. "a pfd checkpoint of MODEL.NAME pfd (vit_base_patch16_224, VIT_DEPTH
    2, 128x64 input) after epoch 3"."""
    config = yaml.safe_load(ckpt.get("config") or "") or {}
    model, size = config.get("MODEL", {}), "x".join(map(str, config.get("INPUT", {}).get("SIZE_TRAIN", []))) or "?"
    return (f"a pfd checkpoint of MODEL.NAME {model.get('NAME', '?')} ({model.get('TRANSFORMER_TYPE', '?')}, "
            f"VIT_DEPTH {model.get('VIT_DEPTH', '?')}, {size} input) after epoch {ckpt.get('epoch', '?')}")


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
