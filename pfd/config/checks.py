"""The checks of a merged config, before any work starts: each key against its declaration (pfd.config.schema),
then the rules that tie keys together, then one warning per reference-only key that would change the
reference's behaviour. Every refusal is a ConfigError naming the key, where its value came from (a file or
the command line: `origins`) and what is allowed.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from yacs.config import CfgNode as CN

from ..skeleton import NUM_KEYPOINTS
from .schema import SCHEMA, ConfigError, Key

__all__ = ["check_config", "value"]

_warned: set[tuple[str, str]] = set()  # (key, value) already warned about in this process
_log = logging.getLogger(__name__)


def value(cfg: CN, key: str) -> Any:
    """The value of a dotted key, e.g. value(cfg, "MODEL.NAME")."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_config(cfg: CN, origins: dict[str, str]) -> None:
    """Refuse `cfg` (a merged config, reference aliases already resolved) unless every key and combination is
    usable; then warn about reference-only keys (last: a refused config prints no warnings first)."""
    for name, key in SCHEMA.items():
        if not key.reference_only:
            _check_key(name, key, value(cfg, name), origins.get(name, "defaults"))
    _check_batch(cfg, origins)
    _check_overlapping_switches(cfg, origins)
    _check_model(cfg, origins)
    _warn_reference_only(cfg, origins)


def _check_key(name: str, key: Key, val: Any, where: str) -> None:
    """`val` holds to `key`'s choices, form, range, length and rule."""
    def fail(expected: str) -> None:
        raise ConfigError(f"{where}: {name} must be {expected}, got {val!r}")

    values = val if isinstance(val, list) else [val]
    if key.choices and isinstance(val, list) and (not val or any(v not in key.choices for v in val)):
        fail(f"a non-empty list of {', '.join(key.choices)}")
    if key.choices and not isinstance(val, list) and val not in key.choices:
        fail(f"one of {', '.join(key.choices)}" if len(key.choices) > 1 else
             f"{key.choices[0]!r} (the only one this project implements)")
    if key.form and not re.fullmatch(key.form, val):
        fail(key.allowed)
    each = " (each element)" if isinstance(val, list) else ""
    if key.low is not None and key.high is not None and not all(key.low <= v <= key.high for v in values):
        fail(f"in [{key.low}, {key.high}]{each}")
    if key.low is not None and key.high is None and any(v < key.low for v in values):
        fail(f">= {key.low}{each}")
    if key.positive and not all(v > 0 for v in values):
        fail(f"> 0{each}")
    if key.length is not None and len(val) != key.length:
        raise ConfigError(f"{where}: {name} expects {key.length} values ({key.parts}), got {list(val)}")
    if key.rule is not None:
        try:
            key.rule(val)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None


def _check_batch(cfg: CN, origins: dict[str, str]) -> None:
    """A PK batch that NUM_INSTANCE does not divide fails at load, not when the sampler is built after the
    pose pass (issue 23)."""
    batch, instances = cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE
    if cfg.DATALOADER.SAMPLER == "softmax_triplet" and batch % instances:
        where = origins.get("SOLVER.IMS_PER_BATCH") or origins.get("DATALOADER.NUM_INSTANCE", "defaults")
        raise ConfigError(f"{where}: SOLVER.IMS_PER_BATCH {batch} must be a multiple of DATALOADER.NUM_INSTANCE "
                          f"{instances} (a PK batch holds P identities x {instances} images each); e.g. "
                          f"SOLVER.IMS_PER_BATCH {max(instances, batch - batch % instances)}")


