"""The datasets a config names, read with their keypoints: the training set (DATASETS.NAMES, pooled when
several) and the evaluation sets (DATASETS.TEST_NAMES), each image's keypoints from the pose cache.

Under torch.distributed rank 0 builds a missing cache first and the other ranks then read it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..distributed import barrier, is_main_process
from ..pose.cache import KeypointTable, load_or_build, shuffled_poses
from .datasets import DatasetError, ImageRecord, ReIDDataset, build_dataset, pool_training, split_names
from .loader import check_train_split

__all__ = ["test_dataset_names", "load_keypoints", "load_training_set", "evaluation_datasets"]


def test_dataset_names(cfg) -> list[str]:
    """DATASETS.TEST_NAMES (comma-separated), or the training dataset."""
    return split_names(cfg.DATASETS.TEST_NAMES or cfg.DATASETS.NAMES)


def load_keypoints(cfg, records: Sequence[ImageRecord], dataset_name: str):
    """The keypoint table for `records` (None with MODEL.POSE_ONLINE); rank 0 builds the cache first."""
    if cfg.MODEL.POSE_ONLINE:
        return None
    if is_main_process():
        table = load_or_build(cfg, records, dataset_name)
    barrier()
    if not is_main_process():
        table = load_or_build(cfg, records, dataset_name)
    return table


def load_training_set(cfg, world_size: int = 1) -> tuple[ReIDDataset, Mapping[str, np.ndarray] | None]:
    """DATASETS.NAMES and its training keypoints. Several comma-separated names pool their training splits
    (identities and cameras kept apart, `pool_training`); each dataset's poses come from its own cache
    (shuffled among the images with DATALOADER.SHUFFLE_KEYPOINTS).
    A training split too small for the configured batches is refused before the pose pass."""
    names = split_names(cfg.DATASETS.NAMES)
    datasets = [build_dataset(name, cfg.DATASETS.ROOT_DIR) for name in names]
    dataset = datasets[0] if len(datasets) == 1 else pool_training(datasets)
    check_train_split(cfg, dataset, world_size)
    tables = [load_keypoints(cfg, ds.train, name) for name, ds in zip(names, datasets)]
    keypoints = tables[0] if len(datasets) == 1 or tables[0] is None else KeypointTable(
        [p for t in tables for p in t.paths], np.concatenate([t.keypoints for t in tables]), tables[0].backend)
    if cfg.DATALOADER.SHUFFLE_KEYPOINTS and keypoints is not None:  # the control run: poses that say nothing
        keypoints = shuffled_poses(keypoints, cfg.SOLVER.SEED)
    return dataset, keypoints


def evaluation_datasets(cfg) -> dict[str, ReIDDataset]:
    """Every evaluation dataset, parsed (file lists only, seconds): a missing folder or a training-only set
    is a DatasetError, which pfd.compare raises before the first variant trains."""
    datasets = {}
    for name in test_dataset_names(cfg):
        dataset = build_dataset(name, cfg.DATASETS.ROOT_DIR)
        if not dataset.query:
            raise DatasetError(f"dataset {name} has no query or gallery (a training-only set) and cannot be "
                               "evaluated; list the evaluation datasets in DATASETS.TEST_NAMES")
        datasets[name] = dataset
    return datasets
