"""query.py's work, written with the Python API (pfd.api): index a folder of person images, look one up.

The index folder (pfd.retrieval.index) holds the FAISS index and a metadata table: paths, ids,
cameras, the checkpoint's SHA-256 (`model_id`), the config hash, the feature kind, plus the
resolved config and checkpoint path so `search` can rebuild the same model without being told.
`search` refuses an index whose model or config differs from the one it is given. Where a folder is
named, a Milvus collection may be instead (`milvus:PATH.db`, `milvus://HOST:PORT/COLLECTION`).
"""
from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from .api import Gallery, Match, ReIDModel, check_gallery_output, folder_records, parse_name
from .config import config_hash, load_config
from .data.sets import load_keypoints
from .engine.logger import setup_logger
from .errors import CHECKPOINT_FILE, InvalidInputError, outputs_kept, require_file
from .image import check_image_file, image_size, is_pfd_png
from .inference.query_pose import QueryPose
from .io import claim_output_file
from .pose.keypoints import check_keypoint_values, keypoints_from_json
from .retrieval import plots
from .retrieval.index_folder import check_built_with, check_index_output
from .retrieval.stores import SearchFilter, is_milvus_location, to_timestamp

__all__ = ["build_gallery_index", "read_query_keypoints", "read_times", "search_image", "search_pose",
           "format_ranking"]

logger = logging.getLogger("pfd")


def read_times(csv_path: str, records, gallery: str) -> dict[str, float]:
    """Image path -> seconds since the epoch from a CSV of `path,timestamp` rows (a `path,...` header line
    may come first; paths relative to the gallery folder or absolute; timestamps in seconds or ISO 8601,
    no zone = UTC). Rows naming no image of `records` are ignored; an image without a row has no time."""
    path = require_file(csv_path, "--times: CSV", "a CSV file of path,timestamp rows")
    root, known, times = Path(gallery).resolve(), {r.path for r in records}, {}
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or (number == 1 and row[0].strip().lower() == "path"):
                continue
            if len(row) != 2:
                raise InvalidInputError(f"{path}:{number}: expected two columns path,timestamp, got {len(row)}")
            image = str((root / row[0].strip()).resolve())
            if image in known:
                times[image] = to_timestamp(row[1], f"{path}:{number}: timestamp")
    logger.info("times for %d of %d gallery images from %s", len(times), len(records), path)
    return times


def build_gallery_index(config: str, weights: str, gallery: str, out: str, index_type: str = "flat",
                        opts: Sequence[str] = (), replace: bool = False, append: bool = False,
                        times: str | None = None) -> dict:
    """Embed every image under `gallery` and save an index to `out` (a folder, or a Milvus location);
    returns its metadata.

    `append`: add the images not in the index at `out` yet (same path and content = skipped) to it;
    `replace`: build anew over an index already at `out` (else refused before any work). Poses come
    from the per-dataset pose cache (pfd.pose.cache), as for test.py, so a folder indexed twice is
    pose-estimated once. `times`: a CSV of path,timestamp rows (`read_times`) for time-window searches.
    """
    if replace and append:
        raise InvalidInputError("--replace and --append exclude each other: build anew, or add to the index")
    cfg = load_config(config, opts)
    setup_logger(None)
    existing = Gallery.load(out) if append else None  # before any work: the index must be whole
    records = folder_records(gallery)  # every image checked before the output folder is claimed
    row_times = read_times(times, records, gallery) if times else None
    if not append:
        check_gallery_output(out, index_type, replace)
    elif not is_milvus_location(str(out)):  # a folder's links are refused before any work
        check_index_output(out, replace, existing.index.saved_as)
    require_file(weights, "--weights: checkpoint", CHECKPOINT_FILE)
    name = "gallery_" + hashlib.sha256(str(Path(gallery).resolve()).encode()).hexdigest()[:10]
    model = ReIDModel.from_checkpoint(weights, cfg, device=cfg.MODEL.DEVICE)  # a bad checkpoint fails before posing
    keypoints = load_keypoints(cfg, records, name)  # None with MODEL.POSE_ONLINE
    outputs_kept()  # inputs read: an error while embedding keeps what the index folder holds
    if existing is not None:
        existing.use_model(model)  # refuses another model or config
        counts = existing.add(gallery, keypoints=keypoints, progress=True, times=row_times)
        existing.save(out)
        logger.info("added %d images to %s (%d already there, %d changed files replaced); %d in all", counts["added"],
                    out, counts["duplicates"], counts["replaced"], len(existing))
        return existing.meta
    built = Gallery.build(model, gallery, index_type, keypoints=keypoints, progress=True, times=row_times, store=out,
                          replace=replace)
    meta = built.meta
    recall = meta["recall_at_10"]
    logger.info("indexed %d images (%s, dim %d) into %s%s", len(built), index_type, meta["feature_dim"], out,
                "" if recall is None else f"; recall@10 vs exact search {recall:.3f}")
    return meta


def format_ranking(matches: Sequence[Match]) -> str:
    """The ranked list as a table: rank, distance, id, camera (1-based as in file names, -1 = unknown), path."""
    lines = [f"{'rank':>4}  {'distance':>8}  {'id':>5}  {'cam':>3}  path"]
    for rank, m in enumerate(matches, 1):
        lines.append(f"{rank:>4}  {m.distance:>8.4f}  {m.id:>5}  {m.camera + 1 if m.camera >= 0 else -1:>3}  {m.path}")
    return "\n".join(lines)


KEYPOINTS_HINT = "--keypoints FILE, a JSON file of its 17 [x, y, confidence] rows in COCO order, in its pixels"


