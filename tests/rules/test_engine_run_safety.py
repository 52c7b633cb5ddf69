"""A run is never overwritten or shared, and a diverged run stops before it writes a checkpoint."""
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from pfd.engine.divergence import TrainingDivergedError
from pfd.engine.rundir import LOCK_FILE, OutputDirInUseError
from pfd.engine.trainer import Trainer
from pfd.errors import InvalidInputError
from pfd.inference.checkpoint import load_checkpoint

from engine_tiny import DEMO_CONFIG, REPO, load_script, tiny_config, tiny_opts

train_script = load_script("train")
test_script = load_script("test")
QUICK = ["TEST.EVAL", "false", "SOLVER.OPTIMIZER_NAME", "AdamW", "SOLVER.BASE_LR", "0.003", "SOLVER.WARMUP_EPOCHS", "0"]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_finished_run_is_never_overwritten(data_root, capsys):
    out = data_root / "finished"
    Trainer(tiny_config(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "1")).fit()
    assert not (out / LOCK_FILE).exists()  # released when fit() ends
    before = _snapshot(out)
    assert {"last.pth", "epoch_001.pth", "metrics.jsonl"} <= set(before)

    argv = ["--config", str(DEMO_CONFIG), *tiny_opts(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "1")]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train_script.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert f"OUTPUT_DIR {out} already holds a run (epoch_001.pth, last.pth, metrics.jsonl)" in err
    assert "--resume" in err and "new OUTPUT_DIR" in err
    with pytest.raises(OutputDirInUseError):  # also when the trainer is built from Python
        Trainer(tiny_config(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "2"))
    assert _snapshot(out) == before  # not one byte changed (log.txt included)

    train_script.main(argv + ["--resume"])  # continuing it is what the message offers
    assert load_checkpoint(out / "last.pth")["epoch"] == 1 and not (out / LOCK_FILE).exists()


