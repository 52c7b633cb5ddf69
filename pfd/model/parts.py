"""PFD's part machinery on batched tensors (docs/MODEL.md sections 2, 5, 7, 8) and the BNNeck/classifier heads.

Every function works on a whole batch with gathers, masks and cumulative sums: no Python loop over
samples, parts or views. Similarities are computed in fp32 even under autocast, so the argmax
matchings do not depend on the precision of the run.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "cosine_matrix", "heat_weight", "keypoint_visibility", "pose_token_mask", "pose_pool", "pfa", "pvm", "disentangle",
    "BNNeck", "PartBNNecks", "PartClassifiers", "make_classifier",
]


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_j) for a [B, n, D], b [B, m, D] -> [B, n, m], in fp32."""
    with torch.autocast(device_type=a.device.type, enabled=False):
        a = F.normalize(a.float(), dim=-1, eps=1e-8)
        b = F.normalize(b.float(), dim=-1, eps=1e-8)
        return torch.bmm(a, b.transpose(1, 2))


def _take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, n, D], index [B, m] -> x[b, index[b, j]] as [B, m, D].

    torch.gather with an expanded index rather than take_along_dim, whose broadcasting pins the batch
    size when the model is exported with a dynamic batch axis (pfd.export).
    """
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def heat_weight(heatmaps_flat: torch.Tensor, dim: int) -> torch.Tensor:
    """Heat weight `a` [B, 1, D] of [B, K, h*w] heatmaps: mean over keypoints, adaptive-pool bins over h*w."""
    return F.adaptive_avg_pool2d(heatmaps_flat, (1, dim))


def keypoint_visibility(heatmaps_flat: torch.Tensor, threshold: float) -> torch.Tensor:
    """v [B, K] bool: the heatmap peak of keypoint k reaches `threshold` (MODEL.SKT_THRES)."""
    return heatmaps_flat.amax(dim=-1) >= threshold


def _pooling_bins(size: int, bins: int, device: torch.device) -> torch.Tensor:
    """[size, bins] bool: pixel y lies in adaptive pooling's bin i (rows floor(i*size/bins) to
    ceil((i+1)*size/bins)), so the bins of a grid that does not divide the heatmap overlap as they do there."""
    pixel = torch.arange(size, device=device).unsqueeze(1)  # [size, 1]
    index = torch.arange(bins, device=device).unsqueeze(0)  # [1, bins]
    return (pixel >= index * size // bins) & (pixel < ((index + 1) * size + bins - 1) // bins)


def pose_token_mask(heatmaps: torch.Tensor, visible: torch.Tensor, grid: tuple[int, int],
                    radius: int, shape: str = "square") -> torch.Tensor:
    """Patch tokens the ViT must not see (MODEL.TOKEN_MASK pose): hidden [B, N] bool, row-major like the tokens.

    heatmaps [B, K, h, w], visible [B, K] bool. A token is kept when it lies near a token whose bin holds a
    visible keypoint's heatmap peak, so an occluder over keypoints the pose calls hidden is never seen:
    within `radius` tokens either way with shape "square" (MODEL.TOKEN_MASK_SHAPE), within `radius` rows
    of the keypoint's own column with "column" (a re-ID crop is 4 tokens wide at stride 16, so a square
    reveals nearly the whole width and a side occluder is never hidden). With no visible keypoint nothing
    is hidden: the image is seen whole, as without the mask. (Bins by index rather than adaptive max
    pooling, which ONNX cannot export when the grid does not divide the heatmap.)
    """
    h, w = heatmaps.shape[-2:]
    peak = heatmaps.flatten(2).argmax(-1)  # [B, K] flat index of each keypoint's peak pixel
    rows = _pooling_bins(h, grid[0], heatmaps.device)[peak // w]  # [B, K, gh]
    cols = _pooling_bins(w, grid[1], heatmaps.device)[peak % w]  # [B, K, gw]
    at_keypoint = (rows.unsqueeze(-1) & cols.unsqueeze(-2) & visible[..., None, None]).any(1, keepdim=True)
    across = radius if shape == "square" else 0  # columns either side
    near = F.max_pool2d(at_keypoint.float(), (2 * radius + 1, 2 * across + 1), stride=1,
                        padding=(radius, across)) > 0  # [B, 1, gh, gw]
    return ~near.flatten(1) & visible.any(1, keepdim=True)  # [B, N]


def pose_pool(tokens: torch.Tensor, heatmaps: torch.Tensor, grid: tuple[int, int],
              visible: torch.Tensor) -> torch.Tensor:
    """Part features at the keypoints (MODEL.PART_POOL pose): L [B, K, D].

    tokens [B, 1+N, D] (cls first, then the N = gh*gw patch tokens in row-major order), heatmaps [B, K, h, w],
    visible [B, K] bool. Part k is the mean of the patch tokens weighted by keypoint k's heatmap, averaged
    down to the token grid; a keypoint that is not visible takes the cls token instead, so every part
    has a feature to train on and the visible ones describe only what is at their keypoint.
    """
    weights = F.adaptive_avg_pool2d(heatmaps.float(), grid).flatten(2)  # [B, K, N] heat per token
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-6)
    pooled = torch.bmm(weights.to(tokens.dtype), tokens[:, 1:])  # [B, K, D]
    return torch.where(visible.unsqueeze(-1), pooled, tokens[:, :1].expand_as(pooled))


def pfa(local_feats: torch.Tensor, keypoint_feats: torch.Tensor) -> torch.Tensor:
    """Pose-guided feature aggregation: L [B, K, D], P [B, K, D] -> A [B, K, D].

    Pw = L * P; each part i takes the pose-weighted feature most similar to it,
    A_i = L_i + Pw_{argmax_j cos(L_i, Pw_j)}.
    """
    weighted = local_feats * keypoint_feats  # Pw [B, K, D]
    best = cosine_matrix(local_feats, weighted).argmax(dim=-1)  # j*(i) [B, K]
    return local_feats + _take_rows(weighted, best)


def pvm(aligned: torch.Tensor, views: torch.Tensor, mode: str = "reference") -> tuple[torch.Tensor, torch.Tensor]:
    """Pose-view matching: A [B, K, D], V [B, Nq, D] -> (O [B, Nq, D], matched keypoint m [B, Nq] int64).

    paper: m_q = argmax_k cos(V_q, A_k); O_q = V_q + A_{m_q} (any Nq).
    reference: m_j = argmax_q cos(A_j, V_q); O_j = A_{m_j} + V_j (Nq == K; A is indexed by a view index).
    """
    if mode == "paper":
        matched = cosine_matrix(views, aligned).argmax(dim=-1)  # [B, Nq] keypoint per view
    elif mode == "reference":
        if views.shape[1] != aligned.shape[1]:
            raise ValueError(f"PVM_MODE reference needs as many views as keypoints, got {views.shape[1]} views "
                             f"and {aligned.shape[1]} keypoints (use MODEL.PVM_MODE paper)")
        matched = cosine_matrix(aligned, views).argmax(dim=-1)  # [B, K] view per keypoint, used as an index
    else:
        raise ValueError(f"PVM mode must be 'reference' or 'paper', got {mode!r}")
    return views + _take_rows(aligned, matched), matched


def disentangle(outputs: torch.Tensor, matched: torch.Tensor, visible: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split O by the visibility of each output's matched keypoint.

    O [B, Nq, D], m [B, Nq], v [B, K] bool -> (f_h [B, D], f_l [B, D], Dp [B, Nq, D]):
    f_h = mean of the visible O_j (mean of all O_j when none is visible); f_l = mean of the
    invisible O_j (zeros when none); Dp = the visible O_j packed to the front in order, then zeros
    (when none is visible: f_h, then zeros).
    """
    num_out = outputs.shape[1]
    vis = torch.gather(visible, 1, matched)  # [B, Nq] bool
    vis_w = vis.unsqueeze(-1).to(outputs.dtype)  # [B, Nq, 1]
    n_vis = vis_w.sum(dim=1)  # [B, 1]
    n_inv = num_out - n_vis  # [B, 1]
    any_vis = n_vis > 0  # [B, 1]
    f_h = torch.where(any_vis, (outputs * vis_w).sum(1) / n_vis.clamp(min=1), outputs.mean(dim=1))
    f_l = (outputs * (1 - vis_w)).sum(1) / n_inv.clamp(min=1)  # zeros when n_inv == 0

    # Slot s of Dp holds the (s+1)-th visible output: its index is the first j with cumsum(vis)_j == s+1,
    # i.e. the number of j with cumsum(vis)_j < s+1 (searchsorted on the sorted cumsum, written as a
    # comparison count because ONNX has no searchsorted).
    rank = torch.cumsum(vis.to(torch.int64), dim=1)  # [B, Nq], non-decreasing
    slots = torch.arange(1, num_out + 1, device=outputs.device)  # [Nq]
    source = (rank.unsqueeze(1) < slots.view(1, num_out, 1)).sum(-1).clamp(max=num_out - 1)  # [B, Nq slots]
    filled = (slots.view(1, num_out) <= n_vis.to(torch.int64)).unsqueeze(-1)  # [B, Nq, 1]
    packed = torch.where(filled, _take_rows(outputs, source), torch.zeros_like(outputs))
    first_slot = torch.arange(num_out, device=outputs.device).view(1, num_out, 1) == 0  # [1, Nq, 1]
    packed = torch.where(~any_vis.unsqueeze(-1) & first_slot, f_h.unsqueeze(1), packed)
    return f_h, f_l, packed


