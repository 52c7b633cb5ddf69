"""Pose estimation: COCO-17 keypoints for every image, from HRNet, mediapipe, the project's own learned
network, a file or the synthetic generator's ground truth, cached per dataset (see base.py, estimator.py
and cache.py).

The exports below load on first use, so `pfd.pose.keypoints` (plain tuples, used by the synthetic
generator) imports without torch. HRNet loads only when used: `from pfd.pose.hrnet import HRNet`.
"""
from ..lazy import lazy_exports

_EXPORTS = {"KeypointTable": "cache", "load_or_build": "cache", "BACKENDS": "base",
            "PoseEstimator": "base", "build_estimator": "estimator", "estimator_identity": "estimator",
            "resolve_backend": "estimator"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
