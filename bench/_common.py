"""Shared timing helpers of the bench scripts: warm-up excluded, CUDA synchronized, median of repeats."""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from pfd.config import load_config
from pfd.device import resolve_device  # noqa: F401  (re-exported for the bench scripts)
from pfd.precision import autocast, autocast_dtype  # noqa: F401  (re-exported for the bench scripts)

__all__ = ["resolve_device", "autocast_dtype", "autocast", "sync", "measure", "reset_peak_memory", "peak_memory_gb",
           "emit"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Callable[[], None], device: torch.device, *, warmup: int, steps: int, repeats: int) -> float:
    """Median seconds per step over `repeats` timed runs of `steps` steps, after `warmup` untimed steps."""
    for _ in range(warmup):
        step()
    sync(device)
    per_step = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        per_step.append((time.perf_counter() - start) / steps)
    return statistics.median(per_step)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    """Peak allocated GPU memory since the last reset (None on CPU)."""
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def emit(record: dict) -> None:
    """The one JSON line a bench script prints."""
    print(json.dumps(record), flush=True)


# ----------------------------------------------------------------------------- model benches (train_step, inference)
NUM_CLASSES, NUM_CAMERAS, IDS_PER_BATCH_IMAGES = 702, 8, 4  # Occluded-Duke sized heads, PK batches of 4 per id


def model_bench_options(opts: list[str], tiny: bool) -> list[str]:
    """Config overrides of the measured PFD: ViT-B/16 256x128 from scratch, or a tiny ViT at 128x64."""
    base = ["MODEL.PRETRAIN_CHOICE", "none", "MODEL.POSE_BACKEND", "synthetic"]
    if tiny:
        base += ["MODEL.TRANSFORMER_TYPE", "vit_tiny_patch16_224", "MODEL.VIT_DEPTH", "4", "MODEL.NUM_HEAD", "4",
                 "MODEL.DECODER_FFN_DIM", "384", "INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]"]
    return base + list(opts)


def timm_baseline(tiny: bool, size: tuple[int, int], device: torch.device) -> torch.nn.Module:
    """The plain timm ViT-B/16 (tiny: the same tiny ViT as the PFD run) with a 702-way head."""
    import timm

    name, extra = ("vit_tiny_patch16_224", {"depth": 4}) if tiny else ("vit_base_patch16_224", {})
    return timm.create_model(name, pretrained=False, img_size=size, num_classes=NUM_CLASSES, **extra).to(device)


def random_batch(batch: int, size: tuple[int, int], device: torch.device, seed: int = 0,
                 num_classes: int = NUM_CLASSES, num_cameras: int = NUM_CAMERAS):
    """images [B,3,H,W], keypoints [B,17,3] (input pixels, conf in [0,1]), camids [B], pids [B] (PK)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    h, w = size
    images = torch.randn(batch, 3, h, w, generator=g)
    keypoints = torch.stack([torch.rand(batch, 17, generator=g) * w, torch.rand(batch, 17, generator=g) * h,
                             torch.rand(batch, 17, generator=g)], dim=-1)
    camids = torch.randint(0, num_cameras, (batch,), generator=g)
    pids = torch.arange(batch) // IDS_PER_BATCH_IMAGES % num_classes
    return [t.to(device) for t in (images, keypoints, camids, pids)]


def model_bench_args(doc: str, batch: int, warmup: int, steps: int) -> argparse.Namespace:
    """The command line shared by bench/train_step.py and bench/inference.py."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--pose-online", action="store_true",
                        help="HRNet-W48 heatmaps on every batch (MODEL.POSE_WEIGHT, or random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="tiny ViT, 128x64, batch 8, 2 steps")
    parser.add_argument("opts", nargs="*", help="extra config overrides KEY VALUE ... for the PFD model")
    args = parser.parse_args()
    if args.tiny:
        args.batch, args.warmup, args.steps, args.repeats = 8, 1, 2, 2
    return args


def model_bench_setup(name: str, args: argparse.Namespace):
    """(cfg, device, autocast dtype, random batch, the JSON record's header) of a model bench run."""
    device = resolve_device(args.device)
    dtype = autocast_dtype(args.amp, device)
    cfg = load_config(None, model_bench_options(args.opts, args.tiny))
    size = tuple(cfg.INPUT.SIZE_TRAIN)
    batch = random_batch(args.batch, size, device)  # images, keypoints, camids, pids
    header = {"bench": name, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "amp": str(dtype).replace("torch.", "") if dtype else "fp32", "batch": args.batch, "size": list(size),
              "compile": args.compile, "pose": "online" if args.pose_online else "cached", "tiny": args.tiny}
    return cfg, device, dtype, batch, header


def with_random_pose_weights(cfg):
    """`cfg` itself when MODEL.POSE_WEIGHT is set, else a copy pointing at random HRNet weights saved to
    a temp file (speed does not depend on the weights)."""
    import tempfile

    from pfd.pose.hrnet import build_hrnet

    if cfg.MODEL.POSE_WEIGHT:
        return cfg
    weights = Path(tempfile.mkdtemp()) / f"random_{cfg.MODEL.POSE_ARCH}.pth"
    torch.save(build_hrnet(cfg.MODEL.POSE_ARCH).state_dict(), weights)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.POSE_WEIGHT = str(weights)
    return cfg


def online_heatmaps(cfg, device: torch.device) -> torch.nn.Module:
    """HRNet on every batch; without MODEL.POSE_WEIGHT, random HRNet weights."""
    from pfd.pose.online import OnlineHeatmaps

    return OnlineHeatmaps(with_random_pose_weights(cfg)).to(device).eval()


def heatmap_source(cfg, pose_online: bool, device: torch.device):
    """images, keypoints -> heatmaps: cached poses rendered on the device, or HRNet online on every batch."""
    size = tuple(cfg.INPUT.SIZE_TRAIN)
    if pose_online:
        online = online_heatmaps(cfg, device)
        return lambda images, keypoints: online(images)
    from pfd.pose.heatmaps import render_heatmaps

    return lambda images, keypoints: render_heatmaps(keypoints, input_hw=size, sigma=cfg.INPUT.HEATMAP_SIGMA)
