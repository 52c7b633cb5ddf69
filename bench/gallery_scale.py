"""A gallery index at scale: build seconds, peak memory, bytes per image, query latency and recall@10.

    nice -n 10 python bench/gallery_scale.py --size 100000 [--dim 6912] [--kind pca+ivfpq] [--queries 1000]
                                             [--images-per-id 4] [--chunk 4096] [--threads 1] [--seed 0] [--tiny]
                                             [--store faiss milvus-lite]

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

``--store``: where the gallery goes, through the store the API uses (pfd.retrieval.stores): ``faiss``
(a GalleryIndex, in memory) and/or ``milvus-lite`` (a MilvusGallery in a temporary Milvus Lite folder,
served in this process; Lite builds ``flat`` only). Each store runs in its own process (one JSON line
each), so each peak RSS is its own. Each image gets camera ``row % 6``; both stores then report one
query through the store (``store_query_ms_*``: pfd.Gallery's path) and with a camera filter keeping one
camera in six (``camera_query_ms_*``), and ``camera_recall_at_10`` against exact search over that
camera's images. The FAISS-only figures (``one_query_ms_*``, ``batch100_ms_*``, ``index_bytes_per_image``)
time the bare FAISS index as before; Milvus reports ``store_bytes_per_image`` (its folder on disk).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit  # noqa: E402
from pfd.retrieval.gallery_index import ExactTopK, new_gallery_index  # noqa: E402
from pfd.retrieval.stores import SearchFilter  # noqa: E402

CAMERAS = 6  # each image's camera: row % CAMERAS; the filtered search keeps camera 0

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


def latency(index, queries: np.ndarray, batch: int, repeats: int, **where) -> tuple[float, float]:
    times = []
    for i in range(repeats):
        q = queries[(i * batch) % len(queries):][:batch]
        t = time.perf_counter()
        index.search(q, 10, **where)
        times.append(time.perf_counter() - t)
    return percentiles_ms(times)


def records(start: int, n: int) -> list[SimpleNamespace]:
    """What a store keeps of each synthetic image: a path, an id, the camera row % CAMERAS."""
    return [SimpleNamespace(path=f"/synthetic/{i}.jpg", pid=i, camid=i % CAMERAS) for i in range(start, start + n)]


def recall(store, truth: ExactTopK, where=None) -> float:
    """Mean |top-10 of the store & exact top-10| / 10 over the truth's probes."""
    _, found = store.search(truth.probes, 10, where)
    return round(float((found[:, :, None] == truth.ids[:, None, :]).any(-1).mean()), 4)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def new_store(args, workdir: Path):
    """(the empty store, its builder) for --store."""
    if args.store == "faiss":
        return new_gallery_index(args.kind, args.dim, args.size, normalize=True)
    from pfd.retrieval.milvus_store import MilvusGallery
    return MilvusGallery.create(f"milvus:{workdir / 'bench.db'}", args.kind, args.dim, args.size, True)


def run(args, workdir: Path) -> dict:
    import faiss
    faiss.omp_set_num_threads(args.threads)
    stream = Stream(args.size, args.dim, args.latent, args.images_per_id, args.chunk, args.seed)
    queries = stream.queries(args.queries)
    store, builder = new_store(args, workdir)
    queries = np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True))
    truth, camera_truth = ExactTopK(queries, 10, normalize=True), ExactTopK(queries, 10, normalize=True)

    t, cpu = time.perf_counter(), time.process_time()
    gen_before, gen_cpu_before = stream.gen_s, stream.gen_cpu_s
    train_rows = 0
    if builder is not None and builder.needs_training:
        train_rows = builder.train(f for _, f in stream.chunks(builder.params["train_rows"]))
    train_s = time.perf_counter() - t - (stream.gen_s - gen_before)
    train_cpu_s = time.process_time() - cpu - (stream.gen_cpu_s - gen_cpu_before)
    add_s = add_cpu_s = exact_s = 0.0
    for start, feats in stream.chunks():
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        ids = np.arange(start, start + len(feats))
        t, cpu = time.perf_counter(), time.process_time()
        store.add(feats, records(start, len(feats)), [None] * len(feats), builder)
        add_s += time.perf_counter() - t
        add_cpu_s += time.process_time() - cpu
        t = time.perf_counter()
        truth.update(feats, ids)
        camera_truth.update(feats[ids % CAMERAS == 0], ids[ids % CAMERAS == 0])
        exact_s += time.perf_counter() - t
    if args.store != "faiss":  # sealed into indexed segments, as Gallery.build does
        t, cpu = time.perf_counter(), time.process_time()
        store.flush()
        add_s += time.perf_counter() - t
        add_cpu_s += time.process_time() - cpu
    camera = SearchFilter.of(cameras=[0])
    result = {
        "bench": "gallery_scale", "store": args.store, "size": args.size, "dim": args.dim, "kind": args.kind,
        "params": store.meta["params"], "train_rows": train_rows, "threads": args.threads, "seed": args.seed,
        "tiny": args.tiny,
        "latent": args.latent, "images_per_id": args.images_per_id, "queries": args.queries,
        "build_s": round(train_s + add_s, 2), "train_s": round(train_s, 2), "add_s": round(add_s, 2),
        "build_cpu_s": round(train_cpu_s + add_cpu_s, 2),
        "generate_s": round(stream.gen_s, 2), "exact_search_s": round(exact_s, 2),
        "raw_bytes_per_image": 4 * args.dim,
    }
    if args.store == "faiss":  # the bare FAISS index, as measured before the stores
        index = builder.index
        single = latency(index, queries, 1, args.single_repeats)
        batch = latency(index, queries, 100, args.batch_repeats)
        result.update(factory=builder.factory,
                      index_bytes_per_image=round(len(faiss.serialize_index(index)) / args.size, 1),
                      one_query_ms_median=single[0], one_query_ms_p95=single[1],
                      batch100_ms_median=batch[0], batch100_ms_p95=batch[1])
    else:
        result.update(store_bytes_per_image=round(folder_bytes(workdir / "bench.db") / args.size, 1))
    through_store = latency(store, queries, 1, args.single_repeats)
    with_camera = latency(store, queries, 1, args.single_repeats, where=camera)
    result.update(store_query_ms_median=through_store[0], store_query_ms_p95=through_store[1],
                  camera_query_ms_median=with_camera[0], camera_query_ms_p95=with_camera[1],
                  recall_at_10=recall(store, truth), camera_recall_at_10=recall(store, camera_truth, camera),
                  peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3))
    return result


def each_store(stores: list[str]) -> None:
    """Run this bench once per store, each in its own process (its own peak RSS); their lines pass through."""
    argv = sys.argv[1:]
    at = argv.index("--store")
    rest = argv[at + 1:]
    while rest and not rest[0].startswith("--"):
        rest = rest[1:]
    for store in stores:
        subprocess.run([sys.executable, __file__, *argv[:at], "--store", store, *rest], check=True)


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
    parser.add_argument("--store", nargs="+", choices=("faiss", "milvus-lite"), default=["faiss"],
                        help="the store(s) to measure, each in its own process (Milvus Lite: --kind flat)")
    args = parser.parse_args()
    if len(args.store) > 1:
        each_store(args.store)
        return
    args.store = args.store[0]
    if args.tiny:
        args.size, args.dim, args.latent, args.queries, args.chunk = 3000, 64, 16, 100, 512
        args.single_repeats, args.batch_repeats = 20, 3
    with tempfile.TemporaryDirectory(prefix="pfd_gallery_scale_") as workdir:
        emit(run(args, Path(workdir)))


if __name__ == "__main__":
    main()
