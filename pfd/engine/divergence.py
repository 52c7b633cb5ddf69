"""A diverged training stops with the epoch, iteration and loss parts, and is never checkpointed.

`LossWatch.observe(losses)` runs in every step without a host synchronization: it keeps, on the
device, the first step of the epoch whose loss parts were not all finite, and those parts.
`LossWatch.check` (one synchronization) raises at the logging period and at the end of the epoch,
before any checkpoint; `check_finite_weights` is the last guard before a checkpoint is written.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError

__all__ = ["LossWatch", "TrainingDivergedError", "check_finite_weights"]

ADVICE = "lower SOLVER.BASE_LR, set SOLVER.GRAD_CLIP (e.g. 5.0) or train with SOLVER.AMP fp32"


class TrainingDivergedError(UserError, ArithmeticError):
    """The loss or the weights stopped being finite."""


class LossWatch:
    """The first non-finite loss of an epoch, tracked on the device; `reset()` at each epoch start."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._names: tuple[str, ...] = ()
        self._steps = self._first = self._parts = None

    def observe(self, losses: dict[str, torch.Tensor]) -> None:
        parts = torch.stack([value.detach().float() for value in losses.values()])  # [P]
        if self._steps is None:
            self._names = tuple(losses)
            self._steps = torch.zeros((), dtype=torch.long, device=parts.device)
            self._first = torch.full((), -1, dtype=torch.long, device=parts.device)  # -1: all finite so far
            self._parts = torch.zeros_like(parts)
        self._steps += 1
        new = (self._first < 0) & ~torch.isfinite(parts).all()
        self._first = torch.where(new, self._steps, self._first)
        self._parts = torch.where(new, parts, self._parts)

    def check(self, epoch: int, steps_per_epoch: int, last_checkpoint: str) -> None:
        """Raise TrainingDivergedError if a loss of this epoch (0-based `epoch`) was not finite."""
        if self._first is None or int(self._first) < 0:
            return
        parts = ", ".join(f"{name} {value:.4g}" for name, value in zip(self._names, self._parts.tolist()))
        raise TrainingDivergedError(
            f"the loss is not finite at epoch {epoch + 1}, iteration {int(self._first)} of {steps_per_epoch} "
            f"({parts}); stopped before writing any checkpoint of this epoch ({last_checkpoint} is left as it "
            f"was): {ADVICE}")


def check_finite_weights(module: nn.Module, epochs_done: int, path: str) -> None:
    """Raise TrainingDivergedError, naming the tensors, if a weight or buffer of `module` is not finite."""
    floats = [(name, t) for name, t in module.state_dict().items() if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for _, t in floats]).tolist()  # one synchronization
    bad = [name for (name, _), ok in zip(floats, finite) if not ok]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise TrainingDivergedError(
            f"after epoch {epochs_done} the model holds non-finite values ({shown}); {path} was not written "
            f"(it keeps the last finite epoch): {ADVICE}")
