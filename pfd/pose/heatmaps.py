"""Keypoint heatmaps: batched Gaussian rendering and its inverse (argmax + sub-pixel refinement).

Coordinate convention (the one HRNet-style decoders use, and `torch.nn.functional.interpolate`
with align_corners=False): pixel i covers [i - 0.5, i + 0.5), so its centre is at i. Scaling
between an input image of width W and a heatmap of width w keeps the pixel edges aligned:

    x_hm = (x + 0.5) * w / W - 0.5        x = (x_hm + 0.5) * W / w - 0.5

and the same for y. The transforms in pfd.data.transforms use this convention too.
"""
from __future__ import annotations

import torch

LOG_EPS = 1e-10  # floor before taking logs in the sub-pixel refinement


def to_heatmap_coords(xy: torch.Tensor, input_hw: tuple[int, int], heatmap_hw: tuple[int, int]) -> torch.Tensor:
    """Input-pixel (x, y) [..., 2] -> heatmap-pixel (x, y) [..., 2]."""
    sx, sy = heatmap_hw[1] / input_hw[1], heatmap_hw[0] / input_hw[0]  # Python floats: no host-to-device copy
    return torch.stack([(xy[..., 0] + 0.5) * sx - 0.5, (xy[..., 1] + 0.5) * sy - 0.5], dim=-1)


def to_input_coords(xy: torch.Tensor, heatmap_hw: tuple[int, int], input_hw: tuple[int, int]) -> torch.Tensor:
    """Heatmap-pixel (x, y) [..., 2] -> input-pixel (x, y) [..., 2]."""
    return to_heatmap_coords(xy, heatmap_hw, input_hw)


def _gaussian_profile(center: torch.Tensor, length: int, sigma: float) -> torch.Tensor:
    """1-D Gaussians [B, K, length] centred at `center` [B, K], scaled so each sampled maximum is 1."""
    grid = torch.arange(length, device=center.device, dtype=center.dtype)  # [length]
    profile = torch.exp(-((grid - center[..., None]) ** 2) / (2.0 * sigma ** 2))  # [B, K, length]
    return profile / profile.amax(-1, keepdim=True).clamp_min(torch.finfo(profile.dtype).tiny)


def render_heatmaps(keypoints: torch.Tensor, input_hw: tuple[int, int], sigma: float,
                    heatmap_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """Gaussian heatmaps [B, K, h, w] for keypoints [B, K, 3] = (x, y, conf) in input pixels.

    Each channel is a separable Gaussian of std `sigma` (heatmap pixels) centred at the keypoint's
    heatmap position (sub-pixel), scaled so its largest sampled value equals the confidence.
    Keypoints whose centre lies outside the heatmap give an all-zero channel. `heatmap_hw`
    defaults to (H // 4, W // 4). Runs on the keypoints' device in one batched op.
    """
    if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
        raise ValueError(f"render_heatmaps expects keypoints [B, K, 3], got shape {tuple(keypoints.shape)}")
    if sigma <= 0:
        raise ValueError(f"render_heatmaps: sigma must be > 0, got {sigma}")
    h, w = heatmap_hw if heatmap_hw is not None else (input_hw[0] // 4, input_hw[1] // 4)
    kp = keypoints if keypoints.is_floating_point() else keypoints.float()
    center = to_heatmap_coords(kp[..., :2], input_hw, (h, w))  # [B, K, 2] heatmap (x, y)
    cx, cy = center.unbind(-1)  # [B, K] each
    inside = (cx >= -0.5) & (cx < w - 0.5) & (cy >= -0.5) & (cy < h - 0.5)  # [B, K]
    peak = kp[..., 2] * inside  # [B, K]
    gx = _gaussian_profile(cx, w, sigma)  # [B, K, w]
    gy = _gaussian_profile(cy, h, sigma)  # [B, K, h]
    return peak[..., None, None] * gy[..., :, None] * gx[..., None, :]  # [B, K, h, w]


def _log_parabola_vertex(left: torch.Tensor, mid: torch.Tensor,
                         right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertex offset from the middle sample of the parabola through log values at -1, 0, +1.

    Exact for a sampled Gaussian. Returns (offset, concave); the offset is meaningless (0) where
    the three points are not concave (a flat or empty map).
    """
    l, m, r = (torch.log(v.clamp_min(LOG_EPS)) for v in (left, mid, right))
    curvature = l - 2.0 * m + r
    concave = curvature < 0
    offset = 0.5 * (l - r) / torch.where(concave, curvature, torch.ones_like(curvature))
    return torch.where(concave, offset, torch.zeros_like(offset)), concave


def _refine(flat: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor, h: int, w: int, axis: str) -> torch.Tensor:
    """Sub-pixel position [B, K] along `axis` ("x" or "y") of peaks at integer (iy, ix) [B, K].

    The 3-point stencil is centred on the peak, or shifted inwards on the border, and the result
    is kept within half a pixel of the argmax.
    """
    size = w if axis == "x" else h
    peak_pos = ix if axis == "x" else iy
    if size < 3:
        return peak_pos.to(flat.dtype)
    center = peak_pos.clamp(1, size - 2)  # [B, K] stencil centre

    def value_at(pos: torch.Tensor) -> torch.Tensor:  # [B, K] stencil positions -> [B, K] values
        index = iy * w + pos if axis == "x" else pos * w + ix
        return flat.gather(-1, index[..., None])[..., 0]

    offset, concave = _log_parabola_vertex(value_at(center - 1), value_at(center), value_at(center + 1))
    vertex = torch.where(concave, center + offset, peak_pos.to(offset.dtype))
    return torch.minimum(torch.maximum(vertex, peak_pos - 0.5), peak_pos + 0.5)


def decode_heatmaps(heatmaps: torch.Tensor, input_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """Keypoints [B, K, 3] = (x, y, peak value) from heatmaps [B, K, h, w].

    Position = argmax refined per axis by a parabola through the log of the peak and its two
    neighbours (shifted inwards on the border), which recovers the exact centre of a sampled
    Gaussian and is a close estimate for HRNet outputs. Coordinates are in
    heatmap pixels, or in input pixels when `input_hw` is given.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"decode_heatmaps expects heatmaps [B, K, h, w], got shape {tuple(heatmaps.shape)}")
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.float().flatten(2)  # [B, K, h*w]
    peak, index = flat.max(-1)  # [B, K]
    iy, ix = index // w, index % w  # [B, K]

    x = _refine(flat, iy, ix, h, w, "x")  # [B, K] heatmap pixels
    y = _refine(flat, iy, ix, h, w, "y")  # [B, K]
    xy = torch.stack([x, y], dim=-1)  # [B, K, 2] heatmap pixels
    if input_hw is not None:
        xy = to_input_coords(xy, (h, w), input_hw)
    out = torch.cat([xy, peak[..., None]], dim=-1)  # [B, K, 3] float32
    # At least float32 whatever the heatmaps' dtype: bf16 coordinates would lose about a pixel.
    return out.to(torch.promote_types(heatmaps.dtype, torch.float32)) if heatmaps.is_floating_point() else out
