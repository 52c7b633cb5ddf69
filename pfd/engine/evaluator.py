"""Feature extraction and evaluation of one or more test sets (Market-1501 protocol).

Under torch.distributed each rank extracts a strided share of the records; features are gathered
back into record order on every rank, and rank 0 computes the metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..config import ConfigError
from ..data.datasets import DatasetError, ImageRecord, ReIDDataset, build_dataset, pool_training, split_names
from ..data.loader import build_test_loader, check_train_split
from ..pose.cache import KeypointTable, load_or_build, shuffled_poses
from ..pose.heatmaps import render_heatmaps
from ..pose.keypoints import flip_keypoints
from ..precision import autocast
from ..retrieval.metrics import evaluate_features as retrieval_evaluate
from ..retrieval.metrics import retrieval_options
from ..retrieval.part_distance import PartLayout
from ..distributed import all_gather_rows, barrier, get_rank, get_world_size, is_main_process

__all__ = ["FeatureSet", "TestSet", "HeatmapMaker", "test_dataset_names", "evaluation_datasets", "prepare_test_sets",
           "load_keypoints", "load_training_set",
           "loader_features", "extract_features", "evaluate_features", "evaluate_test_sets"]


# TEST.NO_POSE prior: a person standing upright filling the crop, seen from the front (their left on the
# image's right), COCO-17 order; x, y as shares of (width - 1, height - 1), then the confidence.
WHOLE_BODY_PRIOR = (
    (0.50, 0.10, 1.0), (0.53, 0.085, 1.0), (0.47, 0.085, 1.0), (0.57, 0.095, 1.0), (0.43, 0.095, 1.0),
    (0.66, 0.22, 1.0), (0.34, 0.22, 1.0), (0.72, 0.37, 1.0), (0.28, 0.37, 1.0), (0.72, 0.50, 1.0),
    (0.28, 0.50, 1.0), (0.60, 0.52, 1.0), (0.40, 0.52, 1.0), (0.60, 0.72, 1.0), (0.40, 0.72, 1.0),
    (0.60, 0.92, 1.0), (0.40, 0.92, 1.0),
)


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


class HeatmapMaker(nn.Module):
    """Heatmaps for a batch on its device: rendered from the loader's keypoints, or online HRNet."""

    def __init__(self, cfg, input_hw: Sequence[int], evaluation: bool = False):
        super().__init__()
        self.input_hw = tuple(input_hw)
        self.sigma = cfg.INPUT.HEATMAP_SIGMA
        self.online = None
        if cfg.MODEL.POSE_ONLINE:
            from ..pose.online import OnlineHeatmaps

            self.online = OnlineHeatmaps(cfg).eval()
        prior = evaluation and cfg.TEST.NO_POSE == "prior"
        h, w = self.input_hw
        self.register_buffer("prior", torch.tensor(WHOLE_BODY_PRIOR) * torch.tensor([w - 1, h - 1, 1.0])
                             if prior else None, persistent=False)  # [17, 3] input pixels, confidence 1

    @torch.no_grad()
    def forward(self, images: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        # images [B, 3, H, W] normalized; keypoints [B, 17, 3] in input pixels -> [B, 17, H/4, W/4]
        if self.online is not None:
            return self.online(images)
        if self.prior is not None:  # TEST.NO_POSE prior: images without a person get the whole-body prior
            no_pose = keypoints[..., 2].amax(1) <= 0  # [B]
            keypoints = torch.where(no_pose.view(-1, 1, 1), self.prior.to(keypoints.dtype), keypoints)
        return render_heatmaps(keypoints, self.input_hw, self.sigma)


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


def prepare_test_sets(cfg) -> list[TestSet]:
    """Every evaluation dataset with the keypoints of its query and gallery images."""
    return [TestSet(name, dataset, load_keypoints(cfg, list(dataset.query) + list(dataset.gallery), name))
            for name, dataset in evaluation_datasets(cfg).items()]


@torch.no_grad()
def loader_features(model: nn.Module, loader: Iterable[dict], device: torch.device, heatmaps: HeatmapMaker,
                    amp_dtype: torch.dtype | None, desc: str = "features", progress: bool = True,
                    flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode features of every batch of a test-style loader (samples with `image`, `keypoints`,
    `camid`, `index`): (features [N, F] float32, their `index` values [N]), both on `device`.

    flip (TEST.FLIP_FEATS): each feature is the mean of the image's and its mirror image's (keypoints
    mirrored with left and right swapped), the usual test-time flip of re-ID libraries.

    The one forward loop of evaluation and of the Python API (pfd.api), so both compute the same features.
    """
    was_training = model.training
    model.eval()
    # Start from empty rows so that an empty loader (a rank with no share) still returns [0, F].
    feats = [torch.empty(0, model.feature_dim, device=device)]  # [0, F]
    order = [torch.empty(0, dtype=torch.long, device=device)]  # [0]
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        images = batch["image"].to(device, non_blocking=True)
        kps = batch["keypoints"].to(device, non_blocking=True)
        camids = batch["camid"].to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            out = model(images, heatmaps(images, kps), camids)  # [B, F]
            if flip:
                mirrored = images.flip(-1)  # [B, 3, H, W]
                mirrored_heat = heatmaps(mirrored, flip_keypoints(kps, images.shape[-1]))  # [B, 17, H/4, W/4]
                out = (out + model(mirrored, mirrored_heat, camids)) / 2
        feats.append(out.float())
        order.append(batch["index"].to(device))
    model.train(was_training)
    return torch.cat(feats), torch.cat(order)


def part_layout(model: nn.Module, cfg) -> PartLayout | None:
    """The model's part blocks when TEST.PART_DISTANCE visible asks for them, else None; a feature without
    parts (the ViT baseline, MODEL.FEAT_KIND global*) is refused with the keys to change."""
    if cfg.TEST.PART_DISTANCE != "visible":
        return None
    layout = getattr(model, "part_layout", None)
    if layout is None:
        raise ConfigError(f"TEST.PART_DISTANCE visible compares part features, which MODEL.NAME {cfg.MODEL.NAME} "
                          f"with MODEL.FEAT_KIND {cfg.MODEL.FEAT_KIND} has not: use PFD with MODEL.FEAT_KIND full, "
                          "or TEST.PART_DISTANCE concat")
    return layout._replace(weight=cfg.TEST.PART_WEIGHT)


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
