"""Weight files in, modules filled: the one reader and the one strict loader of every package.

    state = read_state_dict(path)                  # tensors on CPU, wrappers and prefixes removed
    load_state_dict_strict(module, state, source=path, target="HRNet-W32 (MODEL.POSE_ARCH hrnet_w32)")

The model (ImageNet ViT, reference / own checkpoints), the pose networks and the engine all load
weights through these two, so every misfit is reported the same way: the file, what it was meant
for, and the missing, unexpected and wrongly shaped keys.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .errors import CHECKPOINT_FILE, InvalidInputError, require_file

__all__ = ["check_finite_state", "load_torch_file", "read_state_dict", "unwrap_state_dict", "load_state_dict_strict"]

_WRAPPERS = ("state_dict", "model", "module")  # {"state_dict": ...} and friends around the tensors
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP and torch.compile


def unwrap_state_dict(obj: Mapping, source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint (`{"state_dict"|"model"|"module": ...}` or bare),
    `module.` / `_orig_mod.` prefixes removed; non-tensor entries (epoch, config, ...) dropped."""
    if not isinstance(obj, Mapping):
        raise InvalidInputError(f"{source}: expected a state dict, got {type(obj).__name__}")
    for key in _WRAPPERS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InvalidInputError(f"{source}: no tensors found (top-level keys: {sorted(obj)[:10]})")
    out = {}
    for key, value in tensors.items():
        while key.startswith(_PREFIXES):  # in either order: DDP around a compiled model or the reverse
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def load_torch_file(path: str | os.PathLike) -> object:
    """`torch.load(path, map_location="cpu", weights_only=True)`; a file torch cannot read is an error
    naming it and saying what it looks like (empty, truncated, not a PyTorch file, pickled objects)."""
    path = require_file(path, "weights file", CHECKPOINT_FILE)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch reports a bad file as RuntimeError, UnpicklingError, EOFError, KeyError...
        with path.open("rb") as f:
            head = f.read(4)
        size = path.stat().st_size
        if size == 0:
            what = "it is empty"
        elif not head.startswith((b"PK", b"\x80")):  # zip (torch >= 1.6) or pickle (older torch.save)
            what = "not a PyTorch checkpoint (another kind of file?)"
        elif _holds_python_objects(path, head, err):
            what = ("a PyTorch file holding Python objects that weights_only loading refuses (a pickled model?); "
                    "save its state_dict() instead")
        else:
            what = "a damaged or truncated PyTorch file (an interrupted copy or download?)"
        raise InvalidInputError(f"{path} ({size} bytes) cannot be read as a checkpoint: {what}") from err


def _holds_python_objects(path: Path, head: bytes, err: Exception) -> bool:
    """Whether weights_only loading refused `path` for the Python objects it pickles (rather than for
    damage): asked of the file's zip archive (torch >= 1.6), else told by the pickle error's type."""
    if not head.startswith(b"PK"):
        return isinstance(err, pickle.UnpicklingError)
    try:
        return bool(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001  (a damaged archive: torch raises RuntimeError, ValueError ...)
        return False


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .pth / .pt / .bin / .safetensors file on CPU (weights_only), unwrapped."""
    path = require_file(path, "weights file", CHECKPOINT_FILE)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(path), device="cpu")
    else:
        obj = load_torch_file(path)
    return unwrap_state_dict(obj, path)


def _show(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike,
                           target: str, allow_unexpected: bool = False) -> list[str]:
    """Load `state` into `module`: every key of the module present with its shape, nothing extra.

    `source` names the file, `target` what it was meant for (and the config keys that shape it).
    With `allow_unexpected`, keys the module lacks are skipped and returned (e.g. blocks beyond a
    shallower ViT); otherwise they are an error too. Errors list missing, unexpected and wrongly
    shaped keys before anything is copied (an `InvalidInputError`, a ValueError the scripts print as
    one line); so do weights holding NaN or Inf (`check_finite_state`).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                   for k in sorted(own) if k in state and state[k].shape != own[k].shape]
    problems = [(name, keys) for name, keys in (("missing", missing), ("wrong shape", wrong_shape),
                                                 ("unexpected", [] if allow_unexpected else unexpected)) if keys]
    if problems:
        shown = "; ".join(f"{n}: {_show(k)}" for n, k in problems)
        raise InvalidInputError(f"{source} does not fit {target}; {shown}")
    check_finite_state({k: state[k] for k in own}, source)
    module.load_state_dict({k: state[k] for k in own}, strict=True)
    return unexpected


def check_finite_state(state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Refuse weights holding NaN or Inf, naming `source` and the first bad key: such a checkpoint
    (a diverged run, a damaged conversion) otherwise shows up only as NaN distances after extraction."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        first = state[bad[0]]
        kind = "NaN" if bool(torch.isnan(first).any()) else "Inf"
        raise InvalidInputError(f"{source}: weight {bad[0]} holds {kind} ({len(bad)} of {len(state)} tensors hold "
                                f"NaN or Inf values); the weights are unusable (a diverged run?): use an earlier "
                                f"checkpoint")
