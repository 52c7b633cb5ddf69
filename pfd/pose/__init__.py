"""Pose estimation: COCO-17 keypoints for every image, from HRNet, mediapipe, a file or the
synthetic generator's ground truth, cached per dataset (see estimator.py and cache.py).

HRNet (and torch) load only when used: `from pfd.pose.hrnet import HRNet`, `pfd.pose.online`.
"""
from .cache import KeypointTable, load_or_build
from .estimator import BACKENDS, PoseEstimator, build_estimator, estimator_identity, resolve_backend

__all__ = ["BACKENDS", "KeypointTable", "PoseEstimator", "build_estimator", "estimator_identity", "load_or_build",
           "resolve_backend"]
