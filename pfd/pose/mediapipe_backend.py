"""BlazePose (mediapipe 0.10.x "solutions" API) as an offline COCO-17 estimator.

The pose models ship inside the mediapipe wheel (only `pose_landmark_full.tflite`, i.e.
model_complexity 1, in 0.10.21), so nothing is downloaded; other complexities are refused
rather than letting mediapipe fetch them.

Re-ID crops are small (128x64) and tightly cropped, which BlazePose's person detector handles
badly: it needs context around the person more than pixels. Each crop is therefore scaled (bicubic)
to 128 px high, i.e. kept at a 128x64 crop's own size, and centred on a 384x384 mid-gray canvas: on
CUHK03's 200 queries a person is found in 91.5% (cuhk03_occ: 69.5%), against 88.5% (68.5%) upscaled to
192 px on the same canvas, 70.5% (54.5%) at 256 px and 67.5% (52.5%) at 192 px on a 256 canvas
(bench/mediapipe_crops.py, docs/EXPERIMENTS.md). Landmarks are mapped back to the crop's own pixels.

mediapipe's C++ graph logs a few fixed lines to the process's stderr (file descriptor 2) when a graph
starts and on every image (`inference_feedback_manager.cc ... Feedback manager requires ...`,
`landmark_projection_calculator.cc ...`); they say nothing to the user and neither GLOG_minloglevel
nor absl's Python logging reaches them, so `_native_noise_filtered` drops exactly those lines.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidInputError, MissingFileError
from ..image import to_rgb
from .base import PoseEstimator
from .keypoints import mark_outside

__all__ = ["MediapipeEstimator", "BLAZEPOSE_TO_COCO", "prepare_crop", "mediapipe_identity"]

# BlazePose landmark index of each COCO-17 keypoint (both use the person's own left/right).
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
CANVAS = 384  # side of the square canvas the crop is pasted on
PERSON_HEIGHT = 128  # the crop's height on the canvas (measured best of 96-320 px, module docstring)
CANVAS_GRAY = (128, 128, 128)
_MODEL_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}
# Substrings of the native log lines dropped from stderr (every other line written meanwhile is kept).
NATIVE_NOISE = ("inference_feedback_manager.cc", "landmark_projection_calculator.cc",
                "Created TensorFlow Lite XNNPACK delegate", "All log messages before absl::InitializeLog()")


@contextlib.contextmanager
def _native_noise_filtered() -> Iterator[None]:
    """Send file descriptor 2 to a temp file while mediapipe runs, then write back to stderr every line
    but the NATIVE_NOISE ones (so a real native error still shows)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not any(noise in line for noise in NATIVE_NOISE))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def prepare_crop(image: Image.Image, canvas_side: int = CANVAS,
                 person_height: int = PERSON_HEIGHT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste the crop, upscaled to `person_height`, at the centre of a square canvas of `canvas_side`.

    Returns (canvas uint8 [side, side, 3], scale [2], offset [2]): measured from the images'
    top-left corners, canvas point (u, v) is crop point ((u, v) - offset) / scale. The defaults are
    the estimator's; bench/mediapipe_crops.py measures others.
    """
    w, h = image.size
    scale = min(person_height / h, canvas_side / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    left, top = (canvas_side - size[0]) // 2, (canvas_side - size[1]) // 2
    canvas = Image.new("RGB", (canvas_side, canvas_side), CANVAS_GRAY)
    canvas.paste(to_rgb(image).resize(size, Image.BICUBIC), (left, top))
    scale = np.array([size[0] / w, size[1] / h], np.float32)  # canvas pixels per crop pixel, per axis
    return np.asarray(canvas), scale, np.array([left, top], np.float32)


def _model_path(complexity: int) -> str:
    import mediapipe

    if complexity not in _MODEL_FILES:
        raise InvalidInputError(f"mediapipe model_complexity must be 0, 1 or 2, got {complexity!r}")
    path = os.path.join(os.path.dirname(mediapipe.__file__), "modules", "pose_landmark", _MODEL_FILES[complexity])
    if not os.path.isfile(path):
        shipped = [c for c, f in _MODEL_FILES.items()
                   if os.path.isfile(os.path.join(os.path.dirname(path), f))]
        raise MissingFileError(
            f"mediapipe model_complexity {complexity} needs {path}, which this mediapipe install does not "
            f"ship (mediapipe would download it; this project never does). Shipped complexities: {shipped}"
        )
    return path


def mediapipe_identity(model_complexity: int = 1, min_detection_confidence: float = 0.5) -> str:
    """Everything that changes the keypoints: mediapipe version, model and crop preparation."""
    from importlib.metadata import version

    return (f"mediapipe-{version('mediapipe')}-c{model_complexity}-d{min_detection_confidence}"
            f"-canvas{CANVAS}h{PERSON_HEIGHT}g{CANVAS_GRAY[0]}-bicubic-inside")  # inside: off-image points marked


class MediapipeEstimator(PoseEstimator):
    """BlazePose on CPU, one image at a time; one instance per process (it is not picklable)."""

    name = "mediapipe"

    def __init__(self, model_complexity: int = 1, min_detection_confidence: float = 0.5):
        import mediapipe

        _model_path(model_complexity)  # refuse before mediapipe tries to download
        self.model_complexity = model_complexity
        self.min_detection_confidence = min_detection_confidence
        with _native_noise_filtered():
            self._pose = mediapipe.solutions.pose.Pose(
                static_image_mode=True, model_complexity=model_complexity,
                enable_segmentation=False, min_detection_confidence=min_detection_confidence,
            )
            # The graph opens its calculators (which log) on its own threads after the constructor returns;
            # one pass waits until the graph is idle, so all of them have opened inside this filter.
            self._pose.process(np.zeros((CANVAS, CANVAS, 3), np.uint8))
        self.identity = mediapipe_identity(model_complexity, min_detection_confidence)

    def landmarks(self, image: Image.Image, canvas_side: int = CANVAS,
                  person_height: int = PERSON_HEIGHT) -> np.ndarray | None:
        """All 33 BlazePose landmarks [33, 3] (x, y in the crop's pixels, visibility), None when no person
        is found; `canvas_side` and `person_height` as in `prepare_crop`."""
        canvas, scale, offset = prepare_crop(image, canvas_side, person_height)
        with _native_noise_filtered():
            result = self._pose.process(canvas)
        if result.pose_landmarks is None:
            return None
        points = np.array([(m.x, m.y, m.visibility) for m in result.pose_landmarks.landmark], np.float32)
        # normalized [0, 1] edge-to-edge -> crop pixels with pixel i centred at i (pfd.pose.heatmaps convention)
        points[:, :2] = (points[:, :2] * canvas_side - offset) / scale - 0.5
        return points

    def predict_one(self, image: Image.Image) -> np.ndarray:
        """COCO-17 [17, 3] in the crop's pixels; all zeros when no person is found. Landmarks off the crop
        (a cut-off person's feet) are marked missing (pfd.pose.keypoints.mark_outside)."""
        points = self.landmarks(image)
        if points is None:
            return np.zeros((17, 3), np.float32)
        out = points[list(BLAZEPOSE_TO_COCO)]
        out[:, 2] = np.clip(out[:, 2], 0.0, 1.0)
        return mark_outside(out, image.size)[0]  # hidden feet guessed below a cut-off crop: missing

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, 17, 3), np.float32)
        return np.stack([self.predict_one(image) for image in images])

    def close(self) -> None:
        self._pose.close()
