"""The config hash: equal hashes, equal evaluation features from the same weights.

It covers exactly the keys the schema flags `feature` (FEATURE_KEYS): everything that changes the feature
computed from given weights, or the heatmaps it is computed from (tests/config/test_config_hash.py changes every
key and checks that a changed feature always comes with a changed hash). Checkpoints, indexes and
metrics.json store it; its recipe never changes, so every stored hash stays valid.
"""
from __future__ import annotations

import hashlib
from typing import Any

from yacs.config import CfgNode as CN

from .checks import value
from .schema import FEATURE_KEYS, SCHEMA

__all__ = ["feature_config", "config_hash"]


def feature_config(cfg: CN) -> dict[str, Any]:
    """{key: value} of FEATURE_KEYS: everything that decides the evaluation feature of given weights."""
    return {key: value(cfg, key) for key in FEATURE_KEYS}


def config_hash(cfg: CN) -> str:
    """A short stable hash of `feature_config`, less the keys `added_later` left at their default."""
    hashed = {key: v for key, v in feature_config(cfg).items()
              if not (SCHEMA[key].added_later and v == SCHEMA[key].default)}
    return hashlib.sha256(repr(sorted(hashed.items())).encode()).hexdigest()[:12]
