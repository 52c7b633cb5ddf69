"""The CUDA paths: `pytest -m cuda`, run by bench/gpu_check.sh on the GPU machine.

Skipped (by conftest) where CUDA is absent. Figures worth reading (relative differences) are
recorded with `record_property`, so they land in the JUnit XML that gpu_check.py summarizes.
"""
import pytest
import torch

from pfd.config import load_config
from pfd.engine.trainer import Trainer
from pfd.model import build_model
from pfd.pose.heatmap_maker import HeatmapMaker
from pfd.pose.heatmaps import render_heatmaps
from pfd.pose.hrnet import build_hrnet
from pfd.retrieval import evaluate, evaluate_features

from engine_tiny import tiny_config

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
TINY_MODEL = ["MODEL.PRETRAIN_CHOICE", "none", "MODEL.TRANSFORMER_TYPE", "vit_tiny_patch16_224", "MODEL.VIT_DEPTH", "2",
              "MODEL.NUM_HEAD", "4", "MODEL.DECODER_FFN_DIM", "384", "INPUT.SIZE_TRAIN", "[128, 64]",
              "INPUT.SIZE_TEST", "[128, 64]"]


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float32."""
    a, b = a.float(), b.float().to(a.device)
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def random_inputs(batch: int, size: tuple[int, int], num_cameras: int, seed: int = 0):
    """images [B, 3, H, W], heatmaps of random keypoints [B, 17, H/4, W/4], camids [B], all on CUDA."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    images = torch.randn(batch, 3, h, w, generator=g)
    keypoints = torch.stack([torch.rand(batch, 17, generator=g) * w, torch.rand(batch, 17, generator=g) * h,
                             torch.rand(batch, 17, generator=g)], dim=-1)  # [B, 17, 3] input pixels, confidence
    camids = torch.randint(0, num_cameras, (batch,), generator=g)
    images, keypoints, camids = images.to(CUDA), keypoints.to(CUDA), camids.to(CUDA)
    return images, render_heatmaps(keypoints, size, 2.0), camids


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_train_step_under_autocast_with_grad_scaler(data_root, tmp_path, amp, record_property):
    """The trainer's own step on CUDA: finite losses, weights move, fp16 goes through the loss scaler."""
    trainer = Trainer(tiny_config(data_root, tmp_path, "MODEL.DEVICE", "cuda", "SOLVER.AMP", amp, "TEST.EVAL", "false"))
    assert trainer.amp_dtype is AMP_DTYPES[amp]
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    params = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    trainer.train_model.train()
    totals: dict[str, torch.Tensor] = {}
    batches = iter(trainer.train_loader)
    steps = 6  # fp16 may skip its first steps while the scaler backs off from 2**16
    for _ in range(steps):
        assert trainer.train_step(next(batches), totals) == trainer.cfg.SOLVER.IMS_PER_BATCH
    torch.cuda.synchronize()
    assert all(v.is_cuda for v in totals.values())
    assert all(torch.isfinite(v) for v in totals.values()), totals
    moved = [n for n, p in params.items() if not torch.equal(p.detach(), before[n])]
    assert len(moved) > 0.9 * len(params), f"only {len(moved)}/{len(params)} parameters changed"
    assert all(torch.isfinite(p).all() for p in params.values())
    record_property(f"{amp}_mean_total_loss", round(float(totals["total"]) / steps, 4))
    if amp == "fp16":
        scale = trainer.scaler.get_scale()
        record_property("fp16_loss_scale", scale)
        assert 0 < scale < float("inf")


def test_eval_features_bf16_close_to_fp32(record_property):
    """ViT-B/16 at 256x128 (random weights): the inference feature under bf16 autocast vs fp32."""
    cfg = load_config(None, ["MODEL.PRETRAIN_CHOICE", "none"])
    model = build_model(cfg, 702, 8).to(CUDA).eval()
    images, heatmaps, camids = random_inputs(32, (256, 128), 8)
    with torch.no_grad():
        fp32 = model(images, heatmaps, camids)  # [B, F]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(images, heatmaps, camids).float()
    rel = rel_diff(bf16, fp32)
    cosine = float(torch.nn.functional.cosine_similarity(bf16, fp32, dim=1).min())
    record_property("bf16_vs_fp32_feature_rel_diff", round(rel, 6))
    record_property("bf16_vs_fp32_feature_min_cosine", round(cosine, 6))
    assert torch.isfinite(bf16).all()
    assert rel < 0.05 and cosine > 0.99, (rel, cosine)


