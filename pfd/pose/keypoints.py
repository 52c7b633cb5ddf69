"""COCO-17 keypoint definitions shared by every pose backend, the augmentations and the model."""

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(COCO_KEYPOINTS)  # 17

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
