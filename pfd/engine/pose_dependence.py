"""Pose dependence: how much one checkpoint's retrieval changes with the keypoints it is given.

TEST.POSE_DEPENDENCE true makes test.py evaluate each test set again with other keypoint tables for
its query and gallery images, the model and everything else unchanged:

    own       the keypoints evaluation uses (the pose cache of MODEL.POSE_BACKEND)
    none      every confidence 0: nothing visible (TEST.NO_POSE then applies, as to an image without a person)
    shuffled  each image gets the keypoints of another image of the set (a fixed derangement)
    oracle    only on a set made by `pfd.data.occlude`: each query gets the keypoints of its unoccluded
              original (posed by the same backend), those under the pasted occluder (the manifest's
              mask) set to confidence 0; gallery images keep their own. Ground truth no user has.

Every variant's queries are bucketed by the visible keypoints of `own`, so a bucket holds the same
queries in each row. A model whose feature ignores the heatmaps (the ViT baseline) gives the same
numbers in every row: that is the command's own check.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..data.datasets import DatasetError, build_dataset
from ..data.occlude import MANIFEST_FILE, hidden_keypoints, read_mask, read_occlusion_source
from ..data.sets import load_keypoints
from ..pose.cache import KeypointTable, shuffled_poses, without_poses
from ..retrieval.metrics import evaluate
from ..retrieval.occlusion import evaluate_by_visibility, visible_counts
from .evaluator import TestSet, evaluate_features, extract_features

__all__ = ["occluded_original_poses", "keypoint_variants", "pose_dependence", "dependence_table"]

logger = logging.getLogger("pfd")


def occluded_original_poses(cfg, test_set: TestSet) -> dict[str, np.ndarray] | None:
    """Query path -> [17, 3] oracle keypoints of a set made by `pfd.data.occlude` (module docstring), or None
    when the set has no occlusion manifest. The original queries are posed through the pose cache of the
    source dataset (the manifest names it, read under DATASETS.ROOT_DIR)."""
    root = Path(test_set.dataset.root)
    if not (root / MANIFEST_FILE).is_file():
        return None
    source_name, entries = read_occlusion_source(root)
    try:
        source = build_dataset(source_name, cfg.DATASETS.ROOT_DIR)
    except DatasetError as err:
        logger.warning("pose dependence: no oracle row for %s, its source dataset is not readable (%s)",
                       test_set.name, err)
        return None
    originals = {os.path.basename(r.path): r for r in source.query}
    missing = [r.path for r in test_set.dataset.query if os.path.basename(r.path) not in originals]
    if missing:
        logger.warning("pose dependence: no oracle row for %s, %d of its queries (e.g. %s) are not queries of %s",
                       test_set.name, len(missing), missing[0], source_name)
        return None
    records = [originals[os.path.basename(r.path)] for r in test_set.dataset.query]
    table = load_keypoints(cfg, records, source_name)  # the originals' poses, same backend as the set's
    oracle = {}
    for query, original in zip(test_set.dataset.query, records):
        keypoints = np.array(table[original.path], np.float32)  # [17, 3]
        entry = entries[f"query/{os.path.basename(query.path)}"]
        keypoints[hidden_keypoints(keypoints, read_mask(root, entry)), 2] = 0
        oracle[query.path] = keypoints
    return oracle


def keypoint_variants(cfg, test_set: TestSet) -> dict[str, KeypointTable]:
    """{own, none, shuffled[, oracle]: keypoint table} for `test_set` (the module docstring; no oracle for a set
    without an occlusion manifest or whose source is not at hand)."""
    own = test_set.keypoints
    variants = {"own": own, "none": without_poses(own), "shuffled": shuffled_poses(own)}
    oracle = occluded_original_poses(cfg, test_set)
    if oracle is not None:
        keypoints = np.stack([oracle.get(p, own[p]) for p in own.paths])  # [N, 17, 3]
        variants["oracle"] = KeypointTable(own.paths, keypoints, f"{own.backend}+occlusion manifest")
    return variants


def pose_dependence(model, cfg, test_set: TestSet, device, heatmaps, amp_dtype, own_distmat=None) -> dict:
    """metrics.json's "pose_dependence" block: per variant, mAP / Rank-1 overall and per visibility bucket
    of the own keypoints (TEST.VIS_BUCKETS). `own_distmat` [Nq, Ng], when given, is the own row's distance
    matrix (evaluation computed it already), which spares its features."""
    if test_set.keypoints is None:
        return {"skipped": "MODEL.POSE_ONLINE computes poses inside the model: no keypoint table to vary"}
    ds, own = test_set.dataset, test_set.keypoints
    q_pids, g_pids = (np.asarray([r.pid for r in recs]) for recs in (ds.query, ds.gallery))
    q_cams, g_cams = (np.asarray([r.camid for r in recs]) for recs in (ds.query, ds.gallery))
    counts = visible_counts(np.stack([own[r.path] for r in ds.query]), cfg.MODEL.SKT_THRES)  # [Nq]
    rows = []
    for name, table in keypoint_variants(cfg, test_set).items():
        if name == "own" and own_distmat is not None:
            distmat = own_distmat
            overall = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=1)
        else:
            query = extract_features(model, cfg, ds.query, table, device, heatmaps, amp_dtype, desc=f"{name} query")
            gallery = extract_features(model, cfg, ds.gallery, table, device, heatmaps, amp_dtype,
                                       desc=f"{name} gallery")
            overall, distmat = evaluate_features(cfg, query, gallery)  # distmat [Nq, Ng]
        buckets = evaluate_by_visibility(distmat, q_pids, g_pids, q_cams, g_cams, counts, cfg.TEST.VIS_BUCKETS)
        rows.append({"keypoints": name, "mAP": float(overall["mAP"]), "rank1": float(overall["cmc"][0]),
                     "buckets": [{k: b[k] for k in ("visible", "num_query", "mAP", "rank1")} for b in buckets]})
    return {"keypoint_threshold": float(cfg.MODEL.SKT_THRES), "rows": rows}


def dependence_table(block: Mapping, title: str = "") -> str:
    """A fixed-width table of a "pose_dependence" block: one line per variant, mAP / Rank-1 in percent
    overall and per bucket, and the change from `own`."""
    if "skipped" in block:
        return f"{title}\n{block['skipped']}" if title else block["skipped"]

    def pct(v) -> str:
        return "-" if v is None else f"{100 * v:.2f}"

    rows: Sequence[dict] = block["rows"]
    own_map = rows[0]["mAP"]
    header = ["keypoints", "mAP", "rank1", "mAP - own"] + [f"{b['visible']} ({b['num_query']})"
                                                           for b in rows[0]["buckets"]]
    cells = [[r["keypoints"], pct(r["mAP"]), pct(r["rank1"]),
              "-" if r["mAP"] is None or own_map is None else f"{100 * (r['mAP'] - own_map):+.2f}"]
             + [f"{pct(b['mAP'])} / {pct(b['rank1'])}" for b in r["buckets"]] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *cells)]
    lines = [title] if title else []
    lines += [" ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in [header, *cells]]
    return "\n".join(lines)
