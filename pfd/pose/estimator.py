"""One interface over every pose backend, and the choice of backend from the config.

Backends (MODEL.POSE_BACKEND):
- `hrnet`: HRNet-W32/W48 with the public COCO weights (MODEL.POSE_ARCH, MODEL.POSE_WEIGHT).
- `mediapipe`: BlazePose from the mediapipe wheel; works offline with no weights to fetch.
- `learned`: the project's own keypoint and visibility network (MODEL.POSE_LEARNED_WEIGHT, written by
  `pfd-train-pose`; pfd.pose.learned).
- `file`: keypoints read from MODEL.POSE_FILE (COCO JSON, OpenPose CSV, project JSON or cache).
- `synthetic`: the synthetic generator's ground truth (the dataset's keypoints.json).
- `auto`: hrnet if MODEL.POSE_WEIGHT is set, learned if MODEL.POSE_LEARNED_WEIGHT is set, file if
  MODEL.POSE_FILE is set, synthetic if the dataset has the generator's keypoints.json, else mediapipe.

Every backend returns COCO-17 keypoints [N, 17, 3] = (x, y, confidence in [0, 1]) in each image's
own pixels. An image with no person found has all confidences 0; it is counted, never an error.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from ..config import ConfigError
from ..errors import InvalidInputError, MissingFileError
from .base import BACKENDS, PROJECT_FORMAT, PoseEstimator

__all__ = ["build_estimator", "estimator_identity", "find_synthetic_keypoints", "learned_weight", "pose_file",
           "resolve_backend", "synthetic_keypoints_in"]

SYNTHETIC_FILE = "keypoints.json"


def find_synthetic_keypoints(paths: Sequence[str], levels: int = 3) -> Path | None:
    """The generator's keypoints.json in a folder above the first image (up to `levels` up), if any."""
    return synthetic_keypoints_in(Path(paths[0]).resolve().parent, levels) if paths else None


def synthetic_keypoints_in(folder: str | os.PathLike, levels: int = 3) -> Path | None:
    """The generator's keypoints.json in `folder` or the folders above it (`levels` folders in all), if any."""
    folder = Path(folder).resolve()
    for candidate in [folder, *folder.parents][:levels]:
        file = candidate / SYNTHETIC_FILE
        if file.is_file() and _is_project_file(file):
            return file
    return None


def _is_project_file(path: Path) -> bool:
    try:
        with path.open() as f:
            return json.load(f).get("format") == PROJECT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def resolve_backend(cfg, backend: str | None = None, image_paths: Sequence[str] = (),
                    image_folder: str | os.PathLike | None = None) -> str:
    """The backend to use: `backend`, else MODEL.POSE_BACKEND, with `auto` decided as documented above from
    the images at `image_paths`, or from `image_folder` (where they are) when no path is at hand."""
    name = backend or cfg.MODEL.POSE_BACKEND
    if name != "auto":
        if name not in BACKENDS:
            raise InvalidInputError(f"pose backend must be one of {', '.join(('auto',) + BACKENDS)}, got {name!r}")
        return name
    if cfg.MODEL.POSE_WEIGHT:
        return "hrnet"
    if cfg.MODEL.POSE_LEARNED_WEIGHT:
        return "learned"
    if cfg.MODEL.POSE_FILE:  # a file the user named wins over one found next to the images
        return "file"
    if find_synthetic_keypoints(image_paths) or (image_folder and synthetic_keypoints_in(image_folder)):
        return "synthetic"
    return "mediapipe"


def _synthetic_file(image_paths: Sequence[str]) -> Path:
    file = find_synthetic_keypoints(image_paths)
    if file is None:
        where = os.path.dirname(image_paths[0]) if image_paths else "(no images given)"
        raise MissingFileError(
            f"MODEL.POSE_BACKEND synthetic: no {SYNTHETIC_FILE} (format {PROJECT_FORMAT}) in or above {where}; "
            "generate the dataset with `python -m pfd.data.synthetic`"
        )
    return file


def pose_file(cfg) -> str:
    """MODEL.POSE_FILE, the `file` backend's keypoint file; a ConfigError when it is not set."""
    if not cfg.MODEL.POSE_FILE:
        raise ConfigError("MODEL.POSE_BACKEND file needs MODEL.POSE_FILE (a COCO JSON, OpenPose CSV, "
                          "pfd keypoints.json or pose cache .npz)")
    return cfg.MODEL.POSE_FILE


def learned_weight(cfg) -> str:
    """MODEL.POSE_LEARNED_WEIGHT, the `learned` backend's weights; a ConfigError when it is not set, a
    MissingFileError when the file is not there."""
    if not cfg.MODEL.POSE_LEARNED_WEIGHT:
        raise ConfigError("MODEL.POSE_BACKEND learned needs MODEL.POSE_LEARNED_WEIGHT (the weights file "
                          "`pfd-train-pose` writes)")
    if not os.path.isfile(cfg.MODEL.POSE_LEARNED_WEIGHT):
        raise MissingFileError(f"MODEL.POSE_LEARNED_WEIGHT {cfg.MODEL.POSE_LEARNED_WEIGHT}: no such file (train one "
                               "with `pfd-train-pose`)")
    return cfg.MODEL.POSE_LEARNED_WEIGHT


def estimator_identity(cfg, backend: str, image_paths: Sequence[str] = ()) -> str:
    """What `build_estimator(cfg, backend, image_paths).identity` will be, without building it
    (no weights loaded, no graph started): the cache uses it to tell whether its entries are stale."""
    if backend == "hrnet":
        from .hrnet import hrnet_identity

        return hrnet_identity(cfg.MODEL.POSE_ARCH, cfg.MODEL.POSE_WEIGHT)
    if backend == "mediapipe":
        from .mediapipe_backend import mediapipe_identity

        return mediapipe_identity()
    if backend == "learned":
        from .learned import learned_identity

        return learned_identity(learned_weight(cfg))
    from .formats import file_identity

    if backend == "file":
        return file_identity("file", pose_file(cfg))
    return file_identity("synthetic", _synthetic_file(image_paths))


def build_estimator(cfg, backend: str | None = None, image_paths: Sequence[str] = ()) -> PoseEstimator:
    """The configured estimator. `image_paths` (the images it will see) lets `auto` and `synthetic`
    find the generator's keypoints.json next to the images."""
    name = resolve_backend(cfg, backend, image_paths)
    if name == "hrnet":
        from .hrnet import HRNetEstimator

        return HRNetEstimator.from_config(cfg)
    if name == "mediapipe":
        from .mediapipe_backend import MediapipeEstimator

        return MediapipeEstimator()
    if name == "learned":
        from .learned import LearnedPoseEstimator

        return LearnedPoseEstimator(learned_weight(cfg))
    from .formats import FileEstimator

    if name == "file":
        return FileEstimator(pose_file(cfg))
    return FileEstimator(_synthetic_file(image_paths), name="synthetic")
