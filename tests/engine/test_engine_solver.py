"""Optimizer groups and the per-epoch LR schedule follow the reference recipe (docs/MODEL.md section 11)."""
import copy
import math

import pytest
import torch
from torch import nn

from pfd.config import ConfigError, load_config
from pfd.engine.solver import build_optimizer, build_scheduler, param_groups
from pfd.engine.trainer import Trainer

from engine_tiny import tiny_config

# The Occluded-Duke recipe (configs/occluded_duke.yaml) and the reference's learning rate in the
# given (1-based) epoch: TransReID's create_scheduler stepped with scheduler.step(epoch), epoch = 1..300.
OCC_DUKE_SCHEDULE = ["SOLVER.OPTIMIZER_NAME", "SGD", "SOLVER.BASE_LR", "0.008", "SOLVER.MAX_EPOCHS", "300",
                     "SOLVER.WARMUP_EPOCHS", "5", "SOLVER.WARMUP_FACTOR", "0.01", "SOLVER.LR_MIN_FACTOR", "0.002",
                     "TEST.EVAL", "false"]
REFERENCE_LR = {1: 0.001664, 2: 0.003248, 5: 0.0079945291, 6: 0.0079921227, 150: 0.004008, 300: 1.6e-5}


def _model():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3, bias=False))
    model[1].bias.requires_grad_(False)  # a frozen BNNeck bias: must not be optimized
    return model


def _lrs(cfg, epochs):
    """The LR of each group after scheduler.step(t), t = 0 .. epochs-1 (the schedule as a function of t)."""
    optimizer = build_optimizer(cfg, _model())
    scheduler = build_scheduler(cfg, optimizer)
    out = []
    for epoch in range(epochs):
        scheduler.step(epoch)
        out.append({g["name"]: g["lr"] for g in optimizer.param_groups})
    return optimizer, out


def test_param_groups_bias_lr_and_decay():
    cfg = load_config(None, ["SOLVER.WEIGHT_DECAY_BIAS", "0.0", "SOLVER.WARMUP_EPOCHS", "0"])
    model = _model()
    optimizer = build_optimizer(cfg, model)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["weights"]["lr"] == pytest.approx(0.008)
    assert groups["weights"]["weight_decay"] == pytest.approx(1e-4)
    assert groups["biases"]["lr"] == pytest.approx(0.016)  # BIAS_LR_FACTOR 2
    assert groups["biases"]["weight_decay"] == 0.0
    assert {id(p) for p in groups["biases"]["params"]} == {id(model[0].bias)}  # frozen BN bias left out
    assert len(groups["weights"]["params"]) == 3
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9


def test_schedule_warmup_peak_cosine_floor():
    cfg = load_config(None, ["SOLVER.MAX_EPOCHS", "120"])
    base = 0.008
    _, lrs = _lrs(cfg, 121)
    assert lrs[0]["weights"] == pytest.approx(0.01 * base)  # warm-up start
    step = (base - 0.01 * base) / 5
    assert lrs[3]["weights"] == pytest.approx(0.01 * base + 3 * step)  # linear warm-up
    floor = 0.002 * base
    peak = floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * 5 / 120))
    assert lrs[5]["weights"] == pytest.approx(peak)  # first cosine epoch, just under base
    assert max(lr["weights"] for lr in lrs) == pytest.approx(peak)
    assert lrs[60]["weights"] == pytest.approx(floor + 0.5 * (base - floor))  # cosine midpoint
    assert lrs[120]["weights"] == pytest.approx(floor)  # floor at MAX_EPOCHS
    assert all(a["weights"] >= b["weights"] for a, b in zip(lrs[5:], lrs[6:]))  # monotone decay
    # biases: 2x the weights' LR after warm-up (the reference shares the absolute floor/start values)
    assert lrs[5]["biases"] == pytest.approx(floor + 0.5 * (2 * base - floor) * (1 + math.cos(math.pi * 5 / 120)))
    assert lrs[0]["biases"] == pytest.approx(0.01 * base)


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER_NAME"):  # refused when the config loads
        load_config(None, ["SOLVER.OPTIMIZER_NAME", "Lion"])


class Interrupted(Exception):
    pass


def _epoch_lrs(trainer, save: bool = False) -> dict[int, float]:
    """Run the trainer's real epoch loop with the training pass replaced by a recorder of the LR each
    epoch runs at (1-based epoch -> weights' LR); checkpoints are skipped unless `save`."""
    seen = {}

    def record(epoch):
        seen[epoch + 1] = trainer.optimizer.param_groups[0]["lr"]
        return {}

    trainer.train_one_epoch = record
    if not save:
        trainer.save = lambda *args, **kwargs: None
    trainer.fit()
    return seen


