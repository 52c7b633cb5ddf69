"""Training input throughput: decode + keypoint-aware augmentation + batched heatmap rendering.

    python bench/loader.py [--workers N] [--tiny]

Runs the real training loader (PK sampler, flip / pad-crop / erasing, keypoints from a table)
on ../shared/data/cuhk03 when present, else on a folder of generated JPEGs, moves each batch
to the GPU when there is one and renders its heatmaps there. Warm-up batches (worker start-up)
are excluded; prints one JSON line with the median images/s over the repeats.
Target on the 16-core GPU machine: >= 2,400 images/s at 256x128.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pfd.config import load_config  # noqa: E402
from pfd.data.datasets import build_dataset  # noqa: E402
from pfd.data.loader import build_train_loader  # noqa: E402
from pfd.device import resolve_device  # noqa: E402
from pfd.pose.heatmaps import render_heatmaps  # noqa: E402

SHARED_CUHK03 = REPO.parent / "shared" / "data" / "cuhk03"
TARGET_IMAGES_PER_S = 2400


def generate_market_folder(root: Path, num_ids: int, per_id: int) -> Path:
    """Market-1501-layout JPEGs (128x64, smooth colour fields plus noise, like real crops in size)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:128, 0:64]
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for pid in range(1, num_ids + 1):
        for i in range(per_id):
            base = rng.integers(0, 256, 3) * (0.5 + 0.5 * np.sin(ys / 9.0 + xs / 7.0 + i))[..., None]
            pixels = np.clip(base + rng.normal(0, 12, (128, 64, 3)), 0, 255).astype(np.uint8)
            sub = "bounding_box_train" if i < per_id - 2 else ("query" if i == per_id - 2 else "bounding_box_test")
            Image.fromarray(pixels).save(root / sub / f"{pid:04d}_c{1 + i % 2}s1_{i:06d}_00.jpg", quality=90)
    return root


def keypoint_table(records, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible keypoints for every image (a keypoint cache stand-in), in 128x64 source pixels."""
    rng = np.random.default_rng(seed)
    kp = np.stack([rng.uniform(0, 64, (len(records), 17)), rng.uniform(0, 128, (len(records), 17)),
                   rng.uniform(0, 1, (len(records), 17))], axis=-1).astype(np.float32)  # [N, 17, 3]
    return {r.path: kp[i] for i, r in enumerate(records)}


def endless_batches(loader):
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 128], metavar=("H", "W"))
    parser.add_argument("--batches", type=int, default=0, help="batches per timed repeat (0 = max(24, 4 x workers))")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default="", help="a Market-1501-layout folder (default: shared CUHK03 or generated)")
    parser.add_argument("--tiny", action="store_true", help="CI-sized run: 2 workers, batch 16, few batches")
    args = parser.parse_args()
    if args.tiny:
        args.workers, args.batch, args.batches, args.repeats = min(args.workers, 2), 16, 4, 3
    batches_per_repeat = args.batches or max(24, 4 * args.workers)

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            root, source = Path(args.data), args.data
        elif SHARED_CUHK03.is_dir():
            root, source = SHARED_CUHK03, "shared cuhk03"
        else:
            root, source = generate_market_folder(Path(tmp) / "gen", 16 if args.tiny else 200, 8), "generated"
        dataset = build_dataset(f"folder:{root}", tmp)
        cfg = load_config(None, ["INPUT.SIZE_TRAIN", str(args.size), "SOLVER.IMS_PER_BATCH", str(args.batch),
                                 "DATALOADER.NUM_WORKERS", str(args.workers), "DATALOADER.NUM_INSTANCE", "4"])
        loader = build_train_loader(cfg, dataset, keypoint_table(dataset.train))
        device = resolve_device("auto")
        batches = endless_batches(loader)

        def run(num_batches: int) -> float:
            """Seconds to load, move and render `num_batches` batches."""
            start = time.perf_counter()
            for _ in range(num_batches):
                batch = next(batches)
                images = batch["image"].to(device, non_blocking=True)  # [B, 3, H, W]
                heatmaps = render_heatmaps(batch["keypoints"].to(device, non_blocking=True), tuple(args.size),
                                           cfg.INPUT.HEATMAP_SIGMA)  # [B, 17, H/4, W/4]
            if device.type == "cuda":
                torch.cuda.synchronize()
            assert images.shape[0] == heatmaps.shape[0] == args.batch
            return time.perf_counter() - start

        run(max(2, 2 * args.workers))  # warm-up: worker start-up and prefetch
        rates = [batches_per_repeat * args.batch / run(batches_per_repeat) for _ in range(args.repeats)]
    print(json.dumps({
        "bench": "loader", "images_per_s": round(statistics.median(rates), 1),
        "repeats_images_per_s": [round(r, 1) for r in rates], "workers": args.workers, "batch": args.batch,
        "input_hw": args.size, "batches_per_repeat": batches_per_repeat, "data": source,
        "train_images": len(dataset.train), "device": device.type, "cpu_cores": os.cpu_count(), "tiny": args.tiny,
        "target_images_per_s": TARGET_IMAGES_PER_S,
    }))


if __name__ == "__main__":
    main()
