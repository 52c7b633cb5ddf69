"""Write the synthetic occluded re-ID dataset in the Market-1501 layout, with keypoints.

DIR/bounding_box_train, DIR/query, DIR/bounding_box_test hold 128x64 JPEGs named
PPPP_cCs1_FFFFFF_00.jpg (pid 0000 = distractor, -1 = junk); DIR/keypoints.json holds COCO-17
(x, y, visibility, confidence) per image; DIR/meta.json the generation settings and, per image,
view, occluder and hidden fraction; DIR/.pfd-output.json (pfd.io's marker, kind "synthetic"; folders of
earlier versions carry .pfd-synthetic instead) marks the folder as the generator's own.
Like Occluded-Duke, every query is occluded and most other images are not. Everything is rendered
into a sibling temp folder renamed to DIR at the end, so a crash never leaves a half dataset at DIR.
`force` replaces only a folder that carries the marker and nothing but the files the generator wrote,
each with the bytes it wrote (their recorded SHA-256: pfd.data.writer, the rule pfd.data.occlude shares);
any other non-empty folder is refused, whatever `force` says, naming what is not the generator's or
was changed.

Determinism: the plan (identities, cameras, which image shows whom where) comes from
RNG(seed, 0) and each image from its own RNG(seed, 1, index), so same seed -> same bytes, however
many worker processes render the images. With
`train_cameras_per_id`, a training identity's cameras come from RNG(seed, 2, identity) instead,
so the query and gallery images are the same bytes whatever that setting.
"""
import glob
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from pfd.data.synthetic.identity import HEIGHT_SCALE, Identity, make_identities
from pfd.data.synthetic.person import VIEWS, draw_person, observe_keypoints, sample_pose
from pfd.data.synthetic.scene import Camera, make_cameras, occlude
from pfd.data.writer import claim_dataset_dir, write_dataset_dir
from pfd.device import usable_cores
from pfd.errors import InvalidInputError
from pfd.io import OUTPUT_MARKER

KEYPOINTS_FILE = "keypoints.json"
META_FILE = "meta.json"
MARKER_FILE = OUTPUT_MARKER  # written first (kind KIND): this folder was made by the generator
LEGACY_MARKER = ".pfd-synthetic"  # the marker of earlier versions, still recognized
KIND = "synthetic"
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
JPEG_QUALITY = 92
VIEW_PROBS = (0.35, 0.35, 0.3)  # front, back, side
BAD_CROP_RATE = 0.06  # train/gallery crops that cut off the head or the feet
IMAGES_PER_TASK = 64  # images a worker process renders per task (and the fewest worth a process)


