"""Pictures of results: a CMC curve, a grid of ranked lists and training curves. PNGs are written atomically,
tagged as pfd's own (pfd.image.PNG_TEXT) so that a later write may replace them.

The CMC and training-curve plots use matplotlib's Agg canvas directly (no pyplot, no global backend
switch); the ranked-list grid is composed with PIL so its pixel size is exact:
    width  = PAD + (1 + topk) * (W + 2 * BORDER + PAD) + QUERY_GAP
    height = PAD + num_queries * (H + 2 * BORDER + PAD)
for thumbnails of ``image_hw = (H, W)``. Query keypoints, when given, are drawn over the query
thumbnail: visible ones (confidence >= the model's threshold) in cyan, occluded ones in magenta.
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageOps

from ..image import PNG_TEXT, png_info, read_image
from ..io import atomic_write

log = logging.getLogger(__name__)

__all__ = ["plot_cmc", "plot_ranked_lists", "plot_training_curves", "ranked_grid_size", "shown_queries",
           "BORDER", "PAD", "QUERY_GAP", "KEYPOINT_COLOURS", "VIS_ORDERS"]

BORDER = 4  # coloured frame around each thumbnail
PAD = 4  # space between cells
QUERY_GAP = 12  # extra space between the query and its ranked list
_COLOURS = {"query": (70, 110, 220), "right": (40, 170, 60), "wrong": (220, 40, 40)}
KEYPOINT_COLOURS = {"visible": (0, 230, 255), "occluded": (255, 0, 255)}
KEYPOINT_RADIUS = 2  # px on the thumbnail


def _write_atomic(path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def plot_cmc(cmc, path, label: str = "", title: str = "CMC", size_px: tuple[int, int] = (640, 480)) -> Path:
    """Plot a CMC curve (``cmc[k]`` = Rank-(k+1) accuracy in [0, 1], e.g. ``evaluate(...)["cmc"]``).

    Writes a PNG of exactly ``size_px`` (width, height) pixels to ``path``; returns the path.
    """
    cmc = np.asarray(cmc, dtype=np.float64).ravel()
    if cmc.size == 0:
        raise ValueError("plot_cmc needs a non-empty CMC curve")
    dpi = 100
    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ranks = np.arange(1, cmc.size + 1)
    ax.plot(ranks, 100 * cmc, marker="." if cmc.size <= 50 else None, label=label or None)
    ax.set(xlabel="rank", ylabel="matching rate (%)", title=title, xlim=(1, max(2, cmc.size)), ylim=(0, 100))
    ax.grid(alpha=0.3)
    if label:
        ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata=PNG_TEXT)
    return _write_atomic(path, buffer.getvalue())


def ranked_grid_size(num_queries: int, topk: int, image_hw: tuple[int, int] = (128, 64)) -> tuple[int, int]:
    """(width, height) in pixels of the picture ``plot_ranked_lists`` makes."""
    h, w = image_hw
    return (PAD + (1 + topk) * (w + 2 * BORDER + PAD) + QUERY_GAP, PAD + num_queries * (h + 2 * BORDER + PAD))


def _thumbnail(path: str, image_hw: tuple[int, int], colour, keypoints=None, threshold: float = 0.3) -> Image.Image:
    """The image resized to image_hw in a `colour` frame; keypoints [17, 3] (x, y, confidence in the
    image's own pixels), if given, drawn over it: confidence >= threshold visible, else occluded."""
    image = read_image(path)  # the one reader: every mode, errors name the path
    scale = np.array([image_hw[1] / image.width, image_hw[0] / image.height])  # (sx, sy)
    image = image.resize((image_hw[1], image_hw[0]), Image.BILINEAR)
    if keypoints is not None:
        kps = np.asarray(keypoints, dtype=np.float64)  # [17, 3]
        xy = kps[:, :2] * scale  # [17, 2] thumbnail pixels
        inside = (xy >= 0).all(1) & (xy[:, 0] < image_hw[1]) & (xy[:, 1] < image_hw[0])
        draw, r = ImageDraw.Draw(image), KEYPOINT_RADIUS
        for (x, y), conf in zip(xy[inside], kps[inside, 2]):
            fill = KEYPOINT_COLOURS["visible" if conf >= threshold else "occluded"]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(0, 0, 0))
    return ImageOps.expand(image, border=BORDER, fill=colour)


VIS_ORDERS = ("ap", "list")  # TEST.VIS_ORDER: how `shown_queries` picks the rows of the picture


def shown_queries(query_ap, count: int, order: str = "ap") -> np.ndarray:
    """Indices of the `count` queries a ranked-list picture shows, of query_ap [num_query] (each
    query's AP, NaN without a true match: `metrics.evaluate`'s "query_ap").

    "ap": the queries with a true match, sorted by AP (best first, ties in list order), cut into
    `count` equal shares, and the middle query of each share: every row stands for as many queries,
    so the picture's right and wrong matches follow the metrics, best row on top.
    "list": evenly spaced through the query list, first and last included, whatever the results.
    """
    query_ap = np.asarray(query_ap, dtype=np.float64)
    if order == "list":
        return np.linspace(0, len(query_ap) - 1, min(count, len(query_ap))).round().astype(np.int64)
    if order != "ap":
        raise ValueError(f"ranked-list order {order!r}: expected one of {', '.join(VIS_ORDERS)}")
    valid = np.flatnonzero(~np.isnan(query_ap))
    ranked = valid[np.argsort(-query_ap[valid], kind="stable")]  # best first
    count = min(count, len(ranked))
    if count == 0:  # no query with a true match (or no rows asked for): nothing to show
        return ranked
    return ranked[((np.arange(count) + 0.5) * len(ranked) / count).astype(np.int64)]


