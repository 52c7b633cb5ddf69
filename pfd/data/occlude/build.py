"""Write an occluded copy of a Market-layout dataset: occluded queries, the original gallery and training split.

OUT/query holds every query with an occluder pasted on it (same file name, so identity and camera
are kept); OUT/bounding_box_test and OUT/bounding_box_train are hard links to the source's files
(copies where linking is impossible), so OUT reads as `folder:OUT` or as a registered name
(`cuhk03_occ`). OUT/occlusion_masks/<query>.png is each occluder's mask (white = covered) and
OUT/occlusion.json the manifest: per query the occluder kind, its source (the other identity's
image for a person occluder), placement, box [x0, y0, x1, y1] and the covered share of the person
box (the whole crop). The folder carries the output guard's marker (pfd.io, kind `occluded`); `--force`
replaces it by the rule the synthetic generator shares (pfd.data.writer: by the recorded content of its files).

Deterministic: query i (in file-name order) draws everything from RNG(seed, i), and images are
written with fixed JPEG settings, so the same source and seed give the same bytes.
Everything is written into a sibling temp folder renamed to OUT at the end (pfd.data.writer).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...config import COVERAGE_RULE, valid_coverage
from ...errors import InvalidInputError
from ...image import read_image
from ..datasets import build_dataset
from ..datasets.base import IMAGE_EXTENSIONS, ImageRecord, list_images
from ..datasets.market import NAME_PATTERN, SPLIT_DIRS
from ..writer import claim_dataset_dir, write_dataset_dir
from .occluders import KINDS, Occluder, object_occluder, patch_occluder, person_occluder

MANIFEST_FILE = "occlusion.json"
MASK_DIR = "occlusion_masks"
KIND = "occluded"  # the output guard's kind for this command's folders
LEGACY_MARKER = ".pfd-occlude"  # the marker of earlier versions, still recognized
JPEG_QUALITY = 95
# What a folder of an earlier version (no record of its files' SHA-256) may hold: the splits' images, the
# masks, the manifest (a user's notes.txt anywhere is not).
OWNED = [f"{d}/*{ext}" for d in SPLIT_DIRS.values() for ext in IMAGE_EXTENSIONS] + [f"{MASK_DIR}/*.png",
                                                                                   MANIFEST_FILE, LEGACY_MARKER]


@dataclass(frozen=True)
class OccludeConfig:
    kinds: tuple[str, ...] = KINDS  # occluder kinds, one drawn uniformly per query
    coverage: tuple[float, float] = (0.2, 0.6)  # range of the covered share of the person box
    seed: int = 0

    def validate(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if not self.kinds or unknown:
            raise InvalidInputError(f"occluder kinds {','.join(self.kinds)!r}: expected a comma-separated "
                                    f"subset of {','.join(KINDS)}")
        low, high = self.coverage
        if not valid_coverage(low, high):
            raise InvalidInputError(f"coverage {low},{high}: expected MIN,MAX with {COVERAGE_RULE}")
        if self.seed < 0:
            raise InvalidInputError(f"seed {self.seed}: expected >= 0")


def _original_pid(record: ImageRecord) -> int:
    """The identity in the file name (training records are relabelled 0..N-1 by the parser)."""
    return int(NAME_PATTERN.match(os.path.basename(record.path)).group(1))


def draw_occluder(query: ImageRecord, size: tuple[int, int], sources: list[ImageRecord], root: Path,
                  cfg: OccludeConfig, rng: np.random.Generator) -> Occluder:
    """One occluder for `query`: kind drawn from cfg.kinds; a person occluder comes from another identity."""
    kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
    target = rng.uniform(*cfg.coverage)
    if kind == "person":
        others = [r for r in sources if _original_pid(r) != query.pid]
        source = others[int(rng.integers(len(others)))]
        return person_occluder(read_image(source.path), os.path.relpath(source.path, root), size, target, rng)
    if kind == "object":
        return object_occluder(size, cfg.coverage, rng)
    return patch_occluder(size, target, rng)


def _link_split(src: Path, dst: Path) -> int:
    """Hard-link (or copy) every image of `src` into the new folder `dst`; returns the count."""
    dst.mkdir()
    files = list_images(src)
    for f in files:
        try:
            os.link(f, dst / f.name)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(f, dst / f.name)
    return len(files)


def _write_occluded(query: ImageRecord, occluder: Occluder, image: Image.Image, folder: Path) -> None:
    name = os.path.basename(query.path)
    canvas = image.convert("RGBA")
    canvas.alpha_composite(occluder.layer)
    canvas.convert("RGB").save(folder / SPLIT_DIRS["query"] / name, "JPEG", quality=JPEG_QUALITY)
    Image.fromarray(occluder.mask).save(folder / MASK_DIR / (Path(name).stem + ".png"), "PNG")


def _write_dataset(source: str, dataset, people: list[ImageRecord], root: Path, tmp: Path,
                   cfg: OccludeConfig) -> dict:
    """Write the occluded copy into the (new, empty) folder `tmp`; returns the manifest's query entries."""
    for split in ("train", "gallery"):
        _link_split(root / SPLIT_DIRS[split], tmp / SPLIT_DIRS[split])
    (tmp / SPLIT_DIRS["query"]).mkdir()
    (tmp / MASK_DIR).mkdir()
    entries = {}
    for i, query in enumerate(sorted(dataset.query, key=lambda r: r.path)):
        rng = np.random.default_rng([cfg.seed, i])
        image = read_image(query.path)
        occluder = draw_occluder(query, (image.height, image.width), people, root, cfg, rng)
        _write_occluded(query, occluder, image, tmp)
        name = os.path.basename(query.path)
        entries[f"{SPLIT_DIRS['query']}/{name}"] = {
            "kind": occluder.kind, "source": occluder.detail, "placement": occluder.placement,
            "box": occluder.box, "fraction": round(occluder.fraction, 4),
            "mask": f"{MASK_DIR}/{Path(name).stem}.png"}
    manifest = {"format": "pfd-occlusion-v1", "source": source, "config": asdict(cfg), "queries": entries}
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return entries


