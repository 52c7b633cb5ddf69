"""Every benchmark stored in the Market-1501 layout.

    ROOT/bounding_box_train/  ROOT/query/  ROOT/bounding_box_test/

with file names starting `PPPP_cC` (Market-1501 `0002_c1s1_000451_03.jpg`, DukeMTMC-reID and
Occluded-Duke `0001_c2_f0046182.jpg`, the team's CUHK03 folder, the synthetic set).
Identity -1 marks junk boxes and is dropped; identity 0 marks distractors and stays in the
gallery. Cameras are numbered from 1 in the names and from 0 in the records.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import (
    DatasetError,
    ImageRecord,
    ReIDDataset,
    absolute,
    finalize,
    find_root,
    list_images,
    match_names,
    require_dirs,
)

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)")
NAME_EXPECTED = "the Market-1501 pattern PPPP_cC... (identity, '_c', camera from 1), e.g. 0002_c1s1_000451_03.jpg"
LAYOUT = ("a Market-1501-layout folder with bounding_box_train/, query/ and bounding_box_test/ holding "
          "images named PPPP_cC*.jpg")
JUNK_PID = -1


def parse_split(folder: Path) -> list[ImageRecord]:
    """Records of one split folder, junk (identity -1) dropped."""
    files = list_images(folder)
    records = []
    for path, match in zip(files, match_names(files, NAME_PATTERN, NAME_EXPECTED)):
        pid, cam = int(match.group(1)), int(match.group(2))
        if cam < 1:
            raise DatasetError(f"{path}: camera index c{cam} in the name; Market-1501-layout cameras start at c1")
        if pid != JUNK_PID:
            records.append(ImageRecord(absolute(path), pid, cam - 1))
    return records


def parse_market_folder(name: str, root: Path) -> ReIDDataset:
    """Parse a folder in the Market-1501 layout into a `ReIDDataset` called `name`."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}; expected {LAYOUT}")
    require_dirs(root, SPLIT_DIRS.values(), LAYOUT)
    splits = {split: parse_split(root / sub) for split, sub in SPLIT_DIRS.items()}
    sources = {split: str(root / sub) for split, sub in SPLIT_DIRS.items()}
    return finalize(name, root, splits["train"], splits["query"], splits["gallery"], sources)


def parse_train_folder(name: str, root: Path) -> ReIDDataset:
    """A training-only set (e.g. CUHK01): ROOT/bounding_box_train alone; empty query and gallery."""
    layout = "a folder with bounding_box_train/ holding images named PPPP_cC*.jpg (a training-only set)"
    require_dirs(root, (SPLIT_DIRS["train"],), layout)
    return finalize(name, root, parse_split(root / SPLIT_DIRS["train"]), [], [],
                    {"train": str(root / SPLIT_DIRS["train"])}, train_only=True)


def train_only_benchmark(name: str, folder_names: tuple[str, ...]):
    """A registry builder for a training-only set stored as `ROOT_DIR/<one of folder_names>/bounding_box_train`."""

    def build(root_dir: str | Path) -> ReIDDataset:
        return parse_train_folder(name, find_root(root_dir, folder_names, "a folder with bounding_box_train/"))

    build.__doc__ = f"{name}: ROOT_DIR/{' or '.join(folder_names)}/bounding_box_train (training only)."
    return build


def market_benchmark(name: str, folder_names: tuple[str, ...], hint: str = ""):
    """A registry builder for a benchmark stored as `ROOT_DIR/<one of folder_names>`."""

    def build(root_dir: str | Path) -> ReIDDataset:
        return parse_market_folder(name, find_root(root_dir, folder_names, LAYOUT + hint))

    build.__doc__ = f"{name}: ROOT_DIR/{' or '.join(folder_names)} in the Market-1501 layout."
    return build


def folder_dataset(path: str, root_dir: str | Path) -> ReIDDataset:
    """`folder:PATH`: PATH as given (absolute or relative to the working directory), else under ROOT_DIR."""
    candidates = [Path(path).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(Path(root_dir).expanduser() / path)
    root = next((c for c in candidates if c.is_dir()), None)
    if root is None:
        raise DatasetError(f"folder:{path}: no such folder (tried {', '.join(map(str, candidates))}); "
                           f"expected {LAYOUT}")
    return parse_market_folder(f"folder:{path}", root)
