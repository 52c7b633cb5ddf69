"""Feature extraction and evaluation of one or more test sets (Market-1501 protocol).

Under torch.distributed each rank extracts a strided share of the records; features are gathered
back into record order on every rank, and rank 0 computes the metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..data.datasets import ImageRecord, ReIDDataset
from ..data.loader import build_test_loader
from ..data.sets import evaluation_datasets, load_keypoints
from ..distributed import all_gather_rows, get_rank, get_world_size, is_main_process
from ..inference.features import loader_features, part_layout
from ..pose.heatmap_maker import HeatmapMaker
from ..retrieval.metrics import evaluate_features as retrieval_evaluate
from ..retrieval.metrics import retrieval_options
from ..retrieval.part_distance import PartLayout

__all__ = ["FeatureSet", "TestSet", "prepare_test_sets", "extract_features", "evaluate_features", "evaluate_test_sets"]


@dataclass
class FeatureSet:
    """Features [N, F] (float32, on the extraction device) of `records`, in record order; `part_layout` where
    their part blocks are, when TEST.PART_DISTANCE visible compares them (pfd.retrieval.part_distance)."""
    feats: torch.Tensor
    records: Sequence[ImageRecord]
    part_layout: PartLayout | None = None

    @cached_property
    def pids(self) -> np.ndarray:
        return np.asarray([r.pid for r in self.records], dtype=np.int64)

    @cached_property
    def camids(self) -> np.ndarray:
        return np.asarray([r.camid for r in self.records], dtype=np.int64)


@dataclass
class TestSet:
    name: str
    dataset: ReIDDataset
    keypoints: Mapping[str, np.ndarray] | None  # None with MODEL.POSE_ONLINE


def prepare_test_sets(cfg) -> list[TestSet]:
    """Every evaluation dataset with the keypoints of its query and gallery images."""
    return [TestSet(name, dataset, load_keypoints(cfg, list(dataset.query) + list(dataset.gallery), name))
            for name, dataset in evaluation_datasets(cfg).items()]


def extract_features(model: nn.Module, cfg, records: Sequence[ImageRecord], keypoints, device: torch.device,
                     heatmaps: HeatmapMaker, amp_dtype: torch.dtype | None, desc: str = "features") -> FeatureSet:
    """Eval-mode features of `records`: each rank extracts a strided share, all get the gathered whole."""
    rank, world = get_rank(), get_world_size()
    loader = build_test_loader(cfg, list(records[rank::world]), keypoints)
    feats, index = loader_features(model, loader, device, heatmaps, amp_dtype, desc, progress=is_main_process(),
                                   flip=cfg.TEST.FLIP_FEATS)
    feats = all_gather_rows(feats)
    order = all_gather_rows(index * world + rank)  # position in `records`
    return FeatureSet(feats[torch.argsort(order)], records, part_layout(model, cfg))  # [N, F] in record order


def ranks_reported(cmc, ranks) -> dict:
    """{"rank1": ..., "rank5": ...} for the ranks the CMC reaches (a gallery smaller than k has no rank k)."""
    return {f"rank{k}": float(cmc[k - 1]) for k in ranks if k <= len(cmc)}


def evaluate_features(cfg, query: FeatureSet, gallery: FeatureSet) -> tuple[dict, torch.Tensor]:
    """Market-1501 metrics of `query` against `gallery` (TEST.FEAT_NORM, TEST.RE_RANKING), and the
    distance matrix [Nq, Ng] they were computed from."""
    return retrieval_evaluate(query.feats, gallery.feats, query.pids, gallery.pids, query.camids, gallery.camids,
                              part_layout=query.part_layout, **retrieval_options(cfg))


def evaluate_test_sets(model: nn.Module, cfg, test_sets: Sequence[TestSet], device: torch.device,
                       heatmaps: HeatmapMaker, amp_dtype: torch.dtype | None,
                       on_result: Callable[[TestSet, dict, FeatureSet, FeatureSet, torch.Tensor], None] | None = None,
                       ) -> dict[str, dict]:
    """Metrics per test set name (computed on rank 0; other ranks get {})."""
    results = {}
    for test_set in test_sets:
        ds = test_set.dataset
        query = extract_features(model, cfg, ds.query, test_set.keypoints, device, heatmaps, amp_dtype,
                                 desc=f"{test_set.name} query")
        gallery = extract_features(model, cfg, ds.gallery, test_set.keypoints, device, heatmaps, amp_dtype,
                                   desc=f"{test_set.name} gallery")
        if not is_main_process():
            continue
        metrics, distmat = evaluate_features(cfg, query, gallery)
        results[test_set.name] = metrics
        if on_result is not None:
            on_result(test_set, metrics, query, gallery, distmat)
    return results
