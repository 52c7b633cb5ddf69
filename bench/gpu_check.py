"""One command that proves every CUDA path and measures the speed targets: `bash bench/gpu_check.sh`.

    python bench/gpu_check.py [--cpu-smoke] [--out DIR] [--budget-s 360] [--steps cuda_tests,e2e_cached,...]

Writes DIR/gpu_check.json (DIR: --out, else $OUT, else ./gpu_check_out) and one log per step
under DIR/logs, and exits non-zero when a check fails (on the GPU also when one is skipped):

1. environment: Python, torch, CUDA, GPU, timm, numpy versions; pure-Python packages this Python
   lacks (and faiss / matplotlib) are installed offline from the wheels in `.whl/` into a temp
   folder put on PYTHONPATH (never torch, never the network; see bench/README.md).
2. `pytest -m cuda tests`: one check per CUDA test, with the figures the tests record.
3. end to end at the real size (the Occluded-Duke recipe: ViT-B/16, 256x128, random weights) on a
   synthetic set generated here: train.py for 2 epochs, a resume from the epoch-1 checkpoint,
   test.py, query.py (index + search), with cached poses and again with MODEL.POSE_ONLINE (random
   HRNet-W48 weights).
4. the benchmarks of docs/PERFORMANCE.md, each beside its baseline in one process, against the
   targets of one H100 (TARGETS below).

The JSON is rewritten after every step, so a run cut short still says how far it got.
`--cpu-smoke`: the same steps at tiny sizes on the CPU in CI time; the CUDA tests are collected
and skipped, and the speed figures are recorded with status "skip" (the targets are the GPU's).
`--steps`: only the named steps (STEPS; default all), e.g. the test suite's rehearsal of the plumbing.
Only the standard library is imported at the top: the packages may not be importable yet.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WHEELS = REPO / ".whl"
DEMO_CONFIG = REPO / "configs" / "demo_synthetic.yaml"
REFERENCE_CONFIG = REPO / "configs" / "occluded_duke.yaml"

# import name -> distribution carried in .whl/ (installed only when the import is missing)
CARRIED = {
    "yacs": "yacs", "tqdm": "tqdm", "pytest": "pytest", "pluggy": "pluggy", "iniconfig": "iniconfig",
    "pygments": "pygments", "packaging": "packaging", "exceptiongroup": "exceptiongroup", "tomli": "tomli",
    "typing_extensions": "typing_extensions", "matplotlib": "matplotlib", "kiwisolver": "kiwisolver",
    "contourpy": "contourpy", "cycler": "cycler", "fontTools": "fonttools", "pyparsing": "pyparsing",
    "dateutil": "python-dateutil", "six": "six", "faiss": "faiss-cpu",
}
# (check name, bench record key, comparison, target): one H100, batch 64, 256x128, ViT-B/16 (issue 11)
TARGETS = {
    "train_step_cached": [("train_step_cached_images_per_s", "pfd_images_per_s", ">=", 2400),
                          ("train_step_cached_vs_timm_vit_b16", "pfd_vs_baseline_speed", ">=", 0.8),
                          ("train_step_cached_peak_mem_gib", "pfd_peak_mem_gb", "<=", 5.5)],
    "train_step_online": [("train_step_online_images_per_s", "pfd_images_per_s", ">=", 1200)],
    "inference_cached": [("inference_cached_images_per_s", "pfd_images_per_s", ">=", 9000)],
    "inference_online": [("inference_online_images_per_s", "pfd_images_per_s", ">=", 3000)],
    "loader": [("loader_images_per_s", "images_per_s", ">=", 2400)],
    "retrieval": [("retrieval_metrics_s", "ours_s", "<=", 1.0)],
}
STEPS = ("cuda_tests", "e2e_cached", "benchmarks", "e2e_online")  # in the order they run
BASELINE_KEYS = {"pfd_images_per_s": "baseline_images_per_s", "pfd_vs_baseline_speed": "baseline_images_per_s",
                 "pfd_peak_mem_gb": "baseline_peak_mem_gb", "ours_s": "baseline_s"}


def meets(figure: float | None, op: str, target: float) -> bool:
    return figure is not None and (figure >= target if op == ">=" else figure <= target)


class Report:
    """The checks so far, rewritten atomically to OUT/gpu_check.json after every change."""

    def __init__(self, out: Path, mode: str):
        self.path, self.start = out / "gpu_check.json", time.time()
        self.data = {"format": "pfd-gpu-check-v1", "mode": mode, "ok": None, "started": time.strftime("%FT%T%z"),
                     "wall_s": 0.0, "environment": {}, "wheels": {}, "summary": {}, "checks": []}

    def add(self, name: str, group: str, status: str, figure=None, target: str | None = None, **extra) -> None:
        assert status in ("pass", "fail", "skip"), status
        self.data["checks"].append({"name": name, "group": group, "status": status, "figure": figure,
                                    "target": target, **extra})
        print(f"[gpu_check] {status:4s} {name}: {figure} (target {target})", file=sys.stderr, flush=True)
        self.write()

    def finish(self, smoke: bool) -> int:
        self.data["ok"] = verdict([c["status"] for c in self.data["checks"]], smoke)
        self.write()
        return 0 if self.data["ok"] else 1

    def write(self) -> None:
        from pfd.io import atomic_write  # imports torch, which every machine this runs on has

        statuses = [c["status"] for c in self.data["checks"]]
        self.data["summary"] = {s: statuses.count(s) for s in ("pass", "fail", "skip")}
        self.data["wall_s"] = round(time.time() - self.start, 1)
        text = json.dumps(self.data, indent=2, default=str) + "\n"
        atomic_write(self.path, lambda f: f.write(text.encode()))


def verdict(statuses: list[str], smoke: bool) -> bool:
    """GPU run: every check passed. CPU smoke: none failed (speed targets are skipped there by design)."""
    return bool(statuses) and "fail" not in statuses and (smoke or "skip" not in statuses)


class Runner:
    """Runs one step as a subprocess with its log in OUT/logs, within the run's time budget.

    Step timeouts are the GPU run's; `timeout_scale` stretches them for a slow (shared CPU) machine."""

    def __init__(self, out: Path, budget_s: float, env: dict, timeout_scale: float = 1.0):
        self.logs, self.deadline, self.env = out / "logs", time.time() + budget_s, env
        self.timeout_scale = timeout_scale
        self.logs.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.time()

    def __call__(self, name: str, argv: list[str], timeout_s: float) -> tuple[int | None, str, float, str]:
        """(exit code or None when out of time, stdout, seconds, log path relative to OUT)."""
        log = self.logs / f"{name}.log"
        timeout = min(timeout_s * self.timeout_scale, self.left() - 5)
        if timeout < 10:
            log.write_text(f"not run: {self.left():.0f} s left of the time budget\n")
            return None, "", 0.0, f"logs/{log.name}"
        start = time.time()
        try:
            proc = subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
            rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as err:
            rc, stdout, stderr = None, _text(err.stdout), _text(err.stderr) + f"\nTIMEOUT after {timeout:.0f} s"
        seconds = round(time.time() - start, 1)
        log.write_text(f"$ {' '.join(argv)}\n# exit {rc}, {seconds} s\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
        return rc, stdout, seconds, f"logs/{log.name}"


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def failure(rc: int | None, log: str) -> str:
    return f"out of time (see {log})" if rc is None else f"exit {rc} (see {log})"


# ----------------------------------------------------------------------------- 1. environment
def install_missing_wheels(site: Path) -> dict:
    """Install, offline and without dependencies, the carried packages this Python cannot import."""
    missing = sorted({dist for name, dist in CARRIED.items() if importlib.util.find_spec(name) is None})
    info = {"folder": str(WHEELS), "missing_before": missing, "installed": [], "target": str(site)}
    if not missing:
        return info
    if not WHEELS.is_dir():
        info["error"] = f"{WHEELS} is absent: run the check with carry ['.whl'] (see bench/README.md)"
        return info

    def pip_install(dists: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links",
                               str(WHEELS), "--target", str(site), "--quiet", *dists], capture_output=True, text=True)

    if pip_install(missing).returncode == 0:
        info["installed"] = missing
    else:  # one at a time: a wheel absent for this Python must not block the others
        for dist in missing:
            proc = pip_install([dist])
            if proc.returncode == 0:
                info["installed"].append(dist)
            else:
                info.setdefault("not_installed", {})[dist] = (proc.stderr.strip().splitlines() or ["?"])[-1]
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return info


