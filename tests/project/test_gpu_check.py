"""bench/gpu_check.sh: its CPU smoke mode runs every step end to end, and its JSON says what passed."""
import json
import os
import subprocess
import sys

import pytest

from bench.gpu_check import STEPS, TARGETS, Report, benchmarks, e2e_config, main, meets, parse_junit, verdict

from conftest import REPO

CUDA_TESTS = 8  # `pytest -m cuda`: tests/engine/test_cuda.py (the bf16/fp16 case twice) and the fused SGD/AdamW steps
E2E_STEPS = [f"e2e_cached_{step}" for step in ("train", "resume", "test", "query")]
SMOKE_STEPS = "cuda_tests,e2e_cached"  # the online variant runs the same function; benchmarks: see below
BENCH_CHECKS = [check for checks in TARGETS.values() for check, *_ in checks]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--cpu-smoke", "--steps", SMOKE_STEPS, "--out", str(out)],
                          cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    return proc, json.loads((out / "gpu_check.json").read_text()), out


@pytest.mark.slow
def test_cpu_smoke_passes_every_step(smoke):
    proc, report, out = smoke
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["ok"] is True
    assert report["mode"] == "cpu-smoke" and report["ok"] is True and report["steps"] == SMOKE_STEPS.split(",")
    env = report["environment"]
    assert {"python", "torch", "torch_cuda", "timm", "numpy", "gpu", "cuda_available"} <= set(env)
    assert env["cuda_available"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert all({"name", "group", "status", "figure", "target"} <= set(c) for c in checks.values())
    cuda_cases = [c for n, c in checks.items() if n.startswith("cuda::")]
    assert len(cuda_cases) == CUDA_TESTS and all(c["status"] == "skip" for c in cuda_cases)
    assert checks["pytest_cuda"]["figure"] == {"pass": 0, "fail": 0, "skip": CUDA_TESTS}
    assert set(checks) == {"pytest_cuda", *(c["name"] for c in cuda_cases), *E2E_STEPS}  # only the steps asked for
    for name in E2E_STEPS:
        assert checks[name]["status"] == "pass", checks[name]
    assert checks["e2e_cached_resume"]["figure"]["max_weight_rel_diff_vs_uninterrupted"] == 0.0
    assert checks["e2e_cached_query"]["figure"] == {"ranked_rows": 5}
    assert (out / checks["e2e_cached_train"]["log"]).is_file()


def test_steps_default_to_all_and_a_wrong_one_is_refused(capsys):
    assert STEPS == ("cuda_tests", "e2e_cached", "benchmarks", "e2e_online")
    with pytest.raises(SystemExit) as exit_info:
        main(["--cpu-smoke", "--steps", "e2e_cached,e2e_offline"])
    assert exit_info.value.code == 2 and "unknown step(s) ['e2e_offline']" in capsys.readouterr().err


class FakeRunner:
    """Stands in for Runner: each bench 'prints' one JSON record holding every key the targets read."""

    def __init__(self, record: dict):
        self.record, self.calls = record, []

    def __call__(self, name, argv, timeout_s):
        self.calls.append(argv[1])
        return 0, "warming up\n" + json.dumps(self.record) + "\n", 1.0, f"logs/{name}.log"


@pytest.mark.parametrize("smoke, figure, status", [(True, 1.0, "skip"), (False, 1e9, "pass"), (False, 1e-9, "fail")])
def test_benchmark_records_become_one_check_per_target(tmp_path, smoke, figure, status):
    """Every target of TARGETS gets a check with its figure, baseline and record: skipped on the CPU
    smoke (the targets are one H100's), judged against the target on the GPU."""
    keys = {key for checks in TARGETS.values() for _, key, _, _ in checks}
    record = {key: figure if key != "ours_s" else 1 / figure for key in keys}
    record |= {"baseline_images_per_s": 5.0, "baseline_peak_mem_gb": 2.0, "baseline_s": 3.0}
    report, run = Report(tmp_path, "cpu-smoke" if smoke else "gpu"), FakeRunner(record)
    benchmarks(run, report, smoke)
    assert sorted(set(run.calls)) == sorted(f"bench/{n}.py" for n in ("train_step", "inference", "loader", "retrieval"))
    checks = {c["name"]: c for c in report.data["checks"]}
    assert list(checks) == BENCH_CHECKS
    for bench, targets in TARGETS.items():
        for name, key, op, target in targets:
            check = checks[name]
            expected = status if "mem" not in key else {"pass": "fail", "fail": "pass"}.get(status, status)
            assert check["status"] == expected and check["target"] == f"{op} {target}", check
            assert check["figure"] == record[key] and check["record"] == record
    assert checks["train_step_cached_images_per_s"]["baseline"] == 5.0
    assert checks["retrieval_metrics_s"]["baseline"] == 3.0


def test_verdict_gpu_needs_every_check_passed():
    assert verdict(["pass", "pass"], smoke=False)
    assert not verdict(["pass", "skip"], smoke=False)  # e.g. faiss missing: not a pass on the GPU run
    assert verdict(["pass", "skip"], smoke=True)
    assert not verdict(["pass", "fail"], smoke=True)
    assert not verdict([], smoke=True)


def test_failed_check_makes_the_exit_status_nonzero(tmp_path):
    report = Report(tmp_path, "gpu")
    report.add("train_step_cached_images_per_s", "bench", "pass" if meets(2500.0, ">=", 2400) else "fail",
               figure=2500.0, target=">= 2400")
    report.add("retrieval_metrics_s", "bench", "pass" if meets(1.5, "<=", 1.0) else "fail", figure=1.5,
               target="<= 1.0")
    assert report.finish(smoke=False) == 1
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["ok"] is False and saved["summary"] == {"pass": 1, "fail": 1, "skip": 0}
    assert [c["status"] for c in saved["checks"]] == ["pass", "fail"]
    assert not meets(None, ">=", 1)


def test_parse_junit_reads_statuses_and_recorded_figures(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.engine.test_cuda" name="test_a"><properties>'
        '<property name="bf16_rel" value="0.0123"/></properties></testcase>'
        '<testcase classname="tests.engine.test_cuda" name="test_b"><failure message="assert 1 == 2">trace</failure>'
        '</testcase><testcase classname="tests.engine.test_cuda" name="test_c">'
        '<skipped type="pytest.skip" message="needs CUDA">skip</skipped></testcase>'
        '</testsuite></testsuites>')
    cases = parse_junit(xml)
    assert [(c["name"], c["status"]) for c in cases] == [("test_a", "pass"), ("test_b", "fail"), ("test_c", "skip")]
    assert cases[0]["properties"] == {"bf16_rel": 0.0123}
    assert cases[1]["message"] == "assert 1 == 2" and cases[2]["message"] == "needs CUDA"


def test_gpu_end_to_end_runs_the_reference_recipe_at_the_real_size(tmp_path):
    from pfd.config import load_config

    config_file, opts = e2e_config(False, tmp_path / "data", tmp_path / "cache")
    cfg = load_config(config_file, opts)
    assert cfg.MODEL.TRANSFORMER_TYPE == "vit_base_patch16_224" and cfg.MODEL.VIT_DEPTH == 0
    assert list(cfg.MODEL.STRIDE_SIZE) == [16, 16] and list(cfg.INPUT.SIZE_TRAIN) == [256, 128]
    assert cfg.SOLVER.IMS_PER_BATCH == 64 and cfg.SOLVER.OPTIMIZER_NAME == "SGD" and cfg.SOLVER.MAX_EPOCHS == 2
    assert cfg.MODEL.PRETRAIN_CHOICE == "none" and cfg.MODEL.POSE_BACKEND == "synthetic"
    assert cfg.DATASETS.NAMES == "synthetic" and cfg.SOLVER.CHECKPOINT_PERIOD == 1
