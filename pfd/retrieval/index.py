"""Ranking a gallery by feature similarity, and a saved FAISS gallery index for query.py.

Distance convention (everywhere in ``pfd.retrieval``): squared Euclidean distance. With
``normalize=True`` (TEST.FEAT_NORM yes) features are L2-normalized first, so the distance is
``2 - 2 cos``: monotone in the cosine, in [0, 4]. This is what TransReID computes and what
k-reciprocal re-ranking expects.

Backends of ``rank_gallery`` (``backend="auto"``): FAISS on the GPU when ``faiss-gpu`` is installed
and CUDA is present; otherwise torch matmul + top-k on CUDA when a GPU is present; otherwise
FAISS on the CPU (exact ``IndexFlatIP`` on normalized features, ``IndexFlatL2`` otherwise).

Saved index (``build_index`` -> ``GalleryIndex.save(dir)`` -> ``load_index(dir, ...)``): the folder
holds ``index.faiss`` (the FAISS index) and ``meta.json`` (paths, ids, cameras, model id, config
hash, feature kind and dim, index type, the index file's SHA-256). Both are written to temp files
and ``os.replace``d, index first; the checksum makes a pair left mixed by a crash fail to load.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..device import resolve_device
from ..errors import UserError
from ..io import atomic_path, atomic_write, sha256_file

__all__ = ["distance_matrix", "rank_gallery", "GalleryIndex", "IndexLoadError", "build_index",
           "check_built_with", "load_index", "INDEX_FILE", "META_FILE"]

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
META_FORMAT = "pfd-index-v1"
_CHUNK_ELEMENTS = 1 << 26  # max entries of one query-block x gallery similarity matrix (256 MB float32)


class IndexLoadError(UserError, ValueError):
    """A saved index that is missing, damaged, or built for another model/config."""


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


def distance_matrix(query_feats, gallery_feats, normalize: bool = True, device=None) -> torch.Tensor:
    """[num_query, num_gallery] float32 squared Euclidean distances (2 - 2 cos when ``normalize``).

    Computed on ``device`` (default: the query features' device) in query blocks, so the only large
    allocation is the result itself. Small negative values from rounding are clamped to 0.
    """
    q = _features(query_feats, "query_feats", device)
    g = _features(gallery_feats, "gallery_feats", q.device)
    _check_dims(q, g)
    if normalize:
        q, g = _l2_normalize(q), _l2_normalize(g)
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.float32, device=q.device)
    g_sq = None if normalize else (g * g).sum(1)  # [G]
    step = max(1, _CHUNK_ELEMENTS // max(1, g.shape[0]))
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
    """FAISS scores -> our distances: inner products of unit vectors -> 2 - 2 cos; L2 is already squared."""
    return np.maximum(2 - 2 * scores, 0) if normalize else scores


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


# ----------------------------------------------------------------------------- saved gallery index
def _ivfpq_params(num_items: int, dim: int) -> dict:
    """nlist ~ 4 sqrt(N) with >= 39 training points per list; m = largest divisor of dim <= min(64, dim/4)
    (64-byte codes for ViT-B's 27,648 values: 432 values per sub-quantizer); nbits = 8 from
    N >= 39 * 256 on, fewer below (FAISS wants 39 training points per code, and needs >= 2^nbits)."""
    nlist = max(1, min(int(4 * math.sqrt(num_items)), num_items // 39))
    cap = max(1, min(64, dim // 4))
    m = max(d for d in range(1, cap + 1) if dim % d == 0)
    nbits = min(8, max(4, int(math.log2(max(1, num_items // 39)))), int(math.log2(max(2, num_items))))
    nprobe = min(nlist, max(8, nlist // 8))  # lists visited per search
    return {"nlist": nlist, "m": m, "nbits": nbits, "nprobe": nprobe}


def _recall_at_10(faiss, approx, vectors: np.ndarray, normalize: bool, num_probe: int = 1000) -> float:
    """Mean |top-10(approx) & top-10(exact)| / 10 over up to ``num_probe`` evenly spaced gallery vectors."""
    exact = _flat_index(faiss, vectors.shape[1], normalize)
    exact.add(vectors)
    probes = vectors[np.linspace(0, len(vectors) - 1, min(num_probe, len(vectors))).astype(np.int64)]
    k = min(10, len(vectors))
    _, truth = exact.search(probes, k)
    _, found = approx.search(probes, k)
    hits = (found[:, :, None] == truth[:, None, :]).any(-1).sum(1)  # [probes]
    return float(hits.mean() / k)


class GalleryIndex:
    """A FAISS index over gallery features plus its metadata (``meta`` dict, see ``build_index``).

    ``search(query_feats, topk) -> (distances [Q, k] float32, rows [Q, k] int64)``: rows index
    ``meta["paths"]``, ``meta["pids"]``, ``meta["camids"]``; distances follow the module's convention
    (approximate for ivfpq). ``save(index_dir)`` writes atomically. ``index`` is the CPU index;
    ``to_gpu()`` makes searches run on a faiss-gpu copy of a flat index.
    """

    def __init__(self, index, meta: dict):
        self.index = index
        self.meta = meta
        self._search_index = index
        self._gpu_resources = None

    def __len__(self) -> int:
        return self.meta["num_items"]

    def to_gpu(self) -> "GalleryIndex":
        faiss = _faiss()
        if not _faiss_has_gpu(faiss):
            raise RuntimeError("GalleryIndex.to_gpu needs faiss-gpu and a CUDA device")
        self._gpu_resources = faiss.StandardGpuResources()
        self._search_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.index)
        return self

    def search(self, query_feats, topk: int = 10) -> tuple[np.ndarray, np.ndarray]:
        q = _features(query_feats, "query_feats").cpu()
        if q.shape[1] != self.meta["feature_dim"]:
            raise ValueError(f"query features have dim {q.shape[1]} but the index holds dim "
                             f"{self.meta['feature_dim']} features ({self.meta['feature_kind']!r})")
        if self.meta["normalized"]:
            q = _l2_normalize(q)
        scores, rows = self._search_index.search(np.ascontiguousarray(q.numpy()), min(topk, len(self)))
        return _to_distance(scores, self.meta["normalized"]).astype(np.float32), rows.astype(np.int64)

    def save(self, index_dir) -> Path:
        """Write ``index.faiss`` and ``meta.json`` into ``index_dir`` (created) via temp files + os.replace.

        The index is replaced first; a crash before the metadata follows leaves a checksum mismatch
        that ``load_index`` reports, never a silently mixed pair.
        """
        faiss = _faiss()
        folder = Path(index_dir)
        with atomic_path(folder / INDEX_FILE) as tmp_index:
            faiss.write_index(self.index, str(tmp_index))
            meta = dict(self.meta, index_sha256=sha256_file(tmp_index))
        atomic_write(folder / META_FILE, lambda f: f.write(json.dumps(meta).encode()))
        self.meta = meta
        return folder


def build_index(gallery_feats, records: Sequence, *, index_type: str = "flat", model_id: str = "",
                config_hash: str = "", feature_kind: str = "", normalize: bool = True,
                ivfpq_params: dict | None = None) -> GalleryIndex:
    """Index gallery features [G, F] for ``query.py``.

    Args:
        records: G gallery records with ``.path``, ``.pid``, ``.camid`` (``ImageRecord``), row-aligned.
        index_type: "flat" (exact inner product / L2) or "ivfpq" (approximate, trained on the gallery;
            parameters from ``_ivfpq_params`` unless ``ivfpq_params`` overrides nlist/m/nbits/nprobe).
        model_id: identifies the weights (e.g. the checkpoint's SHA-256); config_hash:
            ``pfd.config.config_hash(cfg)``; feature_kind: MODEL.FEAT_KIND. ``load_index`` checks these.
        normalize: L2-normalize features (TEST.FEAT_NORM); inner product then ranks like 2 - 2 cos.

    Returns the in-memory ``GalleryIndex``; for ivfpq ``meta["recall_at_10"]`` is its recall@10
    against the exact index on up to 1,000 gallery vectors used as queries.
    """
    if index_type not in {"flat", "ivfpq"}:
        raise ValueError(f"index_type must be flat or ivfpq, got {index_type!r}")
    feats = _features(gallery_feats, "gallery_feats").cpu()
    if len(records) != feats.shape[0]:
        raise ValueError(f"{len(records)} gallery records but {feats.shape[0]} feature rows; they must align")
    if feats.shape[0] == 0:
        raise ValueError("cannot index an empty gallery")
    if normalize:
        feats = _l2_normalize(feats)
    vectors = np.ascontiguousarray(feats.numpy())
    num_items, dim = vectors.shape
    faiss = _faiss()
    meta = {"format": META_FORMAT, "index_type": index_type, "normalized": bool(normalize),
            "metric": "inner_product" if normalize else "l2", "feature_dim": dim, "num_items": num_items,
            "feature_kind": feature_kind, "model_id": model_id, "config_hash": config_hash,
            "faiss_version": faiss.__version__, "recall_at_10": None,
            "paths": [str(r.path) for r in records], "pids": [int(r.pid) for r in records],
            "camids": [int(r.camid) for r in records]}
    if index_type == "flat":
        index = _flat_index(faiss, dim, normalize)
        index.add(vectors)
    else:
        params = dict(_ivfpq_params(num_items, dim), **(ivfpq_params or {}))
        if dim % params["m"]:
            raise ValueError(f"ivfpq m={params['m']} must divide the feature dim {dim}")
        metric = faiss.METRIC_INNER_PRODUCT if normalize else faiss.METRIC_L2
        quantizer = _flat_index(faiss, dim, normalize)
        index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"], params["nbits"], metric)
        index.train(vectors)
        index.add(vectors)
        index.nprobe = params["nprobe"]
        meta["ivfpq"] = params
        meta["recall_at_10"] = _recall_at_10(faiss, index, vectors, normalize)
    return GalleryIndex(index, meta)


def check_built_with(meta: dict, meta_path, *, config_hash: str | None = None, model_id: str | None = None) -> None:
    """Raise ``IndexLoadError`` naming ``meta_path`` when the index metadata ``meta`` was built with another
    config hash or model id than the given ones (None = not checked)."""
    for key, expected in (("config_hash", config_hash), ("model_id", model_id)):
        if expected is not None and meta.get(key) != expected:
            raise IndexLoadError(f"{meta_path} was built with {key}={meta.get(key)!r} but the caller has "
                                 f"{key}={expected!r}: the index belongs to another model/config; rebuild it")


def load_index(index_dir, *, config_hash: str | None = None, model_id: str | None = None,
               use_gpu: bool | None = None) -> GalleryIndex:
    """Load and validate an index saved by ``GalleryIndex.save``.

    ``config_hash`` / ``model_id``: when given, must equal what the index was built with.
    ``use_gpu``: search a flat index on the GPU (default: when faiss-gpu and a GPU are present).
    Raises ``IndexLoadError`` naming the file and the problem (missing file, damaged or mixed-up
    files, other model/config, inconsistent metadata).
    """
    folder = Path(index_dir)
    index_path, meta_path = folder / INDEX_FILE, folder / META_FILE
    for path in (meta_path, index_path):
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing; build the index first (`python query.py index ...`) "
                                 f"or point to the folder that holds {INDEX_FILE} and {META_FILE}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IndexLoadError(f"{meta_path} is not readable JSON ({err}); rebuild the index with "
                             "`python query.py index ...`") from err
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise IndexLoadError(f"{meta_path} is not a {META_FORMAT} metadata file (format="
                             f"{meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r})")
    check_built_with(meta, meta_path, config_hash=config_hash, model_id=model_id)
    if sha256_file(index_path) != meta.get("index_sha256"):
        raise IndexLoadError(f"{index_path} does not match the checksum in {meta_path} (an interrupted or "
                             "mixed-up save?); rebuild the index")
    faiss = _faiss()
    index = faiss.read_index(str(index_path))
    num = meta.get("num_items")
    if index.ntotal != num or index.d != meta.get("feature_dim") or not all(
            len(meta.get(k, ())) == num for k in ("paths", "pids", "camids")):
        raise IndexLoadError(f"{meta_path} describes {num} items of dim {meta.get('feature_dim')} but "
                             f"{index_path} holds {index.ntotal} of dim {index.d} (or the tables differ in length)")
    if use_gpu is None:
        use_gpu = torch.cuda.is_available() and _faiss_has_gpu(faiss)
    loaded = GalleryIndex(index, meta)
    return loaded.to_gpu() if use_gpu and meta["index_type"] == "flat" else loaded
