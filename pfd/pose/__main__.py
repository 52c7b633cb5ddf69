"""Build (or refresh) the keypoint caches of a config's datasets ahead of training.

    python -m pfd.pose --config configs/cuhk03.yaml [--backend mediapipe] [KEY VALUE ...]

Every image of every split of DATASETS.NAMES and DATASETS.TEST_NAMES is posed once; cached
entries whose image is unchanged are reused. Prints one summary line per dataset.
"""
from __future__ import annotations

import argparse
import json
import logging
import time

from ..config import load_config
from ..data.datasets import build_dataset, split_names
from ..errors import add_debug_argument, user_errors
from .base import BACKENDS
from .cache import load_or_build


def pose_datasets(cfg, backend: str | None) -> None:
    """Build or refresh the keypoint cache of every dataset of `cfg`; one JSON summary line each."""
    for name in split_names(cfg.DATASETS.NAMES, cfg.DATASETS.TEST_NAMES):
        dataset = build_dataset(name, cfg.DATASETS.ROOT_DIR)
        records = [*dataset.train, *dataset.query, *dataset.gallery]
        start = time.perf_counter()
        table = load_or_build(cfg, records, name, backend=backend)
        print(json.dumps({"dataset": name, "backend": table.backend, "images": len(table),
                          "detection_rate": round(table.detection_rate, 4),
                          "seconds": round(time.perf_counter() - start, 2), "cache": table.source}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pfd.pose", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--backend", choices=("auto",) + BACKENDS, help="overrides MODEL.POSE_BACKEND")
    parser.add_argument("opts", nargs="*", help="KEY VALUE overrides")
    add_debug_argument(parser)
    args = parser.parse_intermixed_args(argv)  # options may come before or after the overrides
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with user_errors(args.debug):  # a bad config, dataset or keypoint file: one line, exit status 2
        pose_datasets(load_config(args.config, args.opts), args.backend)


if __name__ == "__main__":
    main()
