"""Configuration: YAML files plus dotted command-line overrides, validated against the defaults.

    cfg = load_config("configs/market1501.yaml", ["SOLVER.BASE_LR", "0.004"])

Unknown keys, wrong types, values outside a key's fixed set (CHOICES) and out-of-range numbers
(MINIMUMS) fail with an error naming the key, where its value came from (file or command line) and
what is allowed, before any work starts.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from yacs.config import CfgNode as CN

from ..errors import UserError
from .defaults import get_cfg_defaults

__all__ = ["CN", "ConfigError", "FEATURE_KEYS", "NO_EFFECT", "POSE_BACKENDS", "get_cfg_defaults", "load_config",
           "config_from_text", "merge_dict", "merge_opts", "feature_config", "config_hash"]

# Every key that changes the evaluation feature computed from given weights, or the heatmaps it is
# computed from: config_hash covers exactly these (tests/test_config_hash.py changes every key and
# checks that a changed feature always comes with a changed hash).
FEATURE_KEYS = (
    # the model and its inference feature
    "MODEL.NAME", "MODEL.TRANSFORMER_TYPE", "MODEL.VIT_DEPTH", "MODEL.STRIDE_SIZE", "MODEL.PATCH_EMBED",
    "MODEL.SIE_CAMERA", "MODEL.SIE_COE", "MODEL.SKT_THRES", "MODEL.QUERY_NUM", "MODEL.NUM_DECODER_LAYER",
    "MODEL.NUM_HEAD", "MODEL.DECODER_FFN_DIM", "MODEL.PVM_MODE", "MODEL.DECODER_FFN_RESIDUAL", "MODEL.FEAT_KIND",
    "MODEL.HEAT_WEIGHT", "MODEL.PFA", "MODEL.PVM", "MODEL.DISENTANGLE", "MODEL.PART_POOL", "TEST.NECK_FEAT",
    "TEST.FLIP_FEATS", "TEST.NO_POSE",
    # the heatmaps: which pose estimator, cached or online, how they are drawn or fed
    "MODEL.POSE_BACKEND", "MODEL.POSE_ARCH", "MODEL.POSE_WEIGHT", "MODEL.POSE_FILE", "MODEL.POSE_ONLINE",
    "MODEL.POSE_INPUT_NORM", "INPUT.HEATMAP_SIGMA",
    # the input and the evaluation precision
    "INPUT.SIZE_TRAIN", "INPUT.SIZE_TEST", "INPUT.PIXEL_MEAN", "INPUT.PIXEL_STD", "TEST.AMP",
)

# MODEL.POSE_BACKEND's names besides `auto` (pfd.pose.estimator builds each; pfd.pose.base re-exports this list).
POSE_BACKENDS = ("hrnet", "mediapipe", "file", "synthetic")

# Reference-implementation values that name the same thing differently here.
MODEL_NAME_ALIASES = {"skeleton_transformer": "pfd", "transformer": "vit_baseline"}

# Every key with a fixed set of values. Keys the reference has but this project implements one way
# only (ID/metric loss, neck, center loss, warm-up) accept that value alone, so a file asking for
# something else is refused instead of silently trained without it.
CHOICES = {
    "MODEL.NAME": ("pfd", "vit_baseline"),
    "MODEL.PRETRAIN_CHOICE": ("imagenet", "self", "none"),
    "MODEL.PATCH_EMBED": ("linear", "conv_stem"),
    "MODEL.IF_LABELSMOOTH": ("on", "off"),
    "MODEL.METRIC_LOSS_TYPE": ("triplet",),
    "MODEL.ID_LOSS_TYPE": ("softmax",),
    "MODEL.PVM_MODE": ("reference", "paper"),
    "MODEL.PUSH_LOSS": ("reference", "paper"),
    "MODEL.FEAT_KIND": ("full", "global", "global_visible"),
    "MODEL.PART_POOL": ("cls", "pose"),
    "MODEL.POSE_BACKEND": ("auto", *POSE_BACKENDS),
    "MODEL.POSE_ARCH": ("hrnet_w32", "hrnet_w48"),
    "MODEL.POSE_INPUT_NORM": ("reference", "imagenet"),
    "DATALOADER.SAMPLER": ("softmax_triplet", "softmax"),
    "SOLVER.OPTIMIZER_NAME": ("SGD", "Adam", "AdamW"),
    "SOLVER.WARMUP_METHOD": ("linear",),
    "SOLVER.AMP": ("auto", "bf16", "fp16", "fp32"),
    "TEST.AMP": ("auto", "bf16", "fp16", "fp32"),
    "TEST.NECK_FEAT": ("before", "after"),
    "TEST.FEAT_NORM": ("yes", "no"),
    "TEST.VIS_ORDER": ("ap", "list"),  # pfd.retrieval.plots.VIS_ORDERS
    "TEST.NO_POSE": ("invisible", "prior"),
}
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")  # MODEL.DEVICE
# Smallest value of numeric keys (lists: of each element); periods below 1 mean "off" and are free.
MINIMUMS = {
    "SOLVER.MAX_EPOCHS": 1, "SOLVER.IMS_PER_BATCH": 1, "TEST.IMS_PER_BATCH": 1, "DATALOADER.NUM_INSTANCE": 1,
    "DATALOADER.NUM_WORKERS": 0, "SOLVER.WARMUP_EPOCHS": 0, "MODEL.VIT_DEPTH": 0, "MODEL.NUM_DECODER_LAYER": 1,
    "MODEL.NUM_HEAD": 1, "MODEL.QUERY_NUM": 1, "INPUT.SIZE_TRAIN": 16, "INPUT.SIZE_TEST": 16,
    "MODEL.STRIDE_SIZE": 1, "TEST.NUM_VIS": 0, "DATASETS.VAL_IDS": 0,
}
POSITIVE = ("SOLVER.BASE_LR", "SOLVER.CLASSIFIER_LR_FACTOR", "INPUT.HEATMAP_SIGMA")  # must be > 0
NUM_KEYPOINTS = 17  # COCO-17 (pfd.pose.keypoints): the largest lower end of a TEST.VIS_BUCKETS bucket

# Reference keys accepted so that the reference's YAML files load, but that change nothing here (what
# does the job instead). Loading warns once per key and value when a config sets one to a value that
# would change the reference's behaviour: anything but the default, for the keys of ONLY_WITH only
# while the switch they belong to is on.
NO_EFFECT = {
    "MODEL.DEVICE_ID": "select GPUs with CUDA_VISIBLE_DEVICES or torchrun",
    "MODEL.DIST_TRAIN": "distributed training is detected from torchrun",
    "MODEL.SIE_VIEW": "the view index is always 0",
    "MODEL.IF_WITH_CENTER": "there is no center loss",
    "MODEL.NECK": "the neck is always the BNNeck",
    "MODEL.LAST_STRIDE": "it applies to ResNet backbones only",
    "MODEL.COS_LAYER": "the ID classifiers are linear layers",
    "MODEL.JPM": "TransReID's jigsaw branch is not part of PFD",
    "MODEL.SHIFT_NUM": "TransReID's jigsaw branch is not part of PFD",
    "MODEL.SHUFFLE_GROUP": "TransReID's jigsaw branch is not part of PFD",
    "MODEL.DEVIDE_LENGTH": "TransReID's jigsaw branch is not part of PFD",
    "MODEL.RE_ARRANGE": "TransReID's jigsaw branch is not part of PFD",
    "SOLVER.CENTER_LR": "there is no center loss",
    "SOLVER.CENTER_LOSS_WEIGHT": "there is no center loss",
    "SOLVER.GAMMA": "the schedule is linear warm-up then cosine (SOLVER.LR_MIN_FACTOR)",
    "SOLVER.STEPS": "the schedule is linear warm-up then cosine (SOLVER.LR_MIN_FACTOR)",
    "SOLVER.COSINE_MARGIN": "the ID classifiers are linear layers",
    "SOLVER.COSINE_SCALE": "the ID classifiers are linear layers",
    "TEST.NECK_FEAT": "PFD's inference feature is set by MODEL.FEAT_KIND",
    "TEST.DIST_MAT": "the distance matrix is not written",
}
ONLY_WITH = {"MODEL.SHIFT_NUM": "MODEL.JPM", "MODEL.SHUFFLE_GROUP": "MODEL.JPM", "MODEL.DEVIDE_LENGTH": "MODEL.JPM",
             "MODEL.RE_ARRANGE": "MODEL.JPM", "SOLVER.COSINE_MARGIN": "MODEL.COS_LAYER",
             "SOLVER.COSINE_SCALE": "MODEL.COS_LAYER"}
_warned: set[tuple[str, str]] = set()  # (key, value) already warned about in this process
_log = logging.getLogger(__name__)


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


def _lookup(cfg: CN, key: str, source: str) -> tuple[CN, str]:
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, CN) or part not in node:
            raise ConfigError(f"{source}: unknown config key {key}{_suggest(key, cfg)}")
        if i < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


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


def _value(cfg: CN, key: str) -> Any:
    section, leaf = key.split(".")
    return cfg[section][leaf]


def _check_values(cfg: CN, origins: dict[str, str]) -> None:
    """Every fixed-choice key holds one of its values, every numeric key is in range."""
    def fail(key: str, expected: str) -> None:
        raise ConfigError(f"{origins.get(key, 'defaults')}: {key} must be {expected}, got {_value(cfg, key)!r}")

    for key, allowed in CHOICES.items():
        if _value(cfg, key) not in allowed:
            fail(key, f"one of {', '.join(allowed)}" if len(allowed) > 1 else
                 f"{allowed[0]!r} (the only one this project implements)")
    if not DEVICE_PATTERN.fullmatch(cfg.MODEL.DEVICE):
        fail("MODEL.DEVICE", "auto, cpu, cuda or cuda:N")
    for key, low in MINIMUMS.items():
        value = _value(cfg, key)
        if min(value if isinstance(value, list) else [value]) < low:
            fail(key, f">= {low}" + (" (each element)" if isinstance(value, list) else ""))
    for key in POSITIVE:
        if not _value(cfg, key) > 0:
            fail(key, "> 0")


def _check_conv_stem(cfg: CN, origins: dict[str, str]) -> None:
    """The conv stem downsamples by 8 before its projection: strides 8 or 16, sizes that 8 divides,
    and no ImageNet weights (they hold a 16x16 linear patch embedding)."""
    where = origins.get("MODEL.PATCH_EMBED", "defaults")
    if any(s not in (8, 16) for s in cfg.MODEL.STRIDE_SIZE):
        raise ConfigError(f"{where}: MODEL.PATCH_EMBED conv_stem needs MODEL.STRIDE_SIZE of 8 or 16 per axis, "
                          f"got {list(cfg.MODEL.STRIDE_SIZE)}; use linear for other strides")
    for key in ("INPUT.SIZE_TRAIN", "INPUT.SIZE_TEST"):
        if any(v % 8 for v in _value(cfg, key)):
            raise ConfigError(f"{where}: MODEL.PATCH_EMBED conv_stem needs {key} divisible by 8, "
                              f"got {list(_value(cfg, key))}")
    if cfg.MODEL.PRETRAIN_CHOICE == "imagenet" and cfg.MODEL.PRETRAIN_PATH:
        raise ConfigError(f"{where}: MODEL.PATCH_EMBED conv_stem has no ImageNet weights (they hold a linear patch "
                          f"embedding), but MODEL.PRETRAIN_PATH is {cfg.MODEL.PRETRAIN_PATH!r}; use linear to load "
                          "them, or MODEL.PRETRAIN_CHOICE none to train from scratch")


# Keys holding a fixed number of values (height, width / one per RGB channel).
LIST_LENGTHS = {"INPUT.SIZE_TRAIN": 2, "INPUT.SIZE_TEST": 2, "MODEL.STRIDE_SIZE": 2, "INPUT.PIXEL_MEAN": 3,
                "INPUT.PIXEL_STD": 3}


def _check_combinations(cfg: CN, origins: dict[str, str]) -> None:
    """Checks that otherwise fail late or as tracebacks (issue 23): list keys of the wrong length, and a PK
    batch that NUM_INSTANCE does not divide (found when the sampler is built, after the pose pass)."""
    for key, length in LIST_LENGTHS.items():
        value = _value(cfg, key)
        if len(value) != length:
            what = "[height, width]" if length == 2 else "one value per RGB channel"
            raise ConfigError(f"{origins.get(key, 'defaults')}: {key} expects {length} values ({what}), "
                              f"got {list(value)}")
    batch, instances = cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE
    if cfg.DATALOADER.SAMPLER == "softmax_triplet" and batch % instances:
        where = origins.get("SOLVER.IMS_PER_BATCH") or origins.get("DATALOADER.NUM_INSTANCE", "defaults")
        raise ConfigError(f"{where}: SOLVER.IMS_PER_BATCH {batch} must be a multiple of DATALOADER.NUM_INSTANCE "
                          f"{instances} (a PK batch holds P identities x {instances} images each); e.g. "
                          f"SOLVER.IMS_PER_BATCH {max(instances, batch - batch % instances)}")


OCCLUDER_KINDS = ("person", "object", "patch")  # INPUT.OCCLUDE_KINDS, pfd.data.occlude's kinds


def _check_occlude(cfg: CN, origins: dict[str, str]) -> None:
    """INPUT.OCCLUDE_PROB in [0, 1], OCCLUDE_KINDS a non-empty subset of OCCLUDER_KINDS, OCCLUDE_COVERAGE a range."""
    def fail(key: str, expected: str) -> None:
        raise ConfigError(f"{origins.get(key, 'defaults')}: {key} must be {expected}, got {_value(cfg, key)!r}")

    if not 0.0 <= cfg.INPUT.OCCLUDE_PROB <= 1.0:
        fail("INPUT.OCCLUDE_PROB", "in [0, 1]")
    kinds = cfg.INPUT.OCCLUDE_KINDS
    if not kinds or any(k not in OCCLUDER_KINDS for k in kinds):
        fail("INPUT.OCCLUDE_KINDS", f"a non-empty list of {', '.join(OCCLUDER_KINDS)}")
    cover = cfg.INPUT.OCCLUDE_COVERAGE
    if len(cover) != 2 or not 0.05 <= cover[0] < cover[1] <= 0.95 or cover[1] - cover[0] < 0.05:
        fail("INPUT.OCCLUDE_COVERAGE", "[MIN, MAX] with 0.05 <= MIN, MIN + 0.05 <= MAX <= 0.95")


def _warn_no_effect(cfg: CN, origins: dict[str, str]) -> None:
    """One warning line per NO_EFFECT key set to a value that would change the reference's behaviour
    (once per key and value in a process: a config is often loaded again, e.g. from a checkpoint)."""
    defaults = get_cfg_defaults()
    for key, instead in NO_EFFECT.items():
        value, switch = _value(cfg, key), ONLY_WITH.get(key)
        if value == _value(defaults, key) or (switch and not _value(cfg, switch)) or (key, repr(value)) in _warned:
            continue
        _warned.add((key, repr(value)))
        _log.warning("%s: %s %s has no effect here (accepted for the reference's configs; %s)",
                     origins.get(key, "defaults"), key, value, instead)


def _check_vis_buckets(cfg: CN, origins: dict[str, str]) -> None:
    """TEST.VIS_BUCKETS: lower ends of visible-keypoint buckets that start at 0, increase strictly and stay
    <= 17, so that every query falls in exactly one bucket (pfd.retrieval.occlusion splits by them)."""
    lows = list(cfg.TEST.VIS_BUCKETS)
    if not lows or lows[0] != 0 or any(b <= a for a, b in zip(lows, lows[1:])) or lows[-1] > NUM_KEYPOINTS:
        raise ConfigError(f"{origins.get('TEST.VIS_BUCKETS', 'defaults')}: TEST.VIS_BUCKETS {lows}: expected "
                          f"increasing lower ends of visible-keypoint buckets, starting at 0 and at most "
                          f"{NUM_KEYPOINTS}, e.g. [0, 6, 12] for 0-5, 6-11, 12-17")


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


def _normalize(cfg: CN, origins: dict[str, str]) -> None:
    cfg.MODEL.NAME = MODEL_NAME_ALIASES.get(cfg.MODEL.NAME, cfg.MODEL.NAME)
    _check_values(cfg, origins)
    _check_combinations(cfg, origins)
    _check_occlude(cfg, origins)
    _check_vis_buckets(cfg, origins)
    _check_overlapping_switches(cfg, origins)
    if cfg.MODEL.NAME == "pfd" and cfg.MODEL.VIT_DEPTH == 1:
        raise ConfigError(f"{origins.get('MODEL.VIT_DEPTH')}: MODEL.VIT_DEPTH 1 is too shallow for PFD, which needs at "
                          "least 2 blocks (the last one becomes b2); use 2 or more, or 0 for the architecture's own")
    if cfg.MODEL.PATCH_EMBED == "conv_stem":
        _check_conv_stem(cfg, origins)
    if cfg.MODEL.PVM_MODE == "reference" and cfg.MODEL.QUERY_NUM != 17:
        raise ConfigError(
            f"MODEL.QUERY_NUM={cfg.MODEL.QUERY_NUM} needs MODEL.PVM_MODE paper; "
            "the reference PVM indexes keypoints by view and requires 17 views"
        )
    _warn_no_effect(cfg, origins)  # last: a config refused above prints no warnings first


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


def _build(values: Any, source: str, opts: Iterable[str]) -> CN:
    cfg, origins = get_cfg_defaults(), {}
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(values).__name__}")
    merge_dict(cfg, values, source, origins=origins)
    merge_opts(cfg, list(opts), origins=origins)
    _normalize(cfg, origins)
    cfg.freeze()
    return cfg


def feature_config(cfg: CN) -> dict[str, Any]:
    """{key: value} of FEATURE_KEYS: everything that decides the evaluation feature of given weights."""
    return {k: cfg[k.split(".")[0]][k.split(".")[1]] for k in FEATURE_KEYS}


def config_hash(cfg: CN) -> str:
    """A short stable hash of `feature_config`: equal hashes, equal features from the same weights."""
    return hashlib.sha256(repr(sorted(feature_config(cfg).items())).encode()).hexdigest()[:12]
