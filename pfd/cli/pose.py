"""Build (or refresh) the keypoint caches of a config's datasets ahead of training.

    python -m pfd.pose --config configs/cuhk03.yaml [--backend mediapipe] [KEY VALUE ...]

Every image of every split of DATASETS.NAMES and DATASETS.TEST_NAMES is posed once; cached
entries whose image is unchanged are reused. Prints one summary line per dataset.
(Installed by pip as `pfd-pose`.)
"""
from __future__ import annotations

import argparse
import json
import logging
import time

from pfd.cli.common import command_parser, one_line_errors
from pfd.config import load_config
from pfd.data.datasets import build_dataset, split_names
from pfd.pose.base import BACKENDS
from pfd.pose.cache import load_or_build


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser(__doc__, config="YAML config file", overrides="KEY VALUE overrides")
    parser.add_argument("--backend", choices=("auto",) + BACKENDS, help="overrides MODEL.POSE_BACKEND")
    return parser.parse_intermixed_args(argv)  # options may come before or after the overrides


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with one_line_errors(args):  # a bad config, dataset or keypoint file: one line, exit status 2
        pose_datasets(load_config(args.config, args.opts), args.backend)


if __name__ == "__main__":
    main()
