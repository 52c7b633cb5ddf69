"""A gallery's FAISS index: kinds chosen by name, a streaming build in bounded memory, adds and removals.

Kinds (``INDEX_KINDS``, each a ``faiss.index_factory`` string; parameters from ``index_params``):
``flat`` exact; ``flat-fp16`` exact up to float16 rounding, half the memory; ``ivfpq`` the coarse
quantizer + product quantizer on the full feature (the original compressed kind); ``pca+ivfpq`` and
``opq+ivfpq`` first reduce the feature to ``d_out`` values (PCA, or OPQ's learned rotation), which
is what makes a million 6,912-value features fit in a few hundred MB and search in milliseconds.

Rows and ids: every vector is added with an explicit id, its row in the metadata tables (``paths``,
``pids``, ``camids``, ``sha256``, ``times``: seconds since the epoch or None, ``keypoints``: the pose the
feature was made from, pfd.retrieval.stores.encode_keypoints, or None), which only grow. Removing an
image blanks its row (path None) and removes its vector with FAISS ``remove_ids``; an index that cannot
remove vectors (e.g. HNSW from a ``factory:`` string) keeps the vector and lists the id in
``meta["tombstones"]``, which ``search`` filters out, so a removed image is never returned. A filtered
search (``where``, a pfd.retrieval.stores.SearchFilter) fetches more and filters until each query has k
allowed images or none is left: with every list probed, when the IVF lists of ``nprobe`` run out.

Streaming build (``IndexBuilder``): ``train(chunks)`` takes a sample (``train_rows``, default what
FAISS recommends: 64 points per coarse list and per PQ code, within ``MAX_TRAIN_BYTES``); a
dimension-reducing stage trains first on ``transform_rows`` of it, and the rest of the sample is
kept only after reduction. ``add(vectors, ids)`` then takes chunks; nothing holds all features.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from .index import _faiss, _faiss_has_gpu, _features, _l2_normalize, _to_distance
from .stores import Hit, SearchFilter, decode_keypoints, encode_keypoints, plan_additions

__all__ = ["INDEX_KINDS", "WHOLE_KINDS", "ExactTopK", "IndexBuilder", "GalleryIndex", "build_index", "index_params",
           "META_FORMAT"]

META_FORMAT = "pfd-index-v2"
INDEX_KINDS = {
    "flat": "Flat",
    "flat-fp16": "SQfp16",
    "ivfpq": "IVF{nlist},PQ{m}x{nbits}",
    "pca+ivfpq": "PCA{d_out},{renorm}IVF{nlist},PQ{m}x{nbits}",
    "opq+ivfpq": "OPQ{m}_{d_out},IVF{nlist},PQ{m}x{nbits}",
}
WHOLE_KINDS = ("flat", "flat-fp16")  # kinds that keep each vector whole (up to fp16 rounding): `vectors` reads them
FACTORY_PREFIX = "factory:"  # any other faiss.index_factory string, e.g. "factory:HNSW32"
D_OUT = 256  # values kept by the dimension-reducing kinds
RENORM = "L2norm,"  # after a PCA, when the gallery ranks by cosine (factory_string)
MAX_TRAIN_BYTES = 1 << 30  # cap of the training sample held in memory (after any reduction)


def _check_kind(kind: str) -> None:
    if kind not in INDEX_KINDS and not kind.startswith(FACTORY_PREFIX):
        raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)} or '{FACTORY_PREFIX}<faiss "
                         f"index_factory string>', got {kind!r}")


def index_params(kind: str, num_items: int, dim: int, overrides: dict | None = None) -> dict:
    """Factory parameters of ``kind`` for a gallery of about ``num_items`` features of ``dim`` values.

    nlist ~ 4 sqrt(N) with >= 39 training points per list; d_out = min(256, dim) for the reducing kinds
    (a power of two no larger than N below 256 items); m = the largest divisor of d_out <= min(64, d_out/4)
    (64-byte codes); nbits = 8 from N >= 39 * 256 on, fewer below; nprobe = nlist / 8 (>= 8) lists per search.
    ``train_rows`` / ``transform_rows``: sample sizes of ``IndexBuilder.train``.
    """
    _check_kind(kind)
    num_items = max(1, num_items)
    reduce = kind in ("pca+ivfpq", "opq+ivfpq")
    d_out = min(D_OUT, dim, 2 ** int(math.log2(num_items))) if reduce else dim
    nlist = max(1, min(int(4 * math.sqrt(num_items)), num_items // 39))
    cap = max(1, min(64, d_out // 4))
    m = max(d for d in range(1, cap + 1) if d_out % d == 0)
    nbits = min(8, max(4, int(math.log2(max(1, num_items // 39)))), int(math.log2(max(2, num_items))))
    params = {"nlist": nlist, "m": m, "nbits": nbits, "nprobe": min(nlist, max(8, nlist // 8)), "d_out": d_out}
    params.update(overrides or {})
    # FAISS's advice: 39..256 training points per centroid; 64 of them per list and per PQ code, in memory budget.
    budget = MAX_TRAIN_BYTES // (4 * params["d_out"])
    params.setdefault("train_rows", min(num_items, budget, max(64 * params["nlist"], 64 * 2 ** params["nbits"])))
    # PCA on n < d rows is an O(n^3) eigendecomposition; OPQ trains its own 256-code PQ on these rows.
    params.setdefault("transform_rows", min(params["train_rows"], max(4 * params["d_out"], 1024)))
    if kind in ("ivfpq", "pca+ivfpq", "opq+ivfpq") and params["d_out"] % params["m"]:
        raise ValueError(f"{kind}: m={params['m']} must divide the {params['d_out']} values it codes")
    return params


def factory_string(kind: str, params: dict, normalize: bool = True) -> str:
    """The faiss.index_factory string of ``kind``. PCA centres the features, so the inner product of two
    reduced features is no longer their cosine: with normalized features (cosine ranking) the PCA output
    is normalized again (``L2norm``), which on real features halved the mAP pca+ivfpq loses to exact
    search (docs/PERFORMANCE.md)."""
    if kind.startswith(FACTORY_PREFIX):
        return kind[len(FACTORY_PREFIX):]
    return INDEX_KINDS[kind].format(**params, renorm=RENORM if normalize else "")


def _as_vectors(x, normalize: bool) -> np.ndarray:
    """[n, F] float32 C-contiguous numpy, L2-normalized when ``normalize``."""
    t = _features(x, "features").cpu()
    return np.ascontiguousarray((_l2_normalize(t) if normalize else t).numpy())


class ExactTopK:
    """Exact top-k of some probe vectors over a stream of (vectors, ids) chunks: ground truth for recall."""

    def __init__(self, probes: np.ndarray, k: int, normalize: bool):
        self.probes, self.k, self.normalize = probes, k, normalize
        self.scores = np.full((len(probes), k), -np.inf, np.float32)  # higher = nearer
        self.ids = np.full((len(probes), k), -1, np.int64)

    def update(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        scores = self.probes @ vectors.T  # [P, n]
        if not self.normalize:
            scores = 2 * scores - (vectors * vectors).sum(1)[None, :]  # -|v|^2 + 2 p.v: order of -|p - v|^2
        scores = np.concatenate([self.scores, scores], 1)
        ids = np.concatenate([self.ids, np.broadcast_to(ids, (len(self.probes), len(ids)))], 1)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :self.k]
        self.scores, self.ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)

    def recall(self, index) -> float:
        """Mean |top-k(index) & exact top-k| / k."""
        _, found = index.search(self.probes, self.k)
        return float((found[:, :, None] == self.ids[:, None, :]).any(-1).mean())


class IndexBuilder:
    """Builds a FAISS index of ``kind`` chunk by chunk: ``train(chunks)`` (kinds that learn), then ``add``."""

    def __init__(self, kind: str, dim: int, num_items: int, normalize: bool = True, params: dict | None = None,
                 recall_probes: np.ndarray | None = None):
        faiss = _faiss()
        self.kind, self.dim, self.normalize = kind, dim, normalize
        self.params = index_params(kind, num_items, dim, params)
        self.factory = factory_string(kind, self.params, normalize)
        metric = faiss.METRIC_INNER_PRODUCT if normalize else faiss.METRIC_L2
        index = faiss.index_factory(dim, self.factory, metric)
        ivf = faiss.try_extract_index_ivf(index)  # the base IndexIVF class: downcast for IndexIVFPQ's fields
        if ivf is not None:
            ivf = faiss.downcast_index(ivf)
            ivf.nprobe = self.params["nprobe"]
            ivf.cp.seed = self.params.get("seed", ivf.cp.seed)  # k-means initialization (FAISS default 1234)
            if isinstance(ivf, faiss.IndexIVFPQ):
                ivf.pq.cp.seed = self.params.get("seed", ivf.pq.cp.seed)
                # Polysemous training only reorders the PQ centroids for a Hamming pre-filter (polysemous_ht),
                # which no search here sets: the rankings are the same, training 2-40x faster without it.
                ivf.do_polysemous_training = False
        self.index = index if ivf is not None else faiss.IndexIDMap(index)  # ids = metadata rows
        self.num_items, self.recall_probes, self._truth = num_items, None, None
        if recall_probes is not None:
            self.track_recall(recall_probes)

    def track_recall(self, probes) -> None:
        """Measure recall@10 against exact search for these query features (before the first ``add``)."""
        if self.index.ntotal:
            raise RuntimeError("IndexBuilder.track_recall after vectors were added")
        self.recall_probes = _as_vectors(probes, self.normalize)
        self._truth = ExactTopK(self.recall_probes, min(10, self.num_items), self.normalize)

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, chunks: Iterable) -> int:
        """Train on the first ``train_rows`` rows of ``chunks`` (a representative sample: the caller
        shuffles); a reducing transform first learns from ``transform_rows`` of them. Returns rows used."""
        if not self.needs_training:
            return 0
        faiss = _faiss()
        index, want = self.index, self.params["train_rows"]
        transforms = []
        if isinstance(index, faiss.IndexPreTransform):
            transforms = [index.chain.at(i) for i in range(index.chain.size())]
        pending, kept, used = [], [], 0  # raw rows waiting for the transforms; rows ready for the index
        for chunk in chunks:
            rows = _as_vectors(chunk, self.normalize)[:want - used]
            used += len(rows)
            if not all(vt.is_trained for vt in transforms):  # e.g. PCA, then an L2norm that needs no training
                pending.append(rows)
                if used < min(want, self.params["transform_rows"]):
                    continue
                kept.append(self._fit_transforms(transforms, np.concatenate(pending)))
                pending, rows = [], None
            if rows is not None:
                kept.append(self._reduce(rows, transforms))
            if used >= want:
                break
        if pending:  # fewer rows than transform_rows: train the transforms on what there is
            kept.append(self._fit_transforms(transforms, np.concatenate(pending)))
        if used == 0:
            raise ValueError("no training vectors given")
        sample = np.ascontiguousarray(np.concatenate(kept))
        inner = faiss.downcast_index(index.index) if transforms else index
        inner.train(sample)
        index.is_trained = True
        return used

    def _fit_transforms(self, transforms, sample: np.ndarray) -> np.ndarray:
        """Train the chain on the first ``transform_rows`` of ``sample`` (each on the previous one's output);
        returns the whole sample reduced."""
        fit = sample[:self.params["transform_rows"]]
        for vt in transforms:
            vt.train(fit)
            fit = vt.apply(fit)
        return self._reduce(sample, transforms)

    @staticmethod
    def _reduce(rows: np.ndarray, transforms) -> np.ndarray:
        for vt in transforms:
            rows = vt.apply(rows)
        return rows

    def add(self, vectors, ids: Sequence[int]) -> None:
        """Add features [n, F] under ``ids`` (metadata rows)."""
        if self.needs_training:
            raise RuntimeError("IndexBuilder.add before train: this kind learns from a sample first")
        vecs, ids = _as_vectors(vectors, self.normalize), np.asarray(ids, np.int64)
        self.index.add_with_ids(vecs, ids)
        if self._truth is not None:
            self._truth.update(vecs, ids)

    def recall_at_10(self) -> float | None:
        return None if self._truth is None else self._truth.recall(self.index)


def _empty_meta(kind: str, builder: IndexBuilder, dim: int, normalize: bool, **ids) -> dict:
    faiss = _faiss()
    return {"format": META_FORMAT, "index_type": kind, "factory": builder.factory, "params": builder.params,
            "normalized": bool(normalize), "metric": "inner_product" if normalize else "l2", "feature_dim": dim,
            "num_items": 0, "faiss_version": faiss.__version__, "recall_at_10": None,
            "paths": [], "pids": [], "camids": [], "sha256": [], "times": [], "keypoints": [], "tombstones": [],
            **ids}


def check_row_extras(num: int, times, keypoints) -> tuple[list, list]:
    """(times, encoded keypoints) of `num` new rows, each a list of `num` (None where unknown)."""
    times = [None] * num if times is None else [None if t is None else float(t) for t in times]
    if keypoints is None:
        encoded = [None] * num
    else:
        keypoints = np.asarray(keypoints, np.float32)
        if keypoints.ndim != 3 or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must be [n, K, 3], got shape {list(keypoints.shape)}")
        encoded = [encode_keypoints(k) for k in keypoints]
    if len(times) != num or len(encoded) != num:
        raise ValueError(f"{num} rows but {len(times)} times and {len(encoded)} keypoint rows")
    return times, encoded


class GalleryIndex:
    """A FAISS index over gallery features plus its metadata (``meta`` dict).

    ``search(query_feats, topk) -> (distances [Q, k] float32, rows [Q, k] int64)``: rows index
    ``meta["paths"]``, ``meta["pids"]``, ``meta["camids"]`` (-1 pads lists shorter than k); distances
    follow pfd.retrieval's convention (approximate for the compressed kinds). ``index`` is the CPU
    index; ``to_gpu()`` makes searches run on a faiss-gpu copy of a flat index.
    """

    def __init__(self, index, meta: dict):
        self.index = index
        self.meta = meta
        for key in ("times", "keypoints"):  # tables an index saved before them lacks: unknown for every row
            meta.setdefault(key, [None] * len(meta["paths"]))
        self._search_index = index
        self._gpu_resources = None
        self._columns = None  # (live [R] bool, camids [R], times [R] NaN = none) for filters, until rows change
        self._stored_ids = None  # [n] the ids of the vectors in storage order (`vectors`), until rows change
        self.saved_as = None  # (folder, version) it was last loaded from or saved to (pfd.retrieval.index_folder)

    def __len__(self) -> int:
        return self.meta["num_items"]

    def to_gpu(self) -> "GalleryIndex":
        faiss = _faiss()
        if not _faiss_has_gpu(faiss):
            raise RuntimeError("GalleryIndex.to_gpu needs faiss-gpu and a CUDA device")
        self._gpu_resources = faiss.StandardGpuResources()
        self._search_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.index)
        return self

    def search(self, query_feats, topk: int = 10, where: SearchFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = _features(query_feats, "query_feats").cpu()
        if q.shape[1] != self.meta["feature_dim"]:
            raise ValueError(f"query features have dim {q.shape[1]} but the index holds dim "
                             f"{self.meta['feature_dim']} features ({self.meta.get('feature_kind')!r})")
        q = np.ascontiguousarray((_l2_normalize(q) if self.meta["normalized"] else q).numpy())
        k = max(1, min(topk, len(self)))
        if where is None and not self.meta["tombstones"]:
            scores, rows = self._search_index.search(q, min(k, self.index.ntotal) or 1)
            return _to_distance(scores, self.meta["normalized"]).astype(np.float32), rows.astype(np.int64)
        # Removed images whose vectors the index could not drop, and images the filter excludes: never returned.
        live, camids, times = self._table_columns()
        allowed = live if where is None else live & where.allowed(camids, times)
        return self._filtered_search(q, k, allowed)

    def _table_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._columns is None:
            meta = self.meta
            self._columns = (np.array([p is not None for p in meta["paths"]], bool),
                             np.asarray(meta["camids"], np.int64).reshape(-1),
                             np.array(meta["times"], np.float64).reshape(-1))  # None -> NaN
        return self._columns

    def _filtered_search(self, q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top k of the `allowed` rows [R]: fetch 4x what the share of allowed rows needs on average, 4x more
        each round until every query has k of them (or all there are); when the probed IVF lists run out
        first, search again with every list probed."""
        total, passing = self.index.ntotal, int(allowed.sum())
        want = min(k, passing)
        first = min(total, 4 * k * len(allowed) // max(1, passing) + len(self.meta["tombstones"]))
        fetch, params = first, None
        while True:
            scores, rows = self._search_index.search(q, max(1, fetch), params=params)
            keep = (rows >= 0) & allowed[np.maximum(rows, 0)]
            short = keep.sum(1) < want
            if not short.any():
                break
            if fetch < total and not (rows[short] < 0).any():
                fetch = min(total, 4 * fetch)
            elif params is None and (params := self._probe_every_list()) is not None:
                fetch = first
            else:  # every allowed row the index can return is in
                break
        dist = _to_distance(scores, self.meta["normalized"]).astype(np.float32)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # allowed rows first, in distance order
        rows, dist, keep = (np.take_along_axis(a, order, 1) for a in (rows, dist, keep))
        rows[~keep], dist[~keep] = -1, np.inf
        return dist, rows.astype(np.int64)

    def _probe_every_list(self):
        """FAISS search parameters probing every IVF list (None for an index without lists, or probing all)."""
        faiss = _faiss()
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is None or ivf.nprobe >= ivf.nlist or self._gpu_resources is not None:
            return None
        inner = faiss.SearchParametersIVF()
        inner.nprobe = ivf.nlist
        if not isinstance(self.index, faiss.IndexPreTransform):
            return inner
        outer = faiss.SearchParametersPreTransform()
        outer.index_params = inner
        outer.keep_alive = inner  # SWIG holds a raw pointer to the inner parameters
        return outer

    def find(self, query_feat, k: int, where: SearchFilter | None = None) -> list[Hit]:
        """The k nearest images of one query [1, F] that pass `where`, with their stored fields."""
        dist, rows = self.search(query_feat, k, where)
        meta = self.meta
        return [Hit(r, float(d), meta["paths"][r], meta["pids"][r], meta["camids"][r], meta["sha256"][r],
                    meta["times"][r], decode_keypoints(meta["keypoints"][r]))
                for d, r in zip(dist[0].tolist(), rows[0].tolist()) if r >= 0]

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The indexed vectors [n, F] float32 of these live rows (L2-normalized when the gallery is), for a
        re-ranking that compares them exactly; ValueError for a kind that does not keep them (WHOLE_KINDS)."""
        kind = self.meta["index_type"]
        if kind not in WHOLE_KINDS:
            raise ValueError(f"a {kind!r} index keeps its vectors compressed; re-ranking reads them whole, which "
                             f"only the kinds {', '.join(WHOLE_KINDS)} do")
        faiss = _faiss()
        if self._stored_ids is None:  # IndexIDMap keeps ids in storage order, increasing (rows only grow)
            self._stored_ids = faiss.vector_to_array(self.index.id_map)
        rows = np.asarray(rows, np.int64)
        positions = np.searchsorted(self._stored_ids, rows)
        if (positions >= len(self._stored_ids)).any() or (self._stored_ids[positions] != rows).any():
            raise ValueError(f"rows {rows.tolist()} are not all in the index")
        if not len(rows):
            return np.empty((0, self.meta["feature_dim"]), np.float32)
        return faiss.downcast_index(self.index.index).reconstruct_batch(positions)

    def path_of(self, row: int) -> str | None:
        """The path of gallery image number `row` (None: removed or out of range)."""
        paths = self.meta["paths"]
        return paths[row] if 0 <= row < len(paths) else None

    # ------------------------------------------------------------------ growing and shrinking
    def live_rows(self) -> dict[str, int]:
        """Path -> row of every image in the gallery."""
        return {p: i for i, p in enumerate(self.meta["paths"]) if p is not None}

    def plan_add(self, paths: Sequence[str], sha256s: Sequence[str]) -> tuple[list[int], int, list[str]]:
        """Which of ``paths`` to embed: (their positions, how many are already here with the same
        SHA-256, paths here whose file changed: to remove before adding their new content)."""
        sha = self.meta["sha256"]
        return plan_additions(paths, sha256s, {path: sha[row] for path, row in self.live_rows().items()})

    def add(self, vectors, records: Sequence, sha256s: Sequence[str | None], builder: IndexBuilder | None = None,
            times: Sequence[float | None] | None = None, keypoints: np.ndarray | None = None) -> None:
        """Append features [n, F] of ``records`` (``.path``, ``.pid``, ``.camid``) as new rows, with their
        times (seconds since the epoch or None) and the keypoints [n, 17, 3] they were made from (or None)."""
        vecs = _features(vectors, "features")
        times, keypoints = check_row_extras(len(records), times, keypoints)
        if vecs.shape[0] != len(records) or len(records) != len(sha256s):
            raise ValueError(f"{len(records)} records, {len(sha256s)} checksums but {vecs.shape[0]} feature rows")
        if vecs.shape[1] != self.meta["feature_dim"]:
            raise ValueError(f"features have dim {vecs.shape[1]} but the index holds dim {self.meta['feature_dim']}")
        start = len(self.meta["paths"])
        ids = np.arange(start, start + len(records), dtype=np.int64)
        if builder is not None:
            builder.add(vecs, ids)
        else:
            self.index.add_with_ids(_as_vectors(vecs, self.meta["normalized"]), ids)
        meta = self.meta
        meta["paths"] += [str(r.path) for r in records]
        meta["pids"] += [int(r.pid) for r in records]
        meta["camids"] += [int(r.camid) for r in records]
        meta["sha256"] += list(sha256s)
        meta["times"] += times
        meta["keypoints"] += keypoints
        meta["num_items"] += len(records)
        self._columns = self._stored_ids = None

    def remove(self, paths: Iterable[str]) -> int:
        """Take these images out (FAISS remove_ids, else tombstones); returns how many were here."""
        rows = self.live_rows()
        ids = np.asarray(sorted({rows[p] for p in paths if p in rows}), np.int64)
        if not len(ids):
            return 0
        faiss = _faiss()
        try:
            removed = self.index.remove_ids(faiss.IDSelectorBatch(ids))
        except RuntimeError:  # this index type cannot remove vectors (FAISS says "not implemented")
            removed = 0
        if removed != len(ids):
            self.meta["tombstones"] = sorted(set(self.meta["tombstones"]) | set(ids.tolist()))
        meta = self.meta
        for i in ids.tolist():  # the row stays (ids are rows), its content goes
            meta["paths"][i], meta["pids"][i], meta["camids"][i], meta["sha256"][i] = None, -1, -1, None
            meta["times"][i] = meta["keypoints"][i] = None
        meta["num_items"] -= len(ids)
        self._columns = self._stored_ids = None
        if self._gpu_resources is not None:  # the GPU copy still holds the removed vectors
            self.to_gpu()
        return len(ids)


def build_index(gallery_feats, records: Sequence, *, index_type: str = "flat", model_id: str = "",
                config_hash: str = "", feature_kind: str = "", normalize: bool = True,
                ivfpq_params: dict | None = None, sha256s: Sequence[str | None] | None = None,
                chunk_size: int = 4096, seed: int = 0) -> GalleryIndex:
    """Index gallery features [G, F] already in memory (``Gallery.build`` streams instead).

    records: G records with ``.path``, ``.pid``, ``.camid``, row-aligned; index_type: a kind of
    ``INDEX_KINDS`` (parameters from ``index_params``, ``ivfpq_params`` overrides); model_id /
    config_hash / feature_kind: what ``load_index`` checks. Kinds that learn train on a random sample
    (``seed``, also the k-means seed); for all but flat, ``meta["recall_at_10"]`` is the recall@10
    against exact search on up to 1,000 gallery vectors used as queries.
    """
    feats = _features(gallery_feats, "gallery_feats").cpu()
    if len(records) != feats.shape[0]:
        raise ValueError(f"{len(records)} gallery records but {feats.shape[0]} feature rows; they must align")
    if feats.shape[0] == 0:
        raise ValueError("cannot index an empty gallery")
    num, dim = feats.shape
    order = np.random.default_rng(seed).permutation(num)
    probes = None if index_type == "flat" else feats[np.sort(order[:1000])]
    params = {"seed": seed, **(ivfpq_params or {})}
    builder = IndexBuilder(index_type, dim, num, normalize, params, recall_probes=probes)
    if builder.needs_training:
        sample = order[:builder.params["train_rows"]]
        builder.train(feats[np.sort(sample[s:s + chunk_size])] for s in range(0, len(sample), chunk_size))
    gallery = GalleryIndex(builder.index, _empty_meta(index_type, builder, dim, normalize, model_id=model_id,
                                                     config_hash=config_hash, feature_kind=feature_kind))
    checksums = list(sha256s) if sha256s is not None else [None] * num
    for s in range(0, num, chunk_size):
        gallery.add(feats[s:s + chunk_size], records[s:s + chunk_size], checksums[s:s + chunk_size], builder)
    gallery.meta["recall_at_10"] = builder.recall_at_10()
    return gallery


def new_gallery_index(kind: str, dim: int, num_items: int, normalize: bool, params: dict | None = None,
                      recall_probes=None, **ids) -> tuple[GalleryIndex, IndexBuilder]:
    """An empty ``GalleryIndex`` and the builder that fills it (train first when ``needs_training``)."""
    builder = IndexBuilder(kind, dim, num_items, normalize, params, recall_probes)
    return GalleryIndex(builder.index, _empty_meta(kind, builder, dim, normalize, **ids)), builder
