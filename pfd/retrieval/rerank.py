"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorized with torch.

Same algorithm and constants as the authors' code and its TransReID / fast-reid copies:
1. stack the query+gallery distances into D [N, N] (N = q + g), then
   ``dist = (D / D.max(axis=0)).T`` (column max, then transpose, exactly as the reference);
2. R(i, k1): the k1-reciprocal neighbours of i among its k1+1 nearest; expand it with
   R(c, round(k1/2)) of each candidate c in it whose set overlaps R(i, k1) in more than 2/3 of
   its members;
3. V[i, j] = exp(-dist[i, j]) normalized over the expanded set (0 elsewhere); with k2 > 1,
   query expansion replaces V[i] by the mean of V over i's k2 nearest neighbours;
4. Jaccard distance ``1 - s / (2 - s)`` with ``s = sum_k min(V[i, k], V[j, k])``;
5. final = (1 - lambda) * Jaccard + lambda * dist, for the query x gallery block.
V is kept sparse (COO) and step 4 joins the non-zeros of query and gallery rows on their column
(the reference's inverted index, without Python loops). Values are float32, as the authors' code
(TransReID stores V in float16, which moves results by ~1e-3).

Inputs are squared Euclidean distances (``pfd.retrieval.index.distance_matrix``, 2 - 2 cos on
normalized features), as TransReID feeds them; the authors' code took plain Euclidean distances
and squared them itself, which is the same thing.

Neighbour ties are broken as ``torch.topk`` breaks them (the reference's ``np.argsort`` does not
define it either).

Memory: the full (q+g)^2 distance matrix is needed (float32: 1.6 GB for Occluded-Duke's
2,210 + 17,661 images; 4 bytes x N^2 in general), plus about one more such matrix transiently when
it is assembled; V itself is sparse (about N x k1^2 / 2 entries).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["re_ranking"]

_JOIN_BUDGET = 1 << 24  # max (query entry, gallery entry) pairs materialized at once in step 4


def _k_reciprocal(initial_rank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward [N, k+1] nearest neighbours, mask [N, k+1]: i is also among that neighbour's k+1 nearest)."""
    forward = initial_rank[:, :k + 1]  # [N, k+1] (fewer columns when initial_rank has fewer)
    backward = initial_rank[forward, :k + 1]  # [N, k+1, k+1]
    rows = torch.arange(initial_rank.shape[0], device=initial_rank.device)
    return forward, (backward == rows[:, None, None]).any(-1)


def _expanded_sets(initial_rank: torch.Tensor, k1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns (1-D, unique pairs) of each image's expanded k-reciprocal set (step 2).

    Slices clip at the columns ``initial_rank`` has, as the reference's do when k1 + 1 > N."""
    n = initial_rank.shape[0]
    k_half = int(np.around(k1 / 2))
    fwd, recip = _k_reciprocal(initial_rank, k1)  # [N, k1+1]
    fwd_h, recip_h = _k_reciprocal(initial_rank, k_half)  # [N, kh+1]
    cand_set, cand_mask = fwd_h[fwd], recip_h[fwd] & recip[:, :, None]  # [N, k1+1, kh+1] candidates' sets
    # |R(c, kh) & R(i, k1)|: each member of a candidate's set looked up in R(i, k1).
    in_r = ((cand_set[..., None] == fwd[:, None, None, :]) & recip[:, None, None, :]).any(-1)  # [N,k1+1,kh+1]
    overlap = (in_r & cand_mask).sum(-1).double()  # [N, k1+1]
    accept = overlap > 2.0 / 3.0 * cand_mask.sum(-1).double()  # same float test as the reference
    cols = torch.cat([fwd, cand_set.flatten(1)], 1)  # [N, (k1+1)(kh+2)]
    keep = torch.cat([recip, (cand_mask & accept[:, :, None]).flatten(1)], 1)  # [N, (k1+1)(kh+2)]
    rows = torch.arange(n, device=cols.device)[:, None].expand_as(cols)
    pairs = torch.unique(rows[keep] * n + cols[keep])  # sorted by row, then column
    return pairs // n, pairs % n


def _sparse(rows, cols, values, n: int) -> torch.Tensor:
    """[n, n] coalesced COO matrix; duplicate (row, col) entries are summed."""
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False).coalesce()


def _expand(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For runs of the given lengths laid end to end: (run of each element, position inside its run)."""
    run = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    return run, torch.arange(run.numel(), device=counts.device) - (counts.cumsum(0) - counts)[run]


def _neighbour_mean(v: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """Sparse [N, N] whose row i is the mean of v's rows ``neighbours[i]`` [N, k] (query expansion)."""
    n, k = neighbours.shape
    (rows, cols), vals = v.indices(), v.values()
    count = torch.bincount(rows, minlength=n)  # [N] non-zeros per row
    start = count.cumsum(0) - count  # [N] where each row's entries begin (rows are sorted)
    src = neighbours.flatten()  # [N*k] rows to average
    copy, offset = _expand(count[src])  # [M] which (i, neighbour) pair, which of its entries
    entry = start[src[copy]] + offset  # [M] index into v's entries
    return _sparse(copy // k, cols[entry], vals[entry] / k, n)


def _min_overlap(v: torch.Tensor, num_q: int) -> torch.Tensor:
    """s[i, j] = sum_k min(V[i, k], V[num_q + j, k]) [num_q, N - num_q] from the sparse V (step 4)."""
    n = v.shape[0]
    (rows, cols), vals = v.indices(), v.values()
    is_q = rows < num_q
    q_rows, q_cols, q_vals = rows[is_q], cols[is_q], vals[is_q]
    g_cols, g_order = torch.sort(cols[~is_q], stable=True)  # gallery entries grouped by column
    g_rows, g_vals = rows[~is_q][g_order] - num_q, vals[~is_q][g_order]
    col_count = torch.bincount(g_cols, minlength=n)  # [N]
    col_start = col_count.cumsum(0) - col_count  # [N]
    reps = col_count[q_cols]  # [Eq] gallery entries sharing each query entry's column
    out = torch.zeros(num_q * (n - num_q), dtype=vals.dtype, device=vals.device)
    ends = reps.cumsum(0)  # [Eq] pairs up to and including each query entry
    start = 0
    while start < len(reps):  # blocks of query entries with at most _JOIN_BUDGET pairs (or a single entry)
        before = int(ends[start] - reps[start])
        stop = max(int(torch.searchsorted(ends, before + _JOIN_BUDGET, right=True)), start + 1)
        pair, offset = _expand(reps[start:stop])  # [pairs] query entry (from start), its k-th partner
        q_entry = start + pair
        g_entry = col_start[q_cols[q_entry]] + offset  # [pairs] gallery entries in the same column
        out.index_add_(0, q_rows[q_entry] * (n - num_q) + g_rows[g_entry],
                       torch.minimum(q_vals[q_entry], g_vals[g_entry]))
        start = stop
    return out.view(num_q, n - num_q)


def re_ranking(q_g, q_q, g_g, k1: int = 20, k2: int = 6, lambda_value: float = 0.3):
    """k-reciprocal re-ranked query x gallery distances.

    Args:
        q_g [q, g], q_q [q, q], g_g [g, g]: squared Euclidean distances (numpy or torch, any device;
            the work happens on q_g's device).
        k1, k2, lambda_value: TEST.RE_RANKING_K1 / K2 / LAMBDA (20, 6, 0.3).

    Returns:
        [q, g] float32 distances, numpy if q_g was numpy, else a torch tensor on q_g's device.
    See the module docstring for the memory it needs.
    """
    as_numpy = not isinstance(q_g, torch.Tensor)
    q_g = torch.as_tensor(q_g, dtype=torch.float32)
    q_q, g_g = (torch.as_tensor(d, dtype=torch.float32, device=q_g.device) for d in (q_q, g_g))
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        raise ValueError(f"re_ranking needs q_q [{num_q}, {num_q}] and g_g [{num_g}, {num_g}] to match q_g "
                         f"{tuple(q_g.shape)}, got {tuple(q_q.shape)} and {tuple(g_g.shape)}")
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"re_ranking needs k1 >= 1, k2 >= 1, 0 <= lambda <= 1; got {k1}, {k2}, {lambda_value}")
    n = num_q + num_g
    dist = torch.cat([torch.cat([q_q, q_g], 1), torch.cat([q_g.T, g_g], 1)], 0)  # [N, N]
    # [N, N] row i = column i over its max (a view); eps keeps an all-zero column at 0, not NaN
    dist = dist.div_(dist.amax(0).clamp_min(torch.finfo(dist.dtype).tiny)).T
    k2 = min(k2, n)
    k_rank = min(max(k1 + 1, k2), n)
    initial_rank = torch.topk(dist, k_rank, dim=1, largest=False, sorted=True).indices  # [N, k_rank]

    rows, cols = _expanded_sets(initial_rank, k1)
    weight = torch.exp(-dist[rows, cols])  # [E]
    weight = weight / torch.zeros(n, device=weight.device).index_add_(0, rows, weight)[rows]
    v = _sparse(rows, cols, weight, n)  # [N, N] sparse
    if k2 != 1:  # query expansion: V[i] <- mean of V over the k2 nearest neighbours of i
        v = _neighbour_mean(v, initial_rank[:, :k2])
    overlap = _min_overlap(v, num_q)  # [q, g]
    jaccard = 1 - overlap / (2 - overlap)
    final = jaccard * (1 - lambda_value) + dist[:num_q, num_q:] * lambda_value
    return final.cpu().numpy() if as_numpy else final
