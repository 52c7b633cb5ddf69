"""Per-dataset keypoint cache: every image's pose is estimated once, then reloaded in well under a second.

One `.npz` per (dataset, backend) in MODEL.POSE_CACHE_DIR, by default `pose_cache/` next to
OUTPUT_DIR (OUTPUT_DIR/../pose_cache: runs that share a parent folder share their caches, and the
dataset folder, often read-only, is never written). The file holds the image paths relative to
a dataset root, keypoints [N, 17, 3], each file's size, mtime and content digest (the first 16 hex
digits of its SHA-256), and the backend's identity (backend name + SHA-256 of the weights or keypoint
file + preprocessing). A different identity invalidates the whole file: any edit of a keypoint file or
weights file is seen. An entry whose image has the size and modification time (ns) it had is used as
it is, without reading the image. Where only the mtime changed (a dataset copied to another disk
without `cp -p`, unpacked again, touched), the image is hashed and its pose is kept if the content is
the same: copying a dataset does not mean posing it again. An image replaced by another of exactly the
same size with its old mtime restored (`cp -p`, `rsync -t` of a same-size file) is not detected: delete
the cache file then. Writes are atomic.

A long pass keeps its work: the cache is rewritten with every entry posed so far at least every
SAVE_PERIOD_S seconds and when the pass stops (error, Ctrl-C), so a rerun, even after SIGKILL, poses
only what is left. An image that cannot be read counts as "no person" (zero confidences) and is
listed in a warning; it is not cached, so the next pass tries it again.

Calls from several processes are safe (atomic replace), but the engine lets rank 0 build first.
The cache folder is claimed (pfd.io.claim_output_dir, kind "pose_cache") before the first pose is
estimated: a user's folder with other files in it is refused; one holding only caches is adopted.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ..device import usable_cores
from ..image import ImageReadError
from ..io import child_path, claim_output_dir, flat_name, foreign_entries, sha256_file
from .base import PER_PROCESS_BACKENDS, PoseEstimator
from .estimator import build_estimator, estimator_identity, resolve_backend
from .formats import read_cache_npz, write_cache_npz
from .keypoints import NUM_KEYPOINTS

__all__ = ["KeypointTable", "without_poses", "shuffled_poses", "load_or_build", "cache_path", "compute_keypoints"]

log = logging.getLogger(__name__)
CHUNK = 32  # images per task sent to a worker process
SAVE_PERIOD_S = 60.0  # a pass in progress writes its cache at least this often


class KeypointTable(Mapping[str, np.ndarray]):
    """Absolute image path -> float32 keypoints [17, 3] (x, y, confidence), backed by one array."""

    def __init__(self, paths: Sequence[str], keypoints: np.ndarray, backend: str = "", source: str = ""):
        self.paths = list(paths)
        self.keypoints = np.asarray(keypoints, np.float32).reshape(len(self.paths), NUM_KEYPOINTS, 3)
        self.backend = backend
        self.source = source  # the cache file it came from
        self._index = {p: i for i, p in enumerate(self.paths)}

    def __getitem__(self, path: str) -> np.ndarray:
        return self.keypoints[self._index[path]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def detected(self) -> np.ndarray:
        """bool [N]: a person was found (some keypoint has confidence > 0)."""
        return self.keypoints[:, :, 2].max(axis=1) > 0 if len(self) else np.zeros(0, bool)

    @property
    def detection_rate(self) -> float:
        return float(self.detected.mean()) if len(self) else 0.0


def without_poses(table: KeypointTable) -> KeypointTable:
    """The table with every confidence set to 0 (positions kept)."""
    keypoints = table.keypoints.copy()  # [N, 17, 3]
    keypoints[:, :, 2] = 0
    return KeypointTable(table.paths, keypoints, table.backend)


def shuffled_poses(table: KeypointTable, seed: int = 0) -> KeypointTable:
    """Each image given another image's keypoints: one random cycle through all of them (a derangement,
    so no image keeps its own when there are two or more). The same seed gives the same cycle, so two
    checkpoints are compared on the same shuffle (TEST.POSE_DEPENDENCE, DATALOADER.SHUFFLE_KEYPOINTS)."""
    order = np.random.default_rng(seed).permutation(len(table))  # [N] the cycle's visiting order
    source = np.empty_like(order)
    source[order] = np.roll(order, -1)  # image order[i] takes the keypoints of order[i + 1]
    return KeypointTable(table.paths, table.keypoints[source], table.backend)


def cache_dir(cfg) -> Path:
    """MODEL.POSE_CACHE_DIR, or `pose_cache` next to OUTPUT_DIR."""
    if cfg.MODEL.POSE_CACHE_DIR:
        return Path(cfg.MODEL.POSE_CACHE_DIR).expanduser()
    return Path(cfg.OUTPUT_DIR).expanduser().resolve().parent / "pose_cache"


def _only_caches(folder: Path) -> bool:
    """A cache folder of an earlier version: nothing but caches (and atomic_write's temp files)."""
    return not foreign_entries(folder, ("*.npz", ".*.tmp-*.tmp"))


def claim_cache_dir(folder: Path) -> Path:
    """`folder` as a pose cache folder of ours (pfd.io.claim_output_dir), or an OutputExistsError."""
    return claim_output_dir(folder, "pose_cache", adopt=_only_caches,
                            hint="set MODEL.POSE_CACHE_DIR to a new or empty folder")


def cache_path(cfg, dataset_name: str, backend: str) -> Path:
    """`<cache dir>/<dataset>_<backend>.npz` (a name like folder:PATH becomes its last part and a short hash:
    pfd.io.flat_name)."""
    return child_path(cache_dir(cfg), f"{flat_name(dataset_name)}_{backend}.npz", "pose cache of dataset")


def _file_stats(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(size in bytes [N], mtime in ns [N]) of every file; a missing file is an error naming it."""
    stats = [os.stat(p) for p in paths]
    return (np.array([s.st_size for s in stats], np.int64), np.array([s.st_mtime_ns for s in stats], np.int64))


def _content_digest(path: str) -> str:
    """What the cache records of an image's content: the first 16 hex digits of its SHA-256."""
    return sha256_file(path)[:16]


# ----------------------------------------------------------------------------------- computing
_worker_estimator: PoseEstimator | None = None


def _init_worker(cfg, backend: str) -> None:
    global _worker_estimator
    _worker_estimator = build_estimator(cfg, backend)


def _predict_chunk(paths: list[str]) -> tuple[np.ndarray, list[str]]:
    return predict_readable(_worker_estimator, paths)


def predict_readable(estimator: PoseEstimator, paths: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(keypoints [N, 17, 3], unreadable paths): an image that cannot be read gets zero confidences
    ("no person") instead of failing the whole batch."""
    try:
        return estimator.predict_paths(paths), []
    except ImageReadError:
        pass
    out = np.zeros((len(paths), NUM_KEYPOINTS, 3), np.float32)
    unreadable = []
    for i, path in enumerate(paths):  # only after a failure: find the bad file(s), keep the rest
        try:
            out[i] = estimator.predict_paths([path])[0]
        except ImageReadError:
            unreadable.append(path)
    return out, unreadable


def _num_workers(cfg) -> int:
    return max(1, min(usable_cores(), cfg.DATALOADER.NUM_WORKERS))


ChunkDone = Callable[[int, np.ndarray, list[str]], None]  # (first index, keypoints [n, 17, 3], unreadable paths)


def compute_keypoints(cfg, backend: str | PoseEstimator, paths: Sequence[str], desc: str = "pose",
                      on_chunk: ChunkDone | None = None) -> np.ndarray:
    """Keypoints [N, 17, 3] of the images at `paths`, with a progress bar; `on_chunk` sees each
    finished chunk (unreadable images have zero confidences and are passed along).

    CPU-bound one-image-at-a-time backends (mediapipe) run in a pool of min(cores, DATALOADER.NUM_WORKERS)
    spawned processes, each with its own estimator; the others run here, batch by batch.
    """
    out = np.zeros((len(paths), NUM_KEYPOINTS, 3), np.float32)
    if not paths:
        return out

    def done(start: int, kps: np.ndarray, unreadable: list[str]) -> None:
        out[start:start + len(kps)] = kps
        bar.update(len(kps))
        if on_chunk is not None:
            on_chunk(start, kps, unreadable)

    paths = list(paths)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    bar = tqdm(total=len(paths), desc=desc, unit="img", mininterval=1.0)
    workers = _num_workers(cfg)
    try:
        if backend in PER_PROCESS_BACKENDS and workers > 1 and len(chunks) > 1:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg, backend)) as pool:
                for i, (kps, unreadable) in enumerate(pool.imap(_predict_chunk, chunks)):
                    done(i * CHUNK, kps, unreadable)
        else:
            estimator = build_estimator(cfg, backend, paths) if isinstance(backend, str) else backend
            step = max(CHUNK, getattr(estimator, "batch_size", CHUNK))
            for start in range(0, len(paths), step):
                done(start, *predict_readable(estimator, paths[start:start + step]))
            if isinstance(backend, str):
                estimator.close()
    finally:
        bar.close()
    return out


# ----------------------------------------------------------------------------------- the cache
Entry = tuple[np.ndarray, int, int, str]  # (keypoints [17, 3], file size, mtime in ns, content digest or "")


def _load_entries(file: Path, identity: str) -> tuple[str | None, dict[str, Entry]]:
    """(root, {relative path: entry}) of a cache file, or (None, {}) if absent/stale. A cache written before
    content digests has "" for every digest: its entries are posed again when their mtime changes."""
    if not file.is_file():
        return None, {}
    try:
        meta, arrays = read_cache_npz(file)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("ignoring unreadable pose cache %s (%s); rebuilding it", file, err)
        return None, {}
    if meta.get("identity") != identity:
        log.info("pose cache %s was made by %s, not %s; rebuilding it", file, meta.get("identity"), identity)
        return None, {}
    digests = arrays["digest"].tolist() if "digest" in arrays else [""] * len(arrays["paths"])
    entries = {rel: (kps, size, mtime, digest) for rel, kps, size, mtime, digest in
               zip(arrays["paths"].tolist(), arrays["keypoints"], arrays["file_size"].tolist(),
                   arrays["mtime_ns"].tolist(), digests)}
    return meta.get("root"), entries


def _dataset_root(paths: Sequence[str]) -> str:
    """The folder above the images' common folder (a Market-style dataset's root)."""
    common = os.path.commonpath([os.path.dirname(p) for p in paths])
    return os.path.dirname(common) if len({os.path.dirname(p) for p in paths}) == 1 else common


def load_or_build(cfg, records: Sequence, dataset_name: str,
                  backend: str | PoseEstimator | None = None) -> KeypointTable:
    """The keypoints of every record's image, from the cache, computing only missing or stale entries.

    `records` are ImageRecords (or anything with an absolute `.path`); `backend` is a backend name,
    an estimator instance, or None for MODEL.POSE_BACKEND. Images where no person is found get
    zero confidences and are counted in the log.
    """
    paths = [os.path.abspath(r.path) for r in records]
    if isinstance(backend, PoseEstimator):
        name, identity = backend.name, backend.identity
    else:
        name = resolve_backend(cfg, backend, paths)
        identity = estimator_identity(cfg, name, paths)
    table_paths = list(dict.fromkeys(paths))
    file = cache_path(cfg, dataset_name, name)
    if not table_paths:
        return KeypointTable([], np.zeros((0, NUM_KEYPOINTS, 3)), name, str(file))

    root, entries = _load_entries(file, identity)
    if root is None or not all(p.startswith(os.path.join(root, "")) for p in table_paths):
        root = _dataset_root(table_paths)  # a new cache, or the dataset moved or copied: key by its new root
    rels = [os.path.relpath(p, root) for p in table_paths]
    sizes, mtimes = _file_stats(table_paths)
    todo, touched = _stale_entries(table_paths, rels, entries, sizes, mtimes)
    meta = {"backend": name, "identity": identity, "root": root, "dataset": dataset_name}
    if touched:  # recorded now, so the next start reads no image
        log.info("%s: %d images had a new mtime but the same content; their poses are kept", dataset_name, touched)
        claim_cache_dir(file.parent)
        _write_entries(file, meta, entries)

    unreadable: dict[str, np.ndarray] = {}  # relative path -> zeros: answered, never cached
    if todo:
        claim_cache_dir(file.parent)  # before the first pose: a user's folder is refused untouched
        start = time.perf_counter()
        last_save, pending = time.monotonic(), 0

        def keep(first: int, kps: np.ndarray, bad: list[str]) -> None:
            nonlocal last_save, pending
            bad = set(bad)
            for i, k in zip(todo[first:first + len(kps)], kps):
                if table_paths[i] in bad:
                    unreadable[rels[i]] = k
                else:
                    entries[rels[i]] = (k, int(sizes[i]), int(mtimes[i]), _content_digest(table_paths[i]))
                    pending += 1
            if pending and time.monotonic() - last_save >= SAVE_PERIOD_S:
                _write_entries(file, meta, entries)
                last_save, pending = time.monotonic(), 0

        try:
            kps = compute_keypoints(cfg, backend if isinstance(backend, PoseEstimator) else name,
                                    [table_paths[i] for i in todo], desc=f"pose {dataset_name} ({name})", on_chunk=keep)
        finally:  # done, failed or interrupted: what was posed is kept
            if pending:
                _write_entries(file, meta, entries)
        missed = int((kps[:, :, 2].max(axis=1) == 0).sum())
        log.info("%s: %d images posed with %s in %.1f s; no person found in %d (%.1f%%)", dataset_name,
                 len(todo), name, time.perf_counter() - start, missed, 100.0 * missed / len(todo))
        if missed:
            log.warning("%s: %s found no person in %d of %d images; their keypoints count as occluded",
                        dataset_name, name, missed, len(todo))
        if unreadable:
            log.warning("%s: %d image(s) could not be read and count as \"no person\" (not cached; training and "
                        "evaluation will fail on them until they are fixed or removed): %s", dataset_name,
                        len(unreadable), ", ".join(os.path.join(root, r) for r in list(unreadable)[:20]))
    keypoints = np.stack([unreadable[rel] if rel in unreadable else entries[rel][0] for rel in rels])  # [N, 17, 3]
    return KeypointTable(table_paths, keypoints, name, str(file))


def _stale_entries(paths: Sequence[str], rels: Sequence[str], entries: dict[str, Entry], sizes: np.ndarray,
                   mtimes: np.ndarray) -> tuple[list[int], int]:
    """(indices of the images to pose, how many kept their pose by content). An entry whose size and mtime
    match is current; one whose size matches but not its mtime is current if the image hashes to the
    recorded digest, and gets the new mtime (in `entries`, which the caller writes)."""
    todo, touched = [], 0
    for i, rel in enumerate(rels):
        entry = entries.get(rel)
        if entry is not None and entry[1:3] == (sizes[i], mtimes[i]):
            continue
        if entry is not None and entry[1] == sizes[i] and entry[3] and entry[3] == _content_digest(paths[i]):
            entries[rel] = (entry[0], entry[1], int(mtimes[i]), entry[3])
            touched += 1
            continue
        todo.append(i)
    return todo, touched


def _write_entries(file: Path, meta: dict, entries: dict[str, Entry]) -> None:
    keys = list(entries)
    write_cache_npz(file, meta, keys, np.stack([entries[k][0] for k in keys]),
                    np.array([entries[k][1] for k in keys]), np.array([entries[k][2] for k in keys]),
                    [entries[k][3] for k in keys])
