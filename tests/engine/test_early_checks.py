"""Issue 23's late checks, through train.py in this process: one line on stderr, exit status 2, before
the pose pass or any training (a tiny synthetic set; nothing trains)."""
import json

import pytest
import torch

from pfd.engine.trainer import Trainer
from pfd.image import ImageReadError
from pfd.inference.checkpoint import load_checkpoint

from engine_tiny import DEMO_CONFIG, exit_status, load_script, tiny_config, tiny_opts

train_script = load_script("train")


def run_train(capsys, data_root, out, *extra):
    opts = tiny_opts(data_root, out, "MODEL.POSE_CACHE_DIR", str(out.parent / "pose_cache"), *extra)
    status = exit_status(train_script.main, ["--config", str(DEMO_CONFIG), *opts])
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


def test_too_few_identities_fail_before_the_pose_pass(capsys, data_root, tmp_path):
    status, err = run_train(capsys, data_root, tmp_path / "run", "SOLVER.IMS_PER_BATCH", "128")
    assert status == 2
    assert err[-1].startswith("error: dataset synthetic: 16 training identities, but a PK batch of "
                              "SOLVER.IMS_PER_BATCH=128 takes 32")
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "pose_cache").exists()  # the pose pass never ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_device_without_cuda_is_one_line(capsys, data_root, tmp_path):
    status, err = run_train(capsys, data_root, tmp_path / "run", "MODEL.DEVICE", "cuda")
    assert status == 2
    assert err == ["error: MODEL.DEVICE='cuda:0' but CUDA is not available; use MODEL.DEVICE cpu or auto"]


@pytest.fixture
def damaged_gallery_image(data_root):
    """A gallery JPEG cut in half (restored afterwards): its header still reads, its pixels do not."""
    path = sorted((data_root / "synthetic" / "bounding_box_test").glob("*.jpg"))[3]
    whole = path.read_bytes()
    yield path, lambda: path.write_bytes(whole[:len(whole) // 2]), lambda: path.write_bytes(whole)
    path.write_bytes(whole)


def test_truncated_gallery_image_fails_when_the_dataset_is_built(capsys, data_root, tmp_path, damaged_gallery_image):
    path, damage, _ = damaged_gallery_image
    damage()
    status, err = run_train(capsys, data_root, tmp_path / "run")
    assert status == 2
    assert err[-1] == (f"error: dataset synthetic: truncated image: {path} (JPEG without its end marker; "
                       "copy the file again)")
    assert not (tmp_path / "pose_cache").exists()  # before the pose pass


def test_epoch_checkpoint_is_saved_before_its_evaluation(data_root, tmp_path, damaged_gallery_image):
    """An image damaged during training fails the end-of-epoch evaluation: the epoch's checkpoint is kept
    (marked evaluation_pending), and resuming from it runs that evaluation first."""
    path, damage, restore = damaged_gallery_image
    out = tmp_path / "run"
    trainer = Trainer(tiny_config(data_root, out, "SOLVER.MAX_EPOCHS", "1"))  # the dataset check passes
    damage()
    with pytest.raises(ImageReadError, match=str(path)):
        trainer.fit()
    last = load_checkpoint(out / "last.pth")
    assert last["epoch"] == 1 and last["evaluation_pending"] is True
    assert load_checkpoint(out / "epoch_001.pth")["epoch"] == 1
    restore()
    metrics = Trainer(tiny_config(data_root, out, "SOLVER.MAX_EPOCHS", "1", "MODEL.RESUME", "auto")).fit()
    assert "synthetic" in metrics and 0 <= metrics["synthetic"]["mAP"] <= 1
    assert load_checkpoint(out / "last.pth")["evaluation_pending"] is False
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["epoch"]) for r in evals if r["kind"] in ("train", "eval")] == [("train", 1), ("eval", 1)]
