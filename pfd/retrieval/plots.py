"""Pictures of retrieval results: a CMC curve and a grid of ranked lists. Both PNGs are written atomically.

The CMC plot uses matplotlib's Agg canvas directly (no pyplot, no global backend switch); the
ranked-list grid is composed with PIL so its pixel size is exact:
    width  = PAD + (1 + topk) * (W + 2 * BORDER + PAD) + QUERY_GAP
    height = PAD + num_queries * (H + 2 * BORDER + PAD)
for thumbnails of ``image_hw = (H, W)``.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from ..io import atomic_write

__all__ = ["plot_cmc", "plot_ranked_lists", "ranked_grid_size", "BORDER", "PAD", "QUERY_GAP"]

BORDER = 4  # coloured frame around each thumbnail
PAD = 4  # space between cells
QUERY_GAP = 12  # extra space between the query and its ranked list
_COLOURS = {"query": (70, 110, 220), "right": (40, 170, 60), "wrong": (220, 40, 40)}


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
    fig.savefig(buffer, format="png", dpi=dpi)
    return _write_atomic(path, buffer.getvalue())


def ranked_grid_size(num_queries: int, topk: int, image_hw: tuple[int, int] = (128, 64)) -> tuple[int, int]:
    """(width, height) in pixels of the picture ``plot_ranked_lists`` makes."""
    h, w = image_hw
    return (PAD + (1 + topk) * (w + 2 * BORDER + PAD) + QUERY_GAP, PAD + num_queries * (h + 2 * BORDER + PAD))


def _thumbnail(path: str, image_hw: tuple[int, int], colour) -> Image.Image:
    try:
        with Image.open(path) as im:
            image = im.convert("RGB").resize((image_hw[1], image_hw[0]), Image.BILINEAR)
    except (OSError, ValueError) as err:
        raise OSError(f"plot_ranked_lists cannot read image {path}: {err}") from err
    return ImageOps.expand(image, border=BORDER, fill=colour)


def plot_ranked_lists(query_paths: Sequence[str], query_pids: Sequence[int], gallery_paths: Sequence[str],
                      gallery_pids: Sequence[int], ranked_indices, path, topk: int = 10,
                      image_hw: tuple[int, int] = (128, 64)) -> Path:
    """One row per query: the query (blue frame), then its first ``topk`` gallery images framed
    green (same identity) or red (other identity).

    ``ranked_indices`` [num_queries, >= topk] gallery rows, best first (e.g. from ``rank_gallery``;
    drop same-id-same-camera "junk" beforehand to show the evaluation protocol's lists); an entry
    of -1 (FAISS's "no result") leaves its cell blank. ``query_pids`` / ``gallery_pids``: sequences,
    numpy or torch. Writes a PNG of ``ranked_grid_size(...)`` pixels; returns the path.
    """
    ranked = np.asarray(ranked_indices)
    if ranked.ndim != 2 or len(ranked) != len(query_paths):
        raise ValueError(f"ranked_indices must be [num_queries={len(query_paths)}, k], got shape {ranked.shape}")
    topk = min(topk, ranked.shape[1])
    width, height = ranked_grid_size(len(query_paths), topk, image_hw)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    cell_w, cell_h = image_hw[1] + 2 * BORDER + PAD, image_hw[0] + 2 * BORDER + PAD
    for row, (q_path, q_pid) in enumerate(zip(query_paths, query_pids)):
        top = PAD + row * cell_h
        canvas.paste(_thumbnail(q_path, image_hw, _COLOURS["query"]), (PAD, top))
        for rank, g in enumerate(ranked[row, :topk]):
            if g < 0:
                continue
            colour = _COLOURS["right"] if int(gallery_pids[g]) == int(q_pid) else _COLOURS["wrong"]
            canvas.paste(_thumbnail(gallery_paths[g], image_hw, colour), (PAD + QUERY_GAP + (rank + 1) * cell_w, top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return _write_atomic(path, buffer.getvalue())
