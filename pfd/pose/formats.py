"""Keypoint files: readers and writers for the formats people share, and the `file` backend.

Formats (`read_keypoints` tells them apart by content):
- COCO keypoint JSON: {"images": [{"id", "file_name", ...}], "annotations": [{"image_id",
  "keypoints": [x, y, v] * 17, ...}]}. A third value above 1 marks COCO ground-truth flags
  (2 = visible -> confidence 1, 0/1 = unlabeled/occluded -> 0); otherwise it is a confidence.
  With several people in an image, the one with the highest total confidence is kept.
- OpenPose-18 CSV as shared for Market-1501 (Pose-Transfer's market-annotation-*.csv):
  header `name:keypoints_y:keypoints_x`, rows `NAME: [y * 18]: [x * 18]`, -1 for a missing point,
  points in OpenPose/COCO-18 order (nose, neck, r_sho, r_elb, r_wri, l_sho, l_elb, l_wri, r_hip,
  r_knee, r_ank, l_hip, l_knee, l_ank, r_eye, l_eye, r_ear, l_ear). Present points get confidence 1.
- pfd keypoints.json (docs/ARCHITECTURE.md "Keypoint file format"; also the synthetic generator's
  ground truth, whose 4-value rows are read as x, y, confidence = last value).
- pfd pose cache (.npz, pfd.pose.cache).

Every reader returns {name: float32 [17, 3]}; the pfd formats resolve their relative names to
absolute paths, COCO and CSV keep the names as written (matched to images by trailing path parts).
`read_keypoints` checks every entry (finite, confidence in [0, 1]) and the `file` backend checks that
each keypoint it hands out lies inside its image or is marked missing (confidence 0); errors name the
file, the entry and the keypoint.
"""
from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import InvalidInputError, MissingFileError
from ..image import image_size
from ..io import atomic_write, claim_output_file, sha256_file
from .base import PROJECT_FORMAT, PoseEstimator
from .keypoints import NUM_KEYPOINTS, check_keypoint_values

__all__ = [
    "read_keypoints", "read_coco_json", "read_openpose_csv", "read_project_json", "read_cache_npz",
    "write_coco_json", "write_openpose_csv", "write_project_json", "write_cache_npz",
    "atomic_write", "file_identity", "FileEstimator", "OPENPOSE_TO_COCO",
]

log = logging.getLogger(__name__)

# OpenPose/COCO-18 index of each COCO-17 keypoint (the neck, 1, has no COCO-17 counterpart).
OPENPOSE_TO_COCO = (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)
CSV_HEADER = "name:keypoints_y:keypoints_x"
CACHE_FORMAT = "pfd-pose-cache-v1"
COCO_FLAGS = (0, 1, 2)  # COCO ground truth: unlabeled, labeled but hidden, visible
WRITTEN_BY = {"written_by": "pfd"}  # in the JSON files we write (COCO's "info"), so a rewrite may replace them
KEEP_HINT = "delete it first or choose another path"


def check_keypoints(table: Mapping[str, np.ndarray], source: str | os.PathLike) -> None:
    """Every entry of `table` finite with confidences in [0, 1], else an error naming `source`, the
    first bad entry and keypoint, and how many entries are affected (pfd.pose.keypoints's one check)."""
    if table:
        check_keypoint_values(np.stack([np.asarray(v, np.float32) for v in table.values()]), list(table), source)


def file_identity(backend: str, path: str | os.PathLike) -> str:
    """The identity of a file-based backend: its name and the SHA-256 of the keypoint file's whole
    content, so any edit (even in the middle of a large file) makes the caches built from it stale."""
    if not Path(path).is_file():
        raise MissingFileError(f"{backend} pose backend: keypoint file {path} not found")
    return f"{backend}-{sha256_file(path)[:16]}"


def _numbers(value, where: str) -> np.ndarray:
    """`value` as a float32 array, else an error naming `where` and what it holds (strings, ragged rows...)."""
    try:
        return np.asarray(value, np.float32)
    except (ValueError, TypeError) as err:
        raise InvalidInputError(f"{where}: expected numbers, got {_shorten(value)} ({err})") from None


