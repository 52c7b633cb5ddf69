"""A checkpoint read for inference: ours (pfd.engine.checkpoint describes what training writes) or a reference
PFD / TransReID one, as an eval-mode model; what an own checkpoint is, and how the config it stores differs
from a given one (errors and warnings name those keys).

    model, info = load_eval_model(cfg, "logs/run/best.pth", torch.device("cpu"))

test.py (pfd.engine.tester), the Python API (pfd.api) and the trainer's resume all read checkpoints here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from torch import nn

from ..config import RESUME_FREE, SCHEMA, SILENT, get_cfg_defaults
from ..errors import CHECKPOINT_FILE, InvalidInputError, require_file
from ..model import build_model
from ..model.convert import load_state_into, to_own_layout
from ..state_dict import load_torch_file, unwrap_state_dict

__all__ = ["FORMAT", "load_checkpoint", "is_own_checkpoint", "config_differences", "format_differences",
           "resume_blockers", "misfit_error", "describe_checkpoint", "EvalCheckpoint", "read_eval_checkpoint",
           "load_eval_model"]

FORMAT = "pfd-checkpoint-v1"


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


class EvalCheckpoint(NamedTuple):
    """A checkpoint read for evaluation: weights in this project's layout and what the model needs."""

    state: dict
    layout: str  # the file's original layout ("pfd", "reference_pfd", "transreid")
    num_classes: int
    num_cameras: int
    config: str  # the YAML config our checkpoints store; "" for reference ones


def read_eval_checkpoint(weights: str | Path) -> EvalCheckpoint:
    """Our checkpoint or a reference PFD / TransReID one, from a single read of the file."""
    ckpt = load_checkpoint(weights)
    state, layout = to_own_layout(unwrap_state_dict(ckpt, weights), weights)
    if is_own_checkpoint(ckpt):
        return EvalCheckpoint(state, layout, int(ckpt["num_classes"]), int(ckpt["num_cameras"]),
                              str(ckpt.get("config", "")))
    classifier = state.get("classifier_encoder.weight", state.get("classifier.weight"))
    if classifier is None:
        raise ValueError(f"{weights}: no classifier weights (classifier_encoder.weight / classifier.weight); "
                         f"expected a pfd training checkpoint or a reference PFD/TransReID checkpoint")
    sie = state.get("base_vit.sie_embed")
    return EvalCheckpoint(state, layout, int(classifier.shape[0]), int(sie.shape[0]) if sie is not None else 1, "")


def load_eval_model(cfg, weights: str | Path, device: torch.device,
                    checkpoint: EvalCheckpoint | None = None) -> tuple[nn.Module, dict]:
    """The model in eval mode with `weights` (ours, or a reference PFD checkpoint via the converter).

    num_classes/num_cameras come from the checkpoint, so no training set is needed; `checkpoint` is
    `read_eval_checkpoint(weights)` when the caller has read it already. Returns the model and a
    description {"checkpoint", "format", "num_classes", "num_cameras"}.
    """
    if not weights:
        raise ValueError("no weights given: set TEST.WEIGHT (test.py) or --weights (query.py) to a checkpoint")
    ckpt = checkpoint if checkpoint is not None else read_eval_checkpoint(weights)
    # load_pretrained=False: the checkpoint has every weight
    model = build_model(cfg, ckpt.num_classes, ckpt.num_cameras, load_pretrained=False)
    try:
        load_state_into(model, ckpt.state, weights, ckpt.layout)
    except InvalidInputError as err:
        raise misfit_error(weights, cfg, err) from err
    info = {"checkpoint": str(weights), "format": ckpt.layout, "num_classes": ckpt.num_classes,
            "num_cameras": ckpt.num_cameras}
    return model.to(device).eval(), info
