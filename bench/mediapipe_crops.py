"""Mediapipe (BlazePose) on small re-ID crops: detection rate per crop preparation, and how well its
keypoint confidences say "visible" on occluded crops, measured against an occluded set's manifest.

    python bench/mediapipe_crops.py --root ROOT [--clean cuhk03] [--occluded cuhk03_occ]
                                    [--settings 384x192,512x256,...] [--limit N] [--json OUT]

Detection: for each CANVASxHEIGHT setting (the crop upscaled to HEIGHT px and centred on a gray
CANVAS x CANVAS square, pfd.pose.mediapipe_backend.prepare_crop), the share of query images of
both sets where a person is found.

Visibility (with the estimator's own setting): the ground truth comes from the clean query and the
occluder mask of `python -m pfd.data.occlude`: keypoint k of a query is visible when BlazePose finds
the person in the clean crop, places k inside the crop, and the occluder mask does not cover that
place. Each mapping of the occluded crop's landmarks to a confidence is scored by precision and
recall of `confidence >= thres` against it (queries without a detection predict nothing visible).
(Mediapipe 0.10's solutions API leaves `presence` at 0, so it cannot be one of the mappings.)
Prints markdown tables; --json writes every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pfd.data.datasets import build_dataset  # noqa: E402
from pfd.data.occlude import hidden_keypoints, read_manifest, read_mask  # noqa: E402
from pfd.image import read_image  # noqa: E402
from pfd.pose.mediapipe_backend import BLAZEPOSE_TO_COCO, CANVAS, PERSON_HEIGHT, MediapipeEstimator  # noqa: E402

THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
COCO = list(BLAZEPOSE_TO_COCO)


def inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool [..., 17]: the point lies inside the crop of size (H, W)."""
    h, w = size
    x, y = points[..., 0], points[..., 1]
    return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


MAPPINGS = {  # name -> confidence [17] from COCO landmarks [17, 3] and the crop size
    "visibility": lambda p, size: p[:, 2],
    "visibility x in-crop": lambda p, size: p[:, 2] * inside(p, size),
    "visibility^4 x in-crop": lambda p, size: p[:, 2] ** 4 * inside(p, size),
}


def run(estimator, paths: list[str], canvas: int, height: int) -> list[np.ndarray | None]:
    return [estimator.landmarks(read_image(p), canvas, height) for p in paths]


def detection(estimator, sets: dict[str, list[str]], settings: list[tuple[int, int]]) -> list[dict]:
    rows = []
    for canvas, height in settings:
        row = {"canvas": canvas, "height": height}
        start = time.perf_counter()
        for name, paths in sets.items():
            found = [m is not None for m in run(estimator, paths, canvas, height)]
            row[name] = round(float(np.mean(found)), 4)
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(f"  {canvas}x{height}: {row}", file=sys.stderr)
    return rows


def visibility(estimator, clean_paths: list[str], occ_paths: list[str], occ_root: Path) -> dict:
    manifest = read_manifest(occ_root)
    truth, preds = [], {name: [] for name in MAPPINGS}
    detected_clean = detected_occ = 0
    for clean_path, occ_path in zip(clean_paths, occ_paths):
        image = read_image(occ_path)
        size = (image.height, image.width)
        clean = estimator.landmarks(read_image(clean_path))
        if clean is None:
            continue  # no ground truth positions
        detected_clean += 1
        clean = clean[COCO]
        entry = manifest[f"query/{os.path.basename(occ_path)}"]
        truth.append(inside(clean, size) & ~hidden_keypoints(clean, read_mask(occ_root, entry)))
        occluded = estimator.landmarks(image)
        detected_occ += occluded is not None
        for name, mapping in MAPPINGS.items():
            preds[name].append(np.zeros(17) if occluded is None else mapping(occluded[COCO], size))
    truth = np.array(truth)
    result = {"queries_with_clean_pose": detected_clean, "detected_when_occluded": detected_occ,
              "truth_visible_share": round(float(truth.mean()), 4), "mappings": {}}
    for name, conf in preds.items():
        conf = np.array(conf)
        scores = {}
        for thres in THRESHOLDS:
            pred = conf >= thres
            tp = (pred & truth).sum()
            scores[str(thres)] = {"precision": round(float(tp / max(pred.sum(), 1)), 4),
                                  "recall": round(float(tp / max(truth.sum(), 1)), 4),
                                  "hidden_caught": round(float((~pred & ~truth).sum() / max((~truth).sum(), 1)), 4)}
        result["mappings"][name] = scores
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="DATASETS.ROOT_DIR holding both sets")
    parser.add_argument("--clean", default="cuhk03")
    parser.add_argument("--occluded", default="cuhk03_occ")
    parser.add_argument("--settings", default="384x192,384x256,512x256,512x320,256x192,384x128",
                        help="comma-separated CANVASxHEIGHT crop preparations to measure detection with")
    parser.add_argument("--limit", type=int, default=0, help="first N queries only (0 = all)")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--json", default="", help="write every figure here")
    args = parser.parse_args()

    clean = sorted(r.path for r in build_dataset(args.clean, args.root).query)
    occ_ds = build_dataset(args.occluded, args.root)
    occ = sorted(r.path for r in occ_ds.query)
    if args.limit:
        clean, occ = clean[:args.limit], occ[:args.limit]
    assert [os.path.basename(p) for p in clean] == [os.path.basename(p) for p in occ], "query lists differ"
    estimator = MediapipeEstimator()
    report = {"default_setting": f"{CANVAS}x{PERSON_HEIGHT}", "queries": len(clean),
              "load_1min_before": os.getloadavg()[0]}
    if not args.skip_detection:
        settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
        report["detection"] = detection(estimator, {args.clean: clean, args.occluded: occ}, settings)
        print(f"\n| canvas x person height | {args.clean} | {args.occluded} |\n|---|---|---|")
        for row in report["detection"]:
            print(f"| {row['canvas']} x {row['height']} | {row[args.clean]:.1%} | {row[args.occluded]:.1%} |")
    report["visibility"] = visibility(estimator, clean, occ, Path(occ_ds.root))
    vis = report["visibility"]
    print(f"\n{vis['queries_with_clean_pose']} queries with a clean pose, {vis['detected_when_occluded']} detected "
          f"when occluded; {vis['truth_visible_share']:.1%} of their keypoints visible in truth\n")
    print("| mapping | threshold | precision | recall | hidden flagged |\n|---|---|---|---|---|")
    for name, scores in vis["mappings"].items():
        for thres, s in scores.items():
            print(f"| {name} | {thres} | {s['precision']:.1%} | {s['recall']:.1%} | {s['hidden_caught']:.1%} |")
    report["load_1min_after"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
