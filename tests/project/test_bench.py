"""Every bench script runs its CI-sized (--tiny) case and prints one JSON line with its figures.

Speed targets are not asserted here (CI has no GPU and shares its cores); the scripts' figures
are measured on the GPU machine and recorded in docs/PERFORMANCE.md.
"""
import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # each runs a benchmark script in its own process


def run_bench(*args: str) -> dict:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.mark.slow
@pytest.mark.parametrize("script", ["bench/train_step.py", "bench/inference.py"])
def test_model_benches_compare_pfd_with_plain_vit(script):
    result = run_bench(script, "--tiny")
    assert result["tiny"] is True and result["batch"] == 8
    assert result["pfd_images_per_s"] > 0 and result["baseline_images_per_s"] > 0
    ratio = result["pfd_images_per_s"] / result["baseline_images_per_s"]
    assert result["pfd_vs_baseline_speed"] == pytest.approx(ratio, rel=0.02)


def test_retrieval_bench_agrees_with_reference_loop():
    result = run_bench("bench/retrieval.py", "--tiny")
    assert result["ours_s"] > 0 and result["baseline_s"] > 0
    assert 0 < result["mAP"] <= 1
    assert result["mAP_abs_diff"] < 1e-6 and result["cmc_max_abs_diff"] < 1e-6


def test_loader_bench_reports_throughput():
    result = run_bench("bench/loader.py", "--tiny")
    assert result["images_per_s"] > 0


def test_pose_cache_bench_on_shared_queries(cuhk03_root):
    result = run_bench("bench/pose_cache.py", "--tiny", "--root", str(cuhk03_root.parent), "--dataset", "cuhk03")
    assert result["images"] == 64 and result["workers"] == 2
    assert result["detection_rate"] >= 0.8  # tests/pose/test_pose_mediapipe.py holds mediapipe to 0.85 on all 200


def test_gallery_scale_bench_reports_each_figure():
    result = run_bench("bench/gallery_scale.py", "--tiny")
    assert (result["size"], result["dim"], result["kind"]) == (3000, 64, "pca+ivfpq")
    assert result["factory"].startswith("PCA64,L2norm,IVF") and result["train_rows"] == result["params"]["train_rows"]
    assert result["build_s"] == pytest.approx(result["train_s"] + result["add_s"], abs=0.02)
    assert 0 < result["index_bytes_per_image"] < result["raw_bytes_per_image"]
    assert 0 < result["one_query_ms_median"] <= result["one_query_ms_p95"]
    assert 0 < result["batch100_ms_median"] <= result["batch100_ms_p95"] and result["peak_rss_gib"] > 0
    assert 0.3 < result["recall_at_10"] <= 1.0  # far above chance (10 / 3,000)
    exact = run_bench("bench/gallery_scale.py", "--tiny", "--kind", "flat")
    assert exact["recall_at_10"] == 1.0  # the brute-force ground truth agrees with FAISS's exact search


