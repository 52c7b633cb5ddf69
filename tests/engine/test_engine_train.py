"""Training on a tiny synthetic set: it learns, it resumes exactly, and test.py reads its checkpoint."""
import datetime
import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from pfd.config import config_hash
from pfd.engine.tester import trained_config_warning
from pfd.engine.trainer import Trainer
from pfd.inference.checkpoint import load_checkpoint
from pfd.io import sha256_file

from engine_tiny import DEMO_CONFIG, REPO, exit_status, load_script, tiny_config, tiny_opts

test_script = load_script("test")

# From-scratch ViTs learn fastest here with AdamW; the SGD recipe itself is checked in test_engine_solver.
EPOCHS = ["SOLVER.MAX_EPOCHS", "10", "SOLVER.EVAL_PERIOD", "5", "SOLVER.OPTIMIZER_NAME", "AdamW",
          "SOLVER.BASE_LR", "0.003", "SOLVER.WARMUP_EPOCHS", "0"]


class Interrupted(Exception):
    """Raised by the test hook to stop a run right after an epoch's checkpoint."""


@pytest.fixture(scope="module")
def full_run(data_root):
    """An uninterrupted run, evaluated before training and every 5 epochs."""
    out = data_root / "full"
    trainer = Trainer(tiny_config(data_root, out, *EPOCHS))
    before = trainer.evaluate(0)["synthetic"]
    after = trainer.fit()["synthetic"]
    return {"out": out, "before": before, "after": after}


