"""Retrieval + metrics time: this project's distance_matrix + evaluate vs the reference per-query loop.

    python bench/retrieval.py [--device auto|cpu|cuda] [--dim 27648] [--num-query 2210] [--num-gallery 17661]
                              [--repeats 3] [--no-baseline] [--tiny]

Occluded-Duke sized by default (2,210 queries x 17,661 gallery images, 27,648-value PFD features
from 1,110 identities in 8 cameras; random identity-clustered features generated on the device).
"ours" = ``pfd.retrieval.distance_matrix`` (on the device) + ``pfd.retrieval.evaluate``;
"baseline" = TransReID's euclidean_distance (torch addmm on the same device, then numpy) + its
``eval_func`` (np.argsort of the whole matrix, then a Python loop over queries; fast-reid's mINP),
in the same process. Warm-up excluded, CUDA synchronized, median of ``--repeats``. Also reported:
the distance and metric parts of "ours" on their own, and rank_gallery's top-10 search.
Targets: <= 1 s on the GPU, <= 15 s on 2 CPU cores. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import emit, measure, resolve_device  # noqa: E402
from pfd.retrieval import distance_matrix, evaluate, rank_gallery  # noqa: E402

NUM_IDS, NUM_CAMERAS = 1110, 8
TARGET_S = {"cuda": 1.0, "cpu": 15.0}


def make_features(num_query: int, num_gallery: int, dim: int, device: torch.device, seed: int = 0):
    """Identity-clustered features with pids and camids, on ``device``.

    Noise of scale 0.5 * dim^(1/4) per value keeps the task about equally hard at any dim (mAP ~0.5-0.7),
    so matches spread over the ranking as with real features."""
    g = torch.Generator(device=device).manual_seed(seed)
    noise = 0.5 * dim ** 0.25
    centres = torch.randn(NUM_IDS, dim, generator=g, device=device)
    q_pids = torch.randint(1, NUM_IDS, (num_query,), generator=g, device=device)
    g_pids = torch.randint(0, NUM_IDS, (num_gallery,), generator=g, device=device)  # 0 = distractors
    q_feats = centres[q_pids] + noise * torch.randn(num_query, dim, generator=g, device=device)
    g_feats = centres[g_pids] + noise * torch.randn(num_gallery, dim, generator=g, device=device)
    q_cams = torch.randint(0, NUM_CAMERAS, (num_query,), generator=g, device=device)
    g_cams = torch.randint(0, NUM_CAMERAS, (num_gallery,), generator=g, device=device)
    return q_feats, g_feats, q_pids, g_pids, q_cams, g_cams


def reference_distance(qf: torch.Tensor, gf: torch.Tensor) -> np.ndarray:
    """TransReID's euclidean_distance on L2-normalized features (its R1_mAP_eval with feat_norm)."""
    qf, gf = torch.nn.functional.normalize(qf, dim=1), torch.nn.functional.normalize(gf, dim=1)
    m, n = qf.shape[0], gf.shape[0]
    dist = qf.pow(2).sum(1, keepdim=True).expand(m, n) + gf.pow(2).sum(1, keepdim=True).expand(n, m).t()
    dist.addmm_(qf, gf.t(), beta=1, alpha=-2)
    return dist.cpu().numpy()


def reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """TransReID's eval_func, plus fast-reid's mINP."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q_idx in range(num_q):
        order = indices[q_idx]
        keep = np.invert((g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx]))
        raw_cmc = matches[q_idx][keep]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        max_pos = np.max(np.where(raw_cmc == 1))
        all_inp.append(cmc[max_pos] / (max_pos + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp_cmc = raw_cmc.cumsum() / (np.arange(raw_cmc.shape[0]) + 1.0) * raw_cmc
        all_ap.append(tmp_cmc.sum() / raw_cmc.sum())
    return np.asarray(all_cmc).astype(np.float32).mean(0), float(np.mean(all_ap)), float(np.mean(all_inp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dim", type=int, default=27648)
    parser.add_argument("--num-query", type=int, default=2210)
    parser.add_argument("--num-gallery", type=int, default=17661)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true", help="skip the (slow) reference loop")
    parser.add_argument("--tiny", action="store_true", help="CI size on the CPU: 200 x 1,000, dim 256")
    args = parser.parse_args()
    if args.tiny:
        args.device, args.dim, args.num_query, args.num_gallery = "cpu", 256, 200, 1000
    device = resolve_device(args.device)
    qf, gf, q_pids, g_pids, q_cams, g_cams = make_features(args.num_query, args.num_gallery, args.dim, device)
    ids = [t.cpu().numpy() for t in (q_pids, g_pids, q_cams, g_cams)]
    timing = dict(device=device, warmup=1, steps=1, repeats=args.repeats)

    results = {}

    def ours():
        results["ours"] = evaluate(distance_matrix(qf, gf, device=device), q_pids, g_pids, q_cams, g_cams)

    distmat = distance_matrix(qf, gf, device=device)
    record = {
        "bench": "retrieval", "device": str(device), "gpu": torch.cuda.get_device_name(device)
        if device.type == "cuda" else None, "cpu_threads": torch.get_num_threads(), "num_query": args.num_query,
        "num_gallery": args.num_gallery, "dim": args.dim, "repeats": args.repeats,
        "ours_s": measure(ours, **timing),
        "distance_s": measure(lambda: distance_matrix(qf, gf, device=device), **timing),
        "evaluate_s": measure(lambda: evaluate(distmat, q_pids, g_pids, q_cams, g_cams), **timing),
        "rank_top10_s": measure(lambda: rank_gallery(qf, gf, topk=10), **timing),
    }
    record["mAP"], record["rank1"] = results["ours"]["mAP"], float(results["ours"]["cmc"][0])
    record["target_s"] = TARGET_S[device.type]
    record["meets_target"] = record["ours_s"] <= record["target_s"]
    if not args.no_baseline:
        def baseline():
            results["baseline"] = reference_eval(reference_distance(qf, gf), *ids)

        record["baseline_s"] = measure(baseline, **timing)
        record["speedup"] = record["baseline_s"] / record["ours_s"]
        cmc, m_ap, _ = results["baseline"]
        record["mAP_abs_diff"] = abs(m_ap - record["mAP"])
        record["cmc_max_abs_diff"] = float(np.abs(cmc - results["ours"]["cmc"]).max())
    emit(record)


if __name__ == "__main__":
    main()