def plot_ranked_lists(query_paths: Sequence[str], query_pids: Sequence[int], gallery_paths: Sequence[str],
                      gallery_pids: Sequence[int], ranked_indices, path, topk: int = 10,
                      image_hw: tuple[int, int] = (128, 64), query_keypoints=None,
                      keypoint_threshold: float = 0.3) -> Path:
    """One row per query: the query (blue frame), then its first ``topk`` gallery images framed
    green (same identity) or red (other identity).

    ``query_keypoints``: None, or [num_queries, 17, 3] (x, y, confidence) in each query image's own
    pixels, drawn over the query (confidence >= ``keypoint_threshold``, e.g. MODEL.SKT_THRES:
    visible colour, else occluded; see KEYPOINT_COLOURS) so the picture shows what the pose
    estimator saw.

    ``ranked_indices`` [num_queries, >= topk] gallery rows, best first (e.g. from ``rank_gallery``;
    drop same-id-same-camera "junk" beforehand to show the evaluation protocol's lists); an entry
    of -1 (FAISS's "no result") leaves its cell blank. ``query_pids`` / ``gallery_pids``: sequences,
    numpy or torch. Writes a PNG of ``ranked_grid_size(...)`` pixels; returns the path.
    """
    ranked = np.asarray(ranked_indices)
    if ranked.ndim != 2 or len(ranked) != len(query_paths):
        raise ValueError(f"ranked_indices must be [num_queries={len(query_paths)}, k], got shape {ranked.shape}")
    if query_keypoints is not None and np.shape(query_keypoints)[:1] != (len(query_paths),):
        raise ValueError(f"query_keypoints must be [num_queries={len(query_paths)}, 17, 3], "
                         f"got shape {np.shape(query_keypoints)}")
    topk = min(topk, ranked.shape[1])
    width, height = ranked_grid_size(len(query_paths), topk, image_hw)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    cell_w, cell_h = image_hw[1] + 2 * BORDER + PAD, image_hw[0] + 2 * BORDER + PAD
    for row, (q_path, q_pid) in enumerate(zip(query_paths, query_pids)):
        top = PAD + row * cell_h
        kps = None if query_keypoints is None else query_keypoints[row]
        canvas.paste(_thumbnail(q_path, image_hw, _COLOURS["query"], kps, keypoint_threshold), (PAD, top))
        for rank, g in enumerate(ranked[row, :topk]):
            if g < 0:
                continue
            colour = _COLOURS["right"] if int(gallery_pids[g]) == int(q_pid) else _COLOURS["wrong"]
            canvas.paste(_thumbnail(gallery_paths[g], image_hw, colour), (PAD + QUERY_GAP + (rank + 1) * cell_w, top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", pnginfo=png_info())
    return _write_atomic(path, buffer.getvalue())


def _read_metrics_log(path) -> tuple[dict[int, dict], dict[str, dict[int, float]]]:
    """(train record per epoch, {dataset: {epoch: mAP}}) of a metrics.jsonl; a resumed run's repeated
    epochs keep their last record."""
    train, evals = {}, {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # torn by a kill or a full disk; the writer ends it with a newline
            log.warning("%s, line %d: not a whole JSON record (cut short by a kill or a full disk?); skipped",
                        path, number)
            continue
        if record.get("kind") == "train":
            train[int(record["epoch"])] = record
        elif record.get("kind") == "eval":
            evals.setdefault(str(record.get("dataset", "")), {})[int(record["epoch"])] = float(record["mAP"])
    return train, evals


_NOT_LOSSES = {"kind", "time", "epoch", "acc", "img_s", "lr"}


def plot_training_curves(metrics_log, path, size_px: tuple[int, int] = (960, 400)) -> Path:
    """Loss parts (left) and evaluation mAP (right) by epoch, from a run's metrics.jsonl.

    Every numeric field of the "train" records other than epoch/time/acc/img_s/lr is a loss part
    (total, enc_id, enc_tri, dec_id, dec_tri, push for PFD); "eval" records give one mAP curve per
    dataset. Writes a PNG of exactly ``size_px`` (width, height) pixels to ``path``; returns it.
    """
    train, evals = _read_metrics_log(metrics_log)
    if not train:
        raise ValueError(f"{metrics_log}: no training records (kind \"train\") to plot")
    epochs = sorted(train)
    parts = [k for k, v in train[epochs[-1]].items() if k not in _NOT_LOSSES and isinstance(v, (int, float))]
    dpi = 100
    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    loss_ax, map_ax = fig.subplots(1, 2)
    for part in parts:
        loss_ax.plot(epochs, [train[e].get(part, np.nan) for e in epochs], marker=".", label=part,
                     linewidth=2.5 if part == "total" else 1.2)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="training loss (epoch mean)")
    if parts:  # a log without loss parts (e.g. a stubbed epoch) gets an empty panel, not a legend warning
        loss_ax.legend(fontsize=8)
    for name, curve in evals.items():
        points = sorted(curve.items())
        map_ax.plot([e for e, _ in points], [100 * m for _, m in points], marker="o", label=name or None)
    map_ax.set(xlabel="epoch", ylabel="mAP (%)", title="evaluation mAP",
               xlim=(0, max(epochs[-1], 1) + 0.5))  # room for the last epoch's marker
    if any(evals):
        map_ax.legend(fontsize=8)
    for ax in (loss_ax, map_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata=PNG_TEXT)
    return _write_atomic(path, buffer.getvalue())
