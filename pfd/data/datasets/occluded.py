"""Test-only occluded / partial benchmarks: Occluded-REID, Partial-REID, Partial-iLIDS.

They have no training split and no camera labels. Queries get camera 0 and gallery images
camera 1, so the Market-1501 protocol (which ignores same-camera gallery matches) keeps every
true match.
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

QUERY_CAMID, GALLERY_CAMID = 0, 1

OCC_REID_LAYOUT = ("an Occluded-REID folder with occluded_body_images/<id>/*.tif (queries) and "
                   "whole_body_images/<id>/*.tif (gallery), one integer-named sub-folder per identity")
PARTIAL_REID_LAYOUT = ("a Partial-REID folder with occluded_body_images/ or partial_body_images/ (queries) and "
                       "whole_body_images/ (gallery), images named PPP_NNN.jpg")
PARTIAL_ILIDS_LAYOUT = "a Partial-iLIDS folder with Probe/ and Gallery/, images named N.jpg (N = identity)"
PARTIAL_REID_PATTERN = re.compile(r"^(\d+)_(\d+)\.")
PARTIAL_ILIDS_PATTERN = re.compile(r"^(\d+)\.")


def parse_id_folders(folder: Path, camid: int) -> list[ImageRecord]:
    """Records of `folder/<id>/<image>`; the identity is the sub-folder name."""
    loose = list_images(folder)
    if loose:
        raise DatasetError(f"{folder} holds images directly ({loose[0]}, ...); expected {OCC_REID_LAYOUT}")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    bad = [str(d) for d in subdirs if not d.name.isdigit()]
    if bad:
        raise DatasetError(f"sub-folder name(s) are not integer identities: {', '.join(bad[:5])}; "
                           f"expected {OCC_REID_LAYOUT}")
    return [ImageRecord(absolute(p), int(d.name), camid) for d in subdirs for p in list_images(d)]


def parse_flat(folder: Path, pattern: re.Pattern, expected: str, camid: int) -> list[ImageRecord]:
    """Records of `folder/<image>`; the identity is the first number of the name."""
    files = list_images(folder)
    return [ImageRecord(absolute(p), int(m.group(1)), camid)
            for p, m in zip(files, match_names(files, pattern, expected))]


def occluded_reid(root_dir: str | Path) -> ReIDDataset:
    """Occluded-REID under ROOT_DIR/Occluded_REID (test only)."""
    root = find_root(root_dir, ("Occluded_REID", "OccludedREID", "Occluded-REID"), OCC_REID_LAYOUT)
    require_dirs(root, ("occluded_body_images", "whole_body_images"), OCC_REID_LAYOUT)
    query = parse_id_folders(root / "occluded_body_images", QUERY_CAMID)
    gallery = parse_id_folders(root / "whole_body_images", GALLERY_CAMID)
    sources = {"query": str(root / "occluded_body_images"), "gallery": str(root / "whole_body_images")}
    return finalize("occluded_reid", root, [], query, gallery, sources, test_only=True)


def partial_reid(root_dir: str | Path) -> ReIDDataset:
    """Partial-REID under ROOT_DIR/Partial_REID (test only)."""
    root = find_root(root_dir, ("Partial_REID", "Partial-REID", "Partial-REID_Dataset"), PARTIAL_REID_LAYOUT)
    query_dir = next((root / d for d in ("occluded_body_images", "partial_body_images") if (root / d).is_dir()), None)
    if query_dir is None:
        raise DatasetError(f"missing folder {root / 'occluded_body_images'} (or {root / 'partial_body_images'}); "
                           f"expected {PARTIAL_REID_LAYOUT}")
    require_dirs(root, ("whole_body_images",), PARTIAL_REID_LAYOUT)
    expected = "PPP_NNN.jpg (identity, '_', image number)"
    query = parse_flat(query_dir, PARTIAL_REID_PATTERN, expected, QUERY_CAMID)
    gallery = parse_flat(root / "whole_body_images", PARTIAL_REID_PATTERN, expected, GALLERY_CAMID)
    sources = {"query": str(query_dir), "gallery": str(root / "whole_body_images")}
    return finalize("partial_reid", root, [], query, gallery, sources, test_only=True)


def partial_ilids(root_dir: str | Path) -> ReIDDataset:
    """Partial-iLIDS under ROOT_DIR/Partial_iLIDS (test only)."""
    root = find_root(root_dir, ("Partial_iLIDS", "Partial-iLIDS", "PartialiLIDS"), PARTIAL_ILIDS_LAYOUT)
    require_dirs(root, ("Probe", "Gallery"), PARTIAL_ILIDS_LAYOUT)
    expected = "N.jpg (N = identity)"
    query = parse_flat(root / "Probe", PARTIAL_ILIDS_PATTERN, expected, QUERY_CAMID)
    gallery = parse_flat(root / "Gallery", PARTIAL_ILIDS_PATTERN, expected, GALLERY_CAMID)
    sources = {"query": str(root / "Probe"), "gallery": str(root / "Gallery")}
    return finalize("partial_ilids", root, [], query, gallery, sources, test_only=True)