@pytest.mark.slow
def test_two_trainings_never_share_a_folder_and_a_killed_ones_lock_is_taken_over(data_root, capsys):
    """train.py holds OUTPUT_DIR/train.lock; a second training is refused naming it; after a real
    `kill -9` the lock is stale and the next training takes it over with a warning."""
    out = data_root / "shared_dir"
    opts = tiny_opts(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "50")
    proc = subprocess.Popen([sys.executable, "train.py", "--config", str(DEMO_CONFIG), *opts], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while str(proc.pid) not in ((out / LOCK_FILE).read_text() if (out / LOCK_FILE).exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, "train.py did not take its lock"
            time.sleep(0.05)
        with pytest.raises(OutputDirInUseError, match=f"in use by another training \\(pid {proc.pid} on"):
            Trainer(tiny_config(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "50", "MODEL.RESUME", "auto"))
    finally:
        proc.kill()
        proc.wait()
    assert (out / LOCK_FILE).exists()  # SIGKILL: nobody released it

    capsys.readouterr()
    trainer = Trainer(tiny_config(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "50", "MODEL.RESUME", "auto"))
    log = capsys.readouterr().err  # the pfd logger writes to stderr
    assert "taking over a stale lock" in log and f"(pid {proc.pid} on" in log and "no longer running" in log
    assert f'"pid": {os.getpid()}' in (out / LOCK_FILE).read_text()
    trainer.close()
    assert not (out / LOCK_FILE).exists()


def test_a_non_finite_loss_stops_with_epoch_iteration_and_parts(data_root):
    out = data_root / "nan_loss"
    trainer = Trainer(tiny_config(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "3", "SOLVER.LOG_PERIOD", "4"))
    trainer.save(0, improved=False)  # a good checkpoint that must survive
    good = (out / "last.pth").read_bytes()
    loss_fn, calls = trainer.loss_fn, []

    def nan_push_from_step_3(outputs, pids):
        losses = loss_fn(outputs, pids)
        calls.append(1)
        if len(calls) >= 3:
            push = losses["push"] * float("nan")
            losses = dict(losses, push=push, total=losses["total"] + push)
        return losses

    trainer.loss_fn = nan_push_from_step_3
    with pytest.raises(TrainingDivergedError) as err:
        trainer.fit()
    message = str(err.value)
    assert f"at epoch 1, iteration 3 of {len(trainer.train_loader)}" in message and len(calls) == 4  # seen at 4
    assert "push nan" in message and "total nan" in message and "enc_id" in message
    assert (out / "last.pth").read_bytes() == good and not (out / LOCK_FILE).exists()


def test_non_finite_weights_are_never_checkpointed(data_root):
    """The last guard before every write, e.g. a BatchNorm running mean gone bad while the loss looked fine."""
    out = data_root / "nan_weights"
    trainer = Trainer(tiny_config(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "3", "SOLVER.CHECKPOINT_PERIOD", "1"))
    trainer.save(1, improved=False)
    good = (out / "last.pth").read_bytes()
    name = next(n for n, m in trainer.model.named_modules() if isinstance(m, nn.BatchNorm1d))
    with torch.no_grad():
        trainer.model.get_submodule(name).running_mean[0] = float("inf")
    with pytest.raises(TrainingDivergedError, match=f"after epoch 2 the model holds non-finite values "
                                                    f"\\({name}.running_mean\\)"):
        trainer.save(2, improved=True)
    assert (out / "last.pth").read_bytes() == good
    assert not (out / "epoch_002.pth").exists() and not (out / "best.pth").exists()
    trainer.close()


@pytest.fixture(scope="module")
def saved(data_root):
    """OUTPUT_DIR with a training checkpoint of the tiny AdamW config "after epoch 1" (no training needed)."""
    out = data_root / "saved"
    trainer = Trainer(tiny_config(data_root, out, *QUICK, "SOLVER.MAX_EPOCHS", "3"))
    trainer.save(1, improved=False)
    trainer.close()
    return out


def test_resume_compares_the_stored_config_and_names_what_differs(data_root, saved, tmp_path, capsys):
    last = saved / "last.pth"

    def resume(*extra):
        return Trainer(tiny_config(data_root, tmp_path / "resumed", *QUICK, "SOLVER.MAX_EPOCHS", "3",
                                   "MODEL.RESUME", str(last), *extra))

    with pytest.raises(InvalidInputError) as err:  # was: KeyError: 'momentum'
        resume("SOLVER.OPTIMIZER_NAME", "SGD")
    message = str(err.value)
    assert message.startswith(f"{last} is a pfd checkpoint of MODEL.NAME pfd (vit_tiny_patch16_224, VIT_DEPTH 2, "
                              "128x64 input) after epoch 1; the run cannot continue faithfully")
    assert "SOLVER.OPTIMIZER_NAME 'AdamW' there, 'SGD' here" in message and "MODEL.PRETRAIN_CHOICE self" in message
    with pytest.raises(InvalidInputError, match=r"MODEL\.VIT_DEPTH 2 there, 3 here"):  # was: resumed anyway
        resume("MODEL.VIT_DEPTH", "3")
    with pytest.raises(InvalidInputError, match=r"SOLVER\.MAX_EPOCHS 3 there, 5 here"):  # another schedule
        resume("SOLVER.MAX_EPOCHS", "5")
    capsys.readouterr()
    trainer = resume("SOLVER.LOG_PERIOD", "7", "TEST.RE_RANKING", "true")  # logging and evaluation may change
    assert trainer.start_epoch == 1
    assert "resuming" in capsys.readouterr().err and "SOLVER.LOG_PERIOD 4 there, 7 here" in trainer_log(trainer)
    trainer.close()


def test_resuming_a_run_started_without_model_resume_does_not_report_it(data_root, saved, tmp_path):
    """MODEL.RESUME (what `train.py --resume` sets) says how this run starts, not what it trains: a checkpoint
    whose stored config lacks it resumes without naming it as a change (OUTPUT_DIR, which differs, is named)."""
    trainer = Trainer(tiny_config(data_root, tmp_path / "resumed", *QUICK, "SOLVER.MAX_EPOCHS", "3",
                                  "MODEL.RESUME", str(saved / "last.pth")))
    assert trainer.start_epoch == 1
    assert "resuming" in trainer_log(trainer) and "MODEL.RESUME" not in trainer_log(trainer)
    trainer.close()


def trainer_log(trainer) -> str:
    return (trainer.output_dir / "log.txt").read_text()


def test_resume_of_a_run_started_without_resume_reports_no_change_of_model_resume(data_root, saved, tmp_path):
    """Issue 31: every --resume of a run started without one warned `changed MODEL.RESUME '' there, 'auto'
    here`; how a run is started is no change. A real change (OUTPUT_DIR, copied elsewhere) still is one."""
    run = tmp_path / "copied"
    shutil.copytree(saved, run)
    trainer = Trainer(tiny_config(data_root, run, *QUICK, "SOLVER.MAX_EPOCHS", "3", "MODEL.RESUME", "auto"))
    try:
        log = trainer_log(trainer)
        assert trainer.start_epoch == 1 and "resuming" in log and "OUTPUT_DIR" in log
        assert "MODEL.RESUME" not in log
    finally:
        trainer.close()


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty"])
def test_an_unreadable_checkpoint_is_named(data_root, saved, tmp_path, damage, capsys):
    data = (saved / "last.pth").read_bytes()
    bad = tmp_path / "bad.pth"
    bad.write_bytes({"truncated": data[: len(data) // 2], "random bytes": os.urandom(4096), "empty": b""}[damage])
    expected = f"{bad} \\(\\d+ bytes\\) cannot be read as a checkpoint: "
    with pytest.raises(InvalidInputError, match=expected):
        Trainer(tiny_config(data_root, tmp_path / "run", *QUICK, "MODEL.RESUME", str(bad)))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        test_script.main(["--config", str(DEMO_CONFIG),
                          *tiny_opts(data_root, tmp_path / "test", "TEST.WEIGHT", str(bad))])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {bad} (") and "cannot be read as a checkpoint" in err and "Traceback" not in err


def test_a_checkpoint_of_another_model_names_the_keys_that_differ(data_root, saved, tmp_path, capsys):
    """test.py (and query.py) with our checkpoint under a config of another architecture."""
    argv = ["--config", str(DEMO_CONFIG), *tiny_opts(data_root, tmp_path, "TEST.WEIGHT", str(saved / "last.pth"),
                                                     "MODEL.VIT_DEPTH", "3", "MODEL.NUM_HEAD", "2")]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        test_script.main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {saved / 'last.pth'} is a pfd checkpoint of MODEL.NAME pfd (vit_tiny_patch16_224, "
                          "VIT_DEPTH 2, 128x64 input) after epoch 1; it does not fit the configured model")
    assert "MODEL.VIT_DEPTH 2 there, 3 here" in err and "MODEL.NUM_HEAD 4 there, 2 here" in err
