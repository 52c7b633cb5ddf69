"""Training samplers, deterministic given (seed, epoch) and shardable across processes.

Both samplers yield `(index, sample_seed)` pairs: the dataset seeds the augmentation of that
sample from `sample_seed`, so a run is reproducible from SOLVER.SEED and the epoch whatever the
number of workers, and a resumed run replays the same epochs. Call `set_epoch(epoch)` before
each epoch (as with torch's DistributedSampler).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

SEED_LIMIT = 2 ** 63 - 1
# Independent random streams per (seed, epoch): shared by all ranks, per-rank batches, per-rank sample seeds.
SHARED_STREAM, BATCH_STREAM, SAMPLE_SEED_STREAM = 0, 1, 2


class _EpochSampler(Sampler):
    """Shared (seed, epoch, rank) bookkeeping."""

    def __init__(self, seed: int, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.seed, self.rank, self.world_size, self.epoch = int(seed), int(rank), int(world_size), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self, stream: int, rank: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, stream, rank])

    def _with_seeds(self, indices: np.ndarray) -> Iterator[tuple[int, int]]:
        """Pair each dataset index with the seed of its augmentation."""
        seeds = self._rng(SAMPLE_SEED_STREAM, self.rank).integers(0, SEED_LIMIT, size=len(indices))
        return iter(list(zip(indices.tolist(), seeds.tolist())))


class ShuffledSampler(_EpochSampler):
    """A random permutation per epoch; rank r takes every world_size-th item (equal lengths)."""

    def __init__(self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(seed, rank, world_size)
        if num_samples < world_size:
            raise ValueError(f"cannot shard {num_samples} samples over {world_size} processes")
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._rng(SHARED_STREAM).permutation(self.num_samples)  # same on every rank
        return self._with_seeds(order[self.rank::self.world_size][:len(self)])


class PKSampler(_EpochSampler):
    """P identities x K images per batch (K = num_instances, P = batch_size // K).

    Each epoch every identity's images are shuffled and cut into chunks of K (identities with
    fewer than K images give one chunk drawn with replacement). Batches take P distinct
    identities, drawn with probability proportional to their remaining chunks so that the epoch
    uses (almost) every image once. An epoch has `sum(chunks) // P` batches; when fewer than P
    identities have chunks left, the batch is completed with fresh K-image draws of other
    identities. With world_size > 1 the identities are split into disjoint shares (re-drawn each
    epoch, identically on every rank) and every rank makes the same number of batches, the
    smallest share's count. Yields the batches one sample at a time, to be grouped by a
    DataLoader with `batch_size` and `drop_last=True`.
    """

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        super().__init__(seed, rank, world_size)
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f"batch size {batch_size} (SOLVER.IMS_PER_BATCH / processes) must be a multiple of "
                             f"DATALOADER.NUM_INSTANCE={num_instances}")
        by_pid = defaultdict(list)
        for index, pid in enumerate(pids):
            by_pid[pid].append(index)
        self.pid_indices = [np.asarray(v, dtype=np.int64) for _, v in sorted(by_pid.items())]
        self.batch_size, self.num_instances = batch_size, num_instances
        self.num_pids_per_batch = batch_size // num_instances
        needed = self.num_pids_per_batch * world_size
        if len(self.pid_indices) < needed:
            raise ValueError(f"PK sampling needs at least {needed} identities ({self.num_pids_per_batch} per batch x "
                             f"{world_size} processes), the training set has {len(self.pid_indices)}; lower "
                             "SOLVER.IMS_PER_BATCH or raise DATALOADER.NUM_INSTANCE")
        self.num_chunks = np.array([max(1, len(v) // num_instances) for v in self.pid_indices])  # [num_pids]

    def _shares(self) -> list[np.ndarray]:
        """Identity ids of every rank for this epoch (disjoint; the same on all ranks)."""
        order = self._rng(SHARED_STREAM).permutation(len(self.pid_indices))
        return [order[r::self.world_size] for r in range(self.world_size)]

    def _num_batches(self, shares: list[np.ndarray]) -> int:
        return min(int(self.num_chunks[share].sum()) // self.num_pids_per_batch for share in shares)

    def __len__(self) -> int:
        return self._num_batches(self._shares()) * self.batch_size

    def _chunks(self, pid: int, rng: np.random.Generator) -> list[np.ndarray]:
        """One identity's images, shuffled and cut into chunks of K."""
        indices = self.pid_indices[pid]
        if len(indices) < self.num_instances:
            return [rng.choice(indices, size=self.num_instances, replace=True)]
        shuffled = rng.permutation(indices)
        k = self.num_instances
        return [shuffled[i * k:(i + 1) * k] for i in range(len(shuffled) // k)]

    def _draw(self, pid: int, rng: np.random.Generator) -> np.ndarray:
        """A fresh K-image chunk of `pid` (with replacement only if it has fewer than K images)."""
        indices = self.pid_indices[pid]
        return rng.choice(indices, size=self.num_instances, replace=len(indices) < self.num_instances)

    def batches(self) -> list[np.ndarray]:
        """This rank's batches for the current epoch, each [P * K] dataset indices."""
        shares = self._shares()
        num_batches, share = self._num_batches(shares), shares[self.rank]
        rng = self._rng(BATCH_STREAM, self.rank)
        chunks = {int(pid): self._chunks(int(pid), rng) for pid in share}
        remaining = np.array([len(chunks[int(pid)]) for pid in share], dtype=np.float64)  # [len(share)]
        batches = []
        for _ in range(num_batches):
            available = np.flatnonzero(remaining)
            take = min(self.num_pids_per_batch, len(available))
            weights = remaining[available] / remaining[available].sum()
            picked = rng.choice(available, size=take, replace=False, p=weights)
            remaining[picked] -= 1
            parts = [chunks[int(share[i])].pop() for i in picked]
            if take < self.num_pids_per_batch:  # complete the batch with fresh draws of other identities
                others = np.setdiff1d(np.arange(len(share)), picked)
                extra = rng.choice(others, size=self.num_pids_per_batch - take, replace=False)
                parts += [self._draw(int(share[i]), rng) for i in extra]
            batches.append(np.concatenate(parts))
        return batches

    def __iter__(self) -> Iterator[tuple[int, int]]:
        batches = self.batches()
        indices = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        return self._with_seeds(indices)
