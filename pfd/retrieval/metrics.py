"""Re-ID metrics under the Market-1501 protocol: mAP, CMC and mINP, vectorized.

Protocol (as the TransReID / fast-reid ``eval_func``): each query ranks the whole gallery by
ascending distance; gallery images with the query's identity *and* camera are removed from its
list (they are "junk" for that query); a query whose remaining list holds no image of its identity
is skipped and counted in ``num_skipped_queries``. Distractor ids (0) and junk ids (-1) are plain
ids: they match only queries with the same id.

Tie rule (well defined, unlike the reference's unstable ``np.argsort``): gallery images at exactly
equal float32 distance are ranked by ascending gallery index, i.e. every row is ordered as
``np.argsort(row, kind="stable")`` would order it. -0.0 and 0.0 count as equal.

How it is fast: a full argsort of every row is not needed. Only the rank of each gallery image
sharing the query's identity matters, and that rank is the number of gallery images with a
smaller distance. So each block of rows is sorted by value only (numpy's SIMD sort on CPU, in a
thread per core; ``torch.sort`` on CUDA) and the identity's distances are located in it with a
batched ``searchsorted``; exact ties with those distances are resolved by index on the few rows
that have them. Memory stays bounded by processing ``_ROW_BLOCK`` query rows at a time.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

from ..errors import InvalidInputError

__all__ = ["NoMatchError", "evaluate", "evaluate_features", "retrieval_options", "summarize"]

_ROW_BLOCK = 256  # query rows per block: a block's sorted copy is 256 x G float32 (18 MB at G=17,661)
_TIE_BUDGET = 1 << 24  # max elements compared at once while resolving exact ties


class NoMatchError(InvalidInputError):
    """No query has a true match in the gallery (same id, another camera): nothing to measure."""


def _as_tensor(x, dtype: torch.dtype, device=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device if device is not None else t.device, dtype=dtype)


def _check_inputs(distmat: torch.Tensor, q_pids, g_pids, q_camids, g_camids) -> None:
    if distmat.dim() != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {tuple(distmat.shape)}")
    num_q, num_g = distmat.shape
    for name, arr, n in (("q_pids", q_pids, num_q), ("q_camids", q_camids, num_q),
                         ("g_pids", g_pids, num_g), ("g_camids", g_camids, num_g)):
        if arr.dim() != 1 or arr.numel() != n:
            raise ValueError(f"{name} must be 1-D with {n} entries to match distmat {tuple(distmat.shape)}, "
                             f"got shape {tuple(arr.shape)}")
    if num_q == 0:
        raise ValueError("the query set is empty (distmat has 0 rows)")
    if num_g == 0:
        raise ValueError("the gallery is empty (distmat has 0 columns)")
    if torch.isnan(distmat).any():
        raise ValueError("distmat contains NaN; check the features (NaN in a feature makes its whole row NaN)")


def _sort_rows(rows: torch.Tensor) -> torch.Tensor:
    """Each row's values in ascending order (values only: much cheaper than an argsort)."""
    if rows.is_cuda:
        return torch.sort(rows, dim=1).values
    return torch.from_numpy(np.sort(rows.numpy(), axis=1))


