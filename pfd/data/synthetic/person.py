"""A walking pedestrian: a 3-D stick skeleton, its projection for a view, and a PIL drawing of it.

Body frame: X = the person's LEFT, Y = down (0 at the head top), Z = the direction they face.
The camera looks along -Z when the person faces it (yaw 0), so image x = X cos(yaw) + Z sin(yaw):
a front-facing person's left shoulder is on the image's RIGHT, as COCO annotations expect.
"""
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from pfd.data.synthetic.identity import (
    ACCESSORY_COLOURS,
    BUILD_SCALE,
    HAIR_COLOURS,
    LOWER_COLOURS,
    RGB,
    SHOE_COLOURS,
    SKIN_TONES,
    UPPER_COLOURS,
    Identity,
)
from pfd.pose.keypoints import COCO_KEYPOINTS, NUM_KEYPOINTS

# Skeleton points: the 17 COCO keypoints, then helper points used only for drawing.
POINT_NAMES = COCO_KEYPOINTS + ("head", "neck", "left_toe", "right_toe")
HEAD, NECK, TOE = 17, 18, 19  # TOE + side: 0 = left, 1 = right
SHOULDER, ELBOW, WRIST, HIP, KNEE, ANKLE = 5, 7, 9, 11, 13, 15  # + side
VIEW_YAW_DEG = {"front": 0.0, "back": 180.0, "side": 90.0}  # side: sign picked at random
VIEWS = tuple(VIEW_YAW_DEG)


@dataclass(frozen=True)
class Pose:
    """A skeleton projected into an image."""
    points: np.ndarray  # [21, 2] image (x, y) of POINT_NAMES
    depth: np.ndarray  # [21] distance towards the camera, px
    yaw: float  # radians; 0 faces the camera, +pi/2 walks towards the image's right
    height: float  # px from head top to sole
    build: float  # shoulder/hip width factor of the identity

    @property
    def head_radius(self) -> float:
        return 0.062 * self.height

    def shifted(self, dx: float) -> "Pose":
        return replace(self, points=self.points + np.array([dx, 0.0]))


def _direction(forward: float, outward: float, side_sign: float) -> np.ndarray:
    """Unit limb direction: swung `forward` (rad, towards +Z) and spread `outward` (rad)."""
    return np.array([side_sign * np.sin(outward), np.cos(forward) * np.cos(outward),
                     np.sin(forward) * np.cos(outward)])


def _body_points(h: float, build: float, rng: np.random.Generator) -> np.ndarray:
    """[21, 3] body-frame points of a person of height h px mid-stride (random phase and stride)."""
    r = 0.062 * h
    p = np.zeros((len(POINT_NAMES), 3))
    p[HEAD] = (0, r, 0)
    p[0] = (0, 1.2 * r, 0.95 * r)  # nose
    p[1:3] = [(0.38 * r, 0.85 * r, 0.8 * r), (-0.38 * r, 0.85 * r, 0.8 * r)]  # eyes
    p[3:5] = [(0.95 * r, 0.95 * r, 0.0), (-0.95 * r, 0.95 * r, 0.0)]  # ears
    p[NECK] = (0, 0.145 * h, 0)
    phase, stride = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.45)
    elbow_bend, arm_spread, leg_spread = rng.uniform(0.1, 0.5), rng.uniform(0.08, 0.2), rng.uniform(0, 0.06)
    for side, sign in ((0, 1.0), (1, -1.0)):  # left (+X), right (-X)
        leg = sign * stride * np.sin(phase)
        knee_bend = 0.08 + 1.2 * stride * max(0.0, sign * np.cos(phase))  # the swinging leg bends
        arm = -0.8 * leg
        p[SHOULDER + side] = (sign * 0.105 * h * build, 0.19 * h, 0)
        p[ELBOW + side] = p[SHOULDER + side] + 0.16 * h * _direction(arm, arm_spread, sign)
        p[WRIST + side] = p[ELBOW + side] + 0.14 * h * _direction(
            arm + elbow_bend + 0.5 * max(arm, 0.0), arm_spread / 2, sign)
        p[HIP + side] = (sign * 0.07 * h * build, 0.52 * h, 0)
        p[KNEE + side] = p[HIP + side] + 0.225 * h * _direction(leg, leg_spread, sign)
        p[ANKLE + side] = p[KNEE + side] + 0.215 * h * _direction(leg - knee_bend, leg_spread, sign)
        p[TOE + side] = p[ANKLE + side] + (0, 0.03 * h, 0.065 * h)
    return p


