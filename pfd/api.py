"""The Python API: features of person images from a checkpoint, and a gallery to search them in.

    from pfd import Gallery, ReIDModel

    model = ReIDModel.from_checkpoint("logs/occluded_duke_pfd/best.pth")   # our checkpoints carry their config
    feats = model.embed(["a.jpg", "b.jpg"])            # [2, F] float32, L2-normalized like evaluation
    gallery = Gallery.build(model, "gallery_folder/")  # FAISS index + metadata, as `query.py index` writes it
    gallery.save("my_index")                           # replace=True to replace an existing index
    for match in Gallery.load("my_index", model).search("person.jpg", k=5):
        print(match.path, match.id, match.camera, match.distance)
    Gallery.build(model, "gallery_folder/", store="milvus:gallery.db")   # the same gallery in Milvus Lite

`ReIDModel` wraps the eval model of pfd.inference (its checkpoint loading and its forward loop, which
test.py's evaluation runs too), so `embed` returns the features test.py computes for the same images. A
`Gallery` folder is the one `query.py` reads and writes (pfd.retrieval.index_folder): each reads the
other's. A saved gallery grows and shrinks: `Gallery.load(...).add(folder)` embeds only the new images,
`.remove(paths)` takes images out, `.save(folder)` writes the new version (a kill leaves the old one).
Instead of a folder, a gallery can live in a Milvus collection (pfd.retrieval.milvus_store): every method
takes `milvus:PATH.db` (Milvus Lite) or `milvus://HOST:PORT/COLLECTION` (a server) where it takes a folder;
there `add` and `remove` are written at once. `search` filters by camera and time (pfd.retrieval.stores).
"""
from __future__ import annotations

import itertools
import os
from functools import cached_property
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .config import CN, config_from_text, config_hash, load_config
from .data.datasets import ImageRecord
from .data.datasets.base import IMAGE_EXTENSIONS
from .data.datasets.market import NAME_PATTERN
from .data.transforms import build_transforms
from .device import resolve_device
from .errors import InvalidInputError, require_folder
from .image import ImageReadError, check_image_file, check_image_files, image_size, read_image, to_rgb
from .inference.checkpoint import load_eval_model, read_eval_checkpoint
from .inference.features import loader_features, part_layout
from .inference.query_pose import QueryPose, QueryPoser
from .io import sha256_file
from .pose import build_estimator
from .pose.base import PATH_BACKENDS
from .pose.estimator import find_synthetic_keypoints, resolve_backend
from .pose.heatmap_maker import HeatmapMaker
from .pose.keypoints import NUM_KEYPOINTS, check_keypoint_values
from .precision import eval_dtype
from .retrieval.gallery_index import MAX_TRAIN_BYTES, WHOLE_KINDS, GalleryIndex, new_gallery_index
from .retrieval.index_folder import (
    META_FILE,
    IndexLoadError,
    check_built_with,
    check_index_output,
    load_index,
    save_index,
)
from .retrieval.metrics import retrieval_options
from .retrieval.part_distance import PartLayout, visible_part_distance
from .retrieval.stores import SearchFilter, is_milvus_location, to_timestamp

__all__ = ["ReIDModel", "Gallery", "Match", "check_gallery_output", "folder_records", "parse_name"]

CHUNK_SIZE = 1024  # images embedded and indexed at a time by Gallery.build / add (memory: CHUNK_SIZE features)
RECALL_PROBES = 1000  # gallery features whose exact top-10 measures a compressed index's recall@10


def parse_name(path: str | os.PathLike) -> tuple[int, int]:
    """(identity, 0-based camera) from a Market-1501 style file name, else (-1, -1)."""
    match = NAME_PATTERN.match(Path(path).name)  # 0002_c1s1_000451_03.jpg -> identity 2, camera 0
    return (int(match.group(1)), int(match.group(2)) - 1) if match else (-1, -1)


