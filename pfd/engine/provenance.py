"""metrics.json's "provenance" block: everything needed to reproduce a reported number.

    checkpoint      path and SHA-256 of the weights evaluated, and their layout (ours / reference)
    config_hash     config_hash over FEATURE_KEYS; `feature_config` lists those keys' values
    eval_precision  fp32 / bf16 / fp16 (TEST.AMP), device
    pose            online HRNet or cached keypoints (backend, cache file), SHA-256 of the HRNet weights used
    dataset         name and root folder
    retrieval       feature normalization and re-ranking settings
    date, versions  UTC time of the evaluation; python, pfd, torch, timm, faiss, numpy
"""
from __future__ import annotations

import datetime
import platform
from importlib import metadata
from pathlib import Path

import torch

from .. import __version__
from ..config import config_hash, feature_config
from ..io import sha256_file
from ..precision import dtype_name

__all__ = ["provenance", "package_versions"]

PACKAGES = ("torch", "timm", "faiss-cpu", "faiss-gpu", "numpy", "torchvision", "pillow")


def package_versions() -> dict[str, str]:
    """Versions of python, pfd and the installed packages features depend on."""
    versions = {"python": platform.python_version(), "pfd": __version__, "cuda": torch.version.cuda}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _pose(cfg, keypoints) -> dict:
    """Where the heatmaps came from: online HRNet or a keypoint table (and which weights)."""
    online = bool(cfg.MODEL.POSE_ONLINE)
    backend = "hrnet" if online else getattr(keypoints, "backend", "")
    weights = cfg.MODEL.POSE_WEIGHT if backend == "hrnet" and cfg.MODEL.POSE_WEIGHT else None
    return {"online": online, "backend": backend, "cache": None if online else getattr(keypoints, "source", None),
            "weights": weights, "weights_sha256": sha256_file(weights) if weights else None}


def provenance(cfg, checkpoint: dict, dataset_name: str, keypoints, device: torch.device,
               amp_dtype: torch.dtype | None) -> dict:
    """The provenance block of one test set's metrics.json; `checkpoint` is {"path", "sha256", "format"}."""
    return {
        "checkpoint": checkpoint,
        "config_hash": config_hash(cfg),
        "feature_config": feature_config(cfg),
        "eval_precision": dtype_name(amp_dtype),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "pose": _pose(cfg, keypoints),
        "dataset": {"name": dataset_name, "root": str(Path(cfg.DATASETS.ROOT_DIR).resolve())},
        "retrieval": {"feat_norm": cfg.TEST.FEAT_NORM, "re_ranking": bool(cfg.TEST.RE_RANKING),
                      "re_ranking_k1": cfg.TEST.RE_RANKING_K1, "re_ranking_k2": cfg.TEST.RE_RANKING_K2,
                      "re_ranking_lambda": cfg.TEST.RE_RANKING_LAMBDA},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
    }
