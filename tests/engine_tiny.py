"""Shared by the engine tests: a tiny synthetic dataset and a tiny CPU config on top of demo_synthetic.yaml."""
import atexit
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from pfd.config import load_config
from pfd.data.synthetic import SyntheticConfig, generate

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "demo_synthetic.yaml"
TINY_DATA = SyntheticConfig(ids_train=16, ids_test=8, images_per_id=8, distractors=5, junk=2, seed=1)
# `python -m pfd.data.synthetic` options for a set of a few dozen images (the output-rule tests)
SMALL_SYNTHETIC = ["--ids-train", "4", "--ids-test", "2", "--images-per-id", "4", "--distractors", "1",
                   "--junk", "1", "--quiet", "--workers", "1"]


_GENERATED: list[Path] = []  # the tiny dataset, generated once per test process


def make_data(root: Path) -> Path:
    """ROOT_DIR with a tiny `synthetic` dataset: 128 train images of 16 ids, 24 queries, 79 gallery images.
    Generated once per test session (~3 s) and copied into each `root` (~0.1 s), so every module gets its
    own copy to write its runs and pose cache beside."""
    if not _GENERATED:
        folder = Path(tempfile.mkdtemp(prefix="pfd_tiny_data_"))
        atexit.register(shutil.rmtree, folder, True)
        generate(folder / "synthetic", TINY_DATA, progress=False)
        _GENERATED.append(folder / "synthetic")
    shutil.copytree(_GENERATED[0], root / "synthetic")
    return root


def tiny_opts(data_root: Path, output_dir: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long CPU run: 2-block ViT, 128x64 at patch stride 16 (32 tokens) with
    the reference linear patch embedding, batch 16 (4 ids x 4), no workers, learning rate 3e-3 (one
    rate for all weights), padding and random erasing on, evaluation every 10 epochs, buckets 0-5 /
    6-11 / 12-17, camera embedding and heat weighting on, no test-time flip or re-ranking (whatever the
    demo's tuning says), so every model input is exercised and the tests do not move with the demo's
    tuning."""
    return ["DATASETS.ROOT_DIR", str(data_root), "OUTPUT_DIR", str(output_dir),
            "MODEL.POSE_CACHE_DIR", str(data_root / "pose_cache"), "MODEL.VIT_DEPTH", "2",
            "MODEL.STRIDE_SIZE", "[16, 16]", "MODEL.PATCH_EMBED", "linear", "SOLVER.BASE_LR", "0.003",
            "SOLVER.CLASSIFIER_LR_FACTOR", "1.0", "INPUT.PADDING", "5", "INPUT.RE_PROB", "0.5",
            "SOLVER.EVAL_PERIOD", "10",
            "TEST.VIS_BUCKETS", "[0, 6, 12]",
            "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "16", "SOLVER.WARMUP_EPOCHS", "1",
            "SOLVER.LOG_PERIOD", "4", "SOLVER.CHECKPOINT_PERIOD", "0", "MODEL.SIE_CAMERA", "true",
            "MODEL.HEAT_WEIGHT", "true", "TEST.FLIP_FEATS", "false", "TEST.RE_RANKING", "false", *extra]


def tiny_config(data_root: Path, output_dir: Path, *extra: str):
    return load_config(DEMO_CONFIG, tiny_opts(data_root, output_dir, *extra))


def load_script(name: str):
    """The repository's `<name>.py` script as a module (by path: `test` is also a stdlib package)."""
    spec = importlib.util.spec_from_file_location(f"pfd_script_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_status(main: Callable[[list[str]], object], argv: list[str]) -> int:
    """The exit status of a command's `main(argv)` run in this process: 0 when it returns."""
    try:
        main(argv)
    except SystemExit as exit_info:
        return exit_info.code
    return 0


def reference_layout(state: dict) -> dict:
    """One of our PFD state dicts renamed into the reference implementation's layout (per-part modules
    `bottleneck_{i}` / `classifier_{i}`, `base_vit.*`, `transformerdecoder.*`), written out
    independently of pfd.model.convert so that tests can feed test.py a reference-layout checkpoint."""
    bases = {"bottleneck_parts": "bottleneck", "classifier_parts": "classifier",
             "bottleneck_decoder_parts": "bottleneck_decoder", "classifier_decoder_parts": "classifier_decoder"}
    ref = {}
    for k, v in state.items():
        if k.startswith("base_vit.vit."):
            ref["base_vit." + k[len("base_vit.vit."):]] = v
        elif k.startswith("decoder."):
            ref["transformerdecoder." + k[len("decoder."):]] = v
        elif "_parts." in k:
            module, name = k.split(".")
            pieces = [v] * 17 if name == "num_batches_tracked" else (v if v.ndim == 3 else v.view(17, -1))
            for i in range(17):
                ref[f"{bases[module]}_{i + 1}.{name}"] = pieces[i]
        else:
            ref[k] = v
    return ref


def readme_section(title: str) -> str:
    """The text of README.md's `## title` section (the README examples the tests run)."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def demo_layout(setup, where):
    """`make demo`'s outputs the README examples use: demo_output/run/last.pth and the synthetic data."""
    (where / "demo_output" / "run").mkdir(parents=True)
    shutil.copy(setup["weights"], where / "demo_output" / "run" / "last.pth")
    shutil.copytree(setup["root"] / "synthetic", where / "demo_output" / "data" / "synthetic")


def run_python(*argv: str) -> subprocess.CompletedProcess:
    """`python ARGV...` in the repository, as a user runs a command: exit status and output captured."""
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
