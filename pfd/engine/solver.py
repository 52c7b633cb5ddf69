"""Optimizer and learning-rate schedule of the reference recipe (docs/MODEL.md section 11).

SGD (momentum 0.9, weight decay 1e-4) with biases at `BIAS_LR_FACTOR` x the base LR and their own
weight decay, stepped once per epoch by timm's `CosineLRScheduler`: `WARMUP_EPOCHS` linear warm-up
from `WARMUP_FACTOR * BASE_LR`, then cosine down to `LR_MIN_FACTOR * BASE_LR` at `MAX_EPOCHS`.
As in the reference (TransReID's `create_scheduler`), the warm-up start and the floor are absolute
learning rates shared by every parameter group, the cosine is evaluated at the epoch number itself
(timm's `warmup_prefix=False`), and the schedule is stepped with the 1-based number of the epoch
about to run (`scheduler.step(epoch)` for epoch = 1 .. MAX_EPOCHS): on the Occluded-Duke recipe
(0.008, 300 epochs) epoch 1 runs at 0.001664, epoch 6 at 0.0079921, epoch 300 at the floor 1.6e-5.
"""
from __future__ import annotations

import torch
from timm.scheduler import CosineLRScheduler
from torch import nn

__all__ = ["build_optimizer", "build_scheduler", "param_groups"]


def param_groups(cfg, model: nn.Module) -> list[dict]:
    """Weights (base LR, WEIGHT_DECAY), biases (BIAS_LR_FACTOR x LR, WEIGHT_DECAY_BIAS) and, when
    CLASSIFIER_LR_FACTOR is not 1 or LARGE_FC_LR is on (the reference's switch, factor 2), the ID
    classifiers' weights (that factor x LR, WEIGHT_DECAY; they have no biases).

    Frozen parameters (e.g. the BNNeck biases) are left out.
    """
    weights, biases, classifiers = [], [], []
    fc_factor = 2.0 if cfg.SOLVER.LARGE_FC_LR else cfg.SOLVER.CLASSIFIER_LR_FACTOR
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith("bias"):
            biases.append(param)
        elif fc_factor != 1 and name.split(".")[0].startswith("classifier"):
            classifiers.append(param)
        else:
            weights.append(param)
    base_lr = cfg.SOLVER.BASE_LR
    groups = [
        {"params": weights, "lr": base_lr, "weight_decay": cfg.SOLVER.WEIGHT_DECAY, "name": "weights"},
        {"params": biases, "lr": base_lr * cfg.SOLVER.BIAS_LR_FACTOR,
         "weight_decay": cfg.SOLVER.WEIGHT_DECAY_BIAS, "name": "biases"},
        {"params": classifiers, "lr": base_lr * fc_factor, "weight_decay": cfg.SOLVER.WEIGHT_DECAY,
         "name": "classifiers"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW/Adam (SOLVER.OPTIMIZER_NAME) over `param_groups`, with PyTorch's fused kernels
    (on CPU too: the demo's AdamW step takes 6 ms fused against 17 ms with foreach)."""
    groups = param_groups(cfg, model)
    name = cfg.SOLVER.OPTIMIZER_NAME
    if name == "SGD":
        return torch.optim.SGD(groups, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM, fused=True)
    if name in ("Adam", "AdamW"):
        return getattr(torch.optim, name)(groups, lr=cfg.SOLVER.BASE_LR, fused=True)
    raise ValueError(f"SOLVER.OPTIMIZER_NAME must be SGD, Adam or AdamW, got {name!r}")


def build_scheduler(cfg, optimizer: torch.optim.Optimizer) -> CosineLRScheduler:
    """Per-epoch cosine schedule with linear warm-up; call `.step(epoch)` before each epoch, epoch 1-based."""
    base_lr = cfg.SOLVER.BASE_LR
    return CosineLRScheduler(
        optimizer,
        t_initial=cfg.SOLVER.MAX_EPOCHS,
        lr_min=cfg.SOLVER.LR_MIN_FACTOR * base_lr,
        warmup_t=cfg.SOLVER.WARMUP_EPOCHS,
        warmup_lr_init=cfg.SOLVER.WARMUP_FACTOR * base_lr,
        cycle_limit=1,
        t_in_epochs=True,
    )
