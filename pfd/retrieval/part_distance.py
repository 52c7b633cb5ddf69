"""The visibility-aware distance of TEST.PART_DISTANCE visible: parts are compared only where both images
show them (as BPBReID and KPR match on visible parts; PFD's own concatenation compares every block).

A feature [N, F] holds `count` part blocks of `dim` values from column `start` (`PartLayout`); a hidden
part is an all-zero block (MODEL.PART_POOL pose writes them so), which is how visibility travels with the
feature through FAISS, the index files and ONNX. With unit vectors r (the other blocks together) and p_k
(each visible part), and S the parts visible in both images:

    d = (d_rest + w d_parts) / (1 + w)     d_rest = 2 - 2 r_q . r_g     d_parts = 2 - 2 mean_{k in S} p_qk . p_gk

with w the part term's weight (TEST.PART_WEIGHT, 1 by default), and d = d_rest when S is empty. Both
terms are on the 2 - 2 cos scale of `distance_matrix`, so re-ranking and the evaluation protocol apply
unchanged.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["PartLayout", "visible_part_distance"]


class PartLayout(NamedTuple):
    """Where a feature's part blocks are (columns start .. start + count * dim) and the weight of the part
    term against the other blocks."""

    start: int
    count: int
    dim: int
    weight: float = 1.0


def _split(x: torch.Tensor, layout: PartLayout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [N, F] -> (unit rest [N, F - count*dim], unit parts flattened [N, count*dim] with hidden parts zero,
    visible [N, count] float)."""
    end = layout.start + layout.count * layout.dim
    rest = torch.cat([x[:, :layout.start], x[:, end:]], dim=1)
    parts = x[:, layout.start:end].reshape(len(x), layout.count, layout.dim)  # [N, K, D]
    visible = (parts.abs().amax(-1) > 0).to(x.dtype)  # [N, K]
    return F.normalize(rest, dim=1), F.normalize(parts, dim=-1).flatten(1), visible


def visible_part_distance(query: torch.Tensor, gallery: torch.Tensor, layout: PartLayout,
                          block_rows: int | None = None) -> torch.Tensor:
    """[Nq, Ng] distances (module docstring) of float32 features query [Nq, F] and gallery [Ng, F], computed
    `block_rows` query rows at a time (all at once by default) on features split and normalized once."""
    q_rest, q_parts, q_vis = _split(query, layout)
    g_rest, g_parts, g_vis = _split(gallery, layout)
    out = torch.empty(len(query), len(gallery), dtype=torch.float32, device=query.device)
    step = block_rows or max(1, len(query))
    for s in range(0, len(query), step):
        rows = slice(s, s + step)
        d_rest = 2 - 2 * q_rest[rows] @ g_rest.T  # [B, Ng]
        shared = q_vis[rows] @ g_vis.T  # [B, Ng] parts visible in both
        d_parts = 2 - 2 * (q_parts[rows] @ g_parts.T) / shared.clamp(min=1)  # hidden blocks are zero: only S
        mixed = (d_rest + layout.weight * d_parts) / (1 + layout.weight)
        out[rows] = torch.where(shared > 0, mixed, d_rest).clamp_(min=0)
    return out