def test_gallery_scale_bench_measures_each_store_in_its_own_process():
    proc = subprocess.run([sys.executable, "bench/gallery_scale.py", "--tiny", "--kind", "flat", "--store", "faiss",
                           "milvus-lite"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    by_store = {r["store"]: r for r in (json.loads(line) for line in proc.stdout.splitlines() if line.strip())}
    assert sorted(by_store) == ["faiss", "milvus-lite"]
    for result in by_store.values():  # exact search in both stores: the brute-force truth, with the filter too
        assert result["size"] == 3000 and result["recall_at_10"] == 1.0 and result["camera_recall_at_10"] == 1.0
        assert 0 < result["store_query_ms_median"] <= result["store_query_ms_p95"]
        assert 0 < result["camera_query_ms_median"] <= result["camera_query_ms_p95"] and result["peak_rss_gib"] > 0
    assert by_store["milvus-lite"]["store_bytes_per_image"] > by_store["milvus-lite"]["raw_bytes_per_image"] / 2


def test_gallery_map_bench_compares_kinds_with_exact_search(tmp_path):
    from pfd.data.datasets import build_dataset
    from pfd.engine.trainer import Trainer

    from engine_tiny import make_data, tiny_config
    root = make_data(tmp_path)
    Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false")).save(0, improved=False)
    proc = subprocess.run([sys.executable, "bench/gallery_map.py", "--weights", str(root / "run" / "last.pth"),
                           "--root", str(root), "--kinds", "flat", "flat-fp16", "ivfpq", "--seeds", "0", "1",
                           "--distractors", "synthetic"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    flat, fp16, ivfpq = (json.loads(line) for line in proc.stdout.splitlines() if line.strip())
    assert flat["kind"] == "flat" and flat["mAP_minus_exact"] == 0 and 0 < flat["mAP"] <= 100
    assert abs(fp16["mAP_minus_exact"]) < 0.5 and fp16["code_bytes_per_image"] == 2 * flat["dim"] + 8
    assert ivfpq["seeds"] == 2 and ivfpq["code_vs_raw"] < 0.01 and ivfpq["num_query"] == 24
    data = build_dataset("synthetic", root)
    assert ivfpq["num_gallery"] == len(data.gallery) + len(data.train)  # the training images as distractors


def test_gallery_stores_bench_finds_both_stores_agree(tmp_path):
    from pfd.data.datasets import build_dataset
    from pfd.engine.trainer import Trainer

    from engine_tiny import make_data, tiny_config
    root = make_data(tmp_path)
    Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false")).save(0, improved=False)
    result = run_bench("bench/gallery_stores.py", "--weights", str(root / "run" / "last.pth"), "--root", str(root),
                       "--tiny", "--depth", "50")
    gallery = build_dataset("synthetic", root).gallery  # fewer than --tiny's 120
    assert (result["num_query"], result["num_gallery"], result["depth"]) == (20, len(gallery), 50)
    assert result["top10_ids_equal"] == 1.0 and result["top10_max_distance_diff"] < 1e-5
    assert 0 < result["faiss_mAP"] <= 100 and result["mAP_diff"] == 0 and result["rank1_diff"] == 0


def test_part_rerank_bench_matches_the_exact_ranking_when_it_re_ranks_everything(tmp_path):
    from pfd.data.datasets import build_dataset
    from pfd.engine.trainer import Trainer

    from engine_tiny import make_data, tiny_config
    root = make_data(tmp_path)
    Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false", "MODEL.PART_POOL", "pose")).save(0, improved=False)
    gallery = build_dataset("synthetic", root).gallery
    result = run_bench("bench/part_rerank.py", "--weights", str(root / "run" / "last.pth"), "--root", str(root),
                       "--tiny", "--tops", str(len(gallery)), "10")
    assert (result["queries"], result["gallery"]) == (20, len(gallery))
    assert result[f"rerank_{len(gallery)}"]["same_top10"] == 1.0  # every image re-ranked: the exact ranking
    # re-ranking only the whole feature's top 10 reorders them: the same images as the whole feature's
    assert result["rerank_10"]["recall_at_10"] == result["whole_feature"]["recall_at_10"] < 1.0


def test_learned_pose_bench_scores_both_estimators_against_the_manifest(tmp_path):
    """An untrained network beside mediapipe on the tiny set's queries, occluded by pfd.data.occlude."""
    from pfd.data.occlude import build_occluded
    from pfd.io import atomic_save
    from pfd.pose.learned import FORMAT, KeypointNet

    from engine_tiny import DEMO_CONFIG, make_data, tiny_opts
    root = make_data(tmp_path)
    build_occluded(f"folder:{root / 'synthetic'}", root, root / "occluded")
    weights = atomic_save({"format": FORMAT, "backbone": "regnetx_002", "state_dict": KeypointNet().state_dict()},
                          tmp_path / "learned.pth")
    result = run_bench("bench/learned_pose.py", "--config", str(DEMO_CONFIG), "--weights", str(weights),
                       "--clean", f"folder:{root / 'synthetic'}", "--occluded", f"folder:{root / 'occluded'}",
                       "--images", "40", "--repeats", "1", *tiny_opts(root, root / "run"))
    assert result["queries"] == 24 and result["timed_images"] == 40 and result["repeats"] == 1
    assert result["threshold"] == 0.3
    assert 0 < result["queries_with_clean_pose"] <= 24
    for backend in ("mediapipe", "learned"):
        scores = result[backend]
        assert 0 <= scores["person_found"] <= scores["any_keypoint"] <= 1 and scores["images_per_s"] > 0
        assert all(0 <= scores[k] <= 1 for k in ("precision", "recall", "hidden_flagged_all"))
    assert result["learned"]["any_keypoint"] == 1.0  # every crop gets a pose
    assert result["speedup"] == pytest.approx(result["learned"]["images_per_s"] / result["mediapipe"]["images_per_s"],
                                              rel=0.05)
