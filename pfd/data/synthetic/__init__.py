"""The embedded synthetic occluded re-ID dataset: PIL-drawn pedestrians, several cameras,
occluders, ground-truth COCO-17 keypoints. `python -m pfd.data.synthetic --out DIR`."""
from pfd.data.synthetic.generate import (
    KEYPOINTS_FILE,
    MARKER_FILE,
    META_FILE,
    SPLIT_DIRS,
    Summary,
    SyntheticConfig,
    generate,
    is_complete,
)
from pfd.data.synthetic.identity import ATTRIBUTES, Identity, make_identities
from pfd.data.synthetic.person import render_person

__all__ = ["ATTRIBUTES", "KEYPOINTS_FILE", "MARKER_FILE", "META_FILE", "SPLIT_DIRS", "Identity", "Summary",
           "SyntheticConfig", "generate", "is_complete", "make_identities", "render_person"]