def _setting(default, help_text: str):
    """A SyntheticConfig field whose help text the command line shows."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes of the generated dataset (the defaults make ~2,100 images for `make demo`)."""
    ids_train: int = _setting(100, "training identities")
    ids_test: int = _setting(50, "test identities (query + gallery)")
    images_per_id: int = _setting(14, "training images per training identity")
    cameras: int = _setting(6, "cameras, each with its own scene and photometry")
    cameras_per_id: int = _setting(3, "cameras each identity walks past")
    train_cameras_per_id: int = _setting(0, "cameras each training identity walks past (0 = cameras_per_id); "
                                            "any value leaves the test split as it is")
    queries_per_camera: int = _setting(1, "query images per test identity and camera")
    gallery_per_camera: int = _setting(3, "gallery images per test identity and camera")
    distractors: int = _setting(40, "gallery images of unrelated people (pid 0000)")
    junk: int = _setting(10, "gallery images of bad crops (pid -1)")
    train_occluded: float = _setting(0.2, "share of training images with an occluder")
    gallery_occluded: float = _setting(0.2, "share of gallery images (distractors included) with an occluder")
    seed: int = _setting(0, "random seed; the same seed gives the same bytes")
    height: int = _setting(128, "image height, px")
    width: int = _setting(64, "image width, px")

    def validate(self) -> None:
        """Raise ValueError naming the first setting outside its range."""
        checks = [
            ("ids_train", self.ids_train >= 1, ">= 1"), ("ids_test", self.ids_test >= 1, ">= 1"),
            ("images_per_id", self.images_per_id >= 1, ">= 1"),
            ("cameras", 2 <= self.cameras <= 9, "in [2, 9] (one digit in the file name)"),
            ("cameras_per_id", 2 <= self.cameras_per_id <= self.cameras, "in [2, cameras]"),
            ("train_cameras_per_id", self.train_cameras_per_id == 0 or 2 <= self.train_cameras_per_id <= self.cameras,
             "0 or in [2, cameras]"),
            ("queries_per_camera", self.queries_per_camera >= 1, ">= 1"),
            ("gallery_per_camera", self.gallery_per_camera >= 1, ">= 1"),
            ("distractors", self.distractors >= 0, ">= 0"), ("junk", self.junk >= 0, ">= 0"),
            ("train_occluded", 0.0 <= self.train_occluded <= 1.0, "in [0, 1]"),
            ("gallery_occluded", 0.0 <= self.gallery_occluded <= 1.0, "in [0, 1]"),
            ("seed", self.seed >= 0, ">= 0"),
            ("height", self.height >= 32, ">= 32"), ("width", self.width >= 16, ">= 16"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InvalidInputError(f"synthetic dataset: {name}={getattr(self, name)!r}, expected {expected}")
        if self.ids_train + self.ids_test > 9999:
            raise InvalidInputError(f"synthetic dataset: ids_train + ids_test = {self.ids_train + self.ids_test}, "
                                    "expected <= 9999 (four-digit person ids)")

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def num_identities(self) -> int:
        """Train and test identities, then one fresh identity per distractor image."""
        return self.ids_train + self.ids_test + self.distractors


@dataclass(frozen=True)
class ImageSpec:
    """One image to render: who, where, and whether something stands in front."""
    index: int
    split: str  # "train" | "query" | "gallery"
    pid: int  # 1.., 0 = distractor, -1 = junk
    camera: int  # 0-based
    identity: int  # index into the identity list
    occluded: bool = False

    @property
    def path(self) -> str:
        """Path relative to the dataset folder, Market-1501 style."""
        pid = "-1" if self.pid == -1 else f"{self.pid:04d}"
        return f"{SPLIT_DIRS[self.split]}/{pid}_c{self.camera + 1}s1_{self.index + 1:06d}_00.jpg"


def _occlude_share(specs: list[ImageSpec], share: float, rng: np.random.Generator) -> list[ImageSpec]:
    """Mark exactly round(share * n) of the specs as occluded, chosen at random."""
    chosen = set(rng.permutation(len(specs))[: round(share * len(specs))].tolist())
    return [replace(s, occluded=i in chosen) for i, s in enumerate(specs)]


def plan_images(cfg: SyntheticConfig, rng: np.random.Generator) -> list[ImageSpec]:
    """Every image of the dataset, in a fixed order (the index is the frame number)."""
    train, query, gallery = [], [], []
    for ident in range(cfg.ids_train + cfg.ids_test):
        cams = np.sort(rng.choice(cfg.cameras, cfg.cameras_per_id, replace=False)).tolist()
        if ident < cfg.ids_train:
            if cfg.train_cameras_per_id:  # its own stream: the plan's (and so the test split) stays the same
                own = np.random.default_rng([cfg.seed, 2, ident])
                cams = own.permutation(cfg.cameras)[:cfg.train_cameras_per_id].tolist()
            train += [ImageSpec(0, "train", ident + 1, cams[k % len(cams)], ident) for k in range(cfg.images_per_id)]
            continue
        for cam in cams:  # every test camera gets queries and gallery: each query has matches elsewhere
            query += [ImageSpec(0, "query", ident + 1, cam, ident, occluded=True)] * cfg.queries_per_camera
            gallery += [ImageSpec(0, "gallery", ident + 1, cam, ident)] * cfg.gallery_per_camera
    first_distractor = cfg.ids_train + cfg.ids_test
    gallery += [ImageSpec(0, "gallery", 0, int(rng.integers(cfg.cameras)), first_distractor + d)
                for d in range(cfg.distractors)]
    junk = [ImageSpec(0, "gallery", -1, int(rng.integers(cfg.cameras)), int(rng.integers(cfg.num_identities)))
            for _ in range(cfg.junk)]
    specs = (_occlude_share(train, cfg.train_occluded, rng) + query
             + _occlude_share(gallery, cfg.gallery_occluded, rng) + junk)
    return [replace(s, index=i) for i, s in enumerate(specs)]


def render_image(spec: ImageSpec, identities: list[Identity], cameras: list[Camera],
                 cfg: SyntheticConfig) -> tuple[Image.Image, np.ndarray, dict]:
    """The RGB image, its [17, 4] keypoints and a record of what was drawn."""
    rng = np.random.default_rng([cfg.seed, 1, spec.index])
    (h, w), camera, identity = cfg.size, cameras[spec.camera], identities[spec.identity]
    view = VIEWS[rng.choice(len(VIEWS), p=VIEW_PROBS)]
    height = h * camera.person_scale * HEIGHT_SCALE[identity.height] * rng.uniform(0.97, 1.03)
    foot_y, center_x = h - rng.uniform(1.0, 0.05 * h), w / 2 + rng.uniform(-0.06, 0.06) * w
    if spec.pid == -1:  # junk: a detector's bad box, a fragment of a too-large person
        height *= rng.uniform(1.6, 2.4)
        foot_y, center_x = h * rng.uniform(0.9, 1.7), center_x + rng.uniform(-0.4, 0.4) * w
    elif spec.split != "query" and rng.random() < BAD_CROP_RATE:
        foot_y += rng.choice((-1.0, 1.0)) * rng.uniform(0.06, 0.15) * height
    pose = sample_pose(identity, view, rng, height, center_x, foot_y)

    canvas = camera.background_crop(rng, cfg.size)
    ImageDraw.Draw(canvas, "RGBA").ellipse(  # soft shadow on the ground
        [center_x - 0.2 * height, foot_y - 0.02 * height, center_x + 0.2 * height, foot_y + 0.02 * height],
        fill=(0, 0, 0, 60))
    person = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw_person(ImageDraw.Draw(person), identity, pose)
    canvas.alpha_composite(person)
    occlusion = None
    if spec.occluded:
        other = int(rng.integers(len(identities) - 1))
        other += other >= spec.identity  # anybody but the person themself
        occlusion = occlude(np.asarray(person)[:, :, 3] > 0, rng, identities[other], height)
        canvas.alpha_composite(occlusion.layer)
    image = camera.capture(canvas.convert("RGB"), rng)
    keypoints = observe_keypoints(pose, occlusion.mask if occlusion else None, rng, cfg.size)
    info = {"pid": spec.pid, "camid": spec.camera, "view": view,
            "occluder": occlusion.kind if occlusion else None,
            "occluded_fraction": round(occlusion.fraction, 3) if occlusion else 0.0}
    return image, keypoints, info


def _write_image(spec: ImageSpec, identities: list[Identity], cameras: list[Camera], cfg: SyntheticConfig,
                 folder: Path) -> tuple[list, dict]:
    """Render one image into folder; returns its keypoints as stored in keypoints.json, and its record."""
    image, keypoints, info = render_image(spec, identities, cameras, cfg)
    image.save(folder / spec.path, "JPEG", quality=JPEG_QUALITY)
    return [[x, y, int(v), c] for x, y, v, c in np.round(keypoints, 2).tolist()], info


@dataclass(frozen=True)
class Summary:
    out_dir: Path
    counts: dict  # split -> {"ids", "images", "occluded", "distractors", "junk"}
    seconds: float

    def __str__(self) -> str:
        parts = [f"{split} {c['ids']} ids" + (f" + {c['distractors']} distractors + {c['junk']} junk"
                                              if split == "gallery" else "")
                 + f"/{c['images']} images ({100 * c['occluded'] / max(c['images'], 1):.0f}% occluded)"
                 for split, c in self.counts.items()]
        return f"synthetic -> {self.out_dir}: " + ", ".join(parts) + f"; {self.seconds:.1f} s"


def is_complete(out_dir: str | os.PathLike) -> bool:
    """True when out_dir holds a finished dataset (its keypoint file is written last)."""
    return (Path(out_dir) / KEYPOINTS_FILE).is_file()


def _legacy_written(out: Path) -> list[str]:
    """What a folder of an earlier version (no record of its files' SHA-256) may hold: the generator's
    top-level files and every image its meta.json lists (none when meta.json is unreadable: then every
    image counts as foreign)."""
    try:
        images = json.loads((out / META_FILE).read_text())["images"]
    except (OSError, ValueError, KeyError, TypeError):
        images = {}
    if not isinstance(images, dict):
        images = {}
    listed = [path for path in images if isinstance(path, str) and not glob.has_magic(path)]  # a pattern: foreign
    return [LEGACY_MARKER, KEYPOINTS_FILE, META_FILE, *listed]


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, separators=(",", ":")))


