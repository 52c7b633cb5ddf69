"""torch.distributed from the torchrun environment, plus the few collectives training and evaluation need
(and the keypoint cache, which rank 0 builds first: pfd.data.sets).

Without RANK/WORLD_SIZE in the environment everything runs as a single process (rank 0 of 1)
and the helpers are no-ops, so the same code serves `python train.py` and `torchrun ... train.py`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .device import resolve_device

__all__ = ["DistInfo", "init_distributed", "is_main_process", "get_rank", "get_world_size",
           "barrier", "all_gather_rows", "broadcast_buffers", "broadcast_object", "cleanup"]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (nccl on GPUs, gloo on CPU), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, device)


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's [N_r, ...] tensor along dim 0 (ranks may hold different N_r)."""
    world = get_world_size()
    if world == 1:
        return tensor
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    sizes = [int(s.item()) for s in sizes]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:n] for g, n in zip(gathered, sizes)])


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running statistics) to every rank.

    DDP syncs buffers at the start of each forward, so after the last training step every rank
    holds the statistics of its own last batch; evaluating needs the ones the checkpoint holds.
    """
    if get_world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)


def broadcast_object(obj=None, src: int = 0):
    """`obj` from rank `src` on every rank."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
