"""Dataset registry: `build_dataset(name, root_dir) -> ReIDDataset`.

Names and the folder each one expects under `root_dir` are listed in datasets/README.md.
`folder:PATH` parses any folder in the Market-1501 layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import DatasetError, ImageRecord, ReIDDataset, pool_training
from .market import folder_dataset, market_benchmark, train_only_benchmark
from .msmt17 import msmt17
from .occluded import occluded_reid, partial_ilids, partial_reid

__all__ = ["DATASETS", "ALIASES", "DatasetError", "ImageRecord", "ReIDDataset", "build_dataset", "canonical_name",
           "pool_training", "split_names"]

DATASETS: dict[str, Callable[[str | Path], ReIDDataset]] = {
    "market1501": market_benchmark("market1501", ("Market-1501", "Market-1501-v15.09.15")),
    "dukemtmc": market_benchmark("dukemtmc", ("DukeMTMC-reID",)),
    "occluded_duke": market_benchmark("occluded_duke", ("Occluded_Duke",)),
    "msmt17": msmt17,
    "occluded_reid": occluded_reid,
    "partial_reid": partial_reid,
    "partial_ilids": partial_ilids,
    "cuhk03": market_benchmark("cuhk03", ("cuhk03",)),
    "cuhk03_occ": market_benchmark(
        "cuhk03_occ", ("cuhk03_occ",),
        hint=" (make it with `python -m pfd.data.occlude --dataset cuhk03 --root ROOT_DIR --out ROOT_DIR/cuhk03_occ`)"),
    "cuhk01": train_only_benchmark("cuhk01", ("cuhk01",)),  # extra training identities: no query or gallery
    "synthetic": market_benchmark(
        "synthetic", ("synthetic",), hint=" (make it with `python -m pfd.data.synthetic --out ROOT_DIR/synthetic`)"),
}
ALIASES = {"occ_duke": "occluded_duke", "occ_reid": "occluded_reid"}
FOLDER_PREFIX = "folder:"


def split_names(*fields: str) -> list[str]:
    """Dataset names of comma-separated config fields (DATASETS.NAMES, TEST_NAMES), in order, each once."""
    names = (n.strip() for field in fields for n in field.split(","))
    return list(dict.fromkeys(n for n in names if n))


def canonical_name(name: str) -> str:
    """The registry name for `name` (aliases resolved, case and spaces ignored); raises if unknown."""
    if name.startswith(FOLDER_PREFIX):
        return name
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        known = ", ".join([*DATASETS, *ALIASES, FOLDER_PREFIX + "PATH"])
        raise DatasetError(f"unknown dataset name {name!r}; known names: {known}")
    return key


def build_dataset(name: str, root_dir: str | Path) -> ReIDDataset:
    """Parse dataset `name` under `root_dir` (DATASETS.ROOT_DIR)."""
    key = canonical_name(name)
    if key.startswith(FOLDER_PREFIX):
        return folder_dataset(key[len(FOLDER_PREFIX):], root_dir)
    return DATASETS[key](root_dir)
