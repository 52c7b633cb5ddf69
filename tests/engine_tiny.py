"""Shared by the engine tests: a tiny synthetic dataset and a tiny CPU config on top of demo_synthetic.yaml."""
from pathlib import Path

from pfd.config import load_config
from pfd.data.synthetic import SyntheticConfig, generate

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "demo_synthetic.yaml"
TINY_DATA = SyntheticConfig(ids_train=16, ids_test=8, images_per_id=8, distractors=5, junk=2, seed=1)


def make_data(root: Path) -> Path:
    """ROOT_DIR with a tiny `synthetic` dataset: 128 train images of 16 ids, 24 queries, 79 gallery images."""
    generate(root / "synthetic", TINY_DATA, progress=False)
    return root


def tiny_opts(data_root: Path, output_dir: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long CPU run: 2-block ViT, 128x64, batch 16 (4 ids x 4), no workers."""
    return ["DATASETS.ROOT_DIR", str(data_root), "OUTPUT_DIR", str(output_dir),
            "MODEL.POSE_CACHE_DIR", str(data_root / "pose_cache"), "MODEL.VIT_DEPTH", "2",
            "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "16", "SOLVER.WARMUP_EPOCHS", "1",
            "SOLVER.LOG_PERIOD", "4", "SOLVER.CHECKPOINT_PERIOD", "0", *extra]


def tiny_config(data_root: Path, output_dir: Path, *extra: str):
    return load_config(DEMO_CONFIG, tiny_opts(data_root, output_dir, *extra))
