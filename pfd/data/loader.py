"""The image Dataset and the train / test DataLoader builders.

Samples are dicts (docs/ARCHITECTURE.md): `image` [3, H, W] float (normalized), `keypoints`
[17, 3] float in input pixels after augmentation, `pid`, `camid`, `index` (int64) and, for
test loaders, `path`. Heatmaps are rendered later, on the training device, from `keypoints`.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import ConfigError
from ..image import read_image
from ..pose.keypoints import NUM_KEYPOINTS
from .datasets import DatasetError, ImageRecord, ReIDDataset
from .samplers import PKSampler, ShuffledSampler
from .transforms import ReIDTransform, build_transforms, check_keypoints

KeypointTable = Mapping[str, np.ndarray]
NO_KEYPOINTS = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)  # every part occluded


class ImageDataset(Dataset):
    """Records -> sample dicts: read the image, look up its keypoints by path, transform both.

    An item is a record position, or `(position, seed)` as yielded by the samplers in
    pfd.data.samplers; the seed drives the augmentation so results do not depend on workers.
    """

    def __init__(self, records: Sequence[ImageRecord], transform: ReIDTransform,
                 keypoints: KeypointTable | None = None, with_path: bool = False):
        self.records, self.transform, self.keypoints, self.with_path = records, transform, keypoints, with_path

    def __len__(self) -> int:
        return len(self.records)

    def keypoints_of(self, path: str) -> np.ndarray:
        """[17, 3] keypoints of the image at `path`; zeros (all occluded) when it has none."""
        kp = None if self.keypoints is None else self.keypoints.get(os.path.abspath(path))
        return NO_KEYPOINTS if kp is None else check_keypoints(kp, where=f"keypoints of {path}")

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, None)
        record = self.records[index]
        image, keypoints = self.transform(read_image(record.path), self.keypoints_of(record.path),
                                          np.random.default_rng(seed))
        sample = {"image": image, "keypoints": keypoints, "pid": record.pid, "camid": record.camid, "index": index}
        if self.with_path:
            sample["path"] = record.path
        return sample


def check_train_split(cfg, dataset: ReIDDataset, world_size: int = 1) -> int:
    """The per-process batch size; a DatasetError / ConfigError when `dataset` cannot fill the configured
    batches. Cheap (record counts only): the trainer calls it as soon as the dataset is parsed, before
    the pose pass and the model, so a too-small dataset fails at once instead of at the first batch."""
    name, total = dataset.name, cfg.SOLVER.IMS_PER_BATCH
    if not dataset.train:
        raise DatasetError(f"dataset {name} has no training split (it is test-only); "
                           "pick another DATASETS.NAMES for training")
    if total % world_size:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH={total} is not divisible by the {world_size} processes")
    batch_size, held_out = total // world_size, max(cfg.DATASETS.VAL_IDS, 0)
    if cfg.DATALOADER.SAMPLER == "softmax_triplet":
        instances = cfg.DATALOADER.NUM_INSTANCE
        if batch_size % instances:
            raise ConfigError(f"SOLVER.IMS_PER_BATCH={total} over {world_size} processes gives batches of "
                              f"{batch_size}, not a multiple of DATALOADER.NUM_INSTANCE={instances}")
        needed, have = batch_size // instances * world_size, dataset.num_train_pids - held_out
        if have < needed:
            kept = f" (after the {held_out} DATASETS.VAL_IDS held out)" if held_out else ""
            raise DatasetError(f"dataset {name}: {have} training identities{kept}, but a PK batch of "
                               f"SOLVER.IMS_PER_BATCH={total} takes {needed} ({batch_size // instances} per process "
                               f"x {world_size} process(es), DATALOADER.NUM_INSTANCE={instances} images each); "
                               f"lower SOLVER.IMS_PER_BATCH to at most {have // world_size * instances * world_size}")
    elif len(dataset.train) < total:
        raise DatasetError(f"dataset {name}: {len(dataset.train)} training images make no full batch of "
                           f"SOLVER.IMS_PER_BATCH={total}; lower it")
    return batch_size


def build_train_loader(cfg, dataset: ReIDDataset, keypoints: KeypointTable | None, rank: int = 0,
                       world_size: int = 1, seed: int | None = None) -> DataLoader:
    """Training loader of `dataset.train` for process `rank` of `world_size`.

    Batches of SOLVER.IMS_PER_BATCH / world_size: PK batches (DATALOADER.SAMPLER
    softmax_triplet, K = DATALOADER.NUM_INSTANCE) or a plain shuffle (softmax). Augmentation is
    reproducible from `seed` (default SOLVER.SEED) and the epoch: call
    `loader.sampler.set_epoch(epoch)` before each epoch.
    """
    batch_size = check_train_split(cfg, dataset, world_size)
    seed = cfg.SOLVER.SEED if seed is None else seed
    if cfg.DATALOADER.SAMPLER == "softmax_triplet":
        sampler = PKSampler([r.pid for r in dataset.train], batch_size, cfg.DATALOADER.NUM_INSTANCE,
                            seed=seed, rank=rank, world_size=world_size)
    else:
        sampler = ShuffledSampler(len(dataset.train), seed=seed, rank=rank, world_size=world_size)
    if len(sampler) < batch_size:
        raise DatasetError(f"dataset {dataset.name}: {len(dataset.train)} training images make no full batch of "
                         f"{batch_size} per process; lower SOLVER.IMS_PER_BATCH")
    workers = cfg.DATALOADER.NUM_WORKERS
    return DataLoader(
        ImageDataset(dataset.train, build_transforms(cfg, is_train=True), keypoints),
        batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),  # worker base seeds, for anything outside our rng
    )


def build_test_loader(cfg, records: Sequence[ImageRecord], keypoints: KeypointTable | None) -> DataLoader:
    """Evaluation loader over `records` in order (TEST.IMS_PER_BATCH), samples carry `path`."""
    return DataLoader(
        ImageDataset(records, build_transforms(cfg, is_train=False), keypoints, with_path=True),
        batch_size=cfg.TEST.IMS_PER_BATCH, shuffle=False, num_workers=cfg.DATALOADER.NUM_WORKERS,
        pin_memory=torch.cuda.is_available(),
    )
