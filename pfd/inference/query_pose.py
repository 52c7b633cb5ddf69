"""The one policy for a query photo's keypoints. `query.py search`, the Python API (`Gallery.search`) and the
service all pose a query with `QueryPoser.pose`, so one photo gets the same keypoints, for the same reason,
whichever way it is searched:

(a) the keypoints the caller gives (`query.py search --keypoints`, `keypoints=`, the request's `keypoints`);
(b) else the index's own pose backend when it reads pixels (mediapipe, hrnet: pfd.pose.base.PIXEL_BACKENDS);
(c) else, for an index whose poses came from a keypoint file (the synthetic generator's keypoints.json beside
    the images, or MODEL.POSE_FILE), the photo's entry in that file, found by its path or, for an uploaded
    photo, by its file name;
(d) else the fallback backend the caller chose (the service's --pose-backend), which the reason names; without
    one, `NoQueryKeypoints`: one line naming the index's backend and how to give keypoints.
With MODEL.POSE_ONLINE the model poses the photo itself (HRNet on its input) and no keypoints are used.

The index's own backend is the MODEL.POSE_BACKEND of the config it was built with, `auto` resolved against
the folder of its gallery images as `query.py index` resolved it: keypoints from another backend give features of
another config, which is why a search does not switch backends on its own.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import InvalidInputError
from ..image import image_size
from ..pose import build_estimator
from ..pose.base import PIXEL_BACKENDS, PoseEstimator
from ..pose.estimator import (
    SYNTHETIC_FILE,
    find_synthetic_keypoints,
    pose_file,
    resolve_backend,
    synthetic_keypoints_in,
)
from ..pose.formats import FileEstimator
from ..pose.keypoints import check_keypoint_values

__all__ = ["GIVEN", "NoQueryKeypoints", "QueryPose", "QueryPoser"]

GIVEN = "given by the caller"
PIXEL_BACKENDS_HINT = ("index the gallery again with a pose backend that reads pixels, `python query.py index ... "
                       "MODEL.POSE_BACKEND mediapipe` (no weights needed) or `... MODEL.POSE_BACKEND hrnet "
                       "MODEL.POSE_WEIGHT pose_hrnet_w48_256x192.pth`, and search that index")


class QueryPose(NamedTuple):
    """A query photo's keypoints and where they came from."""

    keypoints: np.ndarray | None  # [17, 3] (x, y, confidence) in the photo's pixels; None with MODEL.POSE_ONLINE
    source: str  # "request" (the caller's), "online", or the pose backend that gave them
    reason: str  # one line saying which keypoints these are and why


class NoQueryKeypoints(InvalidInputError):
    """A photo the index's keypoint file does not list, sent without keypoints, with no fallback backend."""


