"""Cameras (background, colour cast, brightness, blur, noise) and occluders for the synthetic set.

Every occluder kind is a "painter": built once from the image's RNG (colours, side, position), then
called with an extent t in [0, 1] that grows the area it covers. `occlude` searches t so that the
occluder hides a target fraction of the person's pixels.
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pfd.data.synthetic.identity import Identity
from pfd.data.synthetic.person import VIEWS, draw_person, sample_pose

MARGIN = 12  # px of background around the image, for a random crop per image
BACKGROUNDS = ("street", "park", "indoor", "plaza")
OCCLUDERS = ("vehicle", "pole_sign", "bush", "tree", "boxes", "pedestrian")
OBJECTS = OCCLUDERS[:-1]  # the kinds that need no identity (pfd.data.occlude pastes them on real photos)
Painter = Callable[[ImageDraw.ImageDraw, float], None]


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))


def _background(kind: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """[H, W, 3] uint8 procedural scene: a wall or scenery above a floor with a horizon."""
    h, w = size
    image = Image.new("RGB", (w, h), _colour(rng, 90, 200))
    draw = ImageDraw.Draw(image)
    horizon = int(h * rng.uniform(0.55, 0.72))
    if kind == "street":  # building facade with windows, pavement with slab joints
        for y in range(int(rng.integers(2, 10)), horizon - 12, 24):
            for x in range(int(rng.integers(0, 10)), w, 20):
                draw.rectangle([x, y, x + 11, y + 14], fill=_colour(rng, 40, 110))
        draw.rectangle([0, horizon, w, h], fill=_colour(rng, 110, 160))
        for y in range(horizon, h, 9):
            draw.line([(0, y), (w, y)], fill=(95, 95, 95))
    elif kind == "park":  # foliage and distant trunks over grass
        draw.rectangle([0, 0, w, horizon], fill=(int(rng.integers(60, 110)), int(rng.integers(120, 170)), 70))
        for x in rng.integers(0, w, 5):
            draw.rectangle([x, horizon - 40, x + 5, horizon], fill=(90, 65, 40))
        draw.rectangle([0, horizon, w, h], fill=(70, int(rng.integers(120, 160)), 60))
    elif kind == "indoor":  # plain wall with doors and posters, tiled floor
        for x in rng.integers(0, w - 16, 3):
            top = int(rng.integers(10, horizon - 30))
            draw.rectangle([x, top, x + 16, horizon], fill=_colour(rng, 60, 230))
        draw.rectangle([0, horizon, w, h], fill=_colour(rng, 150, 210))
        for x in range(0, w, 14):
            draw.line([(x, horizon), (x, h)], fill=(120, 120, 120))
    else:  # plaza: pillars over grey paving with perspective lines
        for x in range(int(rng.integers(0, 30)), w, 34):
            draw.rectangle([x, 0, x + 9, horizon], fill=_colour(rng, 150, 220))
        draw.rectangle([0, horizon, w, h], fill=_colour(rng, 120, 170))
        for x in range(-w, 2 * w, 16):
            draw.line([(w / 2 + (x - w / 2) * 0.3, horizon), (x, h)], fill=(100, 100, 100))
    texture = rng.normal(0.0, 6.0, (h, w, 3))  # fixed grain of the surfaces
    blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64)
    return np.clip(blurred + texture, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Camera:
    """One camera's look: everything it sees shares its background and photometry."""
    background: np.ndarray  # [H + 2 * MARGIN, W + 2 * MARGIN, 3] uint8
    gains: np.ndarray  # [3] per-channel colour cast times brightness
    blur: float  # Gaussian blur radius, px
    noise: float  # sensor noise std, grey levels
    person_scale: float  # typical person height / image height

    def background_crop(self, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
        """An RGBA crop of the background at a random offset."""
        h, w = size
        y, x = rng.integers(0, 2 * MARGIN + 1, 2)
        return Image.fromarray(self.background[y:y + h, x:x + w]).convert("RGBA")

    def capture(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Apply the camera's optics and sensor to a composed RGB image."""
        if self.blur > 0:
            image = image.filter(ImageFilter.GaussianBlur(self.blur))
        pixels = np.asarray(image, dtype=np.float32) * (self.gains * np.float32(rng.uniform(0.93, 1.07)))
        pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(self.noise)
        return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def make_cameras(n: int, size: tuple[int, int], rng: np.random.Generator) -> list[Camera]:
    """n cameras with different scenes and photometry (backgrounds rendered once, here)."""
    h, w = size
    kinds = [BACKGROUNDS[i] for i in rng.permutation(np.arange(n) % len(BACKGROUNDS))]
    return [Camera(background=_background(kind, (h + 2 * MARGIN, w + 2 * MARGIN), rng),
                   gains=(rng.uniform(0.85, 1.15, 3) * rng.uniform(0.75, 1.2)).astype(np.float32),
                   blur=float(rng.choice([0.0, rng.uniform(0.3, 0.9)])),
                   noise=float(rng.uniform(2.0, 7.0)),
                   person_scale=float(rng.uniform(0.8, 0.88)))
            for kind in kinds]


def _vehicle(rng: np.random.Generator, size: tuple[int, int]) -> Painter:
    """A car passing in front: body rising from the bottom, window band, wheels."""
    h, w = size
    body, glass = _colour(rng, 30, 230), _colour(rng, 20, 60)
    x0, x1 = rng.uniform(-0.4, 0.1) * w, rng.uniform(0.9, 1.4) * w

    def paint(draw: ImageDraw.ImageDraw, t: float) -> None:
        top = h - t * 0.85 * h
        tall = h - top
        draw.rounded_rectangle([x0, top, x1, h + 8], radius=0.15 * tall, fill=body)
        draw.rectangle([x0 + 0.1 * (x1 - x0), top + 0.12 * tall, x1 - 0.1 * (x1 - x0), top + 0.4 * tall], fill=glass)
        for cx in (x0 + 0.22 * (x1 - x0), x1 - 0.22 * (x1 - x0)):
            draw.ellipse([cx - 0.1 * h, h - 0.12 * h, cx + 0.1 * h, h + 0.08 * h], fill=(25, 25, 25))
    return paint


def _pole_sign(rng: np.random.Generator, size: tuple[int, int]) -> Painter:
    """A street pole with a sign board whose size grows with t."""
    h, w = size
    x, width = w / 2 + rng.uniform(-0.25, 0.25) * w, rng.uniform(0.06, 0.1) * w
    board, round_sign = _colour(rng, 20, 250), bool(rng.integers(2))
    bx, by = x + rng.uniform(-0.1, 0.1) * w, rng.uniform(0.25, 0.5) * h

    def paint(draw: ImageDraw.ImageDraw, t: float) -> None:
        draw.rectangle([x - width / 2, 0, x + width / 2, h], fill=(120, 122, 125))
        r = t * 0.55 * w
        (draw.ellipse if round_sign else draw.rectangle)([bx - r, by - r, bx + r, by + r], fill=board)
    return paint


def _bush(rng: np.random.Generator, size: tuple[int, int]) -> Painter:
    """A clump of green blobs growing up from the ground."""
    h, w = size
    blobs = [(rng.uniform(-0.1, 1.1) * w, rng.uniform(0.3, 0.5) * w, rng.uniform(0.8, 1.0),
              (int(rng.integers(30, 80)), int(rng.integers(90, 150)), int(rng.integers(30, 70))))
             for _ in range(4)]

    def paint(draw: ImageDraw.ImageDraw, t: float) -> None:
        tall = t * 0.8 * h
        for cx, rx, ry, colour in blobs:
            draw.ellipse([cx - rx, h - ry * tall, cx + rx, h + ry * tall], fill=colour)
    return paint


def _tree(rng: np.random.Generator, size: tuple[int, int]) -> Painter:
    """A tree (trunk + round crown) that moves in from one side as t grows."""
    h, w = size
    side, radius, cy = rng.choice((-1.0, 1.0)), rng.uniform(0.45, 0.6) * w, rng.uniform(0.3, 0.55) * h
    crown = (int(rng.integers(30, 70)), int(rng.integers(100, 160)), int(rng.integers(30, 70)))

    def paint(draw: ImageDraw.ImageDraw, t: float) -> None:
        cx = w / 2 + side * (1 - t) * (w / 2 + radius)
        draw.rectangle([cx - 0.08 * w, cy, cx + 0.08 * w, h], fill=(95, 65, 40))
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=crown)
    return paint


def _boxes(rng: np.random.Generator, size: tuple[int, int], full_width: bool = False) -> Painter:
    """A stack of boxes and bags rising from the ground; full_width makes it able to cover anything."""
    h, w = size
    x0 = -2.0 if full_width else rng.uniform(-0.1, 0.3) * w
    x1 = w + 2.0 if full_width else x0 + rng.uniform(0.6, 1.0) * w
    colours = [_colour(rng, 80, 200) for _ in range(8)]

    def paint(draw: ImageDraw.ImageDraw, t: float) -> None:
        top, step = h - t * h, 0.16 * h
        for i, bottom in enumerate(np.arange(h, top, -step)):
            draw.rectangle([x0, max(top, bottom - step), x1, bottom], fill=colours[i % 8], outline=(60, 50, 40))
    return paint


def _pedestrian(rng: np.random.Generator, size: tuple[int, int], identity: Identity, height: float) -> Painter:
    """Another person in front of the target (closer, so a bit taller), moving in from one side."""
    h, w = size
    pose = sample_pose(identity, VIEWS[int(rng.integers(len(VIEWS)))], rng, height * rng.uniform(1.0, 1.2),
                       center_x=0.0, foot_y=h + rng.uniform(0, 0.1) * h)
    side = rng.choice((-1.0, 1.0))

    def paint(draw: ImageDraw.ImageDraw, t: float) -> None:
        draw_person(draw, identity, pose.shifted(w / 2 + side * (1 - t) * 0.9 * w))
    return paint


def _painter(kind: str, rng: np.random.Generator, size: tuple[int, int], identity: Identity,
             height: float) -> Painter:
    if kind == "pedestrian":
        return _pedestrian(rng, size, identity, height)
    draw = {"vehicle": _vehicle, "pole_sign": _pole_sign, "bush": _bush, "tree": _tree, "boxes": _boxes}[kind]
    return draw(rng, size)


def _paint(painter: Painter, t: float, size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    layer = Image.new("RGBA", (size[1], size[0]), (0, 0, 0, 0))
    painter(ImageDraw.Draw(layer), t)
    return layer, np.asarray(layer)[:, :, 3] > 0


def _fit(painter: Painter, person_mask: np.ndarray, target: float, steps: int = 9):
    """(layer, mask, fraction) of the painter at the extent t whose hidden fraction is nearest
    the target: bisection on t, assuming coverage grows with t."""
    area, size = max(int(person_mask.sum()), 1), person_mask.shape
    low, high, t, best = 0.0, 1.0, 1.0, None
    for _ in range(steps + 1):
        layer, mask = _paint(painter, t, size)
        fraction = float((mask & person_mask).sum()) / area
        if best is None or abs(fraction - target) < abs(best[2] - target):
            best = (layer, mask, fraction)
        if fraction < target and t == 1.0:
            break  # even at full extent this painter hides too little
        low, high = (t, high) if fraction < target else (low, t)
        t = (low + high) / 2
    return best


@dataclass(frozen=True)
class Occlusion:
    layer: Image.Image  # RGBA, transparent where nothing is in front of the person
    mask: np.ndarray  # [H, W] bool, True where the occluder is
    kind: str
    fraction: float  # share of the person's pixels hidden


def occlude(person_mask: np.ndarray, rng: np.random.Generator, other: Identity | None, height: float,
            fraction_range: tuple[float, float] = (0.2, 0.6), kinds: Sequence[str] = OCCLUDERS) -> Occlusion:
    """An occluder hiding a random fraction (within fraction_range) of the person's pixels.

    Tries the kinds in random order, bisecting each painter's extent t towards the target; a
    full-width stack of boxes, which can cover everything, is the last resort.
    other: the identity an occluding pedestrian wears (None when `kinds` has no "pedestrian");
    height: the target's height in px; kinds: the occluder kinds to try (a subset of OCCLUDERS).
    """
    size, low, high = person_mask.shape, *fraction_range
    target = rng.uniform(low + 0.02, high - 0.02)
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    painters = [(k, _painter(k, rng, size, other, height)) for k in kinds]
    painters.append(("boxes", _boxes(rng, size, full_width=True)))
    for kind, painter in painters:
        best = _fit(painter, person_mask, target)
        if low <= best[2] <= high:
            return Occlusion(*best[:2], kind=kind, fraction=best[2])
    raise RuntimeError(f"no occluder hid {fraction_range} of a person of {int(person_mask.sum())} px")
