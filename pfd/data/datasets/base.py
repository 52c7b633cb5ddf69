"""Records, the dataset container and the checks every parser shares.

A parser turns a folder into three lists of `ImageRecord` and hands them to `finalize`, which
refuses empty splits, relabels the training identities to 0..N-1 and warns about queries whose
identity has no gallery image (they cannot be scored). Every error names the folder or file
and says what was expected, so a wrong `DATASETS.ROOT_DIR` fails before any training starts.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from ...errors import UserError
from ...image import check_image_files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_LISTED = 5  # how many offending names an error message shows


class DatasetError(UserError, ValueError):
    """A dataset folder that is missing, empty or not in the expected layout."""


class ImageRecord(NamedTuple):
    path: str  # absolute path
    pid: int  # identity (train: relabelled 0..N-1; test: as in the file names, 0 = distractor)
    camid: int  # camera, 0-based


@dataclass(frozen=True)
class ReIDDataset:
    """The train / query / gallery records of one benchmark."""

    name: str
    root: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_cameras(self) -> int:
        """Cameras for the side-information embedding: max camid over all splits, plus one."""
        return 1 + max(r.camid for r in (*self.train, *self.query, *self.gallery))

    def summary(self) -> str:
        rows = [(split, getattr(self, split)) for split in ("train", "query", "gallery")]
        lines = [f"dataset {self.name} ({self.root}), {self.num_cameras} cameras"]
        lines += [f"  {split:<8}{len({r.pid for r in recs}):>6} ids {len(recs):>8} images" for split, recs in rows]
        return "\n".join(lines)


def find_root(root_dir: str | Path, folder_names: Sequence[str], layout: str) -> Path:
    """The first of `root_dir/<folder_names>` that exists, else an error naming them all."""
    for folder in folder_names:
        path = Path(root_dir).expanduser() / folder
        if path.is_dir():
            return path
    tried = ", ".join(str(Path(root_dir).expanduser() / f) for f in folder_names)
    raise DatasetError(f"dataset folder not found: tried {tried}; expected {layout}")


def require_dirs(root: Path, subdirs: Iterable[str], layout: str) -> None:
    """Raise naming every missing sub-folder of `root` and the expected layout."""
    missing = [str(root / d) for d in subdirs if not (root / d).is_dir()]
    if missing:
        raise DatasetError(f"missing folder(s) {', '.join(missing)}; expected {layout}")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (other files are ignored)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def match_names(files: Sequence[Path], pattern: re.Pattern, expected: str) -> list[re.Match]:
    """Match every file name against `pattern`; raise naming the first few that do not match."""
    matches = [pattern.match(f.name) for f in files]
    bad = [str(f) for f, m in zip(files, matches) if m is None]
    if bad:
        shown = ", ".join(bad[:MAX_LISTED]) + (f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else "")
        raise DatasetError(f"{len(bad)} file name(s) do not match {expected}: {shown}")
    return matches


def absolute(path: Path) -> str:
    """Absolute path string without resolving symlinks: the key of keypoint tables."""
    return os.path.abspath(path)


def relabel(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    """Map the identities of `records` to 0..N-1 in sorted order of the original ids."""
    new_pid = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [r._replace(pid=new_pid[r.pid]) for r in records]


def finalize(name: str, root: Path, train: list[ImageRecord], query: list[ImageRecord],
             gallery: list[ImageRecord], sources: dict[str, str], test_only: bool = False,
             train_only: bool = False) -> ReIDDataset:
    """Validate the splits, relabel the training ids and build the `ReIDDataset`.

    Every image is checked cheaply (pfd.image.check_image_files: its header and last bytes, no decoding),
    so a damaged file fails here rather than at the end of the first epoch's evaluation.
    `sources` maps each split to where its images came from (for the error message);
    `test_only` datasets (Occluded-REID, Partial-*) have no training split, `train_only` ones
    (CUHK01, extra training identities) no query or gallery.
    """
    for split, records in (("train", train), ("query", query), ("gallery", gallery)):
        if not records and not (test_only if split == "train" else train_only):
            raise DatasetError(f"dataset {name}: the {split} split is empty (no usable images in {sources[split]})")
    check_image_files((r.path for r in (*train, *query, *gallery)), f"dataset {name}")  # header + end bytes
    gallery_pids = {r.pid for r in gallery}
    unmatched = sum(r.pid not in gallery_pids for r in query)
    if unmatched:
        warnings.warn(f"dataset {name}: {unmatched} of {len(query)} queries have no image of their identity in the "
                      "gallery; they are ignored by the evaluation", stacklevel=3)
    return ReIDDataset(name=name, root=str(root), train=relabel(train), query=query, gallery=gallery)


def pool_training(datasets: Sequence[ReIDDataset]) -> ReIDDataset:
    """One dataset whose training split is all of `datasets`' training splits, identities and cameras of
    each kept apart (offset past the previous ones'); query and gallery are the first dataset's."""
    train, pid_offset, cam_offset = [], 0, 0
    for ds in datasets:
        train += [r._replace(pid=r.pid + pid_offset, camid=r.camid + cam_offset) for r in ds.train]
        pid_offset, cam_offset = pid_offset + ds.num_train_pids, cam_offset + ds.num_cameras
    first = datasets[0]
    return ReIDDataset(name=",".join(ds.name for ds in datasets), root=first.root, train=train,
                       query=first.query, gallery=first.gallery)