def test_training_improves_map(full_run):
    before, after = full_run["before"]["mAP"], full_run["after"]["mAP"]
    assert after > before + 0.05, f"mAP {before:.3f} -> {after:.3f}"
    lines = [json.loads(line) for line in (full_run["out"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if r["kind"] == "train"] == list(range(1, 11))
    assert [r["epoch"] for r in lines if r["kind"] == "eval"] == [0, 5, 10]  # 0: the untrained start
    first_train = next(r for r in lines if r["kind"] == "train")
    assert {"total", "enc_id", "push", "acc", "img_s", "lr"} <= set(first_train)
    assert (full_run["out"] / "log.txt").read_text().count("epoch 10/10") == 1
    with Image.open(full_run["out"] / "training_curves.png") as curves:  # beside the log, after each evaluation
        assert curves.format == "PNG" and curves.size == (960, 400)


@pytest.mark.slow
def test_kill_and_resume_gives_identical_weights(data_root, full_run):
    out = data_root / "resumed"

    def interrupt_after_epoch_7(trainer, epochs_done):
        if epochs_done == 7:
            raise Interrupted

    with pytest.raises(Interrupted):
        Trainer(tiny_config(data_root, out, *EPOCHS), epoch_hooks=[interrupt_after_epoch_7]).fit()
    assert load_checkpoint(out / "last.pth")["epoch"] == 7
    resumed = Trainer(tiny_config(data_root, out, *EPOCHS, "MODEL.RESUME", "auto"))
    assert resumed.start_epoch == 7
    resumed.fit()

    reference, final = load_checkpoint(full_run["out"] / "last.pth"), load_checkpoint(out / "last.pth")
    assert final["epoch"] == reference["epoch"] == 10
    assert final["model"].keys() == reference["model"].keys()
    for key, value in reference["model"].items():
        assert torch.equal(final["model"][key], value), key
    for a, b in zip(reference["optimizer"]["state"].values(), final["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert final["best_val_map"] == reference["best_val_map"] == -1  # no validation split
    lrs = [[r["lr"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
           for run in (full_run["out"], out)]
    assert lrs[0] == lrs[1] and len(lrs[0]) == 10  # epochs 8-10 resumed at the uninterrupted schedule


def _checkpoint_epoch(path) -> int:
    return load_checkpoint(path)["epoch"] if path.exists() else -1


def _mid_epoch(progress: str, first_epoch: int) -> bool:
    """Whether train.py's progress bar (its stderr) shows a step inside an epoch >= `first_epoch` (of 10)."""
    steps = re.findall(r"epoch (\d+)/10:[^\r\n]*?\| *(\d+)/(\d+) ", progress)
    return any(int(epoch) >= first_epoch and 0 < int(done) < int(total) for epoch, done, total in steps)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(data_root, full_run, tmp_path):
    """A real `kill -9` of train.py partway through an epoch loses only that epoch. The kill waits for a
    marker: the progress bar showing a step inside epoch 5 or later."""
    out, progress = data_root / "killed", tmp_path / "stderr.txt"
    cmd = [sys.executable, "train.py", "--config", str(DEMO_CONFIG), *tiny_opts(data_root, out, *EPOCHS)]
    # as many torch threads as the in-process reference run (1 per pytest-xdist worker): sums depend on it
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    with progress.open("w") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 240  # only a guard against a hang
    while not _mid_epoch(progress.read_text(errors="replace"), 5):
        assert proc.poll() is None and time.monotonic() < deadline, "train.py ended before the middle of epoch 5"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    killed_at = _checkpoint_epoch(out / "last.pth")
    assert 4 <= killed_at < 10

    subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference, final = load_checkpoint(full_run["out"] / "last.pth"), load_checkpoint(out / "last.pth")
    assert final["epoch"] == 10
    for key, value in reference["model"].items():
        assert torch.equal(final["model"][key], value), key


def test_checkpoints_written(full_run):
    """Without a validation split there is no best.pth: nothing is ever selected on the test set."""
    out = full_run["out"]
    assert sorted(p.name for p in out.glob("*.pth")) == ["epoch_010.pth", "last.pth"]
    assert not list(out.glob(".*.tmp"))  # no temp files left by the atomic writes
    ckpt = load_checkpoint(out / "last.pth")
    assert ckpt["num_classes"] == 16 and "SOLVER" in ckpt["config"] and set(ckpt["rng"]) >= {"torch", "numpy"}


def test_test_py_reads_the_checkpoint(data_root, full_run, capsys):
    out = data_root / "test_out"
    weights = full_run["out"] / "last.pth"
    test_script.main(["--config", str(DEMO_CONFIG), *tiny_opts(data_root, out, "TEST.WEIGHT", str(weights))])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mAP"] == pytest.approx(full_run["after"]["mAP"], abs=1e-6)  # same weights, same features
    assert metrics["num_query"] == 24 and metrics["num_gallery"] == 77  # the 2 junk crops (id -1) are dropped
    provenance = metrics["provenance"]
    assert provenance["checkpoint"] == {"path": str(weights), "sha256": sha256_file(weights), "format": "pfd"}
    assert provenance["config_hash"] == config_hash(tiny_config(data_root, out))
    assert len(provenance["config_hash"]) == 12
    assert provenance["feature_config"]["TEST.AMP"] == "fp32" and provenance["eval_precision"] == "fp32"
    assert provenance["pose"]["online"] is False and provenance["pose"]["backend"] == "synthetic"
    assert provenance["dataset"]["name"] == "synthetic" and provenance["retrieval"]["re_ranking"] is False
    assert {"python", "pfd", "torch", "timm", "faiss-cpu", "numpy"} <= set(provenance["versions"])
    evaluated_at = datetime.datetime.fromisoformat(provenance["date"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - evaluated_at) < datetime.timedelta(hours=1)
    assert 0 <= metrics["rank1"] <= metrics["rank5"] <= metrics["rank10"] <= 1
    assert (out / "cmc.png").stat().st_size > 0 and (out / "ranked_lists.png").stat().st_size > 0
    buckets = metrics["buckets"]  # queries by visible keypoints (confidence >= MODEL.SKT_THRES)
    assert buckets["keypoint_threshold"] == pytest.approx(0.3)
    assert [r["visible"] for r in buckets["rows"]] == ["0-5", "6-11", "12-17"]
    assert sum(r["num_query"] for r in buckets["rows"]) == metrics["num_query"]
    table = capsys.readouterr().out
    assert "synthetic" in table and f"{100 * metrics['mAP']:.2f}" in table
    assert "by visible keypoints (confidence >= 0.3)" in table and "12-17" in table


def test_test_py_buckets_follow_the_config(data_root, full_run, tmp_path, capsys):
    """Also TEST.NUM_VIS 0: no ranked-list picture (it used to crash on an empty selection of queries)."""
    weights = full_run["out"] / "last.pth"
    opts = tiny_opts(data_root, tmp_path, "TEST.WEIGHT", str(weights), "TEST.VIS_BUCKETS", "[0, 9]",
                     "TEST.NUM_VIS", "0")
    test_script.main(["--config", str(DEMO_CONFIG), *opts])
    rows = json.loads((tmp_path / "metrics.json").read_text())["buckets"]["rows"]
    assert [r["visible"] for r in rows] == ["0-8", "9-17"] and sum(r["num_query"] for r in rows) == 24
    assert (tmp_path / "cmc.png").is_file() and not (tmp_path / "ranked_lists.png").exists()
    capsys.readouterr()
    argv = ["--config", str(DEMO_CONFIG), *tiny_opts(data_root, tmp_path, "TEST.WEIGHT", str(weights),
                                                     "TEST.VIS_BUCKETS", "[3, 9]")]
    assert exit_status(test_script.main, argv) == 2  # refused as the config loads: one line, no traceback
    assert capsys.readouterr().err.strip() == ("error: command line: TEST.VIS_BUCKETS [3, 9]: expected increasing "
                                               "lower ends of visible-keypoint buckets, starting at 0 and at most "
                                               "17, e.g. [0, 6, 12] for 0-5, 6-11, 12-17")


def test_test_py_warns_when_the_config_is_not_the_trained_one(data_root, full_run, tmp_path, capsys):
    """MODEL.HEAT_WEIGHT changes the forward but no weight shape: the checkpoint loads, test.py says so."""
    weights = full_run["out"] / "last.pth"
    opts = tiny_opts(data_root, tmp_path, "TEST.WEIGHT", str(weights), "MODEL.HEAT_WEIGHT", "false")
    test_script.main(["--config", str(DEMO_CONFIG), *opts, "MODEL.FEAT_KIND", "global"])  # an evaluation choice
    for text in (capsys.readouterr().err, (tmp_path / "log.txt").read_text()):
        assert "trained with another model config than this one: MODEL.HEAT_WEIGHT True there, False here" in text
        assert "FEAT_KIND" not in text.split("trained with another model config")[1]
    assert trained_config_warning(load_checkpoint(weights)["config"], tiny_config(data_root, tmp_path)) is None


def test_resume_rejects_a_missing_checkpoint(data_root):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        Trainer(tiny_config(data_root, data_root / "x", "MODEL.RESUME", str(data_root / "nowhere.pth")))


def test_test_py_needs_no_imagenet_weights(data_root, full_run, tmp_path):
    """Evaluating a checkpoint must not try to load MODEL.PRETRAIN_PATH: the checkpoint has every weight."""
    weights = full_run["out"] / "last.pth"
    opts = tiny_opts(data_root, tmp_path, "TEST.WEIGHT", str(weights), "MODEL.PRETRAIN_CHOICE", "imagenet",
                     "MODEL.PRETRAIN_PATH", str(tmp_path / "absent_vit.pth"))
    test_script.main(["--config", str(DEMO_CONFIG), *opts])
    m_ap = json.loads((tmp_path / "metrics.json").read_text())["mAP"]
    assert m_ap == pytest.approx(full_run["after"]["mAP"], abs=1e-6)


def test_resume_into_another_architecture_names_the_file(data_root, full_run):
    last = full_run["out"] / "last.pth"
    with pytest.raises(ValueError,
                       match=r"last\.pth is a pfd checkpoint of .* changed MODEL\.VIT_DEPTH 2 there, 3 here"):
        Trainer(tiny_config(data_root, data_root / "other", *EPOCHS, "MODEL.VIT_DEPTH", "3",
                            "MODEL.RESUME", str(last)))


def test_best_checkpoint_is_selected_on_held_out_training_ids(data_root):
    """DATASETS.VAL_IDS 4: 4 of the 16 training ids become a validation split; best.pth is its best epoch."""
    out = data_root / "validated"
    opts = [*EPOCHS, "SOLVER.MAX_EPOCHS", "3", "SOLVER.EVAL_PERIOD", "1", "DATASETS.VAL_IDS", "4"]
    trainer = Trainer(tiny_config(data_root, out, *opts))
    assert trainer.num_classes == 12 and len(trainer.val_sets) == 1
    val = trainer.val_sets[0]
    assert val.name == "synthetic:val" and len(val.dataset.query) == 4
    trainer.fit()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val_maps = {r["epoch"]: r["mAP"] for r in lines if r["kind"] == "eval" and r["dataset"] == "synthetic:val"}
    test_epochs = [r["epoch"] for r in lines if r["kind"] == "eval" and r["dataset"] == "synthetic"]
    assert sorted(val_maps) == test_epochs == [1, 2, 3]  # the test set is still reported, never selected on
    best = load_checkpoint(out / "best.pth")
    best_epoch = max(val_maps, key=lambda e: (val_maps[e], -e))  # the first epoch reaching the best val mAP
    assert best["epoch"] == best_epoch and best["best_val_map"] == pytest.approx(val_maps[best_epoch])
    assert load_checkpoint(out / "last.pth")["num_classes"] == 12