def environment() -> dict:
    """Versions of everything the check depends on (after the wheels are installed)."""
    import numpy
    import timm
    import torch

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    cuda = torch.cuda.is_available()
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {
        "python": platform.python_version(), "python_executable": sys.executable, "platform": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "timm": timm.__version__, "numpy": numpy.__version__, "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "packages": {d: version(d) for d in ("yacs", "faiss-cpu", "matplotlib", "pytest", "pillow", "torchvision")},
        "git_commit": git.stdout.strip() if git.returncode == 0 else None,
    }


# ----------------------------------------------------------------------------- 2. CUDA tests
def cuda_tests(run: Runner, report: Report, smoke: bool) -> None:
    junit = run.logs / "pytest_cuda.xml"
    # A test module that cannot be imported here is reported (exit 1) without stopping the CUDA tests.
    rc, _, seconds, log = run("pytest_cuda", [sys.executable, "-m", "pytest", "-m", "cuda", "tests", "-q", "-rs",
                                              "--continue-on-collection-errors", "-p", "no:cacheprovider",
                                              f"--junitxml={junit}"], 300)
    cases = parse_junit(junit) if junit.exists() else []
    # exit 0: all passed (or skipped); 1: some failed; 5: none collected (the tests exist: a failure too)
    report.add("pytest_cuda", "cuda_tests", "pass" if rc == 0 and cases else "fail",
               figure={s: sum(c["status"] == s for c in cases) for s in ("pass", "fail", "skip")},
               target="every cuda test collected" + (" (and skipped: no CUDA)" if smoke else " and passed"),
               seconds=seconds, log=log, detail=None if rc == 0 else failure(rc, log))
    for case in cases:
        status = case["status"]
        if status == "skip" and not smoke:
            status = "fail"  # on the GPU machine a skipped CUDA test hides what it should prove
        report.add(f"cuda::{case['name']}", "cuda_tests", status, figure=case["properties"] or None,
                   target="passes" if not smoke else "skipped without CUDA", detail=case["message"], log=log)


