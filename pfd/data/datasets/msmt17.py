"""MSMT17: image folders plus list files.

    ROOT/train/  ROOT/test/  ROOT/list_train.txt  ROOT/list_val.txt  ROOT/list_query.txt  ROOT/list_gallery.txt

Each list line is `relpath pid` (relpath under train/ for the train and val lists, under test/
for query and gallery). The camera is the third `_` field of the name, counted from 1:
`0000/0000_000_01_0303morning_0015_0.jpg` is identity 0, camera 0. As usual the training
set is list_train + list_val.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import MAX_LISTED, DatasetError, ImageRecord, ReIDDataset, absolute, finalize, find_root, require_dirs

FOLDER_NAMES = ("MSMT17", "MSMT17_V1", "MSMT17_V2")
LAYOUT = ("an MSMT17 folder with train/, test/, list_train.txt, list_val.txt, list_query.txt and list_gallery.txt "
          "(lines 'relpath pid', names PPPP_NNN_CC_*.jpg)")
NAME_PATTERN = re.compile(r"^(\d+)_(\d+)_(\d+)_")
LISTS = {"train": ("train", "list_train.txt"), "val": ("train", "list_val.txt"),
         "query": ("test", "list_query.txt"), "gallery": ("test", "list_gallery.txt")}


def parse_list(root: Path, image_dir: str, list_name: str) -> list[ImageRecord]:
    """Records of one list file; raises naming the first malformed lines, odd names or missing images."""
    list_path = root / list_name
    if not list_path.is_file():
        raise DatasetError(f"missing list file {list_path}; expected {LAYOUT}")
    records, malformed, bad_names, missing = [], [], [], []
    for lineno, line in enumerate(list_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            malformed.append(f"{list_path}:{lineno}: {line.strip()!r}")
            continue
        path = root / image_dir / fields[0]
        match = NAME_PATTERN.match(path.name)
        if match is None or int(match.group(3)) < 1:
            bad_names.append(f"{list_path}:{lineno}: {fields[0]}")
            continue
        if not path.is_file():
            missing.append(str(path))
            continue
        records.append(ImageRecord(absolute(path), int(fields[1]), int(match.group(3)) - 1))
    for problem, items in (("malformed line(s), expected 'relpath pid'", malformed),
                           ("name(s) not matching PPPP_NNN_CC_* (camera CC from 01)", bad_names),
                           ("listed image(s) missing", missing)):
        if items:
            raise DatasetError(f"{len(items)} {problem}: {'; '.join(items[:MAX_LISTED])}")
    return records


def msmt17(root_dir: str | Path) -> ReIDDataset:
    """MSMT17 (V1 or V2) under ROOT_DIR/MSMT17 (or MSMT17_V1, MSMT17_V2)."""
    root = find_root(root_dir, FOLDER_NAMES, LAYOUT)
    require_dirs(root, ("train", "test"), LAYOUT)
    splits = {split: parse_list(root, image_dir, list_name) for split, (image_dir, list_name) in LISTS.items()}
    sources = {split: str(root / LISTS[split][1]) for split in ("query", "gallery")}
    sources["train"] = f"{root / 'list_train.txt'} + {root / 'list_val.txt'}"
    return finalize("msmt17", root, splits["train"] + splits["val"], splits["query"], splits["gallery"], sources)
