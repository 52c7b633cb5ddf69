"""Metrics by occlusion: mAP and Rank-1 of the queries grouped by how many keypoints they show.

A keypoint counts as visible when its confidence reaches the model's threshold (MODEL.SKT_THRES,
the rule PFD's disentangling uses). Buckets are given by their lower ends, e.g. (0, 6, 12) for
0-5, 6-11 and 12-17 visible keypoints (TEST.VIS_BUCKETS):

    from pfd.retrieval.occlusion import visible_counts, evaluate_by_visibility
    rows = evaluate_by_visibility(distmat, q_pids, g_pids, q_camids, g_camids,
                                  visible_counts(query_keypoints, 0.3), (0, 6, 12))
    # [{"visible": "0-5", "low": 0, "high": 5, "num_query": 12, "num_valid_queries": 12,
    #   "mAP": 0.41, "rank1": 0.5}, ...]

Each bucket is evaluated on its own rows of the distance matrix with `metrics.evaluate`, so its
figures follow the Market-1501 protocol exactly like the overall ones.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import InvalidInputError
from ..skeleton import NUM_KEYPOINTS
from .metrics import NoMatchError, evaluate

__all__ = ["DEFAULT_BUCKETS", "check_buckets", "visible_counts", "evaluate_by_visibility", "bucket_table"]

DEFAULT_BUCKETS = (0, 6, 12)  # 0-5, 6-11, 12-17 visible keypoints


def check_buckets(lows: Sequence[int], num_keypoints: int = NUM_KEYPOINTS) -> list[tuple[int, int]]:
    """[(low, high), ...] inclusive ranges of the bucket lower ends `lows`; an InvalidInputError naming
    TEST.VIS_BUCKETS unless they start at 0, increase strictly and stay <= num_keypoints (so every query
    falls in exactly one bucket). The config checks TEST.VIS_BUCKETS by the same rule when it loads."""
    lows = [int(v) for v in lows]
    if not lows or lows[0] != 0 or any(b <= a for a, b in zip(lows, lows[1:])) or lows[-1] > num_keypoints:
        raise InvalidInputError(f"TEST.VIS_BUCKETS {lows}: expected increasing lower ends of visible-keypoint buckets, "
                                f"starting at 0 and at most {num_keypoints}, e.g. [0, 6, 12] for 0-5, 6-11, 12-17")
    return list(zip(lows, [b - 1 for b in lows[1:]] + [num_keypoints]))


def visible_counts(keypoints, threshold: float) -> np.ndarray:
    """[N] int64 number of keypoints with confidence >= threshold, of keypoints [N, K, 3] (x, y, conf)."""
    kps = np.asarray(keypoints, dtype=np.float32)
    if kps.ndim != 3 or kps.shape[2] != 3:
        raise ValueError(f"keypoints must be [N, K, 3] (x, y, confidence), got shape {kps.shape}")
    return (kps[:, :, 2] >= threshold).sum(axis=1).astype(np.int64)


def evaluate_by_visibility(distmat, q_pids, g_pids, q_camids, g_camids, num_visible,
                           buckets: Sequence[int] = DEFAULT_BUCKETS, num_keypoints: int = NUM_KEYPOINTS
                           ) -> list[dict]:
    """mAP and Rank-1 of each visibility bucket's queries (Market-1501 protocol).

    distmat [Nq, Ng] (numpy or torch), ids and cameras as for `metrics.evaluate`; num_visible [Nq]
    visible keypoints per query (see `visible_counts`); buckets: lower ends (see `check_buckets`).
    Returns one dict per bucket: "visible" ("6-11"), "low", "high", "num_query" (queries in it),
    "num_valid_queries" (those with a true match), "mAP" and "rank1" (None when no valid query).
    """
    counts = np.asarray(num_visible, dtype=np.int64).ravel()
    if counts.shape[0] != distmat.shape[0]:
        raise ValueError(f"num_visible has {counts.shape[0]} entries, distmat has {distmat.shape[0]} query rows")
    q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
    rows = []
    for low, high in check_buckets(buckets, num_keypoints):
        members = np.flatnonzero((counts >= low) & (counts <= high))
        row = {"visible": f"{low}-{high}", "low": low, "high": high, "num_query": int(members.size),
               "num_valid_queries": 0, "mAP": None, "rank1": None}
        if members.size:
            sub = distmat[torch.as_tensor(members)] if isinstance(distmat, torch.Tensor) else distmat[members]
            try:
                result = evaluate(sub, q_pids[members], g_pids, q_camids[members], g_camids, max_rank=1)
            except NoMatchError:  # no query of the bucket has a match: its figures stay undefined
                pass
            else:
                row.update(num_valid_queries=result["num_valid_queries"], mAP=result["mAP"],
                           rank1=float(result["cmc"][0]))
        rows.append(row)
    return rows


def bucket_table(rows: Sequence[dict], title: str = "") -> str:
    """A fixed-width table of `evaluate_by_visibility` rows, values in percent ("-" when undefined)."""
    def pct(v):
        return f"{'-':>7}" if v is None else f"{100 * v:>7.2f}"

    lines = [title] if title else []
    lines.append(f"{'visible':>7} {'queries':>7} {'mAP':>7} {'rank1':>7}")
    lines += [f"{r['visible']:>7} {r['num_query']:>7} {pct(r['mAP'])} {pct(r['rank1'])}" for r in rows]
    return "\n".join(lines)