def _shorten(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _rows(value, where: str, width: int = 3) -> np.ndarray:
    """[[x, y, (vis,) conf] * 17] -> float32 [17, 3] taking x, y and the last value."""
    arr = _numbers(value, where)
    if arr.ndim != 2 or arr.shape[0] != NUM_KEYPOINTS or arr.shape[1] < width:
        raise InvalidInputError(f"{where}: expected {NUM_KEYPOINTS} rows of [x, y, conf], got shape {list(arr.shape)}")
    return np.concatenate([arr[:, :2], arr[:, -1:]], axis=1)


def _load_json(path: Path):
    """The parsed JSON file, else an error naming it and where the text stops making sense."""
    try:
        with path.open() as f:
            return json.load(f)
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{path}: not a text file ({err})") from None
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg} "
                                "(a truncated or hand-edited file?)") from None


# ----------------------------------------------------------------------------------- COCO JSON
def read_coco_json(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise InvalidInputError(f"{path}: not a COCO keypoint file; expected an object with 'images' and 'annotations'")
    names = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise InvalidInputError(f"{path}: images[{i}] must be an object with 'id' and 'file_name', "
                                    f"got {_shorten(img)}")
        names[img["id"]] = img["file_name"]
    people: dict[str, list[np.ndarray]] = {name: [] for name in names.values()}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or ann.get("image_id") not in names:
            ann = ann if isinstance(ann, dict) else {}
            raise InvalidInputError(f"{path}: annotations[{i}] has image_id {ann.get('image_id')!r} "
                                    "not listed in 'images'")
        where = f"{path}: annotations[{i}].keypoints (image {names[ann['image_id']]!r})"
        flat = _numbers(ann.get("keypoints", []), where)
        if flat.shape != (3 * NUM_KEYPOINTS,):
            raise InvalidInputError(f"{path}: annotations[{i}].keypoints must hold {3 * NUM_KEYPOINTS} numbers, "
                             f"got {flat.size}")
        people[names[ann["image_id"]]].append(flat.reshape(NUM_KEYPOINTS, 3))
    third = np.concatenate([p[:, 2] for ps in people.values() for p in ps] or [np.zeros(0, np.float32)])
    flags = bool((third > 1).any())  # COCO ground truth: v in {0, 1, 2}
    if flags and not np.isin(third, COCO_FLAGS).all():
        odd = sorted({round(float(v), 3) for v in third[~np.isin(third, COCO_FLAGS)]}, key=abs, reverse=True)
        raise InvalidInputError(f"{path}: keypoint third values {odd[:5]} are neither COCO flags {COCO_FLAGS} (the "
                                "file is read as flags since some value is above 1) nor confidences in [0, 1]")
    table = {}
    for name, persons in people.items():
        kps = [p.copy() for p in persons]
        for p in kps:
            if flags:
                p[:, 2] = p[:, 2] == 2
        table[name] = max(kps, key=lambda p: p[:, 2].sum()) if kps else np.zeros((NUM_KEYPOINTS, 3), np.float32)
    return table


def _is_our_json(path: Path) -> bool:
    """Whether `path` is a keypoint JSON file one of our writers made (it carries WRITTEN_BY)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    tags = data["info"] if isinstance(data.get("info"), dict) else data  # COCO keeps it in "info"
    return WRITTEN_BY.items() <= tags.items()


def write_coco_json(path: str | os.PathLike, table: Mapping[str, np.ndarray]) -> Path:
    """One image and one person per entry; the third value is the confidence. An existing file is
    replaced only when one of our writers made it (the output rule: a user's file is never lost)."""
    path = claim_output_file(path, _is_our_json, what="keypoint file", hint=KEEP_HINT)
    images, annotations = [], []
    for i, (name, kps) in enumerate(table.items(), start=1):
        kps = np.asarray(kps, np.float32)
        images.append({"id": i, "file_name": name})
        annotations.append({"id": i, "image_id": i, "category_id": 1,
                            "num_keypoints": int((kps[:, 2] > 0).sum()), "keypoints": kps.reshape(-1).tolist()})
    text = json.dumps({"info": WRITTEN_BY, "images": images, "annotations": annotations,
                       "categories": [{"id": 1, "name": "person"}]})
    return atomic_write(path, lambda f: f.write(text.encode()))


# ----------------------------------------------------------------------------------- OpenPose CSV
def read_openpose_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    table = {}
    with path.open() as f:
        header = f.readline().strip()
        if header.replace(" ", "") != CSV_HEADER:
            raise InvalidInputError(f"{path}: expected the OpenPose CSV header {CSV_HEADER!r}, got {header!r}")
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                name, ys, xs = line.split(":")
                y, x = np.array(json.loads(ys), np.float32), np.array(json.loads(xs), np.float32)
            except ValueError as err:
                raise InvalidInputError(f"{path}:{lineno}: expected 'NAME: [y * 18]: [x * 18]' ({err})") from None
            if y.shape != (18,) or x.shape != (18,):
                raise InvalidInputError(f"{path}:{lineno}: expected 18 y and 18 x values, got {y.size} and {x.size}")
            idx = list(OPENPOSE_TO_COCO)
            present = (x[idx] != -1) & (y[idx] != -1)
            table[name.strip()] = np.stack([np.where(present, x[idx], 0), np.where(present, y[idx], 0),
                                            present.astype(np.float32)], axis=1)
    return table


def write_openpose_csv(path: str | os.PathLike, table: Mapping[str, np.ndarray]) -> Path:
    """Keypoints with confidence > 0 are written, others as -1; the neck is the shoulders' midpoint.
    The format has no room to say who wrote a file, so an existing file is never replaced."""
    path = claim_output_file(path, lambda _: False, what="keypoint file", hint=KEEP_HINT)
    lines = [CSV_HEADER]
    for name, kps in table.items():
        kps = np.asarray(kps, np.float32)
        points = np.full((18, 2), -1.0, np.float32)
        present = kps[:, 2] > 0
        points[np.array(OPENPOSE_TO_COCO)[present]] = kps[present, :2]
        if present[5] and present[6]:
            points[1] = (kps[5, :2] + kps[6, :2]) / 2
        lines.append(f"{name}: {json.dumps(points[:, 1].tolist())}: {json.dumps(points[:, 0].tolist())}")
    text = "\n".join(lines) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


# ----------------------------------------------------------------------------------- pfd keypoints.json
def read_project_json(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
        raise InvalidInputError(f"{path}: expected a {PROJECT_FORMAT!r} file ('format' key)")
    if not isinstance(data.get("keypoints"), dict):
        raise InvalidInputError(f"{path}: 'keypoints' must be an object {{image path: 17 rows of [x, y, conf]}}")
    root = (path.parent / data.get("root", ".")).resolve()
    return {str(root / rel): _rows(rows, f"{path}: keypoints[{rel!r}]")
            for rel, rows in data["keypoints"].items()}


def write_project_json(path: str | os.PathLike, table: Mapping[str, np.ndarray]) -> Path:
    """Absolute paths are written relative to the file's folder (the format's root "."). An existing
    file is replaced only when one of our writers made it."""
    path = claim_output_file(path, _is_our_json, what="keypoint file", hint=KEEP_HINT)
    folder = path.parent.resolve()
    keypoints = {Path(os.path.relpath(Path(name).resolve(), folder)).as_posix():
                 np.asarray(kps, np.float32).tolist() for name, kps in table.items()}
    text = json.dumps({"format": PROJECT_FORMAT, **WRITTEN_BY, "root": ".", "keypoints": keypoints})
    return atomic_write(path, lambda f: f.write(text.encode()))


# ----------------------------------------------------------------------------------- pfd pose cache
def write_cache_npz(path: str | os.PathLike, meta: dict, rel_paths: Sequence[str], keypoints: np.ndarray,
                    file_size: np.ndarray, mtime_ns: np.ndarray, digests: Sequence[str] | None = None) -> Path:
    """One uncompressed .npz: relative paths, keypoints [N, 17, 3], and each file's size, mtime and content
    digest ("" where unknown)."""
    arrays = dict(
        meta=np.array(json.dumps({"format": CACHE_FORMAT, **meta})),
        paths=np.array(list(rel_paths), dtype=str),
        keypoints=np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 3),
        file_size=np.asarray(file_size, np.int64),
        mtime_ns=np.asarray(mtime_ns, np.int64),
        digest=np.array(list(digests) if digests is not None else [""] * len(rel_paths), dtype=str),
    )
    buffer = io.BytesIO()  # built in memory: a failed write (full disk) leaves no half-closed zip file behind
    np.savez(buffer, **arrays)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def read_cache_npz(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a pose cache written by write_cache_npz."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InvalidInputError(f"{path}: damaged pose cache .npz ({type(err).__name__}: {err})") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise InvalidInputError(f"{path}: not a {CACHE_FORMAT} pose cache")
    return json.loads(str(arrays.pop("meta"))), arrays


# ----------------------------------------------------------------------------------- any of them
def read_keypoints(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{name: [17, 3]} from any supported keypoint file, recognised by its content, values checked."""
    table = _read_any(path)
    check_keypoints(table, path)
    return table


def _read_any(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"MODEL.POSE_FILE: keypoint file {path} not found")
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(b"PK"):  # zip: an .npz pose cache
        meta, arrays = read_cache_npz(path)
        root = Path(meta["root"])
        return {str(root / rel): kps for rel, kps in zip(arrays["paths"].tolist(), arrays["keypoints"])}
    if head.lstrip().startswith(b"{"):
        data = _load_json(path)
        is_project = isinstance(data, dict) and data.get("format") == PROJECT_FORMAT
        return read_project_json(path) if is_project else read_coco_json(path)
    if head.replace(b" ", b"").startswith(CSV_HEADER.encode()):
        return read_openpose_csv(path)
    raise InvalidInputError(f"{path}: unknown keypoint file; expected COCO keypoint JSON, an OpenPose CSV "
                     f"({CSV_HEADER!r} header), a {PROJECT_FORMAT} keypoints.json or a pose cache .npz")


def _tail(path: str, parts: int) -> str:
    return "/".join(Path(path).as_posix().split("/")[-parts:])


class FileEstimator(PoseEstimator):
    """Keypoints looked up by image path in a keypoint file (`file` and `synthetic` backends).

    An image matches an entry with the same absolute path, else the same last 3, 2 or 1 path parts
    (ambiguous tails never match). Images missing from the file get confidence 0, are counted in
    `self.missing` and warned about.
    """

    MAX_TAIL = 3

    def __init__(self, path: str | os.PathLike, name: str = "file"):
        self.path = Path(path)
        self.name = name
        table = read_keypoints(self.path)
        self.identity = file_identity(name, self.path)
        self.missing = 0
        self._by_name: dict[str, tuple[str, np.ndarray] | None] = {}
        for key, kps in table.items():
            for alias in {Path(key).as_posix(), *(_tail(key, n) for n in range(1, self.MAX_TAIL + 1))}:
                # an alias shared by two entries is ambiguous: mark it unusable
                self._by_name[alias] = (key, kps) if alias not in self._by_name else None

    def find(self, path: str) -> tuple[str, np.ndarray] | None:
        """(entry name in the file, keypoints [17, 3]) of the image at `path`, if the file lists it; `path` may
        be a bare file name (an uploaded photo's), found when one entry alone ends with it."""
        for key in (Path(path).as_posix(), *(_tail(path, n) for n in range(self.MAX_TAIL, 0, -1))):
            found = self._by_name.get(key)
            if found is not None:
                return found
        return None

    def _check_inside(self, entry: str, kps: np.ndarray, image: str) -> None:
        """Present keypoints (confidence > 0) lie inside the image, else an error naming file, entry and image."""
        check_keypoint_values(kps[None], [entry], f"{self.path} (for image {image})", [image_size(image)])

    def predict_paths(self, paths: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(paths), NUM_KEYPOINTS, 3), np.float32)
        missing = []
        for i, path in enumerate(paths):
            found = self.find(path)
            if found is None:
                missing.append(path)
            else:
                self._check_inside(*found, path)
                out[i] = found[1]
        if missing:
            self.missing += len(missing)
            log.warning("%s: %d of %d images are not in %s (confidence 0), e.g. %s",
                        self.name, len(missing), len(paths), self.path, ", ".join(missing[:3]))
        return out

    def predict(self, images):
        raise TypeError(f"the {self.name} pose backend looks keypoints up by image path; call predict_paths")
