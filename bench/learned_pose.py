"""The learned pose estimator beside mediapipe, in one run: person found, keypoint visibility against an
occlusion manifest, and throughput (issue 34 section 3).

    python bench/learned_pose.py --config configs/cuhk03_cpu.yaml --weights W.pth [--clean cuhk03]
                                 [--occluded cuhk03_occ] [--images 938] [--repeats 3] [--json OUT] [KEY VALUE ...]

Visibility truth (as bench/mediapipe_crops.py): keypoint k of an occluded query is visible when
mediapipe finds the person in the clean query, places k inside the crop, and the occluder mask of
`python -m pfd.data.occlude` does not cover that place. Each estimator's keypoints of the occluded
query count as visible where their confidence reaches MODEL.SKT_THRES (the model's own threshold);
a person is found when at least one does. Precision and recall of "visible" are over the queries
with a clean pose; "hidden flagged" is the share of truly hidden keypoints called hidden, also per
occluder kind.

Throughput: both backends pose the same images (the occluded set's queries and gallery, the first
--images of them) the way the pose cache does (pfd.pose.cache.compute_keypoints: mediapipe in
DATALOADER.NUM_WORKERS processes, the learned network in this one), files read and the estimator's
start included; the median of --repeats passes, after the visibility pass has warmed both up.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402
from pfd.config import load_config  # noqa: E402
from pfd.data.datasets import build_dataset  # noqa: E402
from pfd.data.occlude import hidden_keypoints, read_manifest, read_mask  # noqa: E402
from pfd.pose.cache import compute_keypoints  # noqa: E402

BACKENDS = ("mediapipe", "learned")


def visibility_scores(truth: np.ndarray, conf: np.ndarray, thres: float, kinds: np.ndarray) -> dict:
    """Precision / recall of `conf >= thres` against `truth` ([N, 17] bool), and the share of hidden
    keypoints flagged hidden, overall and per occluder kind ([N] names)."""
    pred = conf >= thres
    tp = (pred & truth).sum()
    scores = {"precision": round(float(tp / max(pred.sum(), 1)), 4),
              "recall": round(float(tp / max(truth.sum(), 1)), 4)}
    for kind in ["all", *sorted(set(kinds.tolist()))]:
        rows = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
        hidden = ~truth[rows]
        scores[f"hidden_flagged_{kind}"] = round(float((~pred[rows] & hidden).sum() / max(hidden.sum(), 1)), 4)
    return scores


def timed_pass(cfg, backend: str, paths: list[str]) -> float:
    """Seconds `backend` takes to pose `paths` the way the pose cache does."""
    start = time.perf_counter()
    compute_keypoints(cfg, backend, paths, desc=f"{backend} timed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights", required=True, help="the learned estimator (pfd-train-pose --out)")
    parser.add_argument("--clean", default="cuhk03")
    parser.add_argument("--occluded", default="cuhk03_occ")
    parser.add_argument("--images", type=int, default=0, help="images timed per backend (0 = all of the set)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend (the median counts)")
    parser.add_argument("--json", default="", help="also write the record here")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    cfg = load_config(args.config, [*args.opts, "MODEL.POSE_LEARNED_WEIGHT", args.weights])
    thres = cfg.MODEL.SKT_THRES

    clean = sorted(r.path for r in build_dataset(args.clean, cfg.DATASETS.ROOT_DIR).query)
    occ_set = build_dataset(args.occluded, cfg.DATASETS.ROOT_DIR)
    occ = sorted(r.path for r in occ_set.query)
    assert [os.path.basename(p) for p in clean] == [os.path.basename(p) for p in occ], "query lists differ"
    manifest = read_manifest(occ_set.root)
    entries = [manifest[f"query/{os.path.basename(p)}"] for p in occ]

    truth_kps = compute_keypoints(cfg, "mediapipe", clean, desc="mediapipe clean queries")
    with_pose = truth_kps[..., 2].max(1) > 0  # [N] the truth exists
    masks = [read_mask(occ_set.root, e) for e in entries]
    truth = np.stack([(k[:, 2] > 0) & ~hidden_keypoints(k, m) for k, m in zip(truth_kps, masks)])[with_pose]
    kinds = np.array([e["kind"] for e in entries])[with_pose]

    timed = sorted(r.path for r in [*occ_set.query, *occ_set.gallery])[:args.images or None]
    record = {"config": args.config, "weights": args.weights, "queries": len(occ),
              "queries_with_clean_pose": int(with_pose.sum()), "truth_visible_share": round(float(truth.mean()), 4),
              "threshold": thres, "timed_images": len(timed), "repeats": args.repeats,
              "load_1min_before": os.getloadavg()[0]}
    for backend in BACKENDS:
        kps = compute_keypoints(cfg, backend, occ, desc=f"{backend} occluded queries")  # [N, 17, 3]
        seconds = statistics.median(timed_pass(cfg, backend, timed) for _ in range(args.repeats))
        record[backend] = {
            "person_found": round(float((kps[..., 2] >= thres).any(1).mean()), 4),
            "any_keypoint": round(float((kps[..., 2] > 0).any(1).mean()), 4),
            **visibility_scores(truth, kps[with_pose][..., 2], thres, kinds),
            "images_per_s": round(len(timed) / seconds, 1)}
    record["speedup"] = round(record["learned"]["images_per_s"] / record["mediapipe"]["images_per_s"], 1)
    record["load_1min_after"] = os.getloadavg()[0]
    emit(record)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
