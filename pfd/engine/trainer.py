"""The training loop: PK batches, SGD + per-epoch cosine LR, AMP, DDP, checkpoints, evaluation.

Exact resumption: every source of randomness in an epoch is a function of (seed, epoch, rank) —
the sampler via `set_epoch`, augmentation, dropout and worker seeds via `seed_epoch` — and
`last.pth` is written atomically after every epoch, so a run killed at any moment and resumed
from `last.pth` repeats at most the epoch in progress and ends with the same weights.

Evaluation (every EVAL_PERIOD epochs and after the last, in TEST.AMP precision) only reports the
test sets: the number to quote is the last epoch's. An epoch's checkpoint is written before its
evaluation, marked `evaluation_pending`, so an evaluation that fails (a gallery image damaged
since the start) or is killed loses no training; resuming from it runs that evaluation first.
`best.pth` exists only with DATASETS.VAL_IDS, selected on identities held out of the training set,
never on a test set.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..config import config_hash
from ..data.loader import build_train_loader
from ..data.occlude.augment import build_batch_occluder
from ..data.sets import load_training_set
from ..data.validation import hold_out_validation
from ..distributed import DistInfo, broadcast_buffers, init_distributed
from ..errors import InvalidInputError, outputs_kept
from ..inference.checkpoint import (
    FORMAT,
    config_differences,
    describe_checkpoint,
    format_differences,
    load_checkpoint,
    resume_blockers,
)
from ..io import atomic_save
from ..model import build_loss, build_model
from ..pose.heatmap_maker import HeatmapMaker
from ..precision import autocast, autocast_dtype, build_grad_scaler, dtype_name, eval_dtype
from ..retrieval.plots import plot_training_curves
from ..state_dict import check_finite_state
from .checkpoint import atomic_copy, resolve_resume, rng_state, set_rng_state, unwrap_model
from .divergence import LossWatch, check_finite_weights
from .evaluator import TestSet, evaluate_test_sets, prepare_test_sets, ranks_reported
from .logger import MetricsWriter, setup_logger
from .rundir import LOCK_FILE, RunLock, claim_run_dir, refuse_existing_run, refuse_foreign_files, replace_run
from .solver import build_optimizer, build_scheduler

__all__ = ["Trainer", "seed_epoch", "train"]

EpochHook = Callable[["Trainer", int], None]
CURVES_FILE = "training_curves.png"  # beside log.txt and metrics.jsonl


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed torch, numpy and random from (seed, epoch, rank): DataLoader worker seeds, augmentation
    and dropout then depend on nothing else."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2)
    torch.manual_seed(int(state[0]))
    np.random.seed(int(state[1]))
    random.seed(int(state[1]))


class Trainer:
    """Owns model, optimizer, scheduler, scaler and data for one run; `fit()` trains to MAX_EPOCHS.

    `epoch_hooks` are called after each epoch's checkpoint as `hook(trainer, epochs_done)`; tests use
    one to interrupt a run at a known point. `replace` deletes an earlier run of ours in OUTPUT_DIR
    (rundir.replace_run: refused when a file of the user's is there).
    """

    def __init__(self, cfg, dist_info: DistInfo | None = None, epoch_hooks: Sequence[EpochHook] = (),
                 replace: bool = False):
        self.cfg = cfg
        if replace and cfg.MODEL.RESUME:
            raise InvalidInputError("--replace starts the run over and --resume continues it: pass one of them")
        self.dist = dist_info or init_distributed(cfg.MODEL.DEVICE)
        self.device = self.dist.device
        # A user's folder is refused before anything is written; rank 0 alone claims it (and writes there).
        self.output_dir = claim_run_dir(cfg.OUTPUT_DIR) if self.dist.rank == 0 else Path(cfg.OUTPUT_DIR)
        if replace:
            refuse_foreign_files(self.output_dir)  # before the lock: a user's file there is refused untouched
        elif not cfg.MODEL.RESUME:  # never train over another run
            refuse_existing_run(self.output_dir)
        self.logger = setup_logger(None, self.dist.rank)  # stderr only until OUTPUT_DIR is settled
        self.lock = RunLock.acquire(self.output_dir / LOCK_FILE) if self.dist.is_main else None
        try:
            if replace and self.dist.is_main:  # under the lock: no other training is using the folder
                replace_run(self.output_dir)
            self.logger = setup_logger(self.output_dir, self.dist.rank)  # + OUTPUT_DIR/log.txt
            self._setup(cfg, epoch_hooks)
        except BaseException:
            self.close()
            raise

    def _setup(self, cfg, epoch_hooks: Sequence[EpochHook]) -> None:
        self.metrics_log = MetricsWriter(self.output_dir, enabled=self.dist.is_main)
        self.epoch_hooks = list(epoch_hooks)
        self.loss_watch = LossWatch()

        self.dataset, keypoints = load_training_set(cfg, self.dist.world_size)
        self.val_sets: list[TestSet] = []  # best.pth is selected on this split, never on a test set
        if cfg.DATASETS.VAL_IDS > 0:
            self.dataset, val = hold_out_validation(self.dataset, cfg.DATASETS.VAL_IDS, cfg.SOLVER.SEED,
                                                    min_train_ids=ids_per_batch(cfg))
            self.val_sets = [TestSet(val.name, val, keypoints)]
        self.train_loader = build_train_loader(cfg, self.dataset, keypoints, self.dist.rank, self.dist.world_size)
        self.test_sets = prepare_test_sets(cfg) if cfg.TEST.EVAL else []

        torch.manual_seed(cfg.SOLVER.SEED)  # identical initial weights on every rank
        self.num_classes, self.num_cameras = self.dataset.num_train_pids, self.dataset.num_cameras
        self.model = build_model(cfg, self.num_classes, self.num_cameras).to(self.device)
        self.loss_fn = build_loss(cfg)
        self.heatmaps = HeatmapMaker(cfg, cfg.INPUT.SIZE_TRAIN).to(self.device)
        self.occluder = build_batch_occluder(cfg)  # INPUT.OCCLUDE_PROB; None = off (the reference)
        if self.occluder is not None:
            self.occluder.to(self.device)
        self.eval_heatmaps = HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST, evaluation=True).to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer)
        self.amp_dtype = autocast_dtype(cfg.SOLVER.AMP, self.device)
        self.eval_dtype = eval_dtype(cfg, self.device)
        self.scaler = build_grad_scaler(self.device, self.amp_dtype)
        self.start_epoch, self.best_val_map, self.evaluation_pending = 0, -1.0, False
        self.config_hash = config_hash(cfg)

        resume = resolve_resume(cfg.MODEL.RESUME, self.output_dir)
        if resume is not None:
            self.load(resume)
        elif cfg.MODEL.RESUME == "auto":
            self.logger.info("--resume: no %s yet, starting from epoch 0", self.output_dir / "last.pth")
        self.train_model = self._wrap(self.model)

    def close(self) -> None:
        """Release OUTPUT_DIR's lock (fit() does it when it ends, however it ends)."""
        if self.lock is not None:
            self.lock.release()

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        if self.cfg.SOLVER.COMPILE:
            model = torch.compile(model)
        return model

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, epochs_done: int, evaluation_pending: bool = False) -> dict:
        return {
            "format": FORMAT,
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epochs_done,
            "best_val_map": self.best_val_map,
            "evaluation_pending": evaluation_pending,
            "rng": rng_state(),
            "config": self.cfg.dump(),
            "config_hash": self.config_hash,
            "num_classes": self.num_classes,
            "num_cameras": self.num_cameras,
        }

    def load(self, path: Path) -> None:
        """Resume from one of our training checkpoints."""
        ckpt = load_checkpoint(path)
        if ckpt.get("format") != FORMAT or "optimizer" not in ckpt:
            raise InvalidInputError(f"{path}: not a pfd training checkpoint (format {ckpt.get('format')!r}); "
                                    f"resume needs one written by train.py")
        self._check_resumable(path, ckpt)
        if (ckpt["num_classes"], ckpt["num_cameras"]) != (self.num_classes, self.num_cameras):
            raise InvalidInputError(f"{path}: checkpoint has {ckpt['num_classes']} ids/{ckpt['num_cameras']} cameras, "
                                    f"{self.cfg.DATASETS.NAMES} has {self.num_classes}/{self.num_cameras}")
        check_finite_state(ckpt["model"], path)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise InvalidInputError(f"{path}: its weights or optimizer state do not fit the configured run "
                                    f"({str(err).splitlines()[0]})") from err
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"] and self.scaler.is_enabled():  # empty unless the run used fp16
            self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.start_epoch, self.best_val_map = int(ckpt["epoch"]), float(ckpt.get("best_val_map", -1.0))
        self.evaluation_pending = bool(ckpt.get("evaluation_pending", False))
        self.logger.info("resumed from %s at epoch %d", path, self.start_epoch)

    def _check_resumable(self, path: Path, ckpt: dict) -> None:
        """Refuse a checkpoint whose stored config differs in a key the run cannot absorb (model,
        data, optimizer, schedule...), naming the keys; allowed changes (RESUME_FREE) are logged."""
        if not ckpt.get("config"):
            return
        diffs = config_differences(ckpt["config"], self.cfg)
        blockers = resume_blockers(diffs)
        if blockers:
            raise InvalidInputError(
                f"{path} is {describe_checkpoint(ckpt)}; the run cannot continue faithfully with a changed "
                f"{format_differences(blockers)}. Resume with the stored values, or train into a new OUTPUT_DIR "
                f"(MODEL.PRETRAIN_CHOICE self, MODEL.PRETRAIN_PATH {path} starts from these weights)")
        diffs.pop("MODEL.RESUME", None)  # how this run was started (--resume or not) is no change to report
        if diffs:
            self.logger.warning("resuming %s with changed %s", path, format_differences(diffs))

    def save(self, epochs_done: int, improved: bool, evaluation_pending: bool = False, copies: bool = True) -> None:
        """last.pth (and with `copies`, epoch_NNN.pth when due); best.pth when `improved`."""
        if not self.dist.is_main:
            return
        check_finite_weights(unwrap_model(self.model), epochs_done, str(self.output_dir / "last.pth"))
        last = atomic_save(self.state_dict(epochs_done, evaluation_pending), self.output_dir / "last.pth")
        period = self.cfg.SOLVER.CHECKPOINT_PERIOD
        due = epochs_done == self.cfg.SOLVER.MAX_EPOCHS or (period > 0 and epochs_done % period == 0)
        if copies and due:
            atomic_copy(last, self.output_dir / f"epoch_{epochs_done:03d}.pth")  # serialized once, copied
        if improved:
            atomic_copy(last, self.output_dir / "best.pth")

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict:
        """Train from `start_epoch` to MAX_EPOCHS; returns the last evaluation's metrics (rank 0).
        OUTPUT_DIR's lock is released when it returns or raises; from here on the run folder is kept
        whatever happens (a refusal while setting up removed it: pfd.errors.outputs_kept)."""
        outputs_kept()
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> dict:
        cfg, last_metrics = self.cfg, {}
        self.logger.info("training %s on %s: %d ids, %d images, %d rank(s), device %s, amp %s, eval %s, config %s",
                         cfg.MODEL.NAME, cfg.DATASETS.NAMES, self.num_classes, len(self.dataset.train),
                         self.dist.world_size, self.device, dtype_name(self.amp_dtype), dtype_name(self.eval_dtype),
                         self.config_hash)
        if self.evaluation_pending:  # the run stopped during this epoch's evaluation: run it now
            last_metrics = self._evaluate_and_record(self.start_epoch)
        for epoch in range(self.start_epoch, cfg.SOLVER.MAX_EPOCHS):
            seed_epoch(cfg.SOLVER.SEED, epoch, self.dist.rank)
            self.train_loader.sampler.set_epoch(epoch)
            self.scheduler.step(epoch + 1)  # 1-based, as the reference: epoch 1 already runs one warm-up step up
            stats = self.train_one_epoch(epoch)
            epochs_done = epoch + 1
            self.logger.info("epoch %d/%d %s", epochs_done, cfg.SOLVER.MAX_EPOCHS,
                             " ".join(f"{k} {v:.4g}" for k, v in stats.items()))
            self.metrics_log.write("train", epoch=epochs_done, **stats)
            period = cfg.SOLVER.EVAL_PERIOD
            last_epoch = epochs_done == cfg.SOLVER.MAX_EPOCHS
            due = last_epoch or (period > 0 and epochs_done % period == 0)
            evaluated = bool(self.test_sets or self.val_sets) and due
            self.save(epochs_done, improved=False, evaluation_pending=evaluated)  # before evaluating: nothing lost
            if evaluated:
                last_metrics = self._evaluate_and_record(epochs_done)
            if self.dist.is_main and (evaluated or last_epoch):  # the curves so far, beside the log
                plot_training_curves(self.metrics_log.path, self.output_dir / CURVES_FILE)
            for hook in self.epoch_hooks:
                hook(self, epochs_done)
        return last_metrics

    def _evaluate_and_record(self, epochs_done: int) -> dict:
        """Evaluate, select best.pth on the validation split, and clear last.pth's evaluation_pending mark
        (last.pth rewritten with the new best_val_map; the periodic copy was made before evaluating)."""
        metrics, improved = self.evaluate(epochs_done), False
        if self.val_sets and self.dist.is_main:  # selection on held-out training ids only
            val_map = metrics[self.val_sets[0].name]["mAP"]
            improved = val_map > self.best_val_map
            self.best_val_map = max(self.best_val_map, val_map)
        self.save(epochs_done, improved, copies=False)
        self.evaluation_pending = False
        return metrics

    def train_one_epoch(self, epoch: int) -> dict:
        """One pass over the sampler; loss parts are summed on the device and synced only to log."""
        cfg = self.cfg
        self.train_model.train()
        self.loss_watch.reset()
        totals: dict[str, torch.Tensor] = {}
        seen, start = 0, time.perf_counter()
        step, log_period = 0, cfg.SOLVER.LOG_PERIOD  # LOG_PERIOD < 1: only the epoch-end summary
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCHS}",
                   disable=not self.dist.is_main, dynamic_ncols=True, leave=False)
        for step, batch in enumerate(bar, 1):
            seen += self.train_step(batch, totals)
            if log_period >= 1 and step % log_period == 0:
                self._check_loss(epoch)
                if self.dist.is_main:
                    bar.set_postfix(self._summary(totals, step, seen, start), refresh=False)
        bar.close()
        self._check_loss(epoch)  # before this epoch's checkpoint
        return self._summary(totals, max(step, 1), seen, start) | {"lr": self.optimizer.param_groups[0]["lr"]}

    def train_step(self, batch: dict, totals: dict[str, torch.Tensor]) -> int:
        """One optimization step on a loader batch; returns its number of images.

        Device copy, occluders (INPUT.OCCLUDE_PROB), heatmaps, forward + loss under autocast, scaled
        backward, optional clipping, optimizer step. The detached loss parts and the count of correct
        identity predictions ("correct") are added to `totals`, and the losses shown to the non-finite watch, on the
        device: the step never waits for the GPU. bench/train_step.py times this very method.
        """
        device = self.device
        images = batch["image"].to(device, non_blocking=True)  # [B, 3, H, W]
        keypoints = batch["keypoints"].to(device, non_blocking=True)  # [B, 17, 3]
        pids = batch["pid"].to(device, non_blocking=True)
        camids = batch["camid"].to(device, non_blocking=True)
        if self.occluder is not None:  # training only: covered keypoints get confidence 0 before the heatmaps
            images, keypoints = self.occluder(images, keypoints, pids)
        heatmaps = self.heatmaps(images, keypoints)  # [B, 17, H/4, W/4]
        with autocast(device, self.amp_dtype):
            outputs = self.train_model(images, heatmaps, camids)
            losses = self.loss_fn(outputs, pids)
        self.loss_watch.observe(losses)  # on the device: no synchronization
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        if self.cfg.SOLVER.GRAD_CLIP > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.SOLVER.GRAD_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()

        for name, value in losses.items():
            totals[name] = totals.get(name, 0) + value.detach().float()
        totals["correct"] = totals.get("correct", 0) + (outputs_logits(outputs).argmax(1) == pids).sum().float()
        return images.shape[0]

    def _check_loss(self, epoch: int) -> None:
        self.loss_watch.check(epoch, len(self.train_loader), str(self.output_dir / "last.pth"))

    def _summary(self, totals: dict, steps: int, seen: int, start: float) -> dict:
        """Host-side means of the loss parts and accuracy (one synchronization), and images/s."""
        sums = dict(zip(totals, torch.stack(list(totals.values())).tolist())) if totals else {}
        correct = sums.pop("correct", 0.0)
        stats = {name: v / steps for name, v in sums.items()}
        stats["acc"] = correct / max(seen, 1)
        stats["img_s"] = seen * self.dist.world_size / (time.perf_counter() - start)
        return {k: round(v, 4) for k, v in stats.items()}

    def evaluate(self, epochs_done: int) -> dict:
        broadcast_buffers(unwrap_model(self.model))  # every rank evaluates rank 0's (the saved) model
        results = evaluate_test_sets(unwrap_model(self.model), self.cfg, self.test_sets + self.val_sets, self.device,
                                     self.eval_heatmaps, self.eval_dtype)
        for name, m in results.items():
            cmc = m["cmc"]
            summary = {"mAP": float(m["mAP"]), **ranks_reported(cmc, (1, 5, 10)), "mINP": float(m["mINP"])}
            self.logger.info("eval %s epoch %d: %s", name, epochs_done,
                             " ".join(f"{k} {v:.2%}" for k, v in summary.items()))
            self.metrics_log.write("eval", epoch=epochs_done, dataset=name, **summary)
        return results


def ids_per_batch(cfg) -> int:
    """Training identities one batch needs: P = IMS_PER_BATCH / NUM_INSTANCE with PK sampling, else 1."""
    if cfg.DATALOADER.SAMPLER == "softmax_triplet":
        return max(1, cfg.SOLVER.IMS_PER_BATCH // cfg.DATALOADER.NUM_INSTANCE)
    return 1


def outputs_logits(outputs) -> torch.Tensor:
    """The global identity logits [B, num_classes] of a training-mode model output."""
    return outputs.enc_scores[0]


def train(cfg, epoch_hooks: Sequence[EpochHook] = (), replace: bool = False) -> dict:
    """Build a Trainer from `cfg` (torchrun-aware) and train; returns the last evaluation's metrics.
    `replace`: start over in OUTPUT_DIR, deleting an earlier run of ours there (never a user's file)."""
    trainer = Trainer(cfg, epoch_hooks=epoch_hooks, replace=replace)
    return trainer.fit()
