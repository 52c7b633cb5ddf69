"""MODEL.DEVICE -> torch.device: the one device resolver of the engine, the pose backends and the
benches; and the one count of the CPU cores this process may use. torch loads on first use, so the
synthetic generator imports this without it."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from .errors import InvalidInputError

__all__ = ["resolve_device", "usable_cores"]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """auto (cuda:LOCAL_RANK if CUDA is available, else cpu) | cpu | cuda (= cuda:LOCAL_RANK) | cuda:N.

    `local_rank` defaults to the LOCAL_RANK that torchrun sets (0 when run alone).
    """
    import torch

    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InvalidInputError(f"MODEL.DEVICE={name!r} is not a device ({err}); "
                                "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"MODEL.DEVICE={name!r} but CUDA is not available; use MODEL.DEVICE cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InvalidInputError(f"MODEL.DEVICE={name!r} but this machine has {torch.cuda.device_count()} CUDA "
                                f"device(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device
