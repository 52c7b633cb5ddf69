"""What each index kind costs in retrieval quality on real features: mAP and Rank-1 against exact search.

    nice -n 10 python bench/gallery_map.py --weights RUN/last.pth --root DATA_ROOT [--dataset synthetic]
                                           [--kinds flat flat-fp16 ivfpq pca+ivfpq opq+ivfpq] [--seeds 0 1 2]
                                           [--distractors cuhk03 cuhk01] [--features CACHE.npz] [--tiny]

The checkpoint's model (its stored config; ``opts`` override) embeds the dataset's query and gallery
images once (``pfd.ReIDModel.embed``, as ``query.py`` does; cached in ``--features``). Each kind then
indexes the gallery (``pfd.retrieval.build_index``, its default parameters, training sample drawn
with each ``--seeds`` value) and ranks the whole gallery for every query; gallery images an
approximate index does not return are ranked last. mAP and Rank-1 follow the Market-1501 protocol
(pfd.retrieval.evaluate, no re-ranking) and are compared with exact search (``flat``) on the same
features. One JSON line per kind: mean and spread over the seeds, index bytes per image and their
ratio to raw float32 features (at this size the trained tables weigh in), and the per-image code + id
bytes (what grows with the gallery) with their ratio.

``--distractors NAME ...`` adds the training images of these datasets (under ``--root``) to the
gallery as identities no query has (pids offset out of the test range): a small test gallery (CUHK03:
738 images) trains an IVF-PQ index on too few points to say what compression costs in a big one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402
from pfd.retrieval import INDEX_KINDS, build_index, evaluate  # noqa: E402


def embed_dataset(args):
    """(query feats, gallery feats, query records, gallery records), from the cache when it exists."""
    from pfd.api import ReIDModel
    from pfd.data.datasets import build_dataset
    model = ReIDModel.from_checkpoint(args.weights, device="cpu", opts=args.opts)
    data = build_dataset(args.dataset, args.root)
    query, gallery = data.query, list(data.gallery)
    for i, name in enumerate(args.distractors, start=1):  # identities no query has: pids offset by i * 10**6
        gallery += [r._replace(pid=i * 10 ** 6 + r.pid) for r in build_dataset(name, args.root).train]
    if args.tiny:
        query, gallery = query[:20], gallery[:120]
    cache = Path(args.features) if args.features else None
    if cache is not None and cache.is_file():
        saved = np.load(cache)
        if (len(saved["query"]), len(saved["gallery"])) != (len(query), len(gallery)):
            raise SystemExit(f"{cache} holds {len(saved['query'])} query and {len(saved['gallery'])} gallery "
                             f"features, this run has {len(query)} and {len(gallery)}: another --features path")
        return saved["query"], saved["gallery"], query, gallery
    qf = model.embed([r.path for r in query], camids=[r.camid for r in query])
    gf = model.embed([r.path for r in gallery], camids=[r.camid for r in gallery])
    if cache is not None:
        np.savez(cache, query=qf, gallery=gf)
    return qf, gf, query, gallery


def ranked_distances(index, qf: np.ndarray, num_gallery: int) -> np.ndarray:
    """[Q, G] distances from a full-length search; images the index does not return come last."""
    dist, rows = index.search(qf, num_gallery)
    out = np.full((len(qf), num_gallery), 1e6, np.float32)
    found = rows >= 0
    out[np.nonzero(found)[0], rows[found]] = dist[found]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--root", required=True, help="DATASETS.ROOT_DIR holding the dataset")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--kinds", nargs="+", default=list(INDEX_KINDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--distractors", nargs="*", default=[], metavar="NAME",
                        help="datasets whose training images join the gallery as distractors")
    parser.add_argument("--features", help="npz cache of the embedded features")
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads")
    parser.add_argument("--param", nargs="*", default=[], metavar="KEY=INT",
                        help="index_params overrides, e.g. nbits=8 (the code size of a big gallery)")
    parser.add_argument("--tiny", action="store_true", help="CI size: 20 queries, 120 gallery images")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    args = parser.parse_args()
    import faiss
    faiss.omp_set_num_threads(args.threads)
    qf, gf, query, gallery = embed_dataset(args)
    ids = [np.asarray([getattr(r, key) for r in records]) for records, key in
           ((query, "pid"), (gallery, "pid"), (query, "camid"), (gallery, "camid"))]
    exact = None
    for kind in args.kinds:
        runs = []
        for seed in args.seeds if kind != "flat" else args.seeds[:1]:  # exact search has nothing random
            overrides = {key: int(value) for key, value in (p.split("=", 1) for p in args.param)}
            index = build_index(gf, gallery, index_type=kind, seed=seed, ivfpq_params=overrides)
            metrics = evaluate(ranked_distances(index, qf, len(gallery)), *ids)
            ivf = faiss.try_extract_index_ivf(index.index)
            codes = ivf.code_size if ivf is not None else faiss.downcast_index(index.index.index).code_size
            runs.append((100 * metrics["mAP"], 100 * float(metrics["cmc"][0]),
                         len(faiss.serialize_index(index.index)) / len(gallery), codes + 8))
        runs = np.asarray(runs)
        record = {"bench": "gallery_map", "kind": kind, "factory": index.meta["factory"], "seeds": len(runs),
                  "params": index.meta["params"],
                  "num_query": len(query), "num_gallery": len(gallery), "distractors": args.distractors,
                  "dim": int(gf.shape[1]),
                  "mAP": round(float(runs[:, 0].mean()), 2), "mAP_std": round(float(runs[:, 0].std()), 2),
                  "rank1": round(float(runs[:, 1].mean()), 2), "rank1_std": round(float(runs[:, 1].std()), 2),
                  "index_bytes_per_image": round(float(runs[:, 2].mean()), 1),
                  "memory_vs_raw": round(float(runs[:, 2].mean()) / (4 * gf.shape[1]), 4),
                  "code_bytes_per_image": int(runs[0, 3]),  # per-image code + 8-byte id: what grows with N
                  "code_vs_raw": round(float(runs[0, 3]) / (4 * gf.shape[1]), 5)}
        if kind == "flat":
            exact = record
        if exact is not None:
            record["mAP_minus_exact"] = round(record["mAP"] - exact["mAP"], 2)
            record["rank1_minus_exact"] = round(record["rank1"] - exact["rank1"], 2)
        emit(record)


if __name__ == "__main__":
    main()
