"""Training-step throughput of PFD vs the plain timm ViT-B/16, in one process.

    python bench/train_step.py [--batch 64] [--amp auto|bf16|fp16|fp32] [--compile] [--pose-online] [--tiny]

A step is forward + loss + backward + SGD step (momentum 0.9) at 256x128. PFD's step includes
rendering the heatmaps of cached keypoints on the device (or, with --pose-online, running
HRNet-W48 on the batch via pfd.pose.online.OnlineHeatmaps). The baseline is timm's ViT-B/16 with
a linear head and cross-entropy. Warm-up steps are excluded, CUDA is synchronized, and the median
of the repeats is reported. Prints one JSON line: images/s of both, their ratio, peak GPU memory.
`--tiny`: a tiny 4-block ViT at 128x64, batch 8, a couple of steps (CPU/CI check that it runs).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (NUM_CAMERAS, NUM_CLASSES, autocast, emit, heatmap_source, measure,  # noqa: E402
                           model_bench_args, model_bench_setup, peak_memory_gb, reset_peak_memory, timm_baseline)
from pfd.model import build_loss, build_model  # noqa: E402


def train_step_fn(model, loss_of, device, dtype, params):
    """One SGD step; fp16 uses a GradScaler (bf16/fp32 need none)."""
    opt = torch.optim.SGD(params, lr=0.008, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = loss_of(model)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def run(step, device, args) -> tuple[float, float | None]:
    reset_peak_memory(device)
    seconds = measure(step, device, warmup=args.warmup, steps=args.steps, repeats=args.repeats)
    return args.batch / seconds, peak_memory_gb(device)


def main() -> None:
    args = model_bench_args(__doc__, batch=64, warmup=5, steps=10)
    cfg, device, dtype, (images, keypoints, camids, pids), result = model_bench_setup("train_step", args)
    size = tuple(cfg.INPUT.SIZE_TRAIN)

    baseline = timm_baseline(args.tiny, size, device).train()
    baseline_run = torch.compile(baseline) if args.compile else baseline
    step = train_step_fn(baseline_run, lambda m: F.cross_entropy(m(images), pids), device, dtype,
                         baseline.parameters())
    result["baseline_images_per_s"], result["baseline_peak_mem_gb"] = run(step, device, args)
    del baseline, baseline_run, step

    model = build_model(cfg, NUM_CLASSES, NUM_CAMERAS).to(device).train()
    model_run = torch.compile(model) if args.compile else model
    loss_fn = build_loss(cfg)
    heatmaps_of = heatmap_source(cfg, args.pose_online, device)

    def pfd_loss(m):
        return loss_fn(m(images, heatmaps_of(images, keypoints), camids), pids)["total"]

    step = train_step_fn(model_run, pfd_loss, device, dtype, [p for p in model.parameters() if p.requires_grad])
    result["pfd_images_per_s"], result["pfd_peak_mem_gb"] = run(step, device, args)
    result["pfd_vs_baseline_speed"] = round(result["pfd_images_per_s"] / result["baseline_images_per_s"], 3)
    for key in ("baseline_images_per_s", "pfd_images_per_s"):
        result[key] = round(result[key], 1)
    emit(result)


if __name__ == "__main__":
    main()
