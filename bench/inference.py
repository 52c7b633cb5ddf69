"""Inference throughput of PFD (27,648-value features) vs the plain timm ViT-B/16, in one process.

    python bench/inference.py [--batch 256] [--amp auto|bf16|fp16|fp32] [--compile] [--pose-online] [--tiny]

Forward only (eval mode, torch.inference_mode, autocast) at 256x128. PFD's forward includes
rendering the heatmaps of cached keypoints on the device (or HRNet-W48 online with --pose-online).
Warm-up batches are excluded, CUDA is synchronized, and the median of the repeats is reported.
Prints one JSON line: images/s of both, their ratio, peak GPU memory.
`--tiny`: a tiny 4-block ViT at 128x64, batch 8, a couple of batches (CPU/CI check that it runs).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    NUM_CAMERAS,
    NUM_CLASSES,
    autocast,
    emit,
    heatmap_source,
    measure,
    model_bench_args,
    model_bench_setup,
    peak_memory_gb,
    reset_peak_memory,
    timm_baseline,
)
from pfd.model import build_model  # noqa: E402


def main() -> None:
    args = model_bench_args(__doc__, batch=256, warmup=3, steps=5)
    cfg, device, dtype, (images, keypoints, camids, _), result = model_bench_setup("inference", args)
    size = tuple(cfg.INPUT.SIZE_TRAIN)

    def throughput(forward) -> tuple[float, float | None]:
        def step():
            with torch.inference_mode(), autocast(device, dtype):
                forward()

        reset_peak_memory(device)
        seconds = measure(step, device, warmup=args.warmup, steps=args.steps, repeats=args.repeats)
        return float(f"{args.batch / seconds:.4g}"), peak_memory_gb(device)  # 4 significant digits

    baseline = timm_baseline(args.tiny, size, device).eval()
    baseline_run = torch.compile(baseline) if args.compile else baseline
    result["baseline_images_per_s"], result["baseline_peak_mem_gb"] = throughput(lambda: baseline_run(images))
    baseline = baseline_run = None  # its memory is freed before PFD's run

    model = build_model(cfg, NUM_CLASSES, NUM_CAMERAS).to(device).eval()
    model_run = torch.compile(model) if args.compile else model
    heatmaps_of = heatmap_source(cfg, args.pose_online, device)
    result["pfd_feature_dim"] = model.feature_dim
    result["pfd_images_per_s"], result["pfd_peak_mem_gb"] = throughput(
        lambda: model_run(images, heatmaps_of(images, keypoints), camids))
    result["pfd_vs_baseline_speed"] = round(result["pfd_images_per_s"] / result["baseline_images_per_s"], 3)
    emit(result)


if __name__ == "__main__":
    main()