def sample_pose(identity: Identity, view: str, rng: np.random.Generator, height: float,
                center_x: float, foot_y: float) -> Pose:
    """A random walking pose for `view` ("front", "back", "side"), standing with its lowest foot
    at foot_y and its body axis at center_x (image px)."""
    if view not in VIEW_YAW_DEG:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    build = BUILD_SCALE[identity.build]
    body = _body_points(height, build, rng)
    yaw_deg = VIEW_YAW_DEG[view] * (rng.choice((-1.0, 1.0)) if view == "side" else 1.0)
    yaw = np.deg2rad(yaw_deg + rng.uniform(-20, 20))
    c, s = np.cos(yaw), np.sin(yaw)
    sole = body[[ANKLE, ANKLE + 1], 1].max() + 0.035 * height
    xy = np.stack([center_x + body[:, 0] * c + body[:, 2] * s, foot_y - sole + body[:, 1]], axis=1)
    return Pose(points=xy, depth=-body[:, 0] * s + body[:, 2] * c, yaw=float(yaw),
                height=height, build=build)


def _torso(pose: Pose) -> tuple[float, float, float, float, float]:
    """Torso trapezoid (center x, top y, top half-width, bottom y, bottom half-width): the
    projection of a box with the shoulders' and hips' width and a chest's depth."""
    h, c, s = pose.height, abs(np.cos(pose.yaw)), abs(np.sin(pose.yaw))
    depth = 0.055 * h * pose.build
    top = (0.125 * h * pose.build) * c + depth * s
    bottom = (0.09 * h * pose.build) * c + depth * s
    x = pose.points[[SHOULDER, SHOULDER + 1, HIP, HIP + 1], 0].mean()
    return x, pose.points[SHOULDER, 1] - 0.02 * h, top, pose.points[HIP, 1] + 0.03 * h, bottom


def self_occluded(pose: Pose) -> np.ndarray:
    """[17] bool: keypoints hidden by the person's own head or torso (face seen from behind,
    far-side joints behind the torso in a side view)."""
    hidden = np.zeros(NUM_KEYPOINTS, dtype=bool)
    hidden[:5] = pose.depth[:5] - pose.depth[HEAD] < -0.5 * pose.head_radius  # behind the head
    far_side = np.sin(pose.yaw) * np.array([1.0, -1.0]) > 0.6  # [left, right] turned away
    x, top, half_top, bottom, half_bottom = _torso(pose)
    for side in np.flatnonzero(far_side):
        hidden[[SHOULDER + side, HIP + side]] = True
        for k in (ELBOW + side, WRIST + side, KNEE + side, ANKLE + side):
            px, py = pose.points[k]
            half = half_top + (half_bottom - half_top) * (py - top) / (bottom - top)
            hidden[k] = top <= py <= bottom and abs(px - x) <= half
    return hidden


