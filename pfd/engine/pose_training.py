"""Training of the learned keypoint and visibility estimator (`pfd-train-pose`, MODEL.POSE_BACKEND learned).

The teacher is any configured pose backend (MODEL.POSE_BACKEND, mediapipe by default) on the config's
clean training crops (DATASETS.NAMES), read from its pose cache. Crops where the teacher found no
person are left out: they hold a person whose keypoints nobody knows. Every other crop is resized
once to the network's 128x64 and kept in memory as uint8. Each batch is mirrored half the time and
gets occluders of pfd.data.occlude's kinds (person, object, patch) on `occlude_prob` of its images
(pfd.data.occlude.augment.BatchOccluder, the same code as INPUT.OCCLUDE_PROB). The targets:

- location: every keypoint the teacher placed inside the crop, covered or not, as a Gaussian
  (LOCATION_SIGMA map pixels) the location map's spatial softmax is fitted to (cross-entropy);
- visibility: placed by the teacher and not under an occluder (binary cross-entropy of P(seen)), the
  same definition bench/learned_pose.py and bench/mediapipe_crops.py score against an occlusion manifest;
- occluder: the share of each location-map pixel the pasted occluder covers (binary cross-entropy).

The weights file is written (atomically) after every epoch, so a run that stops keeps its last
finished epoch; the file says how many epochs it holds.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.occlude import KINDS
from ..data.occlude.augment import BatchOccluder
from ..data.sets import load_training_set
from ..errors import InvalidInputError
from ..image import read_image
from ..io import atomic_save
from ..pose.heatmaps import render_heatmaps
from ..pose.keypoints import flip_keypoints
from ..pose.learned import BACKBONE, FORMAT, INPUT_HW, KeypointNet, input_scale, normalize, resize_crop

__all__ = ["PoseTrainSettings", "load_crops", "pose_losses", "train_pose_estimator"]

log = logging.getLogger(__name__)
LOCATION_SIGMA = 1.0  # std of the location target, in location-map pixels (4 input pixels)


@dataclass(frozen=True)
class PoseTrainSettings:
    """What `pfd-train-pose` may change; the defaults train CUHK03 + CUHK01 in about 19 min on 2 CPU cores
    (docs/EXPERIMENTS.md)."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    occlude_prob: float = 0.7
    visibility_weight: float = 1.0  # of the visibility loss against the location loss
    coverage: tuple[float, float] = (0.2, 0.6)  # share of the crop an occluder covers (pfd.data.occlude's default)
    kinds: tuple[str, ...] = KINDS
    seed: int = 0
    backbone: str = BACKBONE

    def check(self) -> None:
        """A bad value is the user's mistake, refused before any image is read."""
        if self.epochs < 1:
            raise InvalidInputError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise InvalidInputError(f"--batch-size must be at least 2 (person occluders come from another image), "
                                    f"got {self.batch_size}")
        if not self.lr > 0:
            raise InvalidInputError(f"--lr must be > 0, got {self.lr}")
        if not self.visibility_weight > 0:
            raise InvalidInputError(f"--visibility-weight must be > 0, got {self.visibility_weight}")
        if not 0 <= self.occlude_prob <= 1:
            raise InvalidInputError(f"--occlude-prob must be in [0, 1], got {self.occlude_prob}")


def load_crops(paths: Sequence[str], keypoints: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops resized to INPUT_HW, uint8 [N, 3, 128, 64], and their keypoints [N, 17, 3] in those pixels."""
    images = torch.empty(len(paths), 3, *INPUT_HW, dtype=torch.uint8)
    sizes = []
    for i, path in enumerate(paths):
        image = read_image(path)
        sizes.append(image.size)
        images[i] = torch.from_numpy(resize_crop(image)).permute(2, 0, 1)
    kps = torch.as_tensor(keypoints, dtype=torch.float32).clone()  # [N, 17, 3] crop pixels
    kps[..., :2] = (kps[..., :2] + 0.5) * input_scale(sizes) - 0.5  # input pixels
    return images, kps


def pose_losses(location: torch.Tensor, seen: torch.Tensor, occluder: torch.Tensor, keypoints: torch.Tensor,
                placed: torch.Tensor, covered: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(location, visibility, occluder) losses of the network's outputs (location logits [B, 17, h, w], P(seen)
    [B, 17], occluder logits [B, 1, h, w]) against keypoints [B, 17, 3] in input pixels whose confidence is 0
    where hidden, `placed` [B, 17] bool (the teacher placed the keypoint: its location is a target, seen or
    not) and the covered input pixels [B, H, W] bool."""
    target = render_heatmaps(torch.cat([keypoints[..., :2], torch.ones_like(keypoints[..., 2:])], -1), INPUT_HW,
                             LOCATION_SIGMA, tuple(location.shape[-2:])).flatten(2)  # [B, 17, h*w]
    target = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
    cross_entropy = -(target * location.flatten(2).log_softmax(-1)).sum(-1)  # [B, 17]
    location_loss = (cross_entropy * placed).sum() / placed.sum().clamp_min(1)
    visible = (placed & (keypoints[..., 2] > 0)).float()  # [B, 17]
    visibility_loss = F.binary_cross_entropy(seen.clamp(1e-6, 1 - 1e-6), visible)
    share = F.adaptive_avg_pool2d(covered.unsqueeze(1).float(), occluder.shape[-2:])  # [B, 1, h, w] covered share
    return location_loss, visibility_loss, F.binary_cross_entropy_with_logits(occluder, share)


def _augment(images: torch.Tensor, keypoints: torch.Tensor, pids: torch.Tensor, occluder: BatchOccluder):
    """(normalized images, keypoints with covered ones at confidence 0, placed [B, 17], covered pixels [B, H, W])
    of a uint8 batch: half of it mirrored, then occluders pasted."""
    x = normalize(images)  # [B, 3, H, W]
    mirror = torch.rand(x.shape[0]) < 0.5
    x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(3), x)
    kps = torch.where(mirror.view(-1, 1, 1), flip_keypoints(keypoints, INPUT_HW[1]), keypoints)
    placed = kps[..., 2] > 0
    x, kps, covered = occluder.occlude(x, kps, pids)
    return x, kps, placed, covered


