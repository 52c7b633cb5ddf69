"""The three occluder kinds pasted on a person crop, and which keypoints an occluder hides.

Each occluder is drawn for a crop of size (H, W) (the crop is the person box) and returned as an
RGBA layer plus its boolean mask, placed as in real scenes:

- person: a slice of another identity's crop, entering from the left or right edge (someone
  walking in front), most of the crop's height;
- object: a car, box stack, bush, tree or sign from the synthetic generator's painters
  (pfd.data.synthetic.scene), grown until it hides the target share of the box;
- patch: a plain or noise rectangle (random-erasing style) from the bottom or one side.

The share of the box covered is drawn uniformly in the configured range (20-60% by default).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ...config import OCCLUDER_KINDS
from ..synthetic.scene import OBJECTS, occlude

KINDS = OCCLUDER_KINDS  # person, object, patch (the config checks INPUT.OCCLUDE_KINDS against the same tuple)
SIDES = ("left", "right")
OBJECT_PLACEMENT = {"vehicle": "bottom", "bush": "bottom", "boxes": "bottom", "tree": "side", "pole_sign": "middle"}


@dataclass(frozen=True)
class Occluder:
    kind: str  # one of KINDS
    detail: str  # person: the source image; object: the object kind; patch: "plain" | "noise"
    placement: str  # left | right | bottom | side | middle
    layer: Image.Image  # RGBA, transparent where the crop stays visible
    mask: np.ndarray  # [H, W] bool, True where the occluder is

    @property
    def fraction(self) -> float:
        """Share of the person box (the whole crop) covered."""
        return float(self.mask.mean())

    @property
    def box(self) -> list[int]:
        """[x0, y0, x1, y1] (x1, y1 exclusive) around the covered pixels."""
        ys, xs = np.nonzero(self.mask)
        return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _layer(pixels: np.ndarray, mask: np.ndarray) -> Image.Image:
    """RGBA layer from [H, W, 3] uint8 pixels, opaque where `mask`."""
    return Image.fromarray(np.dstack([pixels, mask.astype(np.uint8) * 255]), "RGBA")


def person_occluder(source: Image.Image, source_name: str, size: tuple[int, int], target: float,
                    rng: np.random.Generator) -> Occluder:
    """The centre slice of another person's crop (resized to the target crop's size), entering from a side.

    The slice spans the bottom `tall` share of the height (85-100%) and is as wide as the target share needs.
    """
    h, w = size
    tall = rng.uniform(0.85, 1.0)
    top = h - round(tall * h)
    width = int(np.clip(round(target * h * w / (h - top)), 1, w))
    side = SIDES[int(rng.integers(2))]
    other = np.asarray(source.convert("RGB").resize((w, h), Image.BICUBIC))
    centre = w // 2 + int(rng.integers(-w // 8, w // 8 + 1))  # the other person's body, roughly
    start = int(np.clip(centre - width // 2, 0, w - width))
    pixels, mask = np.zeros((h, w, 3), np.uint8), np.zeros((h, w), bool)
    x0 = 0 if side == "left" else w - width
    pixels[top:, x0:x0 + width] = other[top:, start:start + width]
    mask[top:, x0:x0 + width] = True
    return Occluder("person", source_name, side, _layer(pixels, mask), mask)


def patch_occluder(size: tuple[int, int], target: float, rng: np.random.Generator) -> Occluder:
    """A rectangle of one colour or of uniform noise, from the bottom or from a side."""
    h, w = size
    span = rng.uniform(0.8, 1.0)  # share of the other axis it spans
    placement = ("bottom", "left", "right")[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]
    mask = np.zeros((h, w), bool)
    if placement == "bottom":
        rows, cols = int(np.clip(round(target * h / span), 1, h)), max(1, round(span * w))
        x0 = int(rng.integers(0, w - cols + 1))
        mask[h - rows:, x0:x0 + cols] = True
    else:
        cols, rows = int(np.clip(round(target * w / span), 1, w)), max(1, round(span * h))
        x0 = 0 if placement == "left" else w - cols
        mask[h - rows:, x0:x0 + cols] = True
    plain = bool(rng.integers(2))
    pixels = (np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (h, w, 3)) if plain
              else rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return Occluder("patch", "plain" if plain else "noise", placement, _layer(np.ascontiguousarray(pixels), mask),
                    mask)


def object_occluder(size: tuple[int, int], coverage: tuple[float, float], rng: np.random.Generator) -> Occluder:
    """A synthetic-generator object grown to hide a share of the whole box within `coverage`."""
    occlusion = occlude(np.ones(size, bool), rng, None, float(size[0]), coverage, kinds=OBJECTS)
    return Occluder("object", occlusion.kind, OBJECT_PLACEMENT[occlusion.kind], occlusion.layer, occlusion.mask)


def hidden_keypoints(keypoints: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """bool [..., 17]: which keypoints (x, y in the crop's pixels, [..., 17, >=2]) lie on the occluder `mask`.

    A keypoint outside the crop is never hidden by it (it is not in the picture at all).
    """
    h, w = mask.shape
    xy = np.rint(np.asarray(keypoints)[..., :2]).astype(np.int64)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < w) & (xy[..., 1] >= 0) & (xy[..., 1] < h)
    return inside & mask[np.clip(xy[..., 1], 0, h - 1), np.clip(xy[..., 0], 0, w - 1)]


def box_mask(box: list[int], size: tuple[int, int]) -> np.ndarray:
    """[H, W] bool of a manifest box [x0, y0, x1, y1] (exclusive ends)."""
    mask = np.zeros(size, bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask
