"""The COCO-17 keypoint layout every part of the project uses: the keypoints' names, in order, and their
number. A base module, so that the config (MODEL.QUERY_NUM, TEST.VIS_BUCKETS), the retrieval metrics and
the pose package all read the one declaration (pfd.pose.keypoints re-exports both)."""

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(COCO_KEYPOINTS)  # 17