def test_trainer_runs_each_epoch_at_the_reference_lr(data_root, tmp_path):
    """Through build_scheduler and Trainer.fit's own stepping: epoch e runs at the reference's step(e)."""
    trainer = Trainer(tiny_config(data_root, tmp_path, *OCC_DUKE_SCHEDULE))
    lrs = _epoch_lrs(trainer)
    assert sorted(lrs) == list(range(1, 301))
    for epoch, lr in REFERENCE_LR.items():
        assert lrs[epoch] == pytest.approx(lr, rel=1e-7, abs=1e-12), epoch
    bias_group = trainer.optimizer.param_groups[1]
    assert bias_group["name"] == "biases" and bias_group["lr"] == pytest.approx(1.6e-5)  # the shared floor


def test_resume_lands_on_the_same_schedule(data_root, tmp_path):
    """A run stopped after epoch 6 and resumed from last.pth runs every epoch at the uninterrupted LR."""
    schedule = [*OCC_DUKE_SCHEDULE, "SOLVER.MAX_EPOCHS", "12"]  # warm-up 5, cosine to the floor at 12
    full = _epoch_lrs(Trainer(tiny_config(data_root, tmp_path / "full", *schedule)))

    def stop_after_6(trainer, epochs_done):
        if epochs_done == 6:
            raise Interrupted

    first = Trainer(tiny_config(data_root, tmp_path / "resumed", *schedule), epoch_hooks=[stop_after_6])
    with pytest.raises(Interrupted):
        _epoch_lrs(first, save=True)
    resumed = Trainer(tiny_config(data_root, tmp_path / "resumed", *schedule, "MODEL.RESUME", "auto"))
    assert resumed.start_epoch == 6
    second = _epoch_lrs(resumed, save=True)
    assert sorted(second) == list(range(7, 13))
    assert {e: full[e] for e in range(7, 13)} == second
    assert full[1] == pytest.approx(REFERENCE_LR[1]) and full[12] == pytest.approx(1.6e-5)


def test_classifier_lr_factor_gives_the_id_classifiers_their_own_group():
    model = nn.ModuleDict({"backbone": nn.Linear(4, 8), "classifier_encoder": nn.Linear(8, 3, bias=False),
                           "classifier_parts": nn.Linear(8, 3, bias=False)})
    default = build_optimizer(load_config(None, ["SOLVER.WARMUP_EPOCHS", "0"]), model)
    assert [g["name"] for g in default.param_groups] == ["weights", "biases"]  # the reference: one LR

    cfg = load_config(None, ["SOLVER.WARMUP_EPOCHS", "0", "SOLVER.CLASSIFIER_LR_FACTOR", "10"])
    groups = {g["name"]: g for g in build_optimizer(cfg, model).param_groups}
    assert groups["classifiers"]["lr"] == pytest.approx(0.08)
    assert {id(p) for p in groups["classifiers"]["params"]} == {
        id(model["classifier_encoder"].weight), id(model["classifier_parts"].weight)}
    assert {id(p) for p in groups["weights"]["params"]} == {id(model["backbone"].weight)}
    assert groups["weights"]["lr"] == pytest.approx(0.008)


def test_large_fc_lr_puts_the_classifiers_at_twice_the_lr_as_the_reference():
    model = nn.ModuleDict({"backbone": nn.Linear(4, 8), "classifier_encoder": nn.Linear(8, 3, bias=False)})
    cfg = load_config(None, ["SOLVER.LARGE_FC_LR", "true"])
    groups = {g["name"]: g for g in build_optimizer(cfg, model).param_groups}
    assert groups["classifiers"]["lr"] == pytest.approx(2 * groups["weights"]["lr"])
    assert [id(p) for p in groups["classifiers"]["params"]] == [id(model["classifier_encoder"].weight)]
    with pytest.raises(ConfigError, match="SOLVER.LARGE_FC_LR.*SOLVER.CLASSIFIER_LR_FACTOR 10.0.*keep one"):
        load_config(None, ["SOLVER.LARGE_FC_LR", "true", "SOLVER.CLASSIFIER_LR_FACTOR", "10"])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_optimizer_is_fused_and_steps_like_foreach(name, device):
    """The fused kernels (CPU and CUDA) take the same steps as PyTorch's foreach implementation."""
    cfg = load_config(None, ["SOLVER.OPTIMIZER_NAME", name, "SOLVER.BASE_LR", "0.01", "SOLVER.WEIGHT_DECAY", "0.05"])
    model = _model().to(device)
    reference, start = copy.deepcopy(model), copy.deepcopy(model)
    fused = build_optimizer(cfg, model)
    assert fused.defaults["fused"] is True
    extra = {"momentum": cfg.SOLVER.MOMENTUM} if name == "SGD" else {}
    foreach = getattr(torch.optim, name)(param_groups(cfg, reference), lr=cfg.SOLVER.BASE_LR, foreach=True, **extra)
    g = torch.Generator(device=device).manual_seed(0)
    for _ in range(3):
        for p, q in zip(model.parameters(), reference.parameters()):
            p.grad = torch.randn(p.shape, generator=g, device=device)
            q.grad = p.grad.clone()
        fused.step()
        foreach.step()
    for (param_name, p), q, p0 in zip(model.named_parameters(), reference.parameters(), start.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=param_name)
        assert not torch.equal(p, p0) or not p.requires_grad, param_name
