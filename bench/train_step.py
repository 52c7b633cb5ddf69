"""Training-step throughput of PFD vs the plain timm ViT-B/16, in one process.

    python bench/train_step.py [--batch 64] [--amp auto|bf16|fp16|fp32] [--compile] [--pose-online] [--tiny]

PFD's step is `Trainer.train_step` itself, on a real `Trainer` built from the config the way
train.py builds it (model, loss, heatmap maker, fused SGD, grad scaler, torch.compile with
--compile) over a synthetic set generated on the spot with Occluded-Duke's 702 training ids:
device copy, heatmaps rendered from cached keypoints (or, with --pose-online, HRNet-W48 on the
batch), forward + loss under autocast, backward, SGD step, device-side loss sums. The baseline
is timm's ViT-B/16 with a linear head and cross-entropy, stepped by the same optimizer and scaler
builders. Both see one fixed batch already on the device (the loader is bench/loader.py's job).
Warm-up steps are excluded, CUDA is synchronized, and the median of the repeats is reported.
Prints one JSON line: images/s of both, their ratio, peak GPU memory.
`--tiny`: a tiny 4-block ViT at 128x64, batch 8, a couple of steps (CPU/CI check that it runs).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    NUM_CLASSES,
    autocast,
    emit,
    measure,
    model_bench_args,
    model_bench_setup,
    peak_memory_gb,
    random_batch,
    reset_peak_memory,
    timm_baseline,
    with_random_pose_weights,
)
from pfd.config import merge_opts  # noqa: E402
from pfd.data.synthetic import SyntheticConfig, generate  # noqa: E402
from pfd.engine.solver import build_optimizer  # noqa: E402
from pfd.engine.trainer import Trainer  # noqa: E402
from pfd.precision import build_grad_scaler  # noqa: E402


def build_trainer(cfg, args, workdir: Path) -> Trainer:
    """A Trainer over a synthetic set of 702 training ids (8 with --tiny), one image each, in `workdir`."""
    ids = 8 if args.tiny else NUM_CLASSES
    generate(workdir / "synthetic", SyntheticConfig(ids_train=ids, ids_test=1, images_per_id=1, cameras=8,
                                                    cameras_per_id=2, distractors=0, junk=0), progress=False)
    cfg = cfg.clone()
    cfg.defrost()
    merge_opts(cfg, ["DATASETS.NAMES", "synthetic", "DATASETS.ROOT_DIR", str(workdir),
                     "OUTPUT_DIR", str(workdir / "run"), "MODEL.POSE_CACHE_DIR", str(workdir / "pose_cache"),
                     "MODEL.DEVICE", args.device, "MODEL.POSE_ONLINE", str(args.pose_online),
                     "SOLVER.AMP", args.amp, "SOLVER.COMPILE", str(args.compile),
                     "SOLVER.IMS_PER_BATCH", str(args.batch), "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL", "false"],
               source="bench/train_step.py")
    if args.pose_online:
        cfg = with_random_pose_weights(cfg)
    cfg.freeze()
    return Trainer(cfg)


def baseline_step(model, cfg, device, dtype, images, pids, compile_model: bool):
    """One step of the plain ViT: cross-entropy, the trainer's optimizer and scaler builders."""
    opt = build_optimizer(cfg, model)
    scaler = build_grad_scaler(device, dtype)
    model_run = torch.compile(model) if compile_model else model

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = F.cross_entropy(model_run(images), pids)
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
    args.device = str(device)
    size = tuple(cfg.INPUT.SIZE_TRAIN)

    baseline = timm_baseline(args.tiny, size, device).train()
    step = baseline_step(baseline, cfg, device, dtype, images, pids, args.compile)
    result["baseline_images_per_s"], result["baseline_peak_mem_gb"] = run(step, device, args)
    del baseline, step

    with tempfile.TemporaryDirectory(prefix="pfd_bench_train_") as workdir:
        trainer = build_trainer(cfg, args, Path(workdir))
        images, keypoints, camids, pids = random_batch(args.batch, size, device, num_classes=trainer.num_classes,
                                                       num_cameras=trainer.num_cameras)
        batch = {"image": images, "keypoints": keypoints, "camid": camids, "pid": pids}
        trainer.train_model.train()
        totals: dict[str, torch.Tensor] = {}
        result["pfd_images_per_s"], result["pfd_peak_mem_gb"] = run(lambda: trainer.train_step(batch, totals),
                                                                    device, args)
        result["pfd_loss_finite"] = bool(torch.isfinite(totals["total"]).item())
    result["pfd_vs_baseline_speed"] = round(result["pfd_images_per_s"] / result["baseline_images_per_s"], 3)
    for key in ("baseline_images_per_s", "pfd_images_per_s"):
        result[key] = float(f"{result[key]:.4g}")  # 4 significant digits, even at CPU speeds
    emit(result)


if __name__ == "__main__":
    main()
