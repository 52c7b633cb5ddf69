"""Loading a config: the defaults, then a YAML file (or stored YAML text), then `KEY VALUE` overrides; each
value converted to its key's type, the result checked (pfd.config.checks), reference-only keys dropped, frozen.

    cfg = load_config("configs/market1501.yaml", ["SOLVER.BASE_LR", "0.004"])

Unknown keys (with the closest valid name), wrong types and YAML syntax errors fail naming the key, where
its value came from (file or command line) and what is allowed, before any work starts.
"""
from __future__ import annotations

import ast
import difflib
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from yacs.config import CfgNode as CN

from .checks import check_config
from .schema import REFERENCE_ONLY, SCHEMA, ConfigError, get_cfg_defaults

__all__ = ["load_config", "config_from_text", "merge_dict", "merge_opts"]


def load_config(path: str | Path | None = None, opts: Iterable[str] = ()) -> CN:
    """Defaults, then the YAML file at `path`, then `opts`; validated and frozen."""
    if path is None:
        return _build({}, "defaults", opts)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return _build(_parse_yaml(path.read_text(), str(path)), str(path), opts)


def config_from_text(text: str, opts: Iterable[str] = (), source: str = "config text") -> CN:
    """Like `load_config`, from YAML text (e.g. the config a checkpoint or an index stores); errors name `source`."""
    return _build(_parse_yaml(text, source), source, opts)


def merge_dict(cfg: CN, values: dict, source: str, prefix: str = "", origins: dict | None = None) -> None:
    """Merge a nested dict (from YAML) into `cfg`, validating every key and type; `origins` records
    key -> source for the value checks' messages."""
    for k, v in values.items():
        key = f"{prefix}{k}"
        node, leaf = _lookup(cfg, key, source)
        default = node[leaf]
        if isinstance(default, CN):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {key} is a section; expected a mapping, got {v!r}")
            merge_dict(cfg, v, source, key + ".", origins)
        else:
            node[leaf] = _coerce(key, v, default, source)
            if origins is not None:
                origins[key] = source


def merge_opts(cfg: CN, opts: Sequence[str], source: str = "command line", origins: dict | None = None) -> None:
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
        if origins is not None:
            origins[key] = source


def _build(values: Any, source: str, opts: Iterable[str]) -> CN:
    cfg, origins = get_cfg_defaults(), {}
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(values).__name__}")
    merge_dict(cfg, values, source, origins=origins)
    merge_opts(cfg, list(opts), origins=origins)
    for name, key in SCHEMA.items():  # the reference's names for some values, e.g. MODEL.NAME transformer
        if key.aliases:
            node, leaf = _lookup(cfg, name, source)
            node[leaf] = key.aliases.get(node[leaf], node[leaf])
    check_config(cfg, origins)
    for name in REFERENCE_ONLY:  # accepted and warned about; nothing reads them
        node, leaf = _lookup(cfg, name, source)
        del node[leaf]
    cfg.freeze()
    return cfg


def _lookup(cfg: CN, key: str, source: str) -> tuple[CN, str]:
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, CN) or part not in node:
            raise ConfigError(f"{source}: unknown config key {key}{_suggest(key)}")
        if i < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, list(SCHEMA), n=1, cutoff=0.5)
    if not close:  # match on the last component alone, e.g. "SKT_THRESH" under the wrong section
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in SCHEMA}
        hit = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_leaf), n=1, cutoff=0.6)
        close = [by_leaf[hit[0]]] if hit else []
    return f"; did you mean {close[0]}?" if close else ""


def _parse_yaml(text: str, source: str) -> Any:
    """The YAML document in `text`; a syntax error names `source`, its line and column (1-based)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        raise ConfigError(f"{where}: YAML syntax error: {problem}" + (f" ({context})" if context else "")) from None


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