def folder_records(folder: str | os.PathLike) -> list[ImageRecord]:
    """Every image under `folder` (recursive, sorted), with ids/cameras parsed from Market-style names."""
    root = require_folder(folder, "gallery folder", "a folder of images")
    paths = sorted(p.resolve() for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise InvalidInputError(f"gallery folder {root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found under it")
    check_image_files(paths, f"gallery folder {root}")  # before any pose estimation or embedding
    return [ImageRecord(str(p), *parse_name(p)) for p in paths]


def _gallery_records(folder_or_paths) -> tuple[Path | None, list[ImageRecord]]:
    """(the folder or None, its image records) of a gallery folder or a list of image paths."""
    if isinstance(folder_or_paths, (str, os.PathLike)):
        folder = Path(folder_or_paths).resolve()
        return folder, folder_records(folder)
    paths = [os.path.abspath(p) for p in folder_or_paths]
    if not paths:
        raise InvalidInputError("gallery: got an empty list of image paths")
    for path in paths:
        check_image_file(path)
    return None, [ImageRecord(p, *parse_name(p)) for p in paths]


def _keypoint_rows(keypoints, records: Sequence[ImageRecord]) -> np.ndarray | None:
    """Keypoints [N, 17, 3] in record order from an array or a mapping path -> [17, 3] (missing = not visible)."""
    if isinstance(keypoints, Mapping):
        none = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        return np.stack([np.asarray(keypoints.get(r.path, none), np.float32) for r in records])
    return keypoints


def _time_rows(times, records: Sequence[ImageRecord]) -> list[float | None] | None:
    """Times in record order (seconds since the epoch, None = unknown) from a mapping path -> time (seconds,
    datetime or ISO 8601 text; missing = unknown) or a sequence aligned with the records; None stays None."""
    if times is None:
        return None
    if isinstance(times, Mapping):
        values = [times.get(r.path) for r in records]
    elif len(times) == len(records):
        values = list(times)
    else:
        raise InvalidInputError(f"times: {len(times)} values for {len(records)} images; pass one per image or a "
                                f"mapping image path -> time")
    return [to_timestamp(v, f"times[{r.path!r}]") for v, r in zip(values, records)]


def _embed_chunks(model, records: Sequence[ImageRecord], keypoints, rows: np.ndarray, chunk_size: int,
                  progress: bool, known: dict | None = None):
    """(rows [n], features [n, F], the keypoints [n, 17, 3] they were made from or None) of `records[rows]`,
    `chunk_size` images at a time: never all features at once. `known`: row -> (feature, keypoints) already
    embedded (taken out of it as used)."""
    known = {} if known is None else known
    for start in range(0, len(rows), chunk_size):
        part = rows[start:start + chunk_size]
        todo = np.asarray([i for i in part.tolist() if i not in known], np.int64)
        if len(todo):
            feats, used = model.embed([records[i].path for i in todo], None if keypoints is None else keypoints[todo],
                                      camids=[records[i].camid for i in todo], progress=progress,
                                      return_keypoints=True)
            known.update(zip(todo.tolist(), zip(feats, [None] * len(todo) if used is None else used)))
        done = [known.pop(i) for i in part.tolist()]
        kps = None if any(k is None for _, k in done) else np.stack([k for _, k in done])
        yield part, np.stack([f for f, _ in done]), kps


def _train(builder, model, records: Sequence[ImageRecord], keypoints, chunk_size: int, progress: bool,
           seed: int) -> tuple[np.ndarray, dict]:
    """Train `builder` on a random sample of the gallery; returns (up to RECALL_PROBES of the sample's
    features, row -> feature of the sample when it fits in MAX_TRAIN_BYTES: not embedded twice)."""
    sample = np.sort(np.random.default_rng(seed).permutation(len(records))[:builder.params["train_rows"]])
    keep = len(sample) * model.feature_dim * 4 <= MAX_TRAIN_BYTES
    chunks = _embed_chunks(model, records, keypoints, sample, chunk_size, progress)
    first = next(chunks)
    known = {}

    def training_chunks():
        for rows, feats, kps in itertools.chain([first], chunks):
            if keep:
                known.update(zip(rows.tolist(), zip(feats, [None] * len(rows) if kps is None else kps)))
            yield feats

    builder.train(training_chunks())
    return first[1][:RECALL_PROBES].copy(), known


def _image_items(images) -> list[str | Image.Image]:
    """`images` as a list of absolute paths (checked to be readable images) and RGB PIL images.

    Accepts one image or a sequence of them: paths, PIL images (any mode, read as pfd.image reads
    files), uint8 arrays [H, W, 3] (RGB), or one uint8 array [N, H, W, 3].
    """
    if isinstance(images, (str, os.PathLike, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim == 3):
        images = [images]
    elif isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise InvalidInputError(f"images: got a {images.dtype} array of shape {list(images.shape)}; expected a "
                                    f"uint8 RGB image [H, W, 3] or a batch [N, H, W, 3] (a grey image [H, W]: "
                                    f"np.stack([a] * 3, axis=-1))")
        images = list(images)
    elif not isinstance(images, Sequence):
        raise InvalidInputError(f"images: expected an image path, a PIL image, a uint8 array [H, W, 3] or a list "
                                f"of them, got {type(images).__name__}")
    if len(images) == 0:
        raise InvalidInputError("images: got an empty list; pass image paths, PIL images or uint8 arrays [H, W, 3]")
    items = []
    for i, image in enumerate(images):
        if isinstance(image, (str, os.PathLike)):
            path = os.path.abspath(image)
            check_image_file(path)
            items.append(path)
        elif isinstance(image, Image.Image):
            items.append(_pil_item(image, f"images[{i}]"))
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
                raise InvalidInputError(f"images[{i}]: expected a uint8 RGB array [H, W, 3] with H, W >= 1, got "
                                        f"{image.dtype} array of shape {list(image.shape)}")
            items.append(_pil_item(Image.fromarray(image, "RGB"), f"images[{i}]"))
        else:
            raise InvalidInputError(f"images[{i}]: expected an image path, a PIL image or a uint8 array "
                                    f"[H, W, 3], got {type(image).__name__}")
    return items


def _one_image(image) -> str | Image.Image:
    """One query image (a path, PIL image or uint8 array [H, W, 3]) as `_image_items` reads it."""
    items = _image_items(image)
    if len(items) != 1:
        raise InvalidInputError(f"query: one image, got {len(items)}; search them one at a time")
    return items[0]


def _pil_item(image: Image.Image, where: str) -> Image.Image:
    """An in-memory image as 8-bit RGB (pfd.image.to_rgb); a lazily opened file that fails to decode is
    named by `where` and its file name."""
    source = f"{where} ({image.filename})" if getattr(image, "filename", "") else where
    try:
        return to_rgb(image, source)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{source}: cannot decode the image ({type(err).__name__}: {err})") from err


def _image_sizes(items: list) -> np.ndarray:
    """[N, 2] (width, height) of each item, from the file header for paths."""
    return np.array([image_size(x) if isinstance(x, str) else x.size for x in items], np.float32)


class _Images(Dataset):
    """Test-loader samples (pfd.data.loader's keys) of in-memory or on-disk images with given keypoints."""

    def __init__(self, items: Sequence[str | Image.Image], keypoints: np.ndarray, camids: np.ndarray, transform):
        self.items, self.keypoints, self.camids, self.transform = items, keypoints, camids, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        image, keypoints = self.transform(read_image(item) if isinstance(item, str) else item, self.keypoints[i])
        return {"image": image, "keypoints": keypoints, "camid": int(self.camids[i]), "index": i}


class ReIDModel:
    """A trained PFD (or ViT baseline) in eval mode, with its config, preprocessing and pose backend.

    `embed(images, keypoints=None, camids=None) -> np.ndarray [N, F]`. `feature_dim`, `config_hash`
    and `model_id` (the checkpoint's SHA-256) identify what its features can be compared with.
    """

    def __init__(self, model: torch.nn.Module, cfg: CN, device: torch.device, checkpoint: str | os.PathLike,
                 num_cameras: int):
        self.model, self.cfg, self.device = model, cfg, device
        self.checkpoint = Path(checkpoint).resolve()
        self.num_cameras = num_cameras
        self.transform = build_transforms(cfg, is_train=False)
        self.heatmaps = HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST, evaluation=True).to(device)
        self.amp_dtype = eval_dtype(cfg, device)  # TEST.AMP, as every evaluation
        self.normalize = retrieval_options(cfg)["normalize"]
        self._estimator, self._estimator_key = None, None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, config: str | os.PathLike | CN | None = None,
                        device: str = "auto", opts: Sequence[str] = ()) -> "ReIDModel":
        """Load a checkpoint: ours (it stores its config), or a reference PFD / TransReID one (needs `config`).

        `config`: a YAML path or a loaded config, overriding the stored one; `opts`: `KEY VALUE` overrides;
        `device`: auto | cpu | cuda | cuda:N.
        """
        checkpoint = read_eval_checkpoint(path)
        if isinstance(config, CN):
            if opts:
                raise InvalidInputError("opts: pass overrides with a config path (or none), not with a loaded config")
            cfg = config
        elif config is not None:
            cfg = load_config(config, opts)
        elif checkpoint.config:
            cfg = config_from_text(checkpoint.config, opts, source=f"{path} (its stored config)")
        else:
            raise InvalidInputError(f"{path} carries no config (a reference PFD/TransReID checkpoint?): pass "
                                    f"config=, the YAML file it was trained with (e.g. configs/occluded_duke.yaml)")
        device = resolve_device(device)
        model, info = load_eval_model(cfg, path, device, checkpoint)
        return cls(model, cfg, device, path, info["num_cameras"])

    @property
    def feature_dim(self) -> int:
        return self.model.feature_dim

    @property
    def config_hash(self) -> str:
        return config_hash(self.cfg)

    @cached_property
    def part_layout(self) -> PartLayout | None:
        """Where the feature's part blocks are when TEST.PART_DISTANCE visible compares them, else None."""
        return part_layout(self.model, self.cfg)

    @cached_property
    def model_id(self) -> str:
        """SHA-256 of the checkpoint file (what a gallery index's `model_id` must match)."""
        return sha256_file(self.checkpoint)

    def embed(self, images, keypoints=None, camids=None, progress: bool = False, return_keypoints: bool = False):
        """Features [N, F] (float32; L2-normalized when TEST.FEAT_NORM is yes, as evaluation ranks them).

        images: paths, PIL images or uint8 RGB arrays [H, W, 3] of any size (one, a list, or [N, H, W, 3]).
        keypoints: [N, 17, 3] COCO-17 (x, y, confidence) in each image's own pixels; None = computed by
            the configured pose backend (MODEL.POSE_BACKEND; unused with MODEL.POSE_ONLINE).
        camids: [N] 0-based cameras for the camera embedding; None, -1 or out of range = camera 0.
        Images are processed in batches of TEST.IMS_PER_BATCH. `return_keypoints`: return (features, the
        keypoints [N, 17, 3] they were made from), keypoints None with MODEL.POSE_ONLINE (a gallery stores them).
        """
        items = _image_items(images)
        kps = self._keypoints(items, keypoints)  # [N, 17, 3]
        cams = self._camids(camids, len(items))  # [N]
        batch = self.cfg.TEST.IMS_PER_BATCH
        on_disk = all(isinstance(x, str) for x in items)
        workers = self.cfg.DATALOADER.NUM_WORKERS if on_disk and len(items) > batch else 0
        loader = DataLoader(_Images(items, kps, cams, self.transform), batch_size=batch, num_workers=workers,
                            pin_memory=self.device.type == "cuda")
        feats, _ = loader_features(self.model, loader, self.device, self.heatmaps, self.amp_dtype, "embed", progress,
                                   flip=self.cfg.TEST.FLIP_FEATS)
        if self.normalize:
            feats = F.normalize(feats, dim=1)  # as pfd.retrieval ranks them
        if return_keypoints:
            return feats.cpu().numpy(), None if self.cfg.MODEL.POSE_ONLINE else kps
        return feats.cpu().numpy()

    def keypoints(self, images) -> np.ndarray:
        """COCO-17 keypoints [N, 17, 3] of `images` (as `embed` takes them) from the configured pose backend."""
        return self._estimate(_image_items(images))

    def close(self) -> None:
        """Release the pose backend (mediapipe graphs, HRNet weights)."""
        if self._estimator is not None:
            self._estimator.close()
        self._estimator, self._estimator_key = None, None

    def _keypoints(self, items: list, keypoints) -> np.ndarray:
        n = len(items)
        if keypoints is None:
            if self.cfg.MODEL.POSE_ONLINE:  # HRNet runs inside the heatmap maker
                return np.zeros((n, NUM_KEYPOINTS, 3), np.float32)
            return self._estimate(items)
        kps = np.asarray(keypoints, dtype=np.float32)
        if kps.shape == (NUM_KEYPOINTS, 3) and n == 1:
            kps = kps[None]
        if kps.shape != (n, NUM_KEYPOINTS, 3):
            raise InvalidInputError(f"keypoints: expected shape [{n}, {NUM_KEYPOINTS}, 3] (x, y, confidence of the "
                                    f"COCO-17 keypoints in each image's pixels) for {n} image(s), got "
                                    f"{list(kps.shape)}")
        check_keypoint_values(kps, [f"images[{i}]" for i in range(n)], "keypoints", _image_sizes(items))
        return kps

    def _camids(self, camids, n: int) -> np.ndarray:
        if camids is None:
            return np.zeros(n, np.int64)
        cams = np.asarray(camids, dtype=np.int64).reshape(-1)
        if len(cams) != n:
            raise InvalidInputError(f"camids: {len(cams)} values for {n} image(s)")
        return np.where((cams >= 0) & (cams < self.num_cameras), cams, 0)

    def _estimate(self, items: list) -> np.ndarray:
        """Keypoints from the pose backend, TEST.IMS_PER_BATCH images at a time."""
        paths = [x for x in items if isinstance(x, str)]
        backend = resolve_backend(self.cfg, None, paths)
        if backend in PATH_BACKENDS and len(paths) < len(items):
            raise InvalidInputError(f"MODEL.POSE_BACKEND {backend} looks keypoints up by image path: pass image "
                                    f"paths, or keypoints= for in-memory images")
        key = (backend, str(find_synthetic_keypoints(paths)) if backend == "synthetic" else "")
        if self._estimator is None or self._estimator_key != key:
            self.close()
            self._estimator, self._estimator_key = build_estimator(self.cfg, backend, paths), key
        step = self.cfg.TEST.IMS_PER_BATCH
        chunks = [items[i:i + step] for i in range(0, len(items), step)]
        if len(paths) == len(items):
            return np.concatenate([self._estimator.predict_paths(c) for c in chunks]).astype(np.float32)
        return np.concatenate([self._estimator.predict([read_image(x) if isinstance(x, str) else x for x in c])
                               for c in chunks]).astype(np.float32)


