"""Every bench script runs its CI-sized (--tiny) case and prints one JSON line with its figures.

Speed targets are not asserted here (CI has no GPU and shares its cores); the scripts' figures
are measured on the GPU machine and recorded in docs/PERFORMANCE.md.
"""
import json
import subprocess
import sys

import pytest

from conftest import REPO


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
    assert result["images"] == 200
    assert result["detection_rate"] >= 0.85