def parse_junit(path: Path) -> list[dict]:
    """[{name, status pass|fail|skip, message, properties}] of a pytest JUnit XML file."""
    cases = []
    for case in ET.parse(path).iter("testcase"):
        status, message = "pass", None
        for tag, mapped in (("failure", "fail"), ("error", "fail"), ("skipped", "skip")):
            node = case.find(tag)
            if node is not None:
                status, message = mapped, (node.get("message") or "")[:500]
                break
        props = {p.get("name"): _number(p.get("value")) for p in case.iter("property")}
        cases.append({"name": case.get("name"), "status": status, "message": message, "properties": props})
    return cases


def _number(text: str | None):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


# ----------------------------------------------------------------------------- 3. end to end
def e2e_config(smoke: bool, data_root: Path, pose_cache: Path) -> tuple[Path, list[str]]:
    """(config file, overrides): the reference Occluded-Duke recipe (ViT-B/16, 256x128, SGD, batch 64)
    from random weights on the synthetic set, or the demo's tiny ViT for the smoke; 2 short epochs."""
    common = ["DATASETS.NAMES", "synthetic", "DATASETS.ROOT_DIR", str(data_root), "MODEL.POSE_BACKEND", "synthetic",
              "MODEL.POSE_CACHE_DIR", str(pose_cache), "MODEL.DEVICE", "auto", "MODEL.PRETRAIN_CHOICE", "none",
              "MODEL.PRETRAIN_PATH", "", "MODEL.POSE_WEIGHT", "", "SOLVER.MAX_EPOCHS", "2", "SOLVER.WARMUP_EPOCHS", "1",
              "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.EVAL_PERIOD", "2", "SOLVER.LOG_PERIOD", "1",
              "SOLVER.AMP", "auto"]
    if smoke:
        return DEMO_CONFIG, common + ["MODEL.VIT_DEPTH", "2", "SOLVER.IMS_PER_BATCH", "16",
                                      "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "64"]
    return REFERENCE_CONFIG, common + ["DATALOADER.NUM_WORKERS", str(min(8, len(os.sched_getaffinity(0))))]


def make_e2e_data(root: Path, smoke: bool) -> None:
    from pfd.data.synthetic import SyntheticConfig, generate

    sizes = (dict(ids_train=8, ids_test=4, images_per_id=4, distractors=2, junk=1) if smoke
             else dict(ids_train=32, ids_test=16, images_per_id=8, distractors=20, junk=5))
    generate(root / "synthetic", SyntheticConfig(seed=11, **sizes), progress=False)


def random_hrnet(path: Path, arch: str) -> Path:
    import torch

    from pfd.pose.hrnet import build_hrnet

    torch.save(build_hrnet(arch).state_dict(), path)
    return path


def end_to_end(run: Runner, report: Report, smoke: bool, work: Path, variant: str) -> None:
    """train (2 epochs) -> resume from epoch 1 -> test.py -> query.py, for one pose variant."""
    from pfd.inference.checkpoint import load_checkpoint

    config_file, opts = e2e_config(smoke, work / "data", work / "pose_cache")
    if variant == "online":
        arch = "hrnet_w32" if smoke else "hrnet_w48"
        opts += ["MODEL.POSE_ONLINE", "true", "MODEL.POSE_ARCH", arch,
                 "MODEL.POSE_WEIGHT", str(random_hrnet(work / f"random_{arch}.pth", arch))]
    runs, name = work / variant, f"e2e_{variant}"
    script = [sys.executable]
    config = ["--config", str(config_file)]
    train_dir, resume_dir, test_dir = runs / "train", runs / "resumed", runs / "test"

    rc, _, seconds, log = run(f"{name}_train", script + ["train.py", *config, *opts, "OUTPUT_DIR", str(train_dir)], 150)
    last, first = train_dir / "last.pth", train_dir / "epoch_001.pth"
    metrics = _jsonl(train_dir / "metrics.jsonl")
    train_ok = rc == 0 and last.exists() and first.exists()
    losses = [r["total"] for r in metrics if r.get("kind") == "train"]
    evals = [r["mAP"] for r in metrics if r.get("kind") == "eval"]
    train_ok = train_ok and len(losses) == 2 and all(math.isfinite(v) for v in losses) and bool(evals)
    report.add(f"{name}_train", "e2e", "pass" if train_ok else "fail",
               figure={"loss_per_epoch": losses, "mAP": evals[-1] if evals else None,
                       "images_per_s": [r.get("img_s") for r in metrics if r.get("kind") == "train"]},
               target="2 epochs, finite losses, epoch_001.pth + last.pth, an evaluation", seconds=seconds, log=log,
               detail=None if rc == 0 else failure(rc, log))
    _keep(train_dir / "log.txt", run.logs / f"{name}_train_log.txt")
    if not train_ok:
        for step in ("resume", "test", "query"):
            report.add(f"{name}_{step}", "e2e", "fail", detail="not run: training failed")
        return

    rc, _, seconds, log = run(f"{name}_resume", script + ["train.py", *config, *opts, "OUTPUT_DIR", str(resume_dir),
                                                          "--resume", str(first)], 150)
    resumed_log = (resume_dir / "log.txt").read_text() if (resume_dir / "log.txt").exists() else ""
    figure, ok = None, False
    if rc == 0 and (resume_dir / "last.pth").exists():
        full, resumed = load_checkpoint(last)["model"], load_checkpoint(resume_dir / "last.pth")
        diffs = [float((resumed["model"][k].float() - v.float()).norm() / v.float().norm().clamp_min(1e-12))
                 for k, v in full.items() if v.is_floating_point()]
        figure = {"epoch": resumed["epoch"], "max_weight_rel_diff_vs_uninterrupted": max(diffs)}
        bound = 0.0 if smoke else 0.05  # CPU runs are bit-exact; GPU kernels need not be
        ok = resumed["epoch"] == 2 and "resumed from" in resumed_log and max(diffs) <= bound
        del full, resumed
    report.add(f"{name}_resume", "e2e", "pass" if ok else "fail", figure=figure,
               target="resumed at epoch 1, ends at epoch 2, weights as the uninterrupted run "
                      + ("(bit-exact on CPU)" if smoke else "(relative difference <= 0.05)"),
               seconds=seconds, log=log, detail=None if rc == 0 else failure(rc, log))

    rc, _, seconds, log = run(f"{name}_test", script + ["test.py", *config, *opts, "OUTPUT_DIR", str(test_dir),
                                                        "TEST.WEIGHT", str(last)], 120)
    tested = json.loads((test_dir / "metrics.json").read_text()) if (test_dir / "metrics.json").exists() else {}
    m_ap = tested.get("mAP")
    ok = rc == 0 and m_ap is not None and 0 <= m_ap <= 1 and abs(m_ap - evals[-1]) <= 2e-3
    report.add(f"{name}_test", "e2e", "pass" if ok else "fail",
               figure={"mAP": m_ap, "rank1": tested.get("rank1"), "training_eval_mAP": evals[-1]},
               target="metrics.json written, mAP equal to the training run's last evaluation (+-0.002)",
               seconds=seconds, log=log, detail=None if rc == 0 else failure(rc, log))

    if importlib.util.find_spec("faiss") is None:
        report.add(f"{name}_query", "e2e", "skip", target="index + search", detail="skipped: faiss missing")
        return
    gallery = work / "data" / "synthetic" / "bounding_box_test"
    image = sorted((work / "data" / "synthetic" / "query").glob("*.jpg"))[0]
    index = runs / "index"
    rc, _, seconds, log = run(f"{name}_query_index", script + [
        "query.py", "index", *config, "--weights", str(last), "--gallery", str(gallery), "--out", str(index), *opts,
        "OUTPUT_DIR", str(runs / "query")], 120)
    rc2, stdout, seconds2, log2 = (None, "", 0.0, log) if rc != 0 else run(
        f"{name}_query_search", script + ["query.py", "search", "--index", str(index), "--image", str(image),
                                          "--topk", "5", "--out", str(runs / "search.png")], 120)
    rows = [line for line in stdout.splitlines()[1:] if line.strip()]
    ok = rc == 0 and rc2 == 0 and len(rows) == 5 and (runs / "search.png").exists()
    report.add(f"{name}_query", "e2e", "pass" if ok else "fail", figure={"ranked_rows": len(rows)},
               target="index of the gallery folder, 5 ranked rows and a picture for one query",
               seconds=round(seconds + seconds2, 1), log=log2,
               detail=None if ok else failure(rc if rc != 0 else rc2, log if rc != 0 else log2))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _keep(src: Path, dst: Path) -> None:
    if src.exists():
        shutil.copyfile(src, dst)


# ----------------------------------------------------------------------------- 4. benchmarks
def benchmarks(run: Runner, report: Report, smoke: bool) -> None:
    size = ["--tiny"] if smoke else ["--repeats", "3"]  # 3 repeats: the median, within the time budget
    commands = {
        "train_step_cached": ["bench/train_step.py", *size],
        "train_step_online": ["bench/train_step.py", "--pose-online", *size],
        "inference_cached": ["bench/inference.py", *size],
        "inference_online": ["bench/inference.py", "--pose-online", *size],
        "loader": ["bench/loader.py", *size],
        "retrieval": ["bench/retrieval.py", *(["--tiny"] if smoke else ["--repeats", "1"])],
    }
    if smoke:  # the same code paths, at the smallest sizes that exercise them
        commands["train_step_online"] += ["MODEL.POSE_ARCH", "hrnet_w32"]
        commands["inference_online"] += ["MODEL.POSE_ARCH", "hrnet_w32"]
    for bench, args in commands.items():
        rc, stdout, seconds, log = run(f"bench_{bench}", [sys.executable, *args], 150)
        record = _last_json(stdout) if rc == 0 else None
        for check, key, op, target in TARGETS[bench]:
            figure = None if record is None else record.get(key)
            if record is None:
                status, detail = "fail", failure(rc, log)
            elif smoke:
                status, detail = "skip", "CPU smoke at tiny size: the target is one H100's"
            else:
                status, detail = ("pass" if meets(figure, op, target) else "fail"), None
            baseline = BASELINE_KEYS.get(key)
            report.add(check, "bench", status, figure=figure, target=f"{op} {target}", detail=detail, log=log,
                       seconds=seconds, baseline=None if record is None or not baseline else record.get(baseline),
                       record=record)


def _last_json(stdout: str) -> dict | None:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


# ----------------------------------------------------------------------------- main
def step_list(text: str) -> tuple[str, ...]:
    """`--steps a,b`: the named steps, each one of STEPS (argparse reports anything else)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in STEPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown step(s) {unknown or text!r}; expected some of {', '.join(STEPS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (CI); CUDA tests skip")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "gpu_check_out"),
                        help="folder for gpu_check.json and logs/ (default: $OUT, else ./gpu_check_out)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="no step starts or runs past this many seconds (default 360; --cpu-smoke: 1800)")
    parser.add_argument("--steps", type=step_list, default=STEPS,
                        help=f"comma-separated steps to run, in their fixed order (default: all of {','.join(STEPS)})")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, "cpu-smoke" if args.cpu_smoke else "gpu")
    report.data["steps"] = list(args.steps)
    work = Path(tempfile.mkdtemp(prefix="pfd_gpu_check_"))
    try:
        report.data["wheels"] = install_missing_wheels(work / "site")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(work / "site"), str(REPO),
                                                           os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        if args.cpu_smoke:
            env["CUDA_VISIBLE_DEVICES"] = ""  # CPU whatever the machine has
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        report.data["environment"] = environment()
        report.write()
        cuda = report.data["environment"]["cuda_available"]
        if not args.cpu_smoke:
            report.add("cuda_available", "environment", "pass" if cuda else "fail", figure=cuda, target="true",
                       detail=None if cuda else "no CUDA device: use --cpu-smoke for a CPU run")
        budget = args.budget_s or (1800.0 if args.cpu_smoke else 360.0)
        run = Runner(out, budget, env, timeout_scale=4.0 if args.cpu_smoke else 1.0)
        make_e2e_data(work / "data", args.cpu_smoke)
        steps = [("cuda_tests", cuda_tests, ()), ("e2e_cached", end_to_end, (work, "cached")),
                 ("benchmarks", benchmarks, ()), ("e2e_online", end_to_end, (work, "online"))]
        for name, step, extra in (s for s in steps if s[0] in args.steps):
            try:
                step(run, report, args.cpu_smoke, *extra)
            except Exception as err:  # noqa: BLE001  (recorded as a failed check; the next step still runs)
                report.add(f"{name}_internal_error", "internal", "fail", detail=f"{type(err).__name__}: {err}",
                           traceback=traceback.format_exc()[-3000:])
    finally:
        shutil.rmtree(work, ignore_errors=True)  # our own temp folder: checkpoints, data, wheels
        code = report.finish(args.cpu_smoke)
        print(json.dumps({"ok": report.data["ok"], "summary": report.data["summary"], "json": str(report.path)}),
              flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