def _ranks_in_rows(rows: torch.Tensor, thresholds: torch.Tensor, columns: torch.Tensor,
                   present: torch.Tensor) -> torch.Tensor:
    """0-based position of gallery column ``columns[r, j]`` in row ``r`` under the stable tie rule.

    rows [R, G] distances; thresholds [R, P] = rows gathered at ``columns`` [R, P]; ``present``
    [R, P] marks real entries (padding gets an unspecified rank).
    Returns [R, P] int64 = #{i : d_i < t} + #{i : d_i == t and i < column}.
    """
    sorted_rows = _sort_rows(rows)  # [R, G]
    less = torch.searchsorted(sorted_rows, thresholds, right=False)  # [R, P]
    equal = torch.searchsorted(sorted_rows, thresholds, right=True) - less  # [R, P], >= 1 (itself)
    rank = less
    tie_r, tie_j = torch.nonzero((equal > 1) & present, as_tuple=True)  # rare: other images at exactly this distance
    if tie_r.numel():
        num_g = rows.shape[1]
        gallery_index = torch.arange(num_g, device=rows.device)
        step = max(1, _TIE_BUDGET // num_g)
        for s in range(0, tie_r.numel(), step):
            r, j = tie_r[s:s + step], tie_j[s:s + step]
            t, c = thresholds[r, j], columns[r, j]  # [T]
            before = (rows[r] == t[:, None]) & (gallery_index[None, :] < c[:, None])  # [T, G]
            rank[r, j] += before.sum(1)
    return rank


def _query_stats(rows, q_pids, q_camids, g_order, g_pids_sorted, g_camids):
    """Per query of one block: (valid, AP, rank of first and last match, number of matches).

    Ranks are 0-based positions in the query's list after junk (same id and camera) is removed.
    """
    num_r, num_g = rows.shape
    device = rows.device
    # The gallery images sharing each query's id: a contiguous run of the id-sorted gallery.
    start = torch.searchsorted(g_pids_sorted, q_pids, right=False)  # [R]
    count = torch.searchsorted(g_pids_sorted, q_pids, right=True) - start  # [R]
    width = max(int(count.max()), 1) if num_r else 1
    slot = torch.arange(width, device=device)
    present = slot[None, :] < count[:, None]  # [R, P] real entries (the rest is padding)
    columns = g_order[(start[:, None] + slot[None, :]).clamp(max=num_g - 1)]  # [R, P] gallery columns
    thresholds = rows.gather(1, columns)  # [R, P] their distances
    same_cam = g_camids[columns] == q_camids[:, None]  # [R, P]
    match = present & ~same_cam  # [R, P] true matches (same id, other camera)
    junk = present & same_cam  # [R, P] removed from the list

    rank = _ranks_in_rows(rows, thresholds, columns, present)  # [R, P] position in the full row
    rank = torch.where(present, rank, torch.full_like(rank, 2 * num_g))  # padding sorts last
    rank, order = rank.sort(dim=1)  # [R, P] same-id images in list order
    match, junk = match.gather(1, order), junk.gather(1, order)
    junk_before = junk.cumsum(1) - junk.long()  # [R, P]
    list_rank = (rank - junk_before).double()  # [R, P] rank once junk is removed
    hits = match.cumsum(1).double()  # [R, P] matches found up to and including this one
    num_match = match.sum(1)  # [R]
    valid = num_match > 0
    denom = num_match.clamp(min=1).double()
    ap = torch.where(match, hits / (list_rank + 1), torch.zeros_like(hits)).sum(1) / denom  # [R]
    inf = torch.full_like(list_rank, float("inf"))
    first = torch.where(match, list_rank, inf).amin(1)  # [R]
    last = torch.where(match, list_rank, -inf).amax(1)  # [R]
    return valid, ap, first, last, num_match


def evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50) -> dict:
    """mAP, CMC and mINP of a query x gallery distance matrix (smaller = more similar).

    Args:
        distmat: [num_query, num_gallery] float distances, numpy or torch (CPU or CUDA; CUDA stays
            there). Compared in float32 (see the tie rule in the module docstring).
        q_pids, g_pids, q_camids, g_camids: 1-D integer ids and cameras (numpy, torch or lists).
        max_rank: length of the returned CMC curve (cut to num_gallery when the gallery is smaller).

    Returns:
        {"mAP": float, "cmc": np.ndarray float64 [max_rank] (cmc[k] = Rank-(k+1) accuracy),
         "mINP": float, "num_valid_queries": int, "num_skipped_queries": int,
         "query_ap": np.ndarray float64 [num_query], each query's AP (NaN for one without a true
         match; mAP is their mean over the others)}; rates in [0, 1].
        Equal, up to float rounding, to the TransReID/fast-reid per-query loop with a stable argsort.

    Raises:
        ValueError on shape mismatches, NaN distances, or when no query has a valid match.
    """
    dist = _as_tensor(distmat, torch.float32).contiguous()  # no copy for a contiguous float32 input
    device = dist.device
    q_pids, g_pids, q_camids, g_camids = (_as_tensor(a, torch.int64, device) for a in (q_pids, g_pids, q_camids,
                                                                                        g_camids))
    _check_inputs(dist, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = dist.shape
    max_rank = min(max_rank, num_g)
    g_pids_sorted, g_order = torch.sort(g_pids, stable=True)

    blocks = [slice(s, min(s + _ROW_BLOCK, num_q)) for s in range(0, num_q, _ROW_BLOCK)]

    def block_stats(b: slice):
        return _query_stats(dist[b], q_pids[b], q_camids[b], g_order, g_pids_sorted, g_camids)

    if device.type == "cpu" and len(blocks) > 1:  # numpy's sort releases the GIL: one block per core
        with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
            stats = list(pool.map(block_stats, blocks))
    else:
        stats = [block_stats(b) for b in blocks]
    valid, ap, first, last, num_match = (torch.cat(parts) for parts in zip(*stats))

    num_valid = int(valid.sum())
    if num_valid == 0:
        raise NoMatchError(f"none of the {num_q} queries has a match in the gallery (same id, other camera); "
                         "check that query and gallery come from the same dataset")
    first_hit = first[valid].long()  # [V] list rank of the first true match
    cmc = (first_hit[:, None] <= torch.arange(max_rank, device=device)[None, :]).double().mean(0)
    inp = num_match[valid].double() / (last[valid] + 1)
    return {
        "mAP": float(ap[valid].mean()),
        "cmc": cmc.cpu().numpy(),
        "mINP": float(inp.mean()),
        "num_valid_queries": num_valid,
        "num_skipped_queries": num_q - num_valid,
        "query_ap": torch.where(valid, ap.double(), torch.nan).cpu().numpy(),
    }


def summarize(metrics: dict, ranks: Sequence[int] = (1, 5, 10, 20)) -> dict:
    """Flat {"mAP", "mINP", "Rank-1", "Rank-5", ...} of floats for logs (ranks beyond the CMC are left out)."""
    cmc = metrics["cmc"]
    out = {"mAP": float(metrics["mAP"]), "mINP": float(metrics["mINP"])}
    out.update({f"Rank-{r}": float(cmc[r - 1]) for r in ranks if r <= len(cmc)})
    return out


def retrieval_options(cfg) -> dict:
    """Keyword arguments of ``evaluate_features`` taken from a config (TEST.FEAT_NORM, TEST.RE_RANKING*)."""
    feat_norm = str(cfg.TEST.FEAT_NORM).lower()
    if feat_norm not in {"yes", "no", "true", "false", "on", "off"}:
        raise ValueError(f"TEST.FEAT_NORM must be yes or no, got {cfg.TEST.FEAT_NORM!r}")
    rerank = None
    if cfg.TEST.RE_RANKING:
        rerank = (cfg.TEST.RE_RANKING_K1, cfg.TEST.RE_RANKING_K2, cfg.TEST.RE_RANKING_LAMBDA)
    return {"normalize": feat_norm in {"yes", "true", "on"}, "rerank": rerank}


def evaluate_features(query_feats, gallery_feats, q_pids, g_pids, q_camids, g_camids, *,
                      normalize: bool = True, rerank: tuple | None = None, max_rank: int = 50,
                      device=None, part_layout=None) -> tuple[dict, torch.Tensor]:
    """Distance matrix (optionally k-reciprocal re-ranked) of features, then ``evaluate``.

    Features [N, F] (numpy or torch). ``normalize``: L2-normalize first (distance 2 - 2 cos).
    ``rerank``: None or (k1, k2, lambda) for ``rerank.re_ranking`` (needs a (q+g)^2 matrix, see there).
    ``device``: where to compute (default: the query features' device). ``part_layout``: a
    ``part_distance.PartLayout`` for the visibility-aware distance (TEST.PART_DISTANCE visible). Use
    ``evaluate_features(..., **retrieval_options(cfg))`` to follow a config.
    Returns (metrics, distmat [num_query, num_gallery] float32 on ``device``).
    """
    from .index import distance_matrix
    from .rerank import re_ranking

    options = {"normalize": normalize, "device": device, "part_layout": part_layout}
    distmat = distance_matrix(query_feats, gallery_feats, **options)
    if rerank is not None:
        k1, k2, lambda_value = rerank
        q_q = distance_matrix(query_feats, query_feats, **options)
        g_g = distance_matrix(gallery_feats, gallery_feats, **options)
        distmat = re_ranking(distmat, q_q, g_g, k1=k1, k2=k2, lambda_value=lambda_value)
    return evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank), distmat
