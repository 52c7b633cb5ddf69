"""Configuration: YAML files plus dotted command-line overrides, validated against the defaults.

    cfg = load_config("configs/market1501.yaml", ["SOLVER.BASE_LR", "0.004"])

Unknown keys and wrong types fail with an error naming the key (and where it came from) and
the closest valid key, before any work starts.
"""
from __future__ import annotations

import ast
import difflib
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from yacs.config import CfgNode as CN

from ..errors import UserError
from .defaults import get_cfg_defaults

__all__ = ["CN", "ConfigError", "get_cfg_defaults", "load_config", "merge_dict", "merge_opts", "config_hash"]

# Reference-implementation values that name the same thing differently here.
MODEL_NAME_ALIASES = {"skeleton_transformer": "pfd", "transformer": "vit_baseline"}


class ConfigError(UserError, ValueError):
    """A configuration key or value that cannot be used."""


def _all_keys(node: CN, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.extend(_all_keys(v, full + ".") if isinstance(v, CN) else [full])
    return keys


def _suggest(key: str, cfg: CN) -> str:
    close = difflib.get_close_matches(key, _all_keys(cfg), n=1, cutoff=0.5)
    if not close:  # match on the last component alone, e.g. "SKT_THRESH" under the wrong section
        leaf = key.rsplit(".", 1)[-1]
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in _all_keys(cfg)}
        hit = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        close = [by_leaf[hit[0]]] if hit else []
    return f"; did you mean {close[0]}?" if close else ""


def _literal_string(value: str) -> Any:
    """Reference configs write tuples as strings, e.g. NAMES: ('occ_duke'); unwrap those."""
    text = value.strip()
    if text.startswith("(") and text.endswith(")"):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return value
    return value


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Return `value` converted to the type of `default`, or raise ConfigError."""
    if isinstance(value, str) and not isinstance(default, str):
        value = _literal_string(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "on", "off"}:
            return value.lower() in {"true", "yes", "on"}
    elif isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not (isinstance(default, int) and isinstance(value, float) and not value.is_integer()):
                return type(default)(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return str(_literal_string(value)) if value.strip().startswith("(") else value
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            return ",".join(value)
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            value = list(value)
            if default and value and isinstance(default[0], (int, float)):
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                    return [type(default[0])(v) for v in value]
            else:
                return value
    raise ConfigError(
        f"{source}: {key} expects {type(default).__name__} like {default!r}, got {value!r} "
        f"({type(value).__name__})"
    )


def merge_dict(cfg: CN, values: dict, source: str, prefix: str = "") -> None:
    """Merge a nested dict (from YAML) into `cfg`, validating every key and type."""
    for k, v in values.items():
        key = f"{prefix}{k}"
        node, leaf = _lookup(cfg, key, source)
        default = node[leaf]
        if isinstance(default, CN):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {key} is a section; expected a mapping, got {v!r}")
            merge_dict(cfg, v, source, key + ".")
        else:
            node[leaf] = _coerce(key, v, default, source)


def _lookup(cfg: CN, key: str, source: str) -> tuple[CN, str]:
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, CN) or part not in node:
            raise ConfigError(f"{source}: unknown config key {key}{_suggest(key, cfg)}")
        if i < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


def merge_opts(cfg: CN, opts: Sequence[str], source: str = "command line") -> None:
    """Merge `KEY VALUE KEY VALUE ...` overrides; values are parsed as YAML scalars/lists."""
    if len(opts) % 2:
        raise ConfigError(f"{source}: overrides come in KEY VALUE pairs, got an odd count: {list(opts)}")
    for key, text in zip(opts[::2], opts[1::2]):
        node, leaf = _lookup(cfg, key, source)
        if isinstance(node[leaf], CN):
            raise ConfigError(f"{source}: {key} is a section, not a value")
        # String keys keep the text as typed (YAML would turn "yes" into True, "123" into 123).
        value = text if isinstance(node[leaf], str) else yaml.safe_load(text)
        node[leaf] = _coerce(key, value, node[leaf], source)


def _normalize(cfg: CN) -> None:
    cfg.MODEL.NAME = MODEL_NAME_ALIASES.get(cfg.MODEL.NAME, cfg.MODEL.NAME)
    if cfg.MODEL.NAME not in ("pfd", "vit_baseline"):
        raise ConfigError(f"MODEL.NAME must be pfd or vit_baseline (or skeleton_transformer), got {cfg.MODEL.NAME!r}")
    choices = {
        "MODEL.PVM_MODE": ("reference", "paper"),
        "MODEL.PUSH_LOSS": ("reference", "paper"),
        "MODEL.FEAT_KIND": ("full", "global", "global_visible"),
        "MODEL.POSE_BACKEND": ("auto", "hrnet", "mediapipe", "file", "synthetic"),
        "MODEL.POSE_ARCH": ("hrnet_w32", "hrnet_w48"),
        "MODEL.POSE_INPUT_NORM": ("reference", "imagenet"),
        "MODEL.PRETRAIN_CHOICE": ("imagenet", "self", "none"),
        "SOLVER.AMP": ("auto", "bf16", "fp16", "fp32"),
        "DATALOADER.SAMPLER": ("softmax_triplet", "softmax"),
    }
    for key, allowed in choices.items():
        section, leaf = key.split(".")
        if cfg[section][leaf] not in allowed:
            raise ConfigError(f"{key} must be one of {allowed}, got {cfg[section][leaf]!r}")
    if cfg.MODEL.PVM_MODE == "reference" and cfg.MODEL.QUERY_NUM != 17:
        raise ConfigError(
            f"MODEL.QUERY_NUM={cfg.MODEL.QUERY_NUM} needs MODEL.PVM_MODE paper; "
            "the reference PVM indexes keypoints by view and requires 17 views"
        )


def load_config(path: str | Path | None = None, opts: Iterable[str] = ()) -> CN:
    """Defaults, then the YAML file at `path`, then `opts`; validated and frozen."""
    cfg = get_cfg_defaults()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        with path.open() as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(values).__name__}")
        merge_dict(cfg, values, str(path))
    merge_opts(cfg, list(opts))
    _normalize(cfg)
    cfg.freeze()
    return cfg


def config_hash(cfg: CN) -> str:
    """A short stable hash of everything that changes the model's features."""
    import hashlib

    keys = ("MODEL.NAME", "MODEL.TRANSFORMER_TYPE", "MODEL.VIT_DEPTH", "MODEL.STRIDE_SIZE", "MODEL.SIE_CAMERA",
            "MODEL.SIE_COE", "MODEL.SKT_THRES", "MODEL.QUERY_NUM", "MODEL.NUM_DECODER_LAYER", "MODEL.NUM_HEAD",
            "MODEL.DECODER_FFN_DIM", "MODEL.PVM_MODE", "MODEL.DECODER_FFN_RESIDUAL", "MODEL.FEAT_KIND",
            "INPUT.SIZE_TEST", "INPUT.PIXEL_MEAN", "INPUT.PIXEL_STD", "INPUT.HEATMAP_SIGMA")
    text = repr([(k, cfg[k.split(".")[0]][k.split(".")[1]]) for k in keys])
    return hashlib.sha256(text.encode()).hexdigest()[:12]
