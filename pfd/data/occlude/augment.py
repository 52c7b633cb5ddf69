"""Occluder augmentation of training batches (INPUT.OCCLUDE_PROB, beyond the paper).

With probability OCCLUDE_PROB a training image gets an occluder of one of INPUT.OCCLUDE_KINDS, the
kinds of `python -m pfd.data.occlude`, and every keypoint it covers gets confidence 0 before the
heatmaps are drawn, so PFD's visibility-dependent parts (pose-view matching, the push loss, the
visible-part feature) learn from occlusions whose extent is known:

- person: a slice of another identity's image of the same batch, entering from the left or right;
- object: a sprite from a bank of synthetic-generator objects (cars, boxes, bushes, trees, signs)
  rendered once at start-up at the training input size, mirrored at random;
- patch: a rectangle of one colour or of noise from the bottom or one side (random-erasing style).

INPUT.HIDE_PROB draws the same bottom-or-side boxes on a share of the other images but pastes nothing:
only the keypoints inside get confidence 0. With MODEL.TOKEN_MASK pose the ViT then replaces that
region by its mask token, so the model learns to tell people apart from what the pose leaves it,
without learning to ignore occluder pixels on its own.

Everything is drawn for the whole batch at once on the batch's device, from torch's global RNG
(seeded per epoch by the trainer, so runs stay exactly resumable). With both shares 0 there is no
occluder and nothing is drawn. Evaluation never goes through here.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..synthetic.scene import OBJECTS, occlude
from .occluders import KINDS

SPRITES = 64  # object sprites in the bank
SPRITE_SEED = 24  # the bank is the same in every run


def render_sprites(size: tuple[int, int], coverage: tuple[float, float], count: int = SPRITES) -> torch.Tensor:
    """[count, 4, H, W] float RGBA in [0, 1]: synthetic objects each covering a share of the image within `coverage`."""
    rng = np.random.default_rng(SPRITE_SEED)
    layers = [np.asarray(occlude(np.ones(size, bool), rng, None, float(size[0]), coverage, kinds=OBJECTS).layer)
              for _ in range(count)]
    return torch.from_numpy(np.stack(layers)).permute(0, 3, 1, 2).float() / 255.0


def box_masks(x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor,
              size: Sequence[int]) -> torch.Tensor:
    """[B, H, W] bool masks of per-sample boxes (each [B], integer pixel bounds, ends exclusive)."""
    h, w = size
    ys = torch.arange(h, device=x0.device).view(1, h, 1)
    xs = torch.arange(w, device=x0.device).view(1, 1, w)
    return ((ys >= y0.view(-1, 1, 1)) & (ys < y1.view(-1, 1, 1))
            & (xs >= x0.view(-1, 1, 1)) & (xs < x1.view(-1, 1, 1)))


def side_boxes(cover: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """[B, H, W] bool: per sample a rectangle covering about `cover` [B] of the image, from the bottom (half
    the time, 80-100% of the width) or from the left or right edge (80-100% of the height)."""
    h, w = size
    b, dev = cover.shape[0], cover.device
    span = torch.empty(b, device=dev).uniform_(0.8, 1.0)
    side = torch.randint(0, 4, (b,), device=dev)  # 0, 1 bottom; 2 left; 3 right
    rows = torch.where(side < 2, (cover * h / span).round(), (span * h).round()).long().clamp(1, h)
    cols = torch.where(side < 2, (span * w).round(), (cover * w / span).round()).long().clamp(1, w)
    x0 = torch.where(side < 2, ((w - cols) * torch.rand(b, device=dev)).long(),
                     torch.where(side == 2, torch.zeros_like(cols), w - cols))
    return box_masks(x0, h - rows, x0 + cols, torch.full_like(rows, h), (h, w))


def covered_keypoints(keypoints: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """[B, 17] bool: keypoints ([B, 17, >=2], input pixels) lying on the occluder masks [B, H, W]."""
    b, h, w = masks.shape
    xy = keypoints[..., :2].round().long()  # [B, 17, 2]
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < w) & (xy[..., 1] >= 0) & (xy[..., 1] < h)
    flat = xy[..., 1].clamp(0, h - 1) * w + xy[..., 0].clamp(0, w - 1)  # [B, 17]
    return inside & masks.view(b, h * w).gather(1, flat)


class BatchOccluder(nn.Module):
    """Pastes occluders on a normalized training batch and zeroes the confidence of covered keypoints."""

    def __init__(self, prob: float, kinds: Sequence[str], coverage: Sequence[float], size: Sequence[int],
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], hide_prob: float = 0.0):
        super().__init__()
        self.hide_prob = hide_prob
        self.prob, self.kinds, self.coverage, self.size = prob, tuple(kinds), tuple(coverage), tuple(size)
        self.register_buffer("mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)
        sprites = render_sprites(self.size, self.coverage) if "object" in self.kinds else torch.zeros(1, 4, *size)
        self.register_buffer("sprites", sprites, persistent=False)  # [S, 4, H, W] RGBA in [0, 1]

    def _person(self, images: torch.Tensor, pids: torch.Tensor, cover: torch.Tensor):
        """(content [B, 3, H, W], mask [B, H, W], ok [B]): another identity's centre slice at a side edge."""
        b, _, h, w = images.shape
        dev = images.device
        scores = torch.rand(b, b, device=dev).masked_fill(pids.view(-1, 1) == pids.view(1, -1), -1.0)
        best, donor = scores.max(1)  # a random sample of another identity; best < 0: there is none
        tall = torch.empty(b, device=dev).uniform_(0.85, 1.0)
        top = (h - (tall * h).round()).long()
        width = (cover * h * w / (h - top)).round().long().clamp(1, w)
        left = torch.rand(b, device=dev) < 0.5
        x0 = torch.where(left, torch.zeros_like(width), w - width)
        start = (w // 2 - width // 2).clamp(0, w - 1)  # the donor's centre slice starts here
        cols = (torch.arange(w, device=dev).view(1, w) - x0.view(-1, 1) + start.view(-1, 1)).clamp(0, w - 1)  # [B, W]
        content = images[donor].gather(3, cols.view(b, 1, 1, w).expand(b, 3, h, w))
        mask = box_masks(x0, top, x0 + width, torch.full_like(top, h), (h, w))
        return content, mask, best >= 0

    def _patch(self, images: torch.Tensor, cover: torch.Tensor):
        """(content, mask): a plain or noise rectangle from the bottom (half the time) or a side."""
        b, _, h, w = images.shape
        dev = images.device
        mask = side_boxes(cover, (h, w))
        plain = torch.rand(b, 1, 1, 1, device=dev) < 0.5
        pixels = torch.where(plain, torch.rand(b, 3, 1, 1, device=dev), torch.rand(b, 3, h, w, device=dev))
        return (pixels - self.mean) / self.std, mask

    def _object(self, images: torch.Tensor):
        """(content, mask): a random sprite of the bank, mirrored half the time."""
        b = images.shape[0]
        dev = images.device
        sprites = self.sprites[torch.randint(0, self.sprites.shape[0], (b,), device=dev)]  # [B, 4, H, W]
        mirror = (torch.rand(b, 1, 1, 1, device=dev) < 0.5)
        sprites = torch.where(mirror, sprites.flip(3), sprites)
        return (sprites[:, :3] - self.mean) / self.std, sprites[:, 3] > 0.5

    @torch.no_grad()
    def forward(self, images: torch.Tensor, keypoints: torch.Tensor, pids: torch.Tensor):
        """images [B, 3, H, W] normalized, keypoints [B, 17, 3] in input pixels, pids [B] ->
        (images, keypoints) with occluders pasted on about `prob` of the samples and, of the others, about
        `hide_prob` with the keypoints of a side box hidden; new tensors (the inputs when both shares are 0)."""
        images, keypoints, _ = self.occlude(images, keypoints, pids)
        return images, keypoints

    @torch.no_grad()
    def occlude(self, images: torch.Tensor, keypoints: torch.Tensor, pids: torch.Tensor):
        """`forward`'s (images, keypoints) and the covered pixels [B, H, W] bool (pasted or hidden boxes)."""
        covered = torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.bool, device=images.device)
        if self.prob <= 0 and self.hide_prob <= 0:
            return images, keypoints, covered
        if self.prob > 0:
            images, covered = self._paste(images, pids)
        if self.hide_prob > 0:  # nothing pasted there: only the pose says the box is hidden
            spared = torch.rand(images.shape[0], device=images.device) < self.hide_prob
            cover = torch.empty(images.shape[0], device=images.device).uniform_(*self.coverage)
            covered |= side_boxes(cover, images.shape[2:]) & (spared & ~covered.flatten(1).any(1)).view(-1, 1, 1)
        keypoints = keypoints.clone()
        keypoints[..., 2] = keypoints[..., 2].masked_fill(covered_keypoints(keypoints, covered), 0.0)
        return images, keypoints, covered

    def _paste(self, images: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images with occluders on about `prob` of them, the occluders' masks [B, H, W] bool)."""
        b, dev = images.shape[0], images.device
        apply = torch.rand(b, device=dev) < self.prob
        kind = torch.tensor([KINDS.index(k) for k in self.kinds], device=dev)[
            torch.randint(0, len(self.kinds), (b,), device=dev)]  # [B] index into KINDS
        cover = torch.empty(b, device=dev).uniform_(*self.coverage)
        content, mask = torch.zeros_like(images), torch.zeros(b, *images.shape[2:], dtype=torch.bool, device=dev)
        for index, name in enumerate(KINDS):  # at most three kinds, each drawn for the whole batch
            if name not in self.kinds:
                continue
            if name == "person":
                part, part_mask, ok = self._person(images, pids, cover)
                chosen = (kind == index) & ok
            else:
                part, part_mask = self._patch(images, cover) if name == "patch" else self._object(images)
                chosen = kind == index
            content = torch.where(chosen.view(-1, 1, 1, 1), part, content)
            mask = torch.where(chosen.view(-1, 1, 1), part_mask, mask)
        mask &= apply.view(-1, 1, 1)
        return torch.where(mask.unsqueeze(1), content, images), mask


def build_batch_occluder(cfg) -> BatchOccluder | None:
    """The training batch occluder of INPUT.OCCLUDE_* and INPUT.HIDE_PROB, or None when both shares are 0
    (the reference)."""
    if cfg.INPUT.OCCLUDE_PROB <= 0 and cfg.INPUT.HIDE_PROB <= 0:
        return None
    return BatchOccluder(cfg.INPUT.OCCLUDE_PROB, cfg.INPUT.OCCLUDE_KINDS, cfg.INPUT.OCCLUDE_COVERAGE,
                         cfg.INPUT.SIZE_TRAIN, cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD, cfg.INPUT.HIDE_PROB)