class Match(NamedTuple):
    """One search result: a gallery image, its identity and 0-based camera (-1 = unknown), its distance
    (squared Euclidean, 2 - 2 cos on normalized features; smaller is closer), and what the gallery stores
    of it: its SHA-256, the keypoints [17, 3] its feature was made from (None: not stored), its time
    (seconds since the epoch; None: unknown) and its number in the gallery (`index`)."""

    path: str
    id: int
    camera: int
    distance: float
    sha256: str | None = None
    keypoints: np.ndarray | None = None
    time: float | None = None
    index: int = -1


def _open_store(location):
    """The gallery store at `location`: a FAISS index folder, or a Milvus collection."""
    if is_milvus_location(str(location)):
        from .retrieval.milvus_store import MilvusGallery
        return MilvusGallery.open(str(location))
    return load_index(location)


def check_gallery_output(location: str | os.PathLike, index: str = "flat", replace: bool = False) -> None:
    """Refuse now, before any work, a place `Gallery.build(..., store=location)` would refuse: a folder
    that is not ours or holds an index (unless `replace`); a Milvus collection likewise, or a kind it lacks."""
    if is_milvus_location(str(location)):
        from .retrieval.milvus_store import check_output
        check_output(str(location), index, replace)
    else:
        check_index_output(location, replace)