class QueryPoser:
    """The policy above for the index built with `cfg` whose images are in `gallery_folder` (None: unknown, an
    empty gallery). `give` says how this caller gives keypoints (for the error of (d)); `fallback`: a backend that
    reads pixels for (d). Estimators and keypoint files are loaded on first use and kept; not thread safe
    (the service holds a lock around `pose`)."""

    def __init__(self, cfg, gallery_folder: str | None, give: str, fallback: str | None = None):
        if fallback is not None and fallback not in PIXEL_BACKENDS:
            raise InvalidInputError(f"fallback pose backend: expected one that reads pixels "
                                    f"({', '.join(PIXEL_BACKENDS)}), got {fallback!r}")
        self.cfg, self.gallery_folder, self.give, self.fallback = cfg, gallery_folder, give, fallback
        self.backend = resolve_backend(cfg, image_folder=gallery_folder)
        self._estimators: dict[str, PoseEstimator] = {}  # a backend name or a keypoint file -> its estimator

    def pose(self, image: str | Image.Image, keypoints=None, name: str | None = None,
             where: str = "query") -> QueryPose:
        """The keypoints of `image` (an absolute path or an RGB PIL image) and why. `name`: an in-memory photo's
        file name, looked up in a keypoint file; `where`: how errors name the photo (e.g. `--image x.jpg`)."""
        if self.cfg.MODEL.POSE_ONLINE:
            return QueryPose(None, "online", "computed inside the model (MODEL.POSE_ONLINE: HRNet on its input)")
        if keypoints is not None:
            return QueryPose(np.asarray(keypoints, np.float32), "request", GIVEN)
        if self.backend in PIXEL_BACKENDS:
            return QueryPose(self._estimate(self.backend, image), self.backend,
                             f"{self.backend}, the index's pose backend")
        return self._from_file(image, name, where)

    def _from_file(self, image: str | Image.Image, name: str | None, where: str) -> QueryPose:
        """(c) the photo's entry in the index's keypoint file, else (d) the fallback or NoQueryKeypoints."""
        path = image if isinstance(image, str) else None
        files, key = self._keypoint_files(path), path or name
        for file in files:
            found = self._file_estimator(file).find(key) if key else None
            if found is not None:
                return self._listed(found, file, image, where)
        if self.fallback is not None:
            return QueryPose(self._estimate(self.fallback, image), self.fallback,
                             f"{self.fallback}, the fallback for photos the index's {self.backend} keypoints lack "
                             f"({self._why_missing(files, key, full_paths=False)})")
        raise NoQueryKeypoints(
            f"{where}: no keypoints for this photo ({self._why_missing(files, key, full_paths=True)}). A search "
            f"uses its index's pose backend (MODEL.POSE_BACKEND {self._backend_label()}; another one gives features "
            f"of another config, which the index refuses): give the photo's keypoints ({self.give}), "
            f"{self._file_remedy()}or {PIXEL_BACKENDS_HINT}")

    def close(self) -> None:
        """Release the estimators (mediapipe graphs, HRNet weights)."""
        for estimator in self._estimators.values():
            estimator.close()
        self._estimators.clear()

    def _estimate(self, backend: str, image: str | Image.Image) -> np.ndarray:
        if backend not in self._estimators:
            self._estimators[backend] = build_estimator(self.cfg, backend)
        estimator = self._estimators[backend]
        return (estimator.predict_paths([image]) if isinstance(image, str) else estimator.predict([image]))[0]

    def _keypoint_files(self, path: str | None) -> list[Path]:
        """The keypoint files the index's file-based backend reads: MODEL.POSE_FILE, or the synthetic
        generator's keypoints.json above the photo and the one above the gallery's images."""
        if self.backend == "file":
            return [Path(pose_file(self.cfg))]
        found = [find_synthetic_keypoints([path]) if path else None,
                 synthetic_keypoints_in(self.gallery_folder) if self.gallery_folder else None]
        return list(dict.fromkeys(f for f in found if f is not None))

    def _file_estimator(self, file: Path) -> FileEstimator:
        if str(file) not in self._estimators:
            self._estimators[str(file)] = FileEstimator(file, name=self.backend)
        return self._estimators[str(file)]

    def _listed(self, found: tuple[str, np.ndarray], file: Path, image, where: str) -> QueryPose:
        """(c): the photo's entry in `file`, checked to lie inside the photo."""
        entry, kps = found
        size = image_size(image) if isinstance(image, str) else image.size
        check_keypoint_values(kps[None], [entry], f"{file} (for {where})", [size])
        return QueryPose(np.asarray(kps, np.float32), self.backend,
                         f"{_entry_name(entry, file)} in {file.name}, the index's {self.backend} keypoints")

    def _why_missing(self, files: list[Path], key: str | None, full_paths: bool) -> str:
        """Why (c) found nothing, naming the files by their paths or (in a reason) their names."""
        if key is None:
            return "a photo in memory has no file name to look up in the index's keypoint file"
        if not files:
            return (f"no {SYNTHETIC_FILE} of the synthetic backend above the photo or the gallery: it knows only the "
                    f"generated dataset's own images")
        names = " and ".join(str(f) if full_paths else f.name for f in files)
        return f"the {self.backend} backend's keypoint file {names} {'does' if len(files) == 1 else 'do'} not list it"

    def _backend_label(self) -> str:
        configured = self.cfg.MODEL.POSE_BACKEND
        return self.backend if configured == self.backend else f"{configured}, here {self.backend}"

    def _file_remedy(self) -> str:
        return (f"add the photo's keypoints to {self.cfg.MODEL.POSE_FILE} (MODEL.POSE_FILE), "
                if self.backend == "file" else "")


def _entry_name(entry: str, file: Path) -> str:
    """A keypoint file's entry as a reason names it: relative to the file's folder when it is a path inside it
    (the synthetic generator's `query/0001_c1s1_000001_00.jpg`), else as the file writes it."""
    path = Path(entry)
    if not path.is_absolute():
        return entry
    folder = file.resolve().parent
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name
