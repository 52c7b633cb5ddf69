"""A gallery index at scale: build seconds, peak memory, bytes per image, query latency and recall@10.

    nice -n 10 python bench/gallery_scale.py --size 100000 [--dim 6912] [--kind pca+ivfpq] [--queries 1000]
                                             [--images-per-id 4] [--chunk 4096] [--threads 1] [--seed 0] [--tiny]

Features are synthetic but clustered like re-ID features (uniform random vectors have no neighbours
worth finding): identity centres c ~ N(0, I_L) in an L-value latent space (``--latent``, default 256:
ViT features are far from full rank), an image = (c + 0.5 e) B + 0.3 n with e ~ N(0, I_L), a fixed
random map B [L, dim] and isotropic noise n ~ N(0, I_dim); ``--images-per-id`` images per identity.
They are generated chunk by chunk from the seed (never all in memory) and fed to
``pfd.retrieval.IndexBuilder`` exactly as ``Gallery.build`` feeds it: train on the first
``train_rows`` (identities are independent draws, so the first rows are a random sample), then add
in chunks. The exact top-10 of the ``--queries`` queries (new images of random identities) is
tracked over the same stream by brute force, so the recall@10 is against exact search on the same
normalized features. One size per process (so the peak RSS is that size's); one JSON line:
build_s = train_s + add_s (FAISS only, wall; generation and the exact search are timed apart;
build_cpu_s: the process's CPU seconds for the same, the figure to read on a shared machine),
peak_rss_gib (the process), index_bytes_per_image (the serialized index), search latency of one
query and of a batch of 100 (median and 95th percentile, ms), recall_at_10.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402
from pfd.retrieval.gallery_index import ExactTopK, IndexBuilder  # noqa: E402

SPREAD, RESIDUAL = 0.5, 0.3  # within-identity spread (latent), isotropic residual (per value)


class Stream:
    """The synthetic gallery, chunk by chunk, regenerated identically from the seed."""

    def __init__(self, size: int, dim: int, latent: int, per_id: int, chunk: int, seed: int):
        self.size, self.dim, self.latent, self.per_id, self.chunk, self.seed = size, dim, latent, per_id, chunk, seed
        if chunk % per_id:
            raise ValueError("--chunk must be a multiple of --images-per-id")
        rng = np.random.default_rng([seed, 0])
        self.basis = (rng.standard_normal((latent, dim), np.float32) / np.sqrt(latent)).astype(np.float32)
        self.gen_s = self.gen_cpu_s = 0.0

    def centres(self, c: int) -> np.ndarray:
        """Latent centres [chunk / per_id, L] of chunk c's identities."""
        return np.random.default_rng([self.seed, 1, c]).standard_normal((self.chunk // self.per_id, self.latent),
                                                                        np.float32)

    def _images(self, centres: np.ndarray, rng) -> np.ndarray:
        latent = centres + SPREAD * rng.standard_normal(centres.shape, np.float32)
        return latent @ self.basis + RESIDUAL * rng.standard_normal((len(centres), self.dim), np.float32)

    def chunks(self, limit: int | None = None):
        """(first row, features [n, dim]) of rows [0, limit)."""
        limit = self.size if limit is None else min(limit, self.size)
        for c, start in enumerate(range(0, limit, self.chunk)):
            t, cpu = time.perf_counter(), time.process_time()
            centres = np.repeat(self.centres(c), self.per_id, axis=0)[:limit - start]
            feats = self._images(centres, np.random.default_rng([self.seed, 2, c]))
            self.gen_s += time.perf_counter() - t
            self.gen_cpu_s += time.process_time() - cpu
            yield start, feats

    def queries(self, num: int) -> np.ndarray:
        """New images [num, dim] of random gallery identities."""
        rng = np.random.default_rng([self.seed, 3])
        rows = rng.integers(0, self.size, num)
        centres = np.stack([self.centres(r // self.chunk)[(r % self.chunk) // self.per_id] for r in rows])
        return self._images(centres, rng)


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return round(float(np.median(ms)), 3), round(float(np.percentile(ms, 95)), 3)


def latency(index, queries: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    times = []
    for i in range(repeats):
        q = queries[(i * batch) % len(queries):][:batch]
        t = time.perf_counter()
        index.search(q, 10)
        times.append(time.perf_counter() - t)
    return percentiles_ms(times)


def run(args) -> dict:
    import faiss
    faiss.omp_set_num_threads(args.threads)
    stream = Stream(args.size, args.dim, args.latent, args.images_per_id, args.chunk, args.seed)
    queries = stream.queries(args.queries)
    builder = IndexBuilder(args.kind, args.dim, args.size, normalize=True)
    queries = np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True))
    truth = ExactTopK(queries, 10, normalize=True)

    t, cpu = time.perf_counter(), time.process_time()
    gen_before, gen_cpu_before = stream.gen_s, stream.gen_cpu_s
    train_rows = 0
    if builder.needs_training:
        train_rows = builder.train(f for _, f in stream.chunks(builder.params["train_rows"]))
    train_s = time.perf_counter() - t - (stream.gen_s - gen_before)
    train_cpu_s = time.process_time() - cpu - (stream.gen_cpu_s - gen_cpu_before)
    add_s = add_cpu_s = exact_s = 0.0
    for start, feats in stream.chunks():
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        ids = np.arange(start, start + len(feats))
        t, cpu = time.perf_counter(), time.process_time()
        builder.add(feats, ids)
        add_s += time.perf_counter() - t
        add_cpu_s += time.process_time() - cpu
        t = time.perf_counter()
        truth.update(feats, ids)
        exact_s += time.perf_counter() - t
    index = builder.index
    single = latency(index, queries, 1, args.single_repeats)
    batch = latency(index, queries, 100, args.batch_repeats)
    return {
        "bench": "gallery_scale", "size": args.size, "dim": args.dim, "kind": args.kind, "factory": builder.factory,
        "params": builder.params, "train_rows": train_rows, "threads": args.threads, "tiny": args.tiny,
        "latent": args.latent, "images_per_id": args.images_per_id, "queries": args.queries,
        "build_s": round(train_s + add_s, 2), "train_s": round(train_s, 2), "add_s": round(add_s, 2),
        "build_cpu_s": round(train_cpu_s + add_cpu_s, 2),
        "generate_s": round(stream.gen_s, 2), "exact_search_s": round(exact_s, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3),
        "index_bytes_per_image": round(len(faiss.serialize_index(index)) / args.size, 1),
        "raw_bytes_per_image": 4 * args.dim,
        "one_query_ms_median": single[0], "one_query_ms_p95": single[1],
        "batch100_ms_median": batch[0], "batch100_ms_p95": batch[1],
        "recall_at_10": round(truth.recall(index), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=6912)
    parser.add_argument("--kind", default="pca+ivfpq", help="an index kind of pfd.retrieval.INDEX_KINDS")
    parser.add_argument("--latent", type=int, default=256)
    parser.add_argument("--images-per-id", type=int, default=4)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads")
    parser.add_argument("--single-repeats", type=int, default=200)
    parser.add_argument("--batch-repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="CI size: 3,000 images of 64 values, 100 queries")
    args = parser.parse_args()
    if args.tiny:
        args.size, args.dim, args.latent, args.queries, args.chunk = 3000, 64, 16, 100, 512
        args.single_repeats, args.batch_repeats = 20, 3
    emit(run(args))


if __name__ == "__main__":
    main()
