"""Occluded copies of Market-layout datasets (`python -m pfd.data.occlude`) and the occluder kinds they use."""
from .build import (
    MANIFEST_FILE,
    MASK_DIR,
    OccludeConfig,
    build_occluded,
    read_manifest,
    read_mask,
    read_occlusion_source,
)
from .occluders import KINDS, Occluder, box_mask, hidden_keypoints, object_occluder, patch_occluder, person_occluder

__all__ = ["KINDS", "MANIFEST_FILE", "MASK_DIR", "OccludeConfig", "Occluder", "box_mask",
           "build_occluded", "hidden_keypoints", "object_occluder", "patch_occluder", "person_occluder",
           "read_manifest", "read_mask", "read_occlusion_source"]
