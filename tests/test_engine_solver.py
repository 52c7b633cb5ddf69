"""Optimizer groups and the per-epoch LR schedule follow the reference recipe (PFD_SPEC section 11)."""
import math

import pytest
import torch
from torch import nn

from pfd.config import load_config
from pfd.engine.solver import build_optimizer, build_scheduler


def _model():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3, bias=False))
    model[1].bias.requires_grad_(False)  # a frozen BNNeck bias: must not be optimized
    return model


def _lrs(cfg, epochs):
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
    cfg = load_config(None, ["SOLVER.OPTIMIZER_NAME", "Lion"])
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER_NAME"):
        build_optimizer(cfg, _model())
