"""Metrics against a straightforward per-query loop (the TransReID / fast-reid eval_func)."""
import numpy as np
import pytest
import torch

from pfd.config import load_config
from pfd.retrieval.metrics import NoMatchError, evaluate, evaluate_features, retrieval_options, summarize


def naive_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The reference loop with a stable argsort (the documented tie rule); CMC rows shorter than
    max_rank (junk removed from a tiny gallery) are padded with their last value. Returns (CMC,
    per-query AP [num_q] with NaN for a query without a match, mINP, number of valid queries)."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_inp, query_ap = [], [], np.full(num_q, np.nan)
    for q in range(num_q):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw = matches[q][keep]
        if not raw.any():
            continue
        cum = raw.cumsum()
        last = np.flatnonzero(raw).max()
        all_inp.append(cum[last] / (last + 1.0))
        cmc = np.minimum(cum, 1)[:max_rank]
        all_cmc.append(np.pad(cmc, (0, max_rank - len(cmc)), mode="edge"))
        precision = cum / np.arange(1, len(raw) + 1)
        query_ap[q] = (precision * raw).sum() / raw.sum()
    if not all_cmc:
        return None, None, None, 0
    return np.mean(all_cmc, axis=0), query_ap, np.mean(all_inp), len(all_cmc)


def random_case(rng, num_q, num_g, num_ids, num_cams, ties):
    q_pids = rng.integers(-1, num_ids, num_q)  # includes junk (-1) and distractor (0) ids
    g_pids = rng.integers(-1, num_ids, num_g)
    q_cams, g_cams = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
    if ties:  # few distinct values: many exact ties, also with the query's own matches
        dist = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    else:
        dist = rng.random((num_q, num_g), dtype=np.float32)
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("ties", [False, True])
def test_matches_naive_loop_on_random_cases(ties):
    rng = np.random.default_rng(1 + ties)
    checked = 0
    for _ in range(40):
        case = random_case(rng, int(rng.integers(1, 30)), int(rng.integers(2, 150)), int(rng.integers(2, 12)),
                           int(rng.integers(1, 4)), ties)
        cmc, query_ap, m_inp, num_valid = naive_eval(*case)
        if num_valid == 0:
            with pytest.raises(NoMatchError, match="none of the"):
                evaluate(*case)
            continue
        out = evaluate(*case)
        assert out["num_valid_queries"] == num_valid
        assert out["num_skipped_queries"] == len(case[1]) - num_valid
        np.testing.assert_allclose(out["cmc"], cmc, atol=1e-6)
        assert out["mAP"] == pytest.approx(np.nanmean(query_ap), abs=1e-6)
        np.testing.assert_allclose(out["query_ap"], query_ap, atol=1e-6)  # NaN exactly where the loop skips
        assert out["mINP"] == pytest.approx(m_inp, abs=1e-6)
        checked += 1
    assert checked > 20


def test_blocks_threads_and_torch_inputs_agree(monkeypatch):
    """Several row blocks (run in threads) and torch inputs give the loop's numbers."""
    import pfd.retrieval.metrics as metrics

    monkeypatch.setattr(metrics, "_ROW_BLOCK", 7)
    monkeypatch.setattr(metrics, "_TIE_BUDGET", 50)  # tie resolution in several pieces too
    rng = np.random.default_rng(3)
    case = random_case(rng, 60, 200, 15, 3, ties=True)
    cmc, query_ap, m_inp, num_valid = naive_eval(*case, max_rank=20)
    out = evaluate(*(torch.from_numpy(a) for a in case), max_rank=20)
    assert out["cmc"].shape == (20,) and out["num_valid_queries"] == num_valid
    np.testing.assert_allclose(out["cmc"], cmc, atol=1e-6)
    np.testing.assert_allclose(out["query_ap"], query_ap, atol=1e-6)
    assert out["mAP"] == pytest.approx(np.nanmean(query_ap), abs=1e-6)
    assert out["mINP"] == pytest.approx(m_inp, abs=1e-6)


def test_hand_made_case():
    # query id 1 in camera 0; gallery ordered by distance: junk (1, cam 0), wrong (2), right (1, cam 1),
    # distractor (0), right (1, cam 2). After removing junk: ranks 0..3 = wrong, right, distractor, right.
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    g_pids, g_cams = np.array([1, 2, 1, 0, 1]), np.array([0, 1, 1, 1, 2])
    out = evaluate(dist, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=4)
    np.testing.assert_allclose(out["cmc"], [0, 1, 1, 1])
    assert out["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    np.testing.assert_allclose(out["query_ap"], [(1 / 2 + 2 / 4) / 2])
    assert out["mINP"] == pytest.approx(2 / 4)
    assert summarize(out) == pytest.approx({"mAP": 0.5, "mINP": 0.5, "Rank-1": 0.0})


def test_ties_are_broken_by_gallery_index_and_negative_zero_equals_zero():
    dist = np.array([[0.0, -0.0, 0.0]], dtype=np.float32)
    out = evaluate(dist, np.array([5]), np.array([7, 5, 5]), np.array([0]), np.array([1, 1, 1]), max_rank=3)
    np.testing.assert_allclose(out["cmc"], [0, 1, 1])  # wrong image has the lower index: it comes first
    assert out["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_bad_inputs_are_named():
    dist = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="g_pids"):
        evaluate(dist, [1, 2], [1, 2], [0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.full((2, 3), np.nan, dtype=np.float32), [1, 2], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="query set is empty"):
        evaluate(np.zeros((0, 3), dtype=np.float32), [], [1, 2, 3], [], [1, 1, 1])


def test_evaluate_features_follows_config():
    rng = np.random.default_rng(4)
    centers = rng.normal(size=(6, 16)).astype(np.float32)
    g_pids, q_pids = np.repeat(np.arange(6), 5), np.arange(6)
    gallery = centers[g_pids] + 0.05 * rng.normal(size=(30, 16)).astype(np.float32)
    query = centers[q_pids] + 0.05 * rng.normal(size=(6, 16)).astype(np.float32)
    cfg = load_config(None, ["TEST.RE_RANKING", "True", "TEST.RE_RANKING_K1", "4", "TEST.RE_RANKING_K2", "2"])
    options = retrieval_options(cfg)
    assert options == {"normalize": True, "rerank": (4, 2, 0.3)}
    out, distmat = evaluate_features(query, gallery, q_pids, g_pids, np.zeros(6), np.ones(30), **options)
    assert distmat.shape == (6, 30)
    assert out["mAP"] == pytest.approx(1.0) and out["cmc"][0] == pytest.approx(1.0)