def _check_rerankable(model: "ReIDModel", kind: str, location) -> None:
    """With TEST.PART_DISTANCE visible, searches re-rank with the stored vectors: a kind that does not keep
    them whole (FAISS: only flat and flat-fp16 do; Milvus: all but the reducing kinds) is refused up front."""
    if getattr(model, "part_layout", None) is None:
        return
    if location is not None and is_milvus_location(str(location)):
        from .retrieval.milvus_store import REDUCERS
        bad, fine = kind in REDUCERS, "flat or ivfpq"
    else:
        bad, fine = kind not in WHOLE_KINDS, " or ".join(WHOLE_KINDS)
    if bad:
        raise InvalidInputError(f"index kind {kind!r}: TEST.PART_DISTANCE visible re-ranks each search with the "
                                f"stored vectors, which this kind does not keep whole; use {fine}, or "
                                f"TEST.PART_DISTANCE concat")


def _new_store(location, kind: str, model: "ReIDModel", num_items: int, params: dict | None, replace: bool,
               **ids):
    """(an empty store, the builder that trains it: FAISS's IndexBuilder, Milvus's PCA/OPQ stage or None).
    A Milvus collection is created at once (refused now when it exists); a folder is checked, written by save."""
    if is_milvus_location(str(location)):
        from .retrieval.milvus_store import MilvusGallery
        return MilvusGallery.create(str(location), kind, model.feature_dim, num_items, model.normalize, params,
                                    replace, **ids)
    if location is not None:
        check_index_output(location, replace)  # before any embedding
    return new_gallery_index(kind, model.feature_dim, num_items, model.normalize, params, **ids)


