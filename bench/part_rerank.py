"""A gallery search re-ranked by the visible-part distance against the exact ranking by it.

    nice -n 10 python bench/part_rerank.py --weights RUN/last.pth --root DATA_ROOT [--dataset cuhk03]
                                           [--tops 10 30 100 300] [--features CACHE.npz] [--tiny] [KEY VALUE ...]

The checkpoint (a PFD with part blocks, MODEL.PART_POOL pose) embeds the dataset's query and gallery images
as bench/gallery_map.py does (same ``--features`` cache); TEST.PART_DISTANCE visible is set. The gallery
goes into a FAISS flat index and each query is searched through ``pfd.Gallery.search`` with
TEST.PART_RERANK_TOP = each of ``--tops``: the whole feature's nearest, re-ranked by the visible-part
distance. The exact ranking is that distance over the whole gallery (what evaluation ranks by). One JSON
line: per depth, the share of queries whose top-10 equals the exact top-10 in order, the mean recall of the
exact top-10 in the re-ranked top-10, and the milliseconds per query; and the same for the whole feature's
own ranking (what a search without the re-ranking returns).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402
from bench.gallery_map import embed_dataset  # noqa: E402
from pfd.api import Gallery, ReIDModel  # noqa: E402
from pfd.retrieval import build_index  # noqa: E402
from pfd.retrieval.part_distance import visible_part_distance  # noqa: E402

TOP = 10  # the ranks compared


def agreement(rows: np.ndarray, exact: np.ndarray) -> dict:
    """rows, exact [Q, TOP] gallery rows: share identical in order, mean recall of `exact` in `rows`."""
    same = float((rows == exact).all(1).mean())
    recall = float(np.mean([len(set(r) & set(e)) / TOP for r, e in zip(rows.tolist(), exact.tolist())]))
    return {"same_top10": round(same, 4), "recall_at_10": round(recall, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--root", required=True, help="DATASETS.ROOT_DIR holding the dataset")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--tops", nargs="+", type=int, default=[10, 30, 100, 300], help="TEST.PART_RERANK_TOP values")
    parser.add_argument("--features", help="npz cache of the embedded features (shared with gallery_map.py)")
    parser.add_argument("--tiny", action="store_true", help="CI size: 20 queries, 120 gallery images")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    args = parser.parse_args()
    args.opts, args.distractors = [*args.opts, "TEST.PART_DISTANCE", "visible"], []
    import faiss
    faiss.omp_set_num_threads(1)
    qf, gf, query, gallery = embed_dataset(args)
    model = ReIDModel.from_checkpoint(args.weights, device="cpu", opts=args.opts)
    if model.part_layout is None:
        raise SystemExit(f"{args.weights}: its feature has no part blocks to compare (MODEL.PART_POOL pose is needed)")
    top = min(TOP, len(gallery))
    index = build_index(gf, gallery)
    exact = visible_part_distance(torch.from_numpy(qf), torch.nn.functional.normalize(torch.from_numpy(gf), dim=1),
                                  model.part_layout)  # [Q, G]
    exact_rows = exact.argsort(dim=1, stable=True)[:, :top].numpy()
    result = {"tiny": args.tiny, "queries": len(query), "gallery": len(gallery),
              "whole_feature": agreement(index.search(qf, top)[1], exact_rows)}
    searcher = Gallery(index, model)
    model.cfg.defrost()
    for depth in args.tops:
        model.cfg.TEST.PART_RERANK_TOP = depth
        t = time.perf_counter()
        rows = np.asarray([[m.index for m in searcher.search(q, k=top)] for q in qf])
        seconds = time.perf_counter() - t
        result[f"rerank_{depth}"] = {**agreement(rows, exact_rows), "ms_per_query": round(1000 * seconds / len(qf), 2)}
    emit(result)


if __name__ == "__main__":
    main()
