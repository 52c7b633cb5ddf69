"""MODEL.DEVICE -> torch.device: the one device resolver of the engine, the pose backends and the benches."""
from __future__ import annotations

import os

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """auto (cuda:LOCAL_RANK if CUDA is available, else cpu) | cpu | cuda (= cuda:LOCAL_RANK) | cuda:N.

    `local_rank` defaults to the LOCAL_RANK that torchrun sets (0 when run alone).
    """
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"MODEL.DEVICE={name!r} but CUDA is not available; use MODEL.DEVICE cpu or auto")
    return device