class Gallery:
    """Gallery images in a store (a FAISS index folder, pfd.retrieval.index_folder, or a Milvus collection,
    pfd.retrieval.milvus_store) with the model that embeds queries for it."""

    def __init__(self, index, model: ReIDModel | None = None, folder: str | os.PathLike | None = None):
        self.index = index  # the store: GalleryIndex (FAISS) or MilvusGallery
        self.folder = None if folder is None else Path(folder)  # the index folder it was loaded from
        self._model = model
        self._poser: QueryPoser | None = None  # search's query keypoint policy, made on the first search

    @classmethod
    def build(cls, model: ReIDModel, folder_or_paths, index: str = "flat",
              keypoints: np.ndarray | Mapping[str, np.ndarray] | None = None, progress: bool = False,
              chunk_size: int = CHUNK_SIZE, params: dict | None = None, seed: int = 0, times=None,
              store: str | os.PathLike | None = None, replace: bool = False) -> "Gallery":
        """Embed every image of a folder (recursive) or a list of paths and index them, chunk by chunk.

        index: a kind of pfd.retrieval.INDEX_KINDS ("flat" exact, "flat-fp16", "ivfpq", "pca+ivfpq",
        "opq+ivfpq" compressed approximate). Identities and cameras come from Market-1501 style names
        (else -1). keypoints: [N, 17, 3] in record order, or a mapping absolute path -> [17, 3] (missing
        = not visible); None = the model's pose backend. times: each image's time, a mapping absolute
        path -> seconds / datetime / ISO 8601 text (missing = unknown) or one per image. Memory:
        `chunk_size` features at a time (kinds that learn first embed a random training sample of
        `params["train_rows"]` images, `seed`). store: where to write it, a folder (saved at the end,
        as `save`) or a Milvus location (written as it goes); None = in memory until `save`. replace:
        replace the gallery already there (else refused before any work).
        """
        _check_rerankable(model, index, store)
        folder, records = _gallery_records(folder_or_paths)
        kps = _keypoint_rows(keypoints, records)
        row_times = _time_rows(times, records)
        ids = dict(model_id=model.model_id, config_hash=model.config_hash, feature_kind=model.cfg.MODEL.FEAT_KIND,
                   config=model.cfg.dump(), weights=str(model.checkpoint), model_name=model.cfg.MODEL.NAME,
                   gallery=None if folder is None else str(folder))
        gallery_store, builder = _new_store(store, index, model, len(records), params, replace, **ids)
        checksums = [sha256_file(r.path) for r in records]
        measure = isinstance(gallery_store, GalleryIndex) and index != "flat"  # a Milvus server indexes later
        probes, known = None, {}
        if builder is not None and builder.needs_training:
            probes, known = _train(builder, model, records, kps, chunk_size, progress, seed)
        for rows, feats, used in _embed_chunks(model, records, kps, np.arange(len(records)), chunk_size, progress,
                                               known):
            if measure and probes is None:
                probes = feats[:RECALL_PROBES].copy()
            if measure and builder.recall_probes is None:
                builder.track_recall(probes)
            gallery_store.add(feats, [records[i] for i in rows], [checksums[i] for i in rows], builder,
                              times=None if row_times is None else [row_times[i] for i in rows], keypoints=used)
        if isinstance(gallery_store, GalleryIndex):
            gallery_store.meta["recall_at_10"] = builder.recall_at_10()
        else:
            gallery_store.flush()
        gallery = cls(gallery_store, model)
        if store is not None and isinstance(gallery_store, GalleryIndex):
            gallery.save(store, replace=replace)
        return gallery

    def add(self, folder_or_paths, keypoints: np.ndarray | Mapping[str, np.ndarray] | None = None,
            progress: bool = False, chunk_size: int = CHUNK_SIZE, times=None) -> dict:
        """Embed and index the images of a folder or list of paths that are not in the gallery yet.

        An image already here (same path and SHA-256) is skipped and counted; one whose file changed
        replaces its old entry. Queries' model (`model`) embeds them, so it must be the gallery's.
        times: as for `build`. Returns {"added", "duplicates", "replaced"}; `save` writes the grown
        gallery (a Milvus gallery has it already: rerunning an add a kill stopped completes it).
        """
        model = self.model
        _, records = _gallery_records(folder_or_paths)
        kps = _keypoint_rows(keypoints, records)
        row_times = _time_rows(times, records)
        checksums = [sha256_file(r.path) for r in records]
        new, duplicates, changed = self.index.plan_add([r.path for r in records], checksums)
        self.index.remove(changed)
        for rows, feats, used in _embed_chunks(model, records, kps, np.asarray(new, np.int64), chunk_size, progress):
            self.index.add(feats, [records[i] for i in rows], [checksums[i] for i in rows],
                           times=None if row_times is None else [row_times[i] for i in rows], keypoints=used)
        if new and not isinstance(self.index, GalleryIndex):
            self.index.flush()
        return {"added": len(new) - len(changed), "duplicates": duplicates, "replaced": len(changed)}

    def remove(self, paths) -> int:
        """Take these images (paths, as given or absolute) out of the gallery; returns how many were in it.
        Search never returns them again; `save` writes the change (a Milvus gallery has it already)."""
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        return self.index.remove(os.path.abspath(p) for p in paths)

    @classmethod
    def load(cls, location: str | os.PathLike, model: ReIDModel | None = None) -> "Gallery":
        """A saved gallery (an index folder or a Milvus location); with `model`, refuses one built by another
        model or config (IndexLoadError). Without, queries are embedded by the model the gallery was built
        with (its stored config and weights)."""
        store = _open_store(location)
        gallery = cls(store, folder=location if isinstance(store, GalleryIndex) else None)
        if model is not None:
            gallery.use_model(model)
        return gallery

    def save(self, location: str | os.PathLike, replace: bool = False) -> Path | str:
        """Write the gallery into the folder `location` as a new version, switched to atomically
        (pfd.retrieval.index_folder); returns the folder.

        Refused: a folder that is not empty and not an index of ours, and one holding an index unless
        `replace` or it is the folder this gallery was loaded from (saving back an add or remove). A
        Milvus gallery is written as it changes: saving it to its own location does nothing more.
        """
        if isinstance(self.index, GalleryIndex) and not is_milvus_location(str(location)):
            self.folder = save_index(self.index, location, replace=replace)
            return self.folder
        if not isinstance(self.index, GalleryIndex) and is_milvus_location(str(location)) \
                and self.index.is_at(str(location)):
            return str(location)
        raise InvalidInputError(f"{location}: a gallery moves to another store (FAISS folder or Milvus collection) "
                                f"by building it there: `python query.py index ... --out {location}` "
                                f"(Gallery.build(..., store={str(location)!r}))")

    def close(self) -> None:
        """Let go of the store's connection (a Milvus Lite folder can then be opened by another process) and of
        the query pose estimators."""
        if not isinstance(self.index, GalleryIndex):
            self.index.close()
        self._close_poser()

    def use_model(self, model: ReIDModel) -> None:
        """Embed queries with `model`; IndexLoadError when the gallery was built with another config or checkpoint."""
        where = self._meta_where
        check_built_with(self.meta, where, config_hash=model.config_hash, model_id=model.model_id)
        self._model = model
        self._close_poser()  # the policy follows the model's config

    @property
    def meta(self) -> dict:
        return self.index.meta

    @property
    def _meta_where(self) -> str:
        """The metadata file it was loaded from or saved to (the collection of a Milvus gallery), for messages."""
        if not isinstance(self.index, GalleryIndex):
            return self.index.where
        saved = self.index.saved_as
        return str(saved[0] / saved[1] / META_FILE) if saved else "the gallery's metadata"

    def __len__(self) -> int:
        return len(self.index)

    def stored_config(self, opts: Sequence[str] = ()) -> CN:
        """The config the gallery was built with (from its metadata), with `opts` overrides."""
        where = self._meta_where
        if not self.meta.get("config"):
            raise IndexLoadError(f"{where} stores no config (key 'config'); pass a config, or rebuild the index "
                                 f"with `python query.py index ...`")
        return config_from_text(self.meta["config"], opts, source=f"{where} (key 'config')")

    @property
    def model(self) -> ReIDModel:
        """The model queries are embedded with (loaded from the stored config and weights when not given)."""
        if self._model is None:
            if not self.meta.get("weights"):
                raise IndexLoadError("the gallery's metadata names no checkpoint (key 'weights'); pass a model")
            self.use_model(ReIDModel.from_checkpoint(self.meta["weights"], self.stored_config()))
        return self._model

    def query_poser(self, cfg: CN | None = None, give: str = "keypoints=[17, 3]",
                    fallback: str | None = None) -> QueryPoser:
        """The one policy for a query photo's keypoints (pfd.inference.query_pose) on this gallery: keypoints
        given, else the gallery's pose backend when it reads pixels, else the photo's entry in the gallery's
        keypoint file, else `fallback` or an error saying how to `give` them. `cfg`: the config the gallery was
        built with (default: its model's); `query.py search` and the service make theirs here, `search` its own."""
        return QueryPoser(cfg if cfg is not None else self.model.cfg, self._image_folder(), give, fallback)

    def query_pose(self, image, keypoints=None) -> QueryPose:
        """The keypoints `search` uses for `image` (a path, PIL image or uint8 array [H, W, 3]) and why."""
        return self._pose(_one_image(image), keypoints)

    def search(self, query, k: int = 10, keypoints=None, camid: int | None = None, *,
               cameras: Sequence[int] | None = None, exclude_camera: int | None = None, since=None,
               until=None) -> list[Match]:
        """The `k` nearest gallery images of one query, nearest first (fewer only when fewer pass the filters).

        query: an image (path, PIL image, uint8 array [H, W, 3]) or a feature [F] / [1, F] from a model
        with the same config and weights. keypoints [17, 3]: the image's pose (None = `query_pose`'s: the
        gallery's pose backend when it reads pixels, else the photo's entry in the gallery's keypoint file).
        camid: the query's 0-based camera for the camera embedding; None = parsed from a Market-1501
        style file name, else camera 0. Filters: only images of `cameras` (0-based), none of
        `exclude_camera` (the re-ID protocol excludes the query's own), taken `since` / `until` (seconds,
        datetime or ISO 8601 text; an image without a time is then left out).
        """
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        where = SearchFilter.of(cameras, exclude_camera, since, until)  # checked before the query is embedded
        hits = self._find(self._query_feature(query, keypoints, camid), k, where)
        return [Match(h.path, h.pid, h.camid, h.distance, h.sha256, h.keypoints, h.time, h.row) for h in hits]

    def _find(self, query_feat: np.ndarray, k: int, where: SearchFilter) -> list:
        """The store's k nearest [Hit]; with TEST.PART_DISTANCE visible, its TEST.PART_RERANK_TOP nearest by the
        whole feature re-ranked by the visible-part distance (pfd.retrieval.part_distance), as evaluation ranks."""
        layout = self._part_layout()
        if layout is None:
            return self.index.find(query_feat, k, where)
        hits = self.index.find(query_feat, max(k, self.model.cfg.TEST.PART_RERANK_TOP), where)
        try:
            stored = self.index.vectors([h.row for h in hits])  # [n, F] as indexed
        except ValueError as err:
            raise InvalidInputError(f"{self._meta_where}: {err}; search it with TEST.PART_DISTANCE concat") from None
        dist = visible_part_distance(torch.from_numpy(query_feat).float(), torch.from_numpy(stored), layout)[0]  # [n]
        order = torch.argsort(dist, stable=True)[:k].tolist()
        return [hits[i]._replace(distance=float(dist[i])) for i in order]

    def _part_layout(self) -> PartLayout | None:
        """The part blocks `_find` re-ranks with, else None. A gallery searched by features without a model loads
        one only when its stored config asks for the visible-part distance (which needs the model's layout)."""
        if self._model is None and self.stored_config().TEST.PART_DISTANCE != "visible":
            return None
        return getattr(self.model, "part_layout", None)

    def _query_feature(self, query, keypoints, camid: int | None) -> np.ndarray:
        if isinstance(query, torch.Tensor):
            query = query.detach().cpu().numpy()
        if isinstance(query, np.ndarray) and np.issubdtype(query.dtype, np.floating):
            if query.ndim == 1 or (query.ndim == 2 and query.shape[0] == 1):
                return query.reshape(1, -1)
            raise InvalidInputError(f"query: a feature must have shape [F] or [1, F], got {list(query.shape)}")
        if camid is None and isinstance(query, (str, os.PathLike)):
            camid = parse_name(query)[1]
        item = _one_image(query)
        return self.model.embed(item, self._pose(item, keypoints).keypoints, camids=None if camid is None else [camid])

    def _pose(self, item: str | Image.Image, keypoints) -> QueryPose:
        if self._poser is None:
            self._poser = self.query_poser()
        return self._poser.pose(item, keypoints, where=f"query {item}" if isinstance(item, str) else "query")

    def _image_folder(self) -> str | None:
        """Where the gallery's images are, from which its pose backend `auto` and the synthetic backend's keypoint
        file are found as when it was built: the folder of its first image (a FAISS index), else the folder it
        was built from (a Milvus one: read from its metadata, no query; None when built from a list of paths)."""
        if isinstance(self.index, GalleryIndex):
            return next((os.path.dirname(p) for p in self.meta["paths"] if p is not None), None)
        return self.meta.get("gallery")

    def _close_poser(self) -> None:
        if self._poser is not None:
            self._poser.close()
        self._poser = None