def test_online_hrnet_heatmaps_on_cuda_match_cpu(tmp_path, record_property):
    """MODEL.POSE_ONLINE's heatmap maker (HRNet-W48, random weights) on CUDA vs the same module on the CPU."""
    weights = tmp_path / "hrnet_w48_random.pth"
    torch.save(build_hrnet("hrnet_w48").state_dict(), weights)
    cfg = load_config(None, ["MODEL.POSE_ONLINE", "true", "MODEL.POSE_WEIGHT", str(weights)])
    maker = HeatmapMaker(cfg, cfg.INPUT.SIZE_TRAIN)
    images = torch.randn(4, 3, 256, 128, generator=torch.Generator().manual_seed(0))
    on_cpu = maker(images, None)
    on_cuda = maker.to(CUDA)(images.to(CUDA), None)
    assert on_cuda.is_cuda and on_cuda.dtype == torch.float32 and on_cuda.shape == (4, 17, 64, 32)
    assert torch.isfinite(on_cuda).all()
    rel = rel_diff(on_cuda, on_cpu)  # cuDNN may use TF32 convolutions
    record_property("hrnet_cuda_vs_cpu_rel_diff", round(rel, 6))
    assert rel < 1e-2


def test_gpu_retrieval_metrics_equal_cpu(record_property):
    g = torch.Generator().manual_seed(0)
    num_ids, dim = 100, 512
    centres = torch.randn(num_ids, dim, generator=g)
    q_pids, g_pids = torch.randint(1, num_ids, (300,), generator=g), torch.randint(0, num_ids, (3000,), generator=g)
    qf = centres[q_pids] + 3.0 * torch.randn(300, dim, generator=g)  # noise: mAP ~0.37, matches spread out
    gf = centres[g_pids] + 3.0 * torch.randn(3000, dim, generator=g)
    q_cams, g_cams = torch.randint(0, 6, (300,), generator=g), torch.randint(0, 6, (3000,), generator=g)

    cpu, dist_cpu = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams)
    gpu, dist_gpu = evaluate_features(qf.to(CUDA), gf.to(CUDA), q_pids, g_pids, q_cams, g_cams)
    assert dist_gpu.is_cuda and not dist_cpu.is_cuda
    assert 0.05 < cpu["mAP"] < 0.95  # a task with matches spread over the ranking
    record_property("retrieval_map_abs_diff", abs(gpu["mAP"] - cpu["mAP"]))
    assert gpu["mAP"] == pytest.approx(cpu["mAP"], abs=1e-5)
    assert gpu["mINP"] == pytest.approx(cpu["mINP"], abs=1e-5)
    assert abs(gpu["cmc"] - cpu["cmc"]).max() <= 1e-3  # at most a near-tie swapped by matmul rounding
    same = evaluate(dist_cpu.to(CUDA), q_pids, g_pids, q_cams, g_cams)  # the metrics alone, same distances
    assert same["mAP"] == pytest.approx(cpu["mAP"], abs=1e-6)
    assert (same["cmc"] == cpu["cmc"]).all() and same["num_valid_queries"] == cpu["num_valid_queries"]


def test_compiled_model_gives_eager_features(record_property):
    cfg = load_config(None, TINY_MODEL)
    model = build_model(cfg, 16, 2).to(CUDA).eval()
    images, heatmaps, camids = random_inputs(8, (128, 64), 2)
    compiled = torch.compile(model)
    with torch.no_grad():
        eager = model(images, heatmaps, camids)
        fast = compiled(images, heatmaps, camids)
    record_property("compile_max_abs_diff", float((fast - eager).abs().max()))
    torch.testing.assert_close(fast, eager, rtol=1e-3, atol=1e-3)
