"""The two gallery stores on real features: FAISS flat and Milvus Lite FLAT give the same top-10 and the same mAP.

    nice -n 10 python bench/gallery_stores.py --weights RUN/last.pth --root DATA_ROOT [--dataset cuhk03]
                                              [--depth 100] [--features CACHE.npz] [--tiny] [KEY VALUE ...]

The checkpoint's model embeds the dataset's query and gallery images as bench/gallery_map.py does (same
``--features`` cache). Both stores index the gallery exactly (``pfd.retrieval.build_index`` flat; a
``MilvusGallery`` of kind flat in a temporary Milvus Lite folder) and rank it for every query down to
``--depth`` images (Milvus's limit is 16,384; images below the depth are ranked last, the same way for
both). One JSON line: the share of queries whose top-10 ids agree in order, the largest top-10
distance difference, mAP and Rank-1 (Market-1501 protocol, pfd.retrieval.evaluate) through each store
and their differences, and the seconds each store took to build and to rank.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402
from bench.gallery_map import embed_dataset, ranked_distances  # noqa: E402
from pfd.retrieval import build_index, evaluate  # noqa: E402
from pfd.retrieval.milvus_store import MilvusGallery  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--root", required=True, help="DATASETS.ROOT_DIR holding the dataset")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--depth", type=int, default=100, help="images ranked per query (the rest come last)")
    parser.add_argument("--features", help="npz cache of the embedded features (shared with gallery_map.py)")
    parser.add_argument("--tiny", action="store_true", help="CI size: 20 queries, 120 gallery images")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    args = parser.parse_args()
    args.distractors = []
    import faiss
    faiss.omp_set_num_threads(1)
    qf, gf, query, gallery = embed_dataset(args)
    depth = min(args.depth, len(gallery))
    ids = [np.asarray([getattr(r, key) for r in records]) for records, key in
           ((query, "pid"), (gallery, "pid"), (query, "camid"), (gallery, "camid"))]
    seconds, ranked, top = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="pfd_gallery_stores_") as workdir:
        t = time.perf_counter()
        faiss_index = build_index(gf, gallery)
        seconds["faiss_build_s"] = time.perf_counter() - t
        t = time.perf_counter()
        lite, _ = MilvusGallery.create(f"milvus:{Path(workdir) / 'gallery.db'}", "flat", gf.shape[1], len(gf), True)
        lite.add(gf, gallery, [None] * len(gallery))
        lite.flush()
        seconds["milvus_lite_build_s"] = time.perf_counter() - t
        for name, store in (("faiss", faiss_index), ("milvus_lite", lite)):
            t = time.perf_counter()
            top[name] = store.search(qf, 10)
            distances = ranked_distances(_Depth(store, depth), qf, len(gallery))
            seconds[f"{name}_rank_s"] = time.perf_counter() - t
            ranked[name] = evaluate(distances, *ids)
        lite.close()
    (d_faiss, r_faiss), (d_lite, r_lite) = top["faiss"], top["milvus_lite"]
    record = {"bench": "gallery_stores", "num_query": len(query), "num_gallery": len(gallery), "dim": int(gf.shape[1]),
              "depth": depth, "top10_ids_equal": round(float((r_faiss == r_lite).all(1).mean()), 4),
              "top10_max_distance_diff": float(np.abs(d_faiss - d_lite).max())}
    for name, metrics in ranked.items():
        record[f"{name}_mAP"] = round(100 * metrics["mAP"], 4)
        record[f"{name}_rank1"] = round(100 * float(metrics["cmc"][0]), 4)
    record["mAP_diff"] = round(record["milvus_lite_mAP"] - record["faiss_mAP"], 6)
    record["rank1_diff"] = round(record["milvus_lite_rank1"] - record["faiss_rank1"], 6)
    emit({**record, **{key: round(value, 2) for key, value in seconds.items()}})


class _Depth:
    """A store whose searches stop at `depth` images (what ranked_distances asks for is cut to it)."""

    def __init__(self, store, depth: int):
        self.store, self.depth = store, depth

    def search(self, queries, k: int):
        return self.store.search(queries, min(k, self.depth))


if __name__ == "__main__":
    main()