def _check_overlapping_switches(cfg: CN, origins: dict[str, str]) -> None:
    """Switches that set the same thing are refused together, with one message naming both.

    SOLVER.LARGE_FC_LR is the reference's classifiers-at-2x switch, SOLVER.CLASSIFIER_LR_FACTOR ours.
    MODEL.DISENTANGLE false leaves no occluded feature to push away (f_l = 0), so it turns the push loss
    off by itself (pfd.model.losses.build_loss); a PUSH_LOSS_WEIGHT above 0 set beside it is refused.
    """
    if cfg.SOLVER.LARGE_FC_LR and cfg.SOLVER.CLASSIFIER_LR_FACTOR != 1:
        raise ConfigError(
            f"{origins.get('SOLVER.LARGE_FC_LR', 'defaults')}: SOLVER.LARGE_FC_LR (the reference's classifiers at "
            f"2x the LR) and SOLVER.CLASSIFIER_LR_FACTOR {cfg.SOLVER.CLASSIFIER_LR_FACTOR} "
            f"({origins.get('SOLVER.CLASSIFIER_LR_FACTOR', 'defaults')}) both set the classifiers' LR; keep one")
    if not cfg.MODEL.DISENTANGLE and "MODEL.PUSH_LOSS_WEIGHT" in origins and cfg.MODEL.PUSH_LOSS_WEIGHT > 0:
        raise ConfigError(
            f"{origins['MODEL.PUSH_LOSS_WEIGHT']}: MODEL.PUSH_LOSS_WEIGHT {cfg.MODEL.PUSH_LOSS_WEIGHT} with "
            f"MODEL.DISENTANGLE false ({origins.get('MODEL.DISENTANGLE', 'defaults')}): without disentangling there "
            "is no occluded feature to push away, so the push loss is off; drop MODEL.PUSH_LOSS_WEIGHT")


def _check_model(cfg: CN, origins: dict[str, str]) -> None:
    """Model keys that only work together: PFD's depth, the conv stem's strides and sizes, the reference
    PVM's one view per keypoint."""
    if cfg.MODEL.NAME == "pfd" and cfg.MODEL.VIT_DEPTH == 1:
        raise ConfigError(f"{origins.get('MODEL.VIT_DEPTH')}: MODEL.VIT_DEPTH 1 is too shallow for PFD, which needs at "
                          "least 2 blocks (the last one becomes b2); use 2 or more, or 0 for the architecture's own")
    if cfg.MODEL.PATCH_EMBED == "conv_stem":
        _check_conv_stem(cfg, origins)
    if cfg.MODEL.PVM_MODE == "reference" and cfg.MODEL.QUERY_NUM != NUM_KEYPOINTS:
        raise ConfigError(
            f"MODEL.QUERY_NUM={cfg.MODEL.QUERY_NUM} needs MODEL.PVM_MODE paper; "
            f"the reference PVM indexes keypoints by view and requires {NUM_KEYPOINTS} views"
        )


def _check_conv_stem(cfg: CN, origins: dict[str, str]) -> None:
    """The conv stem downsamples by 8 before its projection: strides 8 or 16, sizes that 8 divides,
    and no ImageNet weights (they hold a 16x16 linear patch embedding)."""
    where = origins.get("MODEL.PATCH_EMBED", "defaults")
    if any(s not in (8, 16) for s in cfg.MODEL.STRIDE_SIZE):
        raise ConfigError(f"{where}: MODEL.PATCH_EMBED conv_stem needs MODEL.STRIDE_SIZE of 8 or 16 per axis, "
                          f"got {list(cfg.MODEL.STRIDE_SIZE)}; use linear for other strides")
    for key in ("INPUT.SIZE_TRAIN", "INPUT.SIZE_TEST"):
        if any(v % 8 for v in value(cfg, key)):
            raise ConfigError(f"{where}: MODEL.PATCH_EMBED conv_stem needs {key} divisible by 8, "
                              f"got {list(value(cfg, key))}")
    if cfg.MODEL.PRETRAIN_CHOICE == "imagenet" and cfg.MODEL.PRETRAIN_PATH:
        raise ConfigError(f"{where}: MODEL.PATCH_EMBED conv_stem has no ImageNet weights (they hold a linear patch "
                          f"embedding), but MODEL.PRETRAIN_PATH is {cfg.MODEL.PRETRAIN_PATH!r}; use linear to load "
                          "them, or MODEL.PRETRAIN_CHOICE none to train from scratch")


def _warn_reference_only(cfg: CN, origins: dict[str, str]) -> None:
    """One warning line per reference-only key set to a value that would change the reference's behaviour:
    anything but the default, for `only_with` keys only while their switch is on (once per key and value in
    a process: a config is often loaded again, e.g. from a checkpoint)."""
    for name, key in SCHEMA.items():
        val = value(cfg, name)
        if (not key.reference_only or val == key.default or (key.only_with and not value(cfg, key.only_with))
                or (name, repr(val)) in _warned):
            continue
        _warned.add((name, repr(val)))
        _log.warning("%s: %s %s has no effect here (accepted for the reference's configs; %s)",
                     origins.get(name, "defaults"), name, val, key.reference_only)
