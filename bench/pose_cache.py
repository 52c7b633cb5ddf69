"""Keypoint cache build and reload time on a real dataset (default: the team's CUHK03 crops, mediapipe).

    python bench/pose_cache.py [--root ../shared/data] [--dataset cuhk03] [--backend mediapipe]
                               [--workers 2] [--tiny]

Builds the cache of every image (train + query + gallery) into a fresh temporary folder with
`pfd.pose.cache.load_or_build`, then calls it again, which must reuse it. Targets for CUHK03's 8,177
images with mediapipe on 2 cores: build < 300 s, reload < 1 s. --tiny (CI) poses the first
TINY_IMAGES queries: two chunks, so the worker pool still runs.
The 1-minute load average before and after is reported: a busy machine makes the build slower.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402
from pfd.config import load_config  # noqa: E402
from pfd.data.datasets import build_dataset  # noqa: E402
from pfd.pose.cache import load_or_build  # noqa: E402

TARGETS_S = {"build": 300.0, "reload": 1.0}
TINY_IMAGES = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data"), help="DATASETS.ROOT_DIR")
    parser.add_argument("--dataset", default="cuhk03")
    parser.add_argument("--backend", default="mediapipe")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (DATALOADER.NUM_WORKERS)")
    parser.add_argument("--tiny", action="store_true", help=f"the first {TINY_IMAGES} queries only")
    args = parser.parse_args()

    dataset = build_dataset(args.dataset, args.root)
    records = list(dataset.query)[:TINY_IMAGES] if args.tiny else [*dataset.train, *dataset.query, *dataset.gallery]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pose_cache_bench.") as cache_dir:
        cfg = load_config(None, ["DATASETS.ROOT_DIR", args.root, "MODEL.POSE_CACHE_DIR", cache_dir,
                                 "DATALOADER.NUM_WORKERS", str(args.workers)])
        start = time.perf_counter()
        built = load_or_build(cfg, records, args.dataset, backend=args.backend)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        reloaded = load_or_build(cfg, records, args.dataset, backend=args.backend)
        reload_s = time.perf_counter() - start
        cache_mb = os.path.getsize(built.source) / 2**20
    assert (reloaded.keypoints == built.keypoints).all(), "the reloaded cache differs from the built one"
    emit({
        "bench": "pose_cache", "dataset": args.dataset, "backend": built.backend, "images": len(built),
        "workers": args.workers, "cores": os.cpu_count(),
        "build_s": round(build_s, 2), "reload_s": round(reload_s, 4),
        "ms_per_image_per_worker": round(1000 * build_s * args.workers / max(1, len(built)), 2),
        "detection_rate": round(built.detection_rate, 4), "cache_mb": round(cache_mb, 2),
        "load_avg_1min_before": round(load_before, 2), "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "targets_s": TARGETS_S,
        "meets_targets": None if args.tiny else bool(build_s < TARGETS_S["build"] and reload_s < TARGETS_S["reload"]),
    })


if __name__ == "__main__":
    main()
