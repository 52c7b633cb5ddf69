"""query.py's work: index a folder of person images with FAISS, and look one image up in it.

The index folder (pfd.retrieval.index) holds the FAISS index and a metadata table: paths, ids,
cameras, the checkpoint's SHA-256 (`model_id`), the config hash, the feature kind, plus the
resolved config and checkpoint path so `search` can rebuild the same model without being told.
`search` refuses an index whose model or config differs from the one it is given.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import config_hash, load_config
from ..data.datasets import ImageRecord
from ..data.datasets.base import IMAGE_EXTENSIONS
from ..data.datasets.market import NAME_PATTERN
from ..device import resolve_device
from ..errors import InvalidInputError, MissingFileError
from ..io import sha256_file
from ..pose import build_estimator
from ..pose.estimator import find_synthetic_keypoints, resolve_backend
from ..pose.formats import FileEstimator
from ..retrieval import IndexLoadError, build_index, load_index, plots
from ..retrieval.index import META_FILE
from ..retrieval.metrics import retrieval_options
from .evaluator import HeatmapMaker, extract_features, load_keypoints
from .logger import setup_logger
from ..precision import autocast_dtype
from .tester import load_eval_model

__all__ = ["folder_records", "checkpoint_id", "build_gallery_index", "search_image", "format_ranking"]

logger = logging.getLogger("pfd")


def parse_name(path: str | Path) -> tuple[int, int]:
    """(pid, 0-based camid) from a Market-1501 style file name, else (-1, -1)."""
    match = NAME_PATTERN.match(Path(path).name)  # 0002_c1s1_000451_03.jpg -> pid 2, camera 0
    return (int(match.group(1)), int(match.group(2)) - 1) if match else (-1, -1)


def folder_records(folder: str | Path) -> list[ImageRecord]:
    """Every image under `folder` (recursive, sorted), with ids/cameras parsed from Market-style names."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--gallery: folder not found: {root}")
    paths = sorted(p.resolve() for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise ValueError(f"--gallery {root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found under it")
    return [ImageRecord(str(p), *parse_name(p)) for p in paths]


def checkpoint_id(path: str | Path) -> str:
    """SHA-256 of the checkpoint file: what the index's `model_id` must match."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--weights: checkpoint not found: {path}")
    return sha256_file(path)


def _model_records(records: Sequence[ImageRecord], num_cameras: int) -> list[ImageRecord]:
    """Records as the model sees them: unknown or out-of-range cameras become camera 0."""
    return [r._replace(camid=r.camid if 0 <= r.camid < num_cameras else 0) for r in records]


def _features(cfg, weights: str, records: Sequence[ImageRecord], keypoints, desc: str):
    device = resolve_device(cfg.MODEL.DEVICE)
    model, info = load_eval_model(cfg, weights, device)
    heatmaps = HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST).to(device)
    feats = extract_features(model, cfg, _model_records(records, info["num_cameras"]), keypoints, device, heatmaps,
                             autocast_dtype(cfg.SOLVER.AMP, device), desc=desc)
    return feats.feats


def build_gallery_index(config: str, weights: str, gallery: str, out: str, index_type: str = "flat",
                        opts: Sequence[str] = ()) -> dict:
    """Extract features of every image under `gallery` and save a FAISS index to `out`; returns its metadata."""
    cfg = load_config(config, opts)
    setup_logger(None)
    model_id = checkpoint_id(weights)
    records = folder_records(gallery)
    name = "gallery_" + hashlib.sha256(str(Path(gallery).resolve()).encode()).hexdigest()[:10]
    keypoints = load_keypoints(cfg, records, name)
    feats = _features(cfg, weights, records, keypoints, desc="gallery features")
    index = build_index(feats, records, index_type=index_type, model_id=model_id, config_hash=config_hash(cfg),
                        feature_kind=cfg.MODEL.FEAT_KIND, normalize=retrieval_options(cfg)["normalize"])
    index.meta.update(config=cfg.dump(), weights=str(Path(weights).resolve()), model_name=cfg.MODEL.NAME,
                      gallery=str(Path(gallery).resolve()))
    index.save(out)
    recall = index.meta["recall_at_10"]
    logger.info("indexed %d images (%s, dim %d) into %s%s", len(records), index_type, index.meta["feature_dim"], out,
                "" if recall is None else f"; recall@10 vs exact search {recall:.3f}")
    return index.meta


def _index_meta(index_dir: Path) -> dict:
    """The index's metadata (meta.json), which stores the config and checkpoint it was built with."""
    meta_path = index_dir / META_FILE
    if not meta_path.is_file():
        raise IndexLoadError(f"{meta_path} is missing; build the index with `python query.py index ...` first")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IndexLoadError(f"{meta_path} is not readable JSON ({err}); rebuild the index with "
                             "`python query.py index ...`") from err
    if not isinstance(meta, dict):
        raise IndexLoadError(f"{meta_path} holds a {type(meta).__name__}, not the index's metadata object; "
                             "rebuild the index with `python query.py index ...`")
    return meta


def _config_from_meta(meta: dict, meta_path: Path, opts: Sequence[str]):
    """The config stored in the index's metadata; an error naming meta.json when it has none."""
    if not meta.get("config"):
        raise IndexLoadError(f"{meta_path} stores no config (key 'config'); pass --config, or rebuild the index "
                         f"with `python query.py index ...`")
    fd, tmp = tempfile.mkstemp(suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(meta["config"])
        return load_config(tmp, opts)
    finally:
        os.unlink(tmp)


def format_ranking(distances: np.ndarray, rows: np.ndarray, meta: dict) -> str:
    """The ranked list as a table: rank, distance, path, id, camera (1-based, -1 = unknown)."""
    lines = [f"{'rank':>4}  {'distance':>8}  {'id':>5}  {'cam':>3}  path"]
    for rank, (d, r) in enumerate(zip(distances, rows), 1):
        if r < 0:
            continue
        cam = meta["camids"][r]
        lines.append(f"{rank:>4}  {d:>8.4f}  {meta['pids'][r]:>5}  {cam + 1 if cam >= 0 else -1:>3}  {meta['paths'][r]}")
    return "\n".join(lines)


def _no_keypoints(image: Path, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"--image {image}: no keypoints for this photo ({why}). Let a pose backend compute them: add "
        "`MODEL.POSE_BACKEND mediapipe` (no weights needed) or `MODEL.POSE_BACKEND hrnet MODEL.POSE_WEIGHT "
        "pose_hrnet_w48_256x192.pth` to the command")


def query_keypoints(cfg, image: Path) -> np.ndarray:
    """Keypoints [17, 3] of one query photo from the configured pose backend; a file-based backend
    (synthetic, file) that does not list the photo is an error saying how to compute them instead."""
    path = str(image)
    backend = resolve_backend(cfg, None, [path])
    if backend == "synthetic" and find_synthetic_keypoints([path]) is None:
        raise _no_keypoints(image, "MODEL.POSE_BACKEND synthetic only knows the generated dataset's own images")
    estimator = build_estimator(cfg, image_paths=[path])
    try:
        if isinstance(estimator, FileEstimator) and estimator.lookup(path) is None:
            raise _no_keypoints(image, f"the {backend} backend's keypoint file {estimator.path} does not list it")
        return estimator.predict_paths([path])[0]  # [17, 3] in image pixels
    finally:
        estimator.close()


def search_image(index_dir: str, image: str, topk: int = 10, config: str | None = None, weights: str | None = None,
                 out: str | None = None, opts: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Rank the index for one image: print the list, save the picture; returns (distances [k], rows [k])."""
    setup_logger(None)
    index_dir, image_path = Path(index_dir), Path(image).resolve()
    if topk < 1:
        raise InvalidInputError(f"--topk must be at least 1 (the number of gallery images listed), got {topk}")
    if not image_path.is_file():
        raise MissingFileError(f"--image: file not found: {image}")
    meta = _index_meta(index_dir)
    cfg = load_config(config, opts) if config else _config_from_meta(meta, index_dir / META_FILE, opts)
    weights = weights or meta.get("weights", "")
    if not weights:
        raise ValueError("--weights is needed (the index does not name its checkpoint)")
    index = load_index(index_dir, config_hash=config_hash(cfg), model_id=checkpoint_id(weights))

    pid, camid = parse_name(image_path)
    record = ImageRecord(str(image_path), pid, camid)
    keypoints = {record.path: query_keypoints(cfg, image_path)}
    feats = _features(cfg, weights, [record], keypoints, desc="query feature")
    distances, rows = index.search(feats, topk)
    print(format_ranking(distances[0], rows[0], index.meta), flush=True)

    picture = Path(out) if out else index_dir / f"search_{image_path.stem}.png"
    # An unknown query id (-1) matches nothing: not even gallery images whose id is also unknown.
    shown_pid = pid if pid >= 0 else min(index.meta["pids"], default=0) - 1
    plots.plot_ranked_lists([record.path], [shown_pid], index.meta["paths"], index.meta["pids"], rows, picture,
                            topk=topk, image_hw=tuple(cfg.INPUT.SIZE_TEST),
                            query_keypoints=keypoints[record.path][None], keypoint_threshold=cfg.MODEL.SKT_THRES)
    logger.info("ranking picture: %s", picture)
    return distances[0], rows[0]
