"""Metrics by occlusion against a hand-computed example."""
import numpy as np
import pytest
import torch

from pfd.errors import InvalidInputError
from pfd.retrieval.occlusion import bucket_table, check_buckets, evaluate_by_visibility, visible_counts

# Gallery: g0 id 1 cam 1, g1 id 2 cam 1, g2 id 1 cam 2, g3 id 3 cam 1.
G_PIDS, G_CAMS = np.array([1, 2, 1, 3]), np.array([1, 1, 2, 1])
# Queries and their lists (closest first), worked out by hand:
#   q0 id 1 cam 0: g0 g1 g2 g3 -> matches at ranks 1, 3: AP = (1/1 + 2/3) / 2 = 5/6, Rank-1 hit
#   q1 id 2 cam 0: g0 g2 g3 g1 -> match at rank 4: AP = 1/4, Rank-1 miss
#   q2 id 1 cam 1: g0 is junk (same id and camera); g1 g2 g3 -> match at rank 2: AP = 1/2, miss
#   q3 id 3 cam 0: g3 g2 g1 g0 -> match at rank 1: AP = 1, hit
#   q4 id 9 cam 0: no match anywhere -> not a valid query
Q_PIDS, Q_CAMS = np.array([1, 2, 1, 3, 9]), np.array([0, 0, 1, 0, 0])
DIST = np.array([[0.1, 0.2, 0.3, 0.4],
                 [0.1, 0.5, 0.2, 0.3],
                 [0.0, 0.1, 0.2, 0.3],
                 [0.4, 0.3, 0.2, 0.1],
                 [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
VISIBLE = np.array([3, 8, 10, 17, 2])  # visible keypoints of q0..q4


def by_visible(rows):
    return {r["visible"]: r for r in rows}


@pytest.mark.parametrize("as_torch", [False, True])
def test_default_buckets_match_the_hand_computed_example(as_torch):
    dist = torch.from_numpy(DIST) if as_torch else DIST
    rows = by_visible(evaluate_by_visibility(dist, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, VISIBLE))
    assert list(rows) == ["0-5", "6-11", "12-17"]
    low = rows["0-5"]  # q0 and q4 (no match)
    assert (low["num_query"], low["num_valid_queries"]) == (2, 1)
    assert low["mAP"] == pytest.approx(5 / 6) and low["rank1"] == 1.0
    mid = rows["6-11"]  # q1 and q2
    assert (mid["num_query"], mid["num_valid_queries"]) == (2, 2)
    assert mid["mAP"] == pytest.approx((1 / 4 + 1 / 2) / 2) and mid["rank1"] == 0.0
    high = rows["12-17"]  # q3
    assert (high["num_query"], high["mAP"], high["rank1"]) == (1, 1.0, 1.0)
    assert (high["low"], high["high"]) == (12, 17)


def test_configurable_buckets_and_empty_ones():
    rows = by_visible(evaluate_by_visibility(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, VISIBLE, buckets=[0, 9]))
    assert rows["0-8"]["num_query"] == 3 and rows["0-8"]["mAP"] == pytest.approx((5 / 6 + 1 / 4) / 2)
    assert rows["0-8"]["rank1"] == pytest.approx(0.5)
    assert rows["9-17"]["num_query"] == 2 and rows["9-17"]["mAP"] == pytest.approx(0.75)
    rows = by_visible(evaluate_by_visibility(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, VISIBLE, buckets=[0, 1, 2, 4]))
    assert rows["0-0"] == {"visible": "0-0", "low": 0, "high": 0, "num_query": 0, "num_valid_queries": 0,
                           "mAP": None, "rank1": None}
    assert rows["2-3"]["num_query"] == 2 and rows["2-3"]["num_valid_queries"] == 1  # q4 has no match
    only_unmatched = evaluate_by_visibility(DIST[4:], Q_PIDS[4:], G_PIDS, Q_CAMS[4:], G_CAMS, VISIBLE[4:])
    assert by_visible(only_unmatched)["0-5"]["mAP"] is None
    table = bucket_table(evaluate_by_visibility(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, VISIBLE, buckets=[0, 1]))
    assert "64.58" in table and "  -" in table.splitlines()[1]


def test_visible_counts_use_the_threshold_inclusively():
    kps = np.zeros((2, 17, 3), dtype=np.float32)
    kps[0, :5, 2] = 0.3  # exactly at the threshold: visible
    kps[0, 5:9, 2] = 0.29
    kps[1, :, 2] = 0.9
    assert visible_counts(kps, 0.3).tolist() == [5, 17]
    with pytest.raises(ValueError, match=r"\[N, K, 3\]"):
        visible_counts(kps[0], 0.3)


@pytest.mark.parametrize("bad", [[], [1, 6], [0, 6, 6], [0, 12, 6], [0, 18]])
def test_bad_buckets_are_named(bad):
    with pytest.raises(InvalidInputError, match=r"TEST\.VIS_BUCKETS"):
        check_buckets(bad)
    assert check_buckets([0, 6, 12]) == [(0, 5), (6, 11), (12, 17)]
    with pytest.raises(ValueError, match="num_visible has 2 entries"):
        evaluate_by_visibility(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, VISIBLE[:2])