def build_occluded(source: str, root_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   cfg: OccludeConfig = OccludeConfig(), force: bool = False) -> dict:
    """Write the occluded copy of dataset `source` (a registry name under root_dir, or folder:PATH) to
    out_dir; returns a summary {queries, kinds: {kind: count}, mean_fraction, out}. out_dir is checked
    (pfd.data.writer.claim_dataset_dir: new, or ours and replaced with `force`; never inside the source)
    before anything is written."""
    cfg.validate()
    dataset = build_dataset(source, root_dir)
    root = Path(dataset.root)
    out = claim_dataset_dir(out_dir, KIND, "pfd.data.occlude", force, legacy_marker=LEGACY_MARKER,
                            legacy_owned=lambda folder: OWNED, source=root)
    if "person" in cfg.kinds and not dataset.train:
        raise InvalidInputError(f"dataset {source} has no training split to take person occluders from; "
                                "use --kinds object,patch")
    people = sorted(dataset.train, key=lambda r: r.path)  # where person occluders come from
    entries = {}
    write_dataset_dir(out, KIND, lambda tmp: entries.update(_write_dataset(source, dataset, people, root, tmp, cfg)))
    kinds = [e["kind"] for e in entries.values()]
    return {"out": str(out), "queries": len(entries), "kinds": {k: kinds.count(k) for k in cfg.kinds},
            "mean_fraction": round(float(np.mean([e["fraction"] for e in entries.values()])), 4) if entries else 0.0}


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of an occluded dataset folder: {query path relative to folder: entry}."""
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())["queries"]


def read_occlusion_source(folder: str | os.PathLike) -> tuple[str, dict]:
    """(the source dataset's name as given to the builder, the manifest's query entries) of an occluded folder."""
    manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text())
    return manifest["source"], manifest["queries"]


def read_mask(folder: str | os.PathLike, entry: dict) -> np.ndarray:
    """[H, W] bool occluder mask of a manifest entry."""
    return np.asarray(read_image(Path(folder) / entry["mask"]))[..., 0] > 0  # grey: the three channels agree