def _render(tmp: Path, cfg: SyntheticConfig, specs: list[ImageSpec], identities: list[Identity],
            cameras: list[Camera], progress: bool, workers: int, label: str) -> None:
    """Render every image and the two JSON files into the (new, empty) folder `tmp`."""
    for folder in SPLIT_DIRS.values():
        (tmp / folder).mkdir()
    write = partial(_write_image, identities=identities, cameras=cameras, cfg=cfg, folder=tmp)
    workers = min(workers or usable_cores(), -(-len(specs) // IMAGES_PER_TASK))
    keypoints, infos = {}, {}
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        written = pool.map(write, specs, chunksize=IMAGES_PER_TASK) if pool else map(write, specs)
        written = tqdm(written, total=len(specs), desc=f"synthetic {label}", unit="img",
                       disable=not progress, mininterval=0.5)
        for spec, (kps, info) in zip(specs, written):  # in plan order
            keypoints[spec.path], infos[spec.path] = kps, info
    _write_json(tmp / META_FILE, {"format": "pfd-synthetic-meta-v1", "config": asdict(cfg), "images": infos})
    _write_json(tmp / KEYPOINTS_FILE, {"format": "pfd-keypoints-v1", "root": ".", "keypoints": keypoints})


def generate(out_dir: str | os.PathLike, cfg: SyntheticConfig = SyntheticConfig(), force: bool = False,
             progress: bool = True, workers: int = 0) -> Summary:
    """Render the dataset to out_dir; a non-empty out_dir is refused unless it is the generator's own
    (nothing in it but what the generator wrote) and `force` is set. `workers` processes render the
    images (0 = one per CPU core; the bytes are the same for any number). A full disk is a
    DiskFullError (nothing is left behind)."""
    cfg.validate()
    if workers < 0:
        raise InvalidInputError(f"synthetic dataset: workers={workers}, expected >= 0 (0 = one per CPU core)")
    start = time.perf_counter()
    out = claim_dataset_dir(out_dir, KIND, "the synthetic generator", force, legacy_marker=LEGACY_MARKER,
                            legacy_owned=_legacy_written)
    plan_rng = np.random.default_rng([cfg.seed, 0])
    identities = make_identities(cfg.num_identities, plan_rng)
    cameras = make_cameras(cfg.cameras, cfg.size, plan_rng)
    specs = plan_images(cfg, plan_rng)

    write_dataset_dir(out, KIND, lambda tmp: _render(tmp, cfg, specs, identities, cameras, progress, workers,
                                                     out.name))
    counts = {}
    for split in SPLIT_DIRS:
        chosen = [s for s in specs if s.split == split]
        counts[split] = {"ids": len({s.pid for s in chosen if s.pid > 0}), "images": len(chosen),
                         "occluded": sum(s.occluded for s in chosen),
                         "distractors": sum(s.pid == 0 for s in chosen), "junk": sum(s.pid == -1 for s in chosen)}
    return Summary(out, counts, time.perf_counter() - start)