def _limb(draw: ImageDraw.ImageDraw, a, b, width: float, colour: RGB) -> None:
    """A thick segment with round joints."""
    w = max(1, round(width))
    draw.line([tuple(a), tuple(b)], fill=colour, width=w)
    for x, y in (a, b):
        draw.ellipse([x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=colour)


def _accent(colour: RGB) -> RGB:
    """Pattern colour that contrasts with the garment colour."""
    return (40, 40, 45) if sum(colour) > 420 else (232, 232, 226)


def _draw_leg(draw, pose: Pose, identity: Identity, side: int) -> None:
    pts, h = pose.points, pose.height
    skin, lower = SKIN_TONES[identity.skin], LOWER_COLOURS[identity.lower_colour]
    hip, knee, ankle = pts[HIP + side], pts[KNEE + side], pts[ANKLE + side]
    thigh_colour = skin if identity.lower_style == "skirt" else lower
    shin_colour = lower if identity.lower_style == "trousers" else skin
    _limb(draw, knee, ankle, 0.06 * h, shin_colour)
    if identity.lower_style == "shorts":
        _limb(draw, hip + 0.55 * (knee - hip), knee, 0.065 * h, skin)
        _limb(draw, hip, hip + 0.55 * (knee - hip), 0.085 * h, lower)
    else:
        _limb(draw, hip, knee, 0.08 * h, thigh_colour)
    _limb(draw, ankle + (0, 0.015 * h), pts[TOE + side], 0.045 * h, SHOE_COLOURS[identity.shoes])


def _draw_arm(draw, pose: Pose, identity: Identity, side: int) -> None:
    pts, h = pose.points, pose.height
    skin, upper = SKIN_TONES[identity.skin], UPPER_COLOURS[identity.upper_colour]
    shoulder, elbow, wrist = pts[SHOULDER + side], pts[ELBOW + side], pts[WRIST + side]
    _limb(draw, elbow, wrist, 0.045 * h, upper if identity.sleeves == "long" else skin)
    _limb(draw, shoulder, elbow if identity.sleeves == "long" else shoulder + 0.6 * (elbow - shoulder),
          0.058 * h, upper)
    r = 0.022 * h
    draw.ellipse([wrist[0] - r, wrist[1] - r, wrist[0] + r, wrist[1] + r], fill=skin)
    if side == 1 and identity.bag == "handbag":
        x, y = wrist
        draw.rectangle([x - 0.035 * h, y + 0.01 * h, x + 0.035 * h, y + 0.1 * h],
                       fill=ACCESSORY_COLOURS[identity.bag_colour])


def _draw_torso(draw, pose: Pose, identity: Identity) -> None:
    x, top, half_top, bottom, half_bottom = _torso(pose)
    colour = UPPER_COLOURS[identity.upper_colour]
    draw.polygon([(x - half_top, top), (x + half_top, top), (x + half_bottom, bottom),
                  (x - half_bottom, bottom)], fill=colour)
    accent, h, pattern = _accent(colour), pose.height, identity.upper_pattern
    period = max(3.0, 0.04 * h)
    if pattern in ("stripes", "checks"):
        for y in np.arange(top + period / 2, bottom - 1, period):
            half = half_top + (half_bottom - half_top) * (y - top) / (bottom - top)
            draw.line([(x - half, y), (x + half - 1, y)], fill=accent, width=max(1, round(period / 3)))
    if pattern == "checks":
        half = min(half_top, half_bottom)
        for dx in np.arange(-half + period / 2, half, period):
            draw.line([(x + dx, top), (x + dx, bottom - 1)], fill=accent, width=max(1, round(period / 3)))
    if pattern == "logo" and np.cos(pose.yaw) > 0.3:  # printed on the front only
        r, cy = 0.035 * h, top + 0.1 * h
        draw.regular_polygon((x + 0.3 * half_top * np.sin(pose.yaw), cy, r), 4, fill=accent)


def _draw_skirt(draw, pose: Pose, identity: Identity) -> None:
    """A skirt: a trapezoid from the hips to just above the knees."""
    pts, h = pose.points, pose.height
    _, _, _, bottom, half = _torso(pose)
    hem = pts[[KNEE, KNEE + 1], 1].mean() - 0.02 * h
    x = pts[[HIP, HIP + 1], 0].mean()
    draw.polygon([(x - half, bottom - 0.04 * h), (x + half, bottom - 0.04 * h),
                  (x + 1.45 * half, hem), (x - 1.45 * half, hem)],
                 fill=LOWER_COLOURS[identity.lower_colour])


def _draw_bag(draw, pose: Pose, identity: Identity, behind: bool) -> None:
    """Backpack or shoulder bag; drawn twice per person, once behind and once in front of the torso."""
    pts, h, facing = pose.points, pose.height, np.cos(pose.yaw)
    colour = ACCESSORY_COLOURS[identity.bag_colour]
    x, top, half_top, _, _ = _torso(pose)
    if identity.bag == "backpack":
        if behind == (facing >= 0):  # the pack itself is on the back
            offset = -0.09 * h * np.sin(pose.yaw)  # sticks out behind in a side view
            half = 0.8 * half_top
            draw.rounded_rectangle([x + offset - half, top + 0.03 * h, x + offset + half, top + 0.22 * h],
                                   radius=0.02 * h, fill=colour)
        elif facing > 0.3:  # straps over the chest
            for side in (0, 1):
                s = pts[SHOULDER + side]
                _limb(draw, s + 0.35 * (pts[SHOULDER + 1 - side] - s), s + (0, 0.2 * h), 0.02 * h, colour)
    elif identity.bag == "shoulder_bag" and behind == (np.sin(pose.yaw) < -0.5):
        hip = pts[HIP + 1] + (-0.045 * h * np.cos(pose.yaw), 0.0)  # on the right hip
        _limb(draw, pts[SHOULDER], hip, 0.018 * h, colour)
        draw.rectangle([hip[0] - 0.04 * h, hip[1] - 0.05 * h, hip[0] + 0.04 * h, hip[1] + 0.05 * h], fill=colour)


def _draw_long_hair(draw, pose: Pose, identity: Identity) -> None:
    """Hair down to the shoulders: behind the body when facing the camera, over the back otherwise."""
    r, (hx, hy) = pose.head_radius, pose.points[HEAD]
    draw.rounded_rectangle([hx - 0.95 * r, hy, hx + 0.95 * r, hy + 2.3 * r], radius=0.4 * r,
                           fill=HAIR_COLOURS[identity.hair_colour])


def _draw_head(draw, pose: Pose, identity: Identity) -> None:
    """Head with hair, the face when it shows (with eyes), and a cap or beanie."""
    pts, r, yaw = pose.points, pose.head_radius, pose.yaw
    hx, hy = pts[HEAD]
    facing = np.cos(yaw)
    draw.ellipse([hx - 0.88 * r, hy - r, hx + 0.88 * r, hy + r], fill=HAIR_COLOURS[identity.hair_colour])
    if facing > -0.5:
        fx, fy = hx + 0.3 * r * np.sin(yaw), hy + 0.2 * r
        half_w = 0.72 * r * (0.6 + 0.4 * abs(facing))
        draw.ellipse([fx - half_w, fy - 0.75 * r, fx + half_w, fy + 0.8 * r], fill=SKIN_TONES[identity.skin])
        for k in (1, 2):
            if pose.depth[k] > pose.depth[HEAD]:
                ex, ey = pts[k]
                draw.ellipse([ex - 0.12 * r, ey - 0.12 * r, ex + 0.12 * r, ey + 0.12 * r], fill=(30, 25, 25))
    if identity.hat != "none":
        colour = ACCESSORY_COLOURS[identity.hat_colour]
        draw.chord([hx - 0.95 * r, hy - 1.1 * r, hx + 0.95 * r, hy + 0.5 * r], 180, 360, fill=colour)
        if identity.hat == "cap":  # a brim towards the face
            bx, spread = hx + 1.1 * r * np.sin(yaw), 0.7 * r * abs(facing)
            draw.line([(min(hx, bx) - spread, hy - 0.3 * r), (max(hx, bx) + spread, hy - 0.3 * r)],
                      fill=colour, width=max(1, round(0.25 * r)))


def draw_person(draw: ImageDraw.ImageDraw, identity: Identity, pose: Pose) -> None:
    """Paint the person back to front (painter's algorithm) with `draw`."""
    sin_yaw, facing_camera = np.sin(pose.yaw), np.cos(pose.yaw) >= 0
    far = [side for side, sign in ((0, 1.0), (1, -1.0)) if sin_yaw * sign > 0.5]  # side turned away
    near = [side for side in (0, 1) if side not in far]
    long_hair = identity.hair_length == "long"
    if long_hair and facing_camera:
        _draw_long_hair(draw, pose, identity)
    _draw_bag(draw, pose, identity, behind=True)
    for side in far:
        _draw_arm(draw, pose, identity, side)
    for side in far + near:
        _draw_leg(draw, pose, identity, side)
    if identity.lower_style == "skirt":
        _draw_skirt(draw, pose, identity)
    _draw_torso(draw, pose, identity)
    for side in near:
        _draw_arm(draw, pose, identity, side)
    _draw_bag(draw, pose, identity, behind=False)
    _limb(draw, pose.points[NECK], pose.points[HEAD] + (0, 0.6 * pose.head_radius), 0.7 * pose.head_radius,
          SKIN_TONES[identity.skin])
    if long_hair and not facing_camera:
        _draw_long_hair(draw, pose, identity)
    _draw_head(draw, pose, identity)


def observe_keypoints(pose: Pose, occluder_mask: np.ndarray | None, rng: np.random.Generator,
                      size: tuple[int, int]) -> np.ndarray:
    """What a good pose estimator would report: [17, 4] float32 (x, y, visibility, confidence).

    visibility: 2 visible, 1 hidden (by an occluder or the body itself), 0 outside the image.
    confidence: 0 when outside the image or behind an occluder, U(0.3, 0.6) when self-occluded,
    U(0.85, 1) when visible. Positions get ~0.7 px of jitter; those inside stay inside.
    """
    h, w = size
    xy = pose.points[:NUM_KEYPOINTS]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    covered = np.zeros(NUM_KEYPOINTS, dtype=bool)
    if occluder_mask is not None:
        col = np.clip(xy[:, 0].astype(int), 0, w - 1)
        row = np.clip(xy[:, 1].astype(int), 0, h - 1)
        covered = inside & occluder_mask[row, col]
    hidden = self_occluded(pose) & inside & ~covered
    visibility = np.where(~inside, 0, np.where(covered | hidden, 1, 2))
    confidence = np.where(visibility == 2, rng.uniform(0.85, 1.0, NUM_KEYPOINTS),
                          np.where(hidden, rng.uniform(0.3, 0.6, NUM_KEYPOINTS), 0.0))
    noisy = xy + rng.normal(0.0, 0.7, xy.shape)
    noisy = np.where(inside[:, None], np.clip(noisy, 0, [w - 1, h - 1]), noisy)
    return np.concatenate([noisy, visibility[:, None], confidence[:, None]], axis=1).astype(np.float32)


def render_person(identity: Identity, view: str = "front", size: tuple[int, int] = (128, 64),
                  seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """One unoccluded person on a plain wall-and-floor background, for testing pose estimators.

    Returns the RGB image of size (H, W) and its [17, 4] keypoints (x, y, visibility, confidence).
    """
    h, w = size
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (w, h), (196, 198, 192))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, round(0.72 * h), w, h], fill=(140, 135, 128))
    pose = sample_pose(identity, view, rng, height=0.88 * h, center_x=w / 2, foot_y=0.96 * h)
    draw_person(draw, identity, pose)
    return image, observe_keypoints(pose, None, rng, size)