def teacher_crops(cfg) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """(paths, keypoints [N, 17, 3], pids [N], teacher backend) of the training crops where the teacher
    found a person."""
    dataset, table = load_training_set(cfg)
    if table is None:
        raise InvalidInputError("pfd-train-pose needs a teacher's cached keypoints; MODEL.POSE_ONLINE must be false")
    keypoints = np.stack([table[r.path] for r in dataset.train])  # [N, 17, 3]
    found = keypoints[..., 2].max(1) > 0
    if found.sum() < 2:
        raise InvalidInputError(f"the teacher ({table.backend}) found a person in {int(found.sum())} of "
                                f"{len(found)} training images of {cfg.DATASETS.NAMES}; at least 2 are needed")
    paths = [r.path for r, ok in zip(dataset.train, found) if ok]
    pids = np.array([r.pid for r, ok in zip(dataset.train, found) if ok])
    log.info("teacher %s: %d of %d training crops with a person", table.backend, len(paths), len(found))
    return paths, keypoints[found], pids, table.backend


def train_pose_estimator(cfg, out: Path, settings: PoseTrainSettings,
                         on_epoch: Callable[[dict], None] = lambda row: None) -> dict:
    """Train the estimator on `cfg`'s training crops and write it to `out` after every epoch; returns what
    was written (without the weights). `on_epoch` sees each epoch's row (losses, seconds)."""
    settings.check()
    paths, keypoints, pids, teacher = teacher_crops(cfg)
    start = time.perf_counter()
    images, keypoints = load_crops(paths, keypoints)
    log.info("%d crops loaded in %.1f s", len(paths), time.perf_counter() - start)
    pids = torch.as_tensor(pids)
    torch.manual_seed(settings.seed)
    net = KeypointNet(settings.backbone).to(memory_format=torch.channels_last)  # ~10% faster on CPU
    occluder = BatchOccluder(settings.occlude_prob, settings.kinds, settings.coverage, INPUT_HW, (0.5,) * 3, (0.5,) * 3)
    steps = settings.epochs * max(1, len(paths) // settings.batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=steps, pct_start=0.05)
    record = {"format": FORMAT, "backbone": settings.backbone, "input_hw": list(INPUT_HW), "teacher": teacher,
              "datasets": cfg.DATASETS.NAMES, "crops": len(paths), "settings": asdict(settings), "history": []}
    for epoch in range(settings.epochs):
        net.train()
        started, sums, count = time.perf_counter(), torch.zeros(3), 0
        for batch in torch.randperm(len(paths)).split(settings.batch_size):
            if len(batch) < settings.batch_size and count:  # a short last batch: BatchNorm and the schedule skip it
                break
            x, kps, placed, covered = _augment(images[batch], keypoints[batch], pids[batch], occluder)
            losses = torch.stack(pose_losses(*net(x.contiguous(memory_format=torch.channels_last)), kps, placed,
                                             covered))
            weighted = losses[0] + settings.visibility_weight * losses[1] + losses[2]
            if not torch.isfinite(losses).all():
                raise FloatingPointError(f"pose training diverged at epoch {epoch + 1}: losses {losses.tolist()}")
            optimizer.zero_grad(set_to_none=True)
            weighted.backward()
            optimizer.step()
            schedule.step()
            sums, count = sums + losses.detach(), count + 1
        row = {"epoch": epoch + 1, "location_loss": round(float(sums[0]) / count, 4),
               "visibility_loss": round(float(sums[1]) / count, 4), "occluder_loss": round(float(sums[2]) / count, 4),
               "seconds": round(time.perf_counter() - started, 1)}
        record["history"].append(row)
        record["epochs_done"] = epoch + 1
        atomic_save({**record, "state_dict": net.state_dict()}, out)
        on_epoch(row)
    return record
