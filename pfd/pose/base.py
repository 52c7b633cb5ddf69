"""What every pose backend shares, below the backends and the estimator factory (no import circle):
the backend names, the estimator interface and the project's keypoint-file format name."""
from __future__ import annotations

import abc
from typing import Sequence

import numpy as np
from PIL import Image

from ..config import POSE_BACKENDS as BACKENDS  # the one list of names (the config validates against it)
from ..image import read_image

__all__ = ["BACKENDS", "PATH_BACKENDS", "PIXEL_BACKENDS", "PER_PROCESS_BACKENDS", "PROJECT_FORMAT", "PoseEstimator"]

# Backends that look keypoints up by image path (predict_paths only), not by pixels.
PATH_BACKENDS = frozenset({"file", "synthetic"})
PIXEL_BACKENDS = tuple(b for b in BACKENDS if b not in PATH_BACKENDS)  # read pixels: can pose any photo
# CPU-bound, one image at a time: the cache spreads them over processes, each with its own estimator.
PER_PROCESS_BACKENDS = frozenset({"mediapipe"})
PROJECT_FORMAT = "pfd-keypoints-v1"  # the "format" of the project's keypoints.json


class PoseEstimator(abc.ABC):
    """Person crops in, COCO-17 keypoints out.

    `identity` names the backend and its weights (or keypoint file) precisely enough that a cache
    built with another identity is stale (see `pfd.pose.estimator.estimator_identity`).
    """

    name: str = ""
    identity: str = ""

    @abc.abstractmethod
    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images -> keypoints [N, 17, 3] in each image's own pixel coordinates."""

    def predict_paths(self, paths: Sequence[str]) -> np.ndarray:
        """Keypoints of the image files at `paths` (file-based backends look them up by name)."""
        return self.predict([read_image(p) for p in paths])

    def close(self) -> None:
        """Release backend resources (mediapipe graphs)."""
