"""COCO-17 keypoint definitions shared by every pose backend, the augmentations and the model, the one
check of keypoint values a user gives (keypoint files, `ReIDModel.embed`), one photo's keypoints as JSON
(the service's `keypoints` field, `query.py search --keypoints`), and what an estimator's keypoints off the
image become (marked missing)."""
import json

import numpy as np

from ..errors import InvalidInputError
from ..skeleton import COCO_KEYPOINTS as COCO_KEYPOINTS  # re-exported: the layout is declared below config
from ..skeleton import NUM_KEYPOINTS

# (left, right) index pairs swapped by a horizontal flip.
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

# Index permutation applied to keypoints when the image is mirrored.
FLIP_INDEX = tuple(
    next((r if k == l else l) for l, r in FLIP_PAIRS if k in (l, r)) if k else 0
    for k in range(NUM_KEYPOINTS)
)


def flip_keypoints(keypoints, width: int):
    """Keypoints [..., 17, C>=2] (numpy or torch; x, y, ... in pixels) of the image mirrored left-right:
    x -> width - 1 - x, and left/right swapped (the left wrist becomes the right wrist). Returns a copy."""
    flipped = keypoints[..., list(FLIP_INDEX), :]  # advanced indexing: a copy
    flipped[..., 0] = width - 1 - flipped[..., 0]
    return flipped


# Skeleton edges for drawing (pairs of keypoint indices).
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
            (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))


EDGE_SLACK = 1.0  # px a present keypoint a user gives may lie outside its image (rounding, pixel-centre conventions)


def mark_outside(kps, sizes) -> np.ndarray:
    """An estimator's keypoints [N, 17, 3] with every one off its image's pixels (x outside [-0.5, width - 0.5),
    y likewise; `sizes` [N, 2] = width, height) marked missing (confidence 0), as a copy. BlazePose places
    the hidden ankles of a crop that cuts the feet a few pixels below it; the model's transform ignores such
    points the same way (pfd.data.transforms), so no feature changes. Keypoints a user gives are checked
    instead (`check_keypoint_values`)."""
    kps = np.array(kps, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    wh = np.asarray(sizes, np.float32).reshape(-1, 1, 2)  # [N, 1, 2]
    off = ((kps[..., :2] < -0.5) | (kps[..., :2] >= wh - 0.5)).any(axis=2)  # [N, 17]
    kps[off, 2] = 0.0
    return kps


def check_keypoint_values(kps, names, source, sizes=None) -> None:
    """Refuse keypoints [N, 17, 3] (x, y, confidence) that are not finite, have a confidence outside [0, 1],
    or, given `sizes` [N, 2] (each image's width, height), are present (confidence > 0) but lie more than
    EDGE_SLACK px (the tolerance) outside their image. The error names `source`, the first bad entry
    (`names[n]`) and keypoint, the tolerance, and how many entries are affected. The one check of keypoints
    a user gives: keypoint files and `ReIDModel.embed(keypoints=)` (an estimator's: `mark_outside`)."""
    kps = np.asarray(kps, np.float32).reshape(-1, NUM_KEYPOINTS, 3)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(kps).all(axis=2) | ~((kps[..., 2] >= 0) & (kps[..., 2] <= 1))  # [N, 17]
        expected = "finite numbers and a confidence in [0, 1]"
        if not bad.any() and sizes is not None:
            wh = np.asarray(sizes, np.float32).reshape(-1, 1, 2)  # [N, 1, 2]
            inside = ((kps[..., :2] >= -EDGE_SLACK) & (kps[..., :2] <= wh + EDGE_SLACK)).all(axis=2)  # [N, 17]
            bad = (kps[..., 2] > 0) & ~inside
            expected = (f"a keypoint inside its image, at most {EDGE_SLACK:g} px outside it (the tolerance); one "
                        "farther out must be marked missing (confidence 0)")
    if bad.any():
        n, k = np.argwhere(bad)[0]
        size = "" if sizes is None else " in an image of {}x{}".format(*np.asarray(sizes, np.int64).reshape(-1, 2)[n])
        raise InvalidInputError(
            f"{source}: entry {names[n]!r}, keypoint {COCO_KEYPOINTS[k]} is (x, y, confidence) = "
            f"{tuple(round(float(v), 4) for v in kps[n, k])}{size}; expected {expected} "
            f"({int(bad.any(axis=1).sum())} of {len(kps)} entries have such values)")


def keypoints_from_json(text: str, source: str) -> np.ndarray:
    """[17, 3] float32 from JSON `[[x, y, confidence], ...]` (COCO-17 order, the photo's own pixels); an
    InvalidInputError naming `source` when the text is not JSON or not 17 rows of 3 numbers. The values
    are the caller's to check (`check_keypoint_values`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{source}: not JSON ({err})") from err
    try:
        kps = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{source}: expected {NUM_KEYPOINTS} rows of [x, y, confidence] numbers ({err})") \
            from err
    if kps.shape != (NUM_KEYPOINTS, 3):
        raise InvalidInputError(f"{source}: expected shape [{NUM_KEYPOINTS}, 3] (x, y, confidence of the COCO-17 "
                                f"keypoints), got {list(kps.shape)}")
    return kps
