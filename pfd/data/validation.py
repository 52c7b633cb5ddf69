"""A validation split held out of the training identities (DATASETS.VAL_IDS), so that a "best"
checkpoint can be chosen without ever looking at the test set.

`num_ids` training identities seen by at least two cameras are drawn, deterministically from the
seed; each gives one of its images (drawn too) as a query and the rest as the gallery, so every
query has a match in another camera under the Market-1501 protocol. The training split keeps the
other identities, relabelled 0..M-1: no validation image is ever trained on.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from .datasets.base import DatasetError, ImageRecord, ReIDDataset, relabel

__all__ = ["hold_out_validation"]


def hold_out_validation(dataset: ReIDDataset, num_ids: int, seed: int,
                        min_train_ids: int = 1) -> tuple[ReIDDataset, ReIDDataset]:
    """(`dataset` without the held-out ids, relabelled; the validation split named `<name>:val`).

    Errors, before any training, when fewer than `num_ids` identities have two cameras or when fewer
    than `min_train_ids` (the identities one batch needs) would be left to train on.
    """
    by_pid: dict[int, list[ImageRecord]] = defaultdict(list)
    for record in dataset.train:
        by_pid[record.pid].append(record)
    eligible = sorted(pid for pid, records in by_pid.items() if len({r.camid for r in records}) >= 2)
    if num_ids < 1 or num_ids > len(eligible):
        raise DatasetError(f"DATASETS.VAL_IDS {num_ids}: {dataset.name} has {len(eligible)} training identities "
                           f"seen by two or more cameras (a validation query needs its identity in another camera); "
                           f"use 1..{len(eligible)}")
    left = len(by_pid) - num_ids
    if left < min_train_ids:
        raise DatasetError(f"DATASETS.VAL_IDS {num_ids} leaves {left} of {len(by_pid)} training identities of "
                           f"{dataset.name}; training needs at least {min_train_ids} (the identities in one batch)")
    rng = np.random.default_rng(seed)
    held = sorted(int(pid) for pid in rng.choice(eligible, size=num_ids, replace=False))
    query, gallery = [], []
    for pid in held:
        records = by_pid[pid]
        chosen = int(rng.integers(len(records)))
        query.append(records[chosen])
        gallery.extend(records[:chosen] + records[chosen + 1:])
    held_set = set(held)
    train = relabel([r for r in dataset.train if r.pid not in held_set])
    val = ReIDDataset(name=f"{dataset.name}:val", root=dataset.root, train=[], query=query, gallery=gallery)
    return dataclasses.replace(dataset, train=train), val
