"""Configuration: YAML files plus dotted command-line overrides, checked against one declaration per key.

    cfg = load_config("configs/market1501.yaml", ["SOLVER.BASE_LR", "0.004"])

Modules, one job each: `schema` (every key: default, meaning, allowed values, flags), `loading` (files,
stored text and overrides), `checks` (each key against its declaration, the rules that tie keys together,
reference-only warnings), `hashing` (config_hash over the keys that change the feature), `docs` (the key
reference in docs/USAGE.md, generated from the schema). This module only re-exports.
"""
from yacs.config import CfgNode as CN

from .hashing import config_hash, feature_config
from .loading import config_from_text, load_config, merge_dict, merge_opts
from .schema import (
    COVERAGE_RULE,
    FEATURE_KEYS,
    OCCLUDER_KINDS,
    POSE_BACKENDS,
    REFERENCE_ONLY,
    RESUME_FREE,
    SCHEMA,
    SILENT,
    ConfigError,
    Key,
    get_cfg_defaults,
    valid_coverage,
)

__all__ = ["CN", "ConfigError", "COVERAGE_RULE", "FEATURE_KEYS", "Key", "OCCLUDER_KINDS", "POSE_BACKENDS",
           "REFERENCE_ONLY", "RESUME_FREE", "SCHEMA", "SILENT", "config_from_text", "config_hash", "feature_config",
           "get_cfg_defaults", "load_config", "merge_dict", "merge_opts", "valid_coverage"]