class BNNeck(nn.BatchNorm1d):
    """BatchNorm1d with weight 1 and a bias frozen at 0 (the BNNeck of TransReID/PFD)."""

    def __init__(self, num_features: int):
        super().__init__(num_features)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)


class PartBNNecks(BNNeck):
    """P independent BNNecks in one op: [B, P, D] -> [B, P, D].

    BatchNorm over the flattened [B, P*D] features keeps separate statistics and affine
    parameters per (part, channel), exactly like P BatchNorm1d(D) modules.
    """

    def __init__(self, num_parts: int, dim: int):
        super().__init__(num_parts * dim)
        self.num_parts, self.dim = num_parts, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(x.shape[0], -1)).view_as(x)


class PartClassifiers(nn.Module):
    """P bias-free linear classifiers in one op: [B, P, D] -> scores [P, B, C]; weight [P, C, D] ~ N(0, 0.001)."""

    def __init__(self, num_parts: int, dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_parts, num_classes, dim))
        nn.init.normal_(self.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bpd,pcd->pbc", x, self.weight)


def make_classifier(dim: int, num_classes: int) -> nn.Linear:
    """Bias-free linear classifier, init N(0, 0.001)."""
    layer = nn.Linear(dim, num_classes, bias=False)
    nn.init.normal_(layer.weight, std=0.001)
    return layer
