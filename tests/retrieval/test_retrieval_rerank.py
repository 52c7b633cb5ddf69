"""k-reciprocal re-ranking against a direct loop-based implementation (Zhong et al. 2017, float32)."""
import numpy as np
import pytest
import torch

from pfd.retrieval.index import distance_matrix
from pfd.retrieval.rerank import re_ranking


def textbook_re_ranking(q_g, q_q, g_g, k1, k2, lambda_value):
    """The authors' algorithm written plainly with loops and sets (inputs already squared distances)."""
    num_q = q_g.shape[0]
    dist = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float32)
    dist = (dist / dist.max(axis=0)).T
    n = dist.shape[0]
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        return [j for j in rank[i, :k + 1] if i in rank[j, :k + 1]]

    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        r_i = reciprocal(i, k1)
        expanded = set(r_i)
        for c in r_i:
            r_c = reciprocal(c, int(np.around(k1 / 2)))
            if len(set(r_c) & set(r_i)) > 2 / 3 * len(r_c):
                expanded |= set(r_c)
        cols = sorted(expanded)
        weight = np.exp(-dist[i, cols])
        v[i, cols] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((num_q, n - num_q), dtype=np.float32)
    for i in range(num_q):
        for j in range(num_q, n):
            s = np.minimum(v[i], v[j]).sum()
            jaccard[i, j - num_q] = 1 - s / (2 - s)
    return jaccard * (1 - lambda_value) + dist[:num_q, num_q:] * lambda_value


def clustered_features(rng, n, num_ids=6, dim=16):
    centers = rng.normal(size=(num_ids, dim))
    return (centers[rng.integers(0, num_ids, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("num_q,num_g,k1,k2,lam", [(12, 48, 20, 6, 0.3), (8, 40, 6, 3, 0.5), (6, 25, 4, 1, 0.0)])
def test_matches_textbook_loop(num_q, num_g, k1, k2, lam):
    rng = np.random.default_rng(num_q)
    feats = clustered_features(rng, num_q + num_g)
    q, g = feats[:num_q], feats[num_q:]
    q_g, q_q, g_g = (distance_matrix(a, b).numpy() for a, b in ((q, g), (q, q), (g, g)))
    expected = textbook_re_ranking(q_g, q_q, g_g, k1, k2, lam)
    out = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert isinstance(out, np.ndarray) and out.shape == (num_q, num_g)
    np.testing.assert_allclose(out, expected, atol=2e-6)
    out_t = re_ranking(*(torch.from_numpy(a) for a in (q_g, q_q, g_g)), k1=k1, k2=k2, lambda_value=lam)
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_allclose(out_t.numpy(), expected, atol=2e-6)


def test_join_in_several_blocks_gives_the_same(monkeypatch):
    import pfd.retrieval.rerank as rerank

    rng = np.random.default_rng(7)
    feats = clustered_features(rng, 50)
    q, g = feats[:10], feats[10:]
    args = [distance_matrix(a, b) for a, b in ((q, g), (q, q), (g, g))]
    whole = re_ranking(*args)
    monkeypatch.setattr(rerank, "_JOIN_BUDGET", 1024)
    np.testing.assert_allclose(re_ranking(*args).numpy(), whole.numpy(), atol=1e-6)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="q_q"):
        re_ranking(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((3, 3)))


def test_all_zero_distances_give_no_nan():
    # One query identical to one gallery image and to itself: its column of the joint matrix is all 0.
    q_g, q_q, g_g = np.array([[0.0, 0.0]]), np.zeros((1, 1)), np.zeros((2, 2))
    out = re_ranking(q_g, q_q, g_g, k1=2, k2=1)
    assert out.shape == (1, 2) and np.isfinite(out).all()