def read_query_keypoints(path: str, image: Path) -> np.ndarray:
    """--keypoints: the query photo's keypoints [17, 3] from a JSON file (the array the service's `keypoints`
    field takes), checked against the photo (finite, confidence in [0, 1], present points inside it)."""
    file = require_file(path, "--keypoints", "a JSON file of 17 [x, y, confidence] rows")
    try:
        text = file.read_text()
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"--keypoints {file}: not a text file ({err})") from None
    kps = keypoints_from_json(text, f"--keypoints {file}")
    check_keypoint_values(kps[None], [image.name], f"--keypoints {file}", [image_size(image)])
    return kps


def search_pose(gallery: Gallery, cfg, image: Path, keypoints_file: str | None = None) -> QueryPose:
    """The keypoints `search` uses for the photo `image`, and why: the one query policy on the index's config
    `cfg`, with --keypoints (`keypoints_file`) as the caller's keypoints."""
    given = read_query_keypoints(keypoints_file, image) if keypoints_file else None
    poser = gallery.query_poser(cfg, give=KEYPOINTS_HINT)
    try:
        return poser.pose(str(image), given, where=f"--image {image}")
    finally:
        poser.close()


def _camera_filters(cameras, exclude_camera, query_camid: int, image: Path) -> dict:
    """--cameras / --exclude-camera (1-based, as in file names) as Gallery.search's 0-based arguments."""
    if exclude_camera == "query":
        if query_camid < 0:
            raise InvalidInputError(f"--exclude-camera without a number excludes the query's own camera, but "
                                    f"{image.name} names none (Market-1501 style, e.g. 0001_c2s1_000001_00.jpg): "
                                    f"give the camera, --exclude-camera N")
        exclude_camera = query_camid + 1
    for value in [*(cameras or ()), *([] if exclude_camera is None else [exclude_camera])]:
        if value < 1:
            raise InvalidInputError(f"--cameras / --exclude-camera: cameras are numbered from 1 as in file names "
                                    f"(c1 = 1), got {value}")
    return {"cameras": None if cameras is None else [c - 1 for c in cameras],
            "exclude_camera": None if exclude_camera is None else exclude_camera - 1}


def search_image(index_dir: str, image: str, topk: int = 10, config: str | None = None, weights: str | None = None,
                 out: str | None = None, opts: Sequence[str] = (), cameras: Sequence[int] | None = None,
                 exclude_camera: int | str | None = None, since: str | None = None,
                 until: str | None = None, keypoints: str | None = None) -> list[Match]:
    """Rank the index for one image: print the list, save the picture; returns the matches, nearest first.

    The model comes from `config` / `weights`, each defaulting to what the index stores. The picture
    goes to `out` (default `search_<image name>.png` in the current folder): a new path or a picture pfd
    wrote, never a user's file nor a file inside an index or run folder (pfd.io.claim_output_file).
    Filters (Gallery.search): `cameras` and `exclude_camera` 1-based as in file names (c1 = 1; exclude
    "query" = the query's own camera, from its name), `since` / `until` seconds or ISO 8601 times. The
    photo's keypoints follow the one query policy (pfd.inference.query_pose): `keypoints` (a JSON file),
    else the index's pose backend when it reads pixels, else the photo's entry in the index's keypoint file;
    the log says which and why.
    """
    setup_logger(None)
    image_path = Path(image).resolve()
    if topk < 1:
        raise InvalidInputError(f"--topk must be at least 1 (the number of gallery images listed), got {topk}")
    require_file(image_path, "--image", "an image file")
    check_image_file(image_path)  # header and end marker: a damaged photo fails before the index is read
    pid, camid = parse_name(image_path)
    filters = dict(since=since, until=until, **_camera_filters(cameras, exclude_camera, camid, image_path))
    SearchFilter.of(**filters)  # a bad filter fails before the index is read
    picture = claim_output_file(out or f"search_{image_path.stem}.png", is_pfd_png, what="picture",
                                hint="choose another --out (a picture pfd wrote may be replaced)")
    gallery = Gallery.load(index_dir)
    cfg = load_config(config, opts) if config else gallery.stored_config(opts)
    weights = weights or gallery.meta.get("weights", "")
    if not weights:
        raise InvalidInputError("--weights is needed (the index does not name its checkpoint)")
    require_file(weights, "--weights: checkpoint", CHECKPOINT_FILE)
    check_built_with(gallery.meta, index_dir, config_hash=config_hash(cfg))  # before the pose pass
    pose = search_pose(gallery, cfg, image_path, keypoints)  # before the model loads: a photo without any fails fast
    logger.info("query keypoints: %s", pose.reason)
    gallery.use_model(ReIDModel.from_checkpoint(weights, cfg, device=cfg.MODEL.DEVICE))

    matches = gallery.search(str(image_path), topk, keypoints=pose.keypoints, camid=camid, **filters)
    print(format_ranking(matches), flush=True)

    # An unknown query id (-1) matches nothing: not even gallery images whose id is also unknown.
    shown_pid = pid if pid >= 0 else min((m.id for m in matches), default=0) - 1
    plots.plot_ranked_lists([str(image_path)], [shown_pid], [m.path for m in matches], [m.id for m in matches],
                            [list(range(len(matches)))], picture, topk=topk, image_hw=tuple(cfg.INPUT.SIZE_TEST),
                            query_keypoints=None if pose.keypoints is None else pose.keypoints[None],
                            keypoint_threshold=cfg.MODEL.SKT_THRES)
    logger.info("ranking picture: %s", picture)
    return matches
