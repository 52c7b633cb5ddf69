"""Ranking a gallery by feature similarity, and a saved FAISS gallery index for query.py.

Distance convention (everywhere in ``pfd.retrieval``): squared Euclidean distance. With
``normalize=True`` (TEST.FEAT_NORM yes) features are L2-normalized first, so the distance is
``2 - 2 cos``: monotone in the cosine, in [0, 4]. This is what TransReID computes and what
k-reciprocal re-ranking expects.

Backends of ``rank_gallery`` (``backend="auto"``): FAISS on the GPU when ``faiss-gpu`` is installed
and CUDA is present; otherwise torch matmul + top-k on CUDA when a GPU is present; otherwise
FAISS on the CPU (exact ``IndexFlatIP`` on normalized features, ``IndexFlatL2`` otherwise).

A gallery's saved index: ``gallery_index`` (kinds, streaming build, adds and removals) and
``index_folder`` (the folder layout a kill cannot break).
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import resolve_device
from .part_distance import PartLayout, visible_part_distance

__all__ = ["distance_matrix", "rank_gallery"]

_CHUNK_ELEMENTS = 1 << 26  # max entries of one query-block x gallery similarity matrix (256 MB float32)


def _features(x, name: str, device=None) -> torch.Tensor:
    """[N, F] float32 tensor on ``device`` (default: where it is), with a clear error otherwise."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D [num_images, feature_dim], got shape {tuple(t.shape)}")
    return t.to(device=device if device is not None else t.device, dtype=torch.float32)


def _check_dims(query: torch.Tensor, gallery: torch.Tensor) -> None:
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query features have dim {query.shape[1]} but gallery features have dim "
                         f"{gallery.shape[1]}; they must come from the same model and FEAT_KIND")


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=1)


def distance_matrix(query_feats, gallery_feats, normalize: bool = True, device=None,
                    part_layout: PartLayout | None = None) -> torch.Tensor:
    """[num_query, num_gallery] float32 squared Euclidean distances (2 - 2 cos when ``normalize``), or with
    ``part_layout`` the visibility-aware distance of ``pfd.retrieval.part_distance`` (TEST.PART_DISTANCE).

    Computed on ``device`` (default: the query features' device) in query blocks, so the only large
    allocation is the result itself. Small negative values from rounding are clamped to 0.
    """
    q = _features(query_feats, "query_feats", device)
    g = _features(gallery_feats, "gallery_feats", q.device)
    _check_dims(q, g)
    step = max(1, _CHUNK_ELEMENTS // max(1, g.shape[0]))
    if part_layout is not None:
        return visible_part_distance(q, g, part_layout, block_rows=step)
    if normalize:
        q, g = _l2_normalize(q), _l2_normalize(g)
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.float32, device=q.device)
    g_sq = None if normalize else (g * g).sum(1)  # [G]
    for s in range(0, q.shape[0], step):
        block = q[s:s + step]
        sim = block @ g.T  # [B, G]
        if normalize:
            out[s:s + step] = (2 - 2 * sim).clamp_(min=0)
        else:
            out[s:s + step] = ((block * block).sum(1, keepdim=True) + g_sq[None, :] - 2 * sim).clamp_(min=0)
    return out


def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is a requirement
        raise ImportError("pfd.retrieval needs FAISS: pip install faiss-cpu (or faiss-gpu on CUDA)") from err
    return faiss


def _faiss_has_gpu(faiss) -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _rank_torch(q: torch.Tensor, g: torch.Tensor, topk: int, normalize: bool):
    """Exact top-k by blocks of queries: torch matmul + topk (for CUDA without faiss-gpu)."""
    dist = torch.empty(q.shape[0], topk, dtype=torch.float32, device=q.device)
    index = torch.empty(q.shape[0], topk, dtype=torch.int64, device=q.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, g.shape[0]))
    for s in range(0, q.shape[0], step):
        block = distance_matrix(q[s:s + step], g, normalize=normalize)  # [B, G]
        dist[s:s + step], index[s:s + step] = torch.topk(block, topk, dim=1, largest=False, sorted=True)
    return dist.cpu().numpy(), index.cpu().numpy()


def _flat_index(faiss, dim: int, normalize: bool):
    return faiss.IndexFlatIP(dim) if normalize else faiss.IndexFlatL2(dim)


def _to_distance(scores: np.ndarray, normalize: bool) -> np.ndarray:
    """FAISS scores -> our distances: inner products of unit vectors -> 2 - 2 cos; L2 is already squared.
    A slot an approximate index could not fill (label -1) scores -FLT_MAX and becomes an infinite distance."""
    if not normalize:
        return scores
    with np.errstate(over="ignore"):
        return np.maximum(2 - 2 * scores, 0)


def rank_gallery(query_feats, gallery_feats, topk: int, normalize: bool = True, backend: str = "auto",
                 device=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``topk`` nearest gallery images of each query, exactly.

    Args:
        query_feats [Q, F], gallery_feats [G, F]: numpy or torch features.
        topk: list length (cut to G).
        normalize: L2-normalize first (TEST.FEAT_NORM); distances are then 2 - 2 cos.
        backend: "auto" (see module docstring), "faiss" or "torch".
        device: torch backend only: where to compute (default: CUDA when present).

    Returns:
        (distances [Q, k] float32 ascending, indices [Q, k] int64 gallery rows), numpy.
        Ties may come in any order (FAISS does not specify it).
    """
    if backend not in {"auto", "faiss", "torch"}:
        raise ValueError(f"backend must be auto, faiss or torch, got {backend!r}")
    q = _features(query_feats, "query_feats")
    g = _features(gallery_feats, "gallery_feats")
    _check_dims(q, g)
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    topk = min(topk, g.shape[0])
    if backend == "auto":
        faiss_gpu = torch.cuda.is_available() and _faiss_has_gpu(_faiss())
        backend = "torch" if torch.cuda.is_available() and not faiss_gpu else "faiss"
    if backend == "torch":
        device = device or resolve_device("auto")
        return _rank_torch(q.to(device), g.to(device), topk, normalize)

    faiss = _faiss()
    qn, gn = q.cpu(), g.cpu()
    if normalize:
        qn, gn = _l2_normalize(qn), _l2_normalize(gn)
    index = _flat_index(faiss, g.shape[1], normalize)
    if _faiss_has_gpu(faiss):
        resources = faiss.StandardGpuResources()  # must outlive the GPU index
        index = faiss.index_cpu_to_gpu(resources, 0, index)
    index.add(np.ascontiguousarray(gn.numpy()))
    scores, rows = index.search(np.ascontiguousarray(qn.numpy()), topk)
    return _to_distance(scores, normalize).astype(np.float32), rows.astype(np.int64)


