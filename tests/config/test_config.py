"""Configuration: shipped files load, reference files load unchanged, bad keys are named."""
import re
from pathlib import Path

import pytest

import pfd.config as config
import pfd.config.checks as checks
from pfd.config import ConfigError, config_from_text, config_hash, load_config
from pfd.model.losses import build_loss

REPO = Path(__file__).resolve().parents[2]

# A config in the reference implementation's own style (tuples as strings, yes/no flags,
# TransReID keys this project accepts but does not use).
REFERENCE_YAML = """
MODEL:
  PRETRAIN_CHOICE: 'imagenet'
  PRETRAIN_PATH: '/home/user/.cache/torch/checkpoints/jx_vit_base_p16_224-80ecf9dd.pth'
  METRIC_LOSS_TYPE: 'triplet'
  IF_LABELSMOOTH: 'on'
  IF_WITH_CENTER: 'no'
  NAME: 'skeleton_transformer'
  NO_MARGIN: True
  DEVICE_ID: ('0')
  TRANSFORMER_TYPE: 'vit_base_patch16_224_TransReID'
  STRIDE_SIZE: [12, 12]
  SIE_CAMERA: True
  SIE_COE: 3.0
  JPM: False
  RE_ARRANGE: True
  SKT_THRES: 0.2
  QUERY_NUM: 17
  NUM_HEAD: 8
  NUM_DECODER_LAYER: 2
INPUT:
  SIZE_TRAIN: [256, 128]
  SIZE_TEST: [256, 128]
  PROB: 0.5
  RE_PROB: 0.5
  PADDING: 10
  PIXEL_MEAN: [0.5, 0.5, 0.5]
  PIXEL_STD: [0.5, 0.5, 0.5]
DATASETS:
  NAMES: ('occ_duke')
  ROOT_DIR: ('../data')
DATALOADER:
  SAMPLER: 'softmax_triplet'
  NUM_INSTANCE: 4
  NUM_WORKERS: 8
SOLVER:
  OPTIMIZER_NAME: 'SGD'
  MAX_EPOCHS: 120
  BASE_LR: 0.008
  IMS_PER_BATCH: 64
  WARMUP_METHOD: 'linear'
  LARGE_FC_LR: False
  CHECKPOINT_PERIOD: 120
  LOG_PERIOD: 50
  EVAL_PERIOD: 120
  WEIGHT_DECAY: 1e-4
  WEIGHT_DECAY_BIAS: 1e-4
  BIAS_LR_FACTOR: 2
TEST:
  EVAL: True
  IMS_PER_BATCH: 256
  RE_RANKING: False
  WEIGHT: ''
  NECK_FEAT: 'before'
  FEAT_NORM: 'yes'
OUTPUT_DIR: '../logs/occ_duke_pfd'
"""


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.MODEL.NAME in ("pfd", "vit_baseline")
    assert cfg.DATASETS.NAMES


def test_reference_config_loads_unchanged(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(checks, "_warned", set())
    path = tmp_path / "skeleton_pfd.yml"
    path.write_text(REFERENCE_YAML)
    cfg = load_config(path)
    assert caplog.records == []  # its unused keys hold the values that change nothing
    assert cfg.MODEL.NAME == "pfd"  # skeleton_transformer alias
    assert cfg.DATASETS.NAMES == "occ_duke"  # "('occ_duke')" unwrapped
    assert cfg.DATASETS.ROOT_DIR == "../data"
    assert cfg.MODEL.STRIDE_SIZE == [12, 12]
    assert cfg.MODEL.SKT_THRES == pytest.approx(0.2)
    assert cfg.SOLVER.WEIGHT_DECAY == pytest.approx(1e-4)  # YAML reads 1e-4 as a string
    assert cfg.TEST.FEAT_NORM == "yes"


def test_a_reference_style_config_keeps_the_hash_it_had_before_the_config_schema():
    assert config_hash(config_from_text(REFERENCE_YAML)) == "c094c6dbee4e"  # computed with main at a680144


def test_command_line_overrides_with_types():
    cfg = load_config(REPO / "configs/market1501.yaml", ["SOLVER.BASE_LR", "0.004", "MODEL.SKT_THRES", "0.25",
                                                         "INPUT.SIZE_TRAIN", "[128, 64]", "MODEL.SIE_CAMERA", "false"])
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.004)
    assert cfg.MODEL.SKT_THRES == pytest.approx(0.25)
    assert cfg.INPUT.SIZE_TRAIN == [128, 64]
    assert cfg.MODEL.SIE_CAMERA is False
    assert cfg.is_frozen()


def test_int_key_accepts_integral_float_but_not_fraction():
    assert load_config(None, ["SOLVER.MAX_EPOCHS", "3.0"]).SOLVER.MAX_EPOCHS == 3
    with pytest.raises(ConfigError, match="SOLVER.MAX_EPOCHS expects int"):
        load_config(None, ["SOLVER.MAX_EPOCHS", "2.5"])


def test_unknown_key_names_the_closest_valid_one(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key MODEL\.SKT_THRESH.*did you mean MODEL\.SKT_THRES"):
        load_config(None, ["MODEL.SKT_THRESH", "0.3"])
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(ConfigError, match=rf"{path}.*SOLVER\.BASE_LRR.*SOLVER\.BASE_LR"):
        load_config(path)


def test_key_in_wrong_section_is_pointed_to_its_section():
    with pytest.raises(ConfigError, match=r"did you mean MODEL\.QUERY_NUM"):
        load_config(None, ["SOLVER.QUERY_NUM", "17"])


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r"SOLVER\.BASE_LR expects float"):
        load_config(None, ["SOLVER.BASE_LR", "fast"])
    with pytest.raises(ConfigError, match=r"INPUT\.SIZE_TRAIN expects list"):
        load_config(None, ["INPUT.SIZE_TRAIN", "256"])


def test_invalid_choices_and_combinations():
    with pytest.raises(ConfigError, match="MODEL.PVM_MODE"):
        load_config(None, ["MODEL.PVM_MODE", "fancy"])
    with pytest.raises(ConfigError, match="QUERY_NUM=8 needs MODEL.PVM_MODE paper"):
        load_config(None, ["MODEL.QUERY_NUM", "8"])
    assert load_config(None, ["MODEL.QUERY_NUM", "8", "MODEL.PVM_MODE", "paper"]).MODEL.QUERY_NUM == 8


def test_odd_override_count_and_missing_file():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        load_config(None, ["SOLVER.BASE_LR"])
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config("nope.yaml")


def test_config_hash_tracks_feature_relevant_keys():
    base = load_config(None)
    assert config_hash(base) == config_hash(load_config(None, ["SOLVER.BASE_LR", "0.1"]))
    assert config_hash(base) != config_hash(load_config(None, ["MODEL.SKT_THRES", "0.5"]))


def test_string_keys_keep_the_typed_text():
    """YAML would read `yes` as True and `123` as an int; string keys take the text as typed."""
    cfg = load_config(None, ["TEST.FEAT_NORM", "no", "MODEL.RESUME", "123", "TEST.WEIGHT", "on"])
    assert (cfg.TEST.FEAT_NORM, cfg.MODEL.RESUME, cfg.TEST.WEIGHT) == ("no", "123", "on")


@pytest.mark.parametrize("key, value, allowed", [
    ("MODEL.IF_LABELSMOOTH", "onn", "one of on, off"),
    ("TEST.FEAT_NORM", "yess", "one of yes, no"),
    ("TEST.NECK_FEAT", "middle", "one of before, after"),
    ("SOLVER.OPTIMIZER_NAME", "sgd", "one of SGD, Adam, AdamW"),
    ("DATALOADER.SAMPLER", "pk", "one of softmax_triplet, softmax"),
    ("MODEL.METRIC_LOSS_TYPE", "circle", "'triplet' (the only one this project implements)"),
    ("MODEL.ID_LOSS_TYPE", "arcface", "'softmax' (the only one"),
    ("MODEL.DEVICE", "gpu", "auto, cpu, cuda or cuda:N"),
])
def test_fixed_choice_keys_name_key_file_and_allowed_values(tmp_path, key, value, allowed):
    """A typo in a fixed-choice key fails at load, naming where it was set, not after an epoch."""
    section, leaf = key.split(".")
    path = tmp_path / "typo.yaml"
    path.write_text(f"{section}:\n  {leaf}: '{value}'\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: {key} must be {allowed}") and f"got {value!r}" in str(err.value)
    with pytest.raises(ConfigError, match=f"^command line: {key} must be"):
        load_config(path, [key, value])


def test_numbers_out_of_range_are_named():
    for key in ("SOLVER.MAX_EPOCHS", "SOLVER.IMS_PER_BATCH", "TEST.IMS_PER_BATCH", "DATALOADER.NUM_INSTANCE"):
        with pytest.raises(ConfigError, match=f"^command line: {key} must be >= 1, got 0$"):
            load_config(None, [key, "0"])
    with pytest.raises(ConfigError, match=r"INPUT\.SIZE_TRAIN must be >= 16 \(each element\), got \[256, 0\]"):
        load_config(None, ["INPUT.SIZE_TRAIN", "[256, 0]"])
    with pytest.raises(ConfigError, match=r"SOLVER\.BASE_LR must be > 0"):
        load_config(None, ["SOLVER.BASE_LR", "0"])
    with pytest.raises(ConfigError, match=r"^command line: MODEL\.VIT_DEPTH 1 is too shallow for PFD"):
        load_config(None, ["MODEL.VIT_DEPTH", "1"])  # was a traceback from the model builder
    assert load_config(None, ["MODEL.VIT_DEPTH", "1", "MODEL.NAME", "vit_baseline"]).MODEL.VIT_DEPTH == 1
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert load_config(None, ["MODEL.DEVICE", device]).MODEL.DEVICE == device


def test_checks_that_ran_late_fail_at_load(tmp_path):
    """Issue 23: list keys of the wrong length and a batch NUM_INSTANCE does not divide are refused at
    load, naming the key and where the value came from (they failed at the first batch, or as tracebacks)."""
    with pytest.raises(ConfigError, match=r"^command line: INPUT\.SIZE_TRAIN expects 2 values \(\[height, width\]\), "
                                          r"got \[128\]$"):
        load_config(None, ["INPUT.SIZE_TRAIN", "[128]"])
    with pytest.raises(ConfigError, match=r"INPUT\.PIXEL_STD expects 3 values"):
        load_config(None, ["INPUT.PIXEL_STD", "[0.5, 0.5]"])
    path = tmp_path / "batch.yaml"
    path.write_text("SOLVER:\n  IMS_PER_BATCH: 30\nDATALOADER:\n  NUM_INSTANCE: 4\n")
    with pytest.raises(ConfigError, match=rf"^{path}: SOLVER\.IMS_PER_BATCH 30 must be a multiple of "
                                          r"DATALOADER\.NUM_INSTANCE 4 .*SOLVER\.IMS_PER_BATCH 28$"):
        load_config(path)
    assert load_config(path, ["DATALOADER.SAMPLER", "softmax"]).SOLVER.IMS_PER_BATCH == 30  # no PK batches


def test_yaml_syntax_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("MODEL:\n  NAME: pfd\n  STRIDE_SIZE: [16, 16\nSOLVER:\n  BASE_LR: 0.01\n")
    with pytest.raises(ConfigError, match=rf"^{path}, line 4, column 7: YAML syntax error: expected ',' or ']'"):
        load_config(path)
    path.write_text("MODEL:\n\tNAME: pfd\n")
    with pytest.raises(ConfigError, match=rf"^{path}, line 2, column 1: YAML syntax error: .*'\\t'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^stored config, line 1, column \d+: YAML syntax error"):
        config_from_text("MODEL: {NAME: pfd", source="stored config")
def test_reference_keys_without_effect_warn_once_naming_the_key(caplog, monkeypatch):
    monkeypatch.setattr(checks, "_warned", set())
    load_config(None, ["MODEL.JPM", "true", "MODEL.IF_WITH_CENTER", "yes", "MODEL.SHIFT_NUM", "8"])
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 3 and all("\n" not in line and "has no effect here" in line for line in lines)
    assert lines[0].startswith("command line: MODEL.IF_WITH_CENTER yes has no effect here")
    assert any(line.startswith("command line: MODEL.JPM True has no effect here") for line in lines)
    caplog.clear()
    load_config(None, ["MODEL.JPM", "true", "MODEL.IF_WITH_CENTER", "yes"])  # e.g. again from the checkpoint
    load_config(None, ["MODEL.SHUFFLE_GROUP", "4", "SOLVER.COSINE_SCALE", "64"])  # their switches are off
    assert caplog.records == []


def test_every_reference_only_key_warns_once_and_is_dropped(caplog, monkeypatch):
    """A reference-only key set to another value than its default warns, naming the key and what does its job
    here, and is not in the loaded config; its switch (only_with) turned on where it has one."""
    monkeypatch.setattr(checks, "_warned", set())
    assert config.REFERENCE_ONLY and "SOLVER.WARMUP_METHOD" in config.REFERENCE_ONLY
    for name in config.REFERENCE_ONLY:
        key = config.SCHEMA[name]
        other = {bool: lambda v: str(not v), int: lambda v: str(v + 1), float: lambda v: str(v * 2),
                 str: lambda v: v + "x", list: lambda v: str(v[:1])}[type(key.default)](key.default)
        switch = [key.only_with, "true"] if key.only_with else []
        caplog.clear()
        cfg = load_config(None, [name, other, *switch])
        lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and f" {name} " in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith(f"command line: {name} ") and key.reference_only in lines[0]
        section, leaf = name.split(".")
        assert leaf not in cfg[section]


def test_disentangle_off_turns_the_push_loss_off_and_refuses_a_push_weight():
    assert build_loss(load_config(None, ["MODEL.DISENTANGLE", "false"])).push_weight == 0.0
    assert build_loss(load_config(None, ["MODEL.DISENTANGLE", "false", "MODEL.PUSH_LOSS_WEIGHT", "0"])).push_weight == 0
    assert build_loss(load_config(None)).push_weight == 1.0
    with pytest.raises(ConfigError, match=r"^command line: MODEL.PUSH_LOSS_WEIGHT 2.0 with MODEL.DISENTANGLE false "
                                          r"\(command line\).*drop MODEL.PUSH_LOSS_WEIGHT$"):
        load_config(None, ["MODEL.DISENTANGLE", "false", "MODEL.PUSH_LOSS_WEIGHT", "2"])


@pytest.mark.parametrize("bad", [[], [1, 6], [0, 6, 6], [0, 12, 6], [0, 18]])
def test_vis_buckets_are_checked_when_the_config_loads(bad):
    with pytest.raises(ConfigError, match=rf"^command line: TEST\.VIS_BUCKETS {re.escape(str(bad))}: expected"):
        load_config(None, ["TEST.VIS_BUCKETS", str(bad)])
    assert load_config(None, ["TEST.VIS_BUCKETS", "[0, 9]"]).TEST.VIS_BUCKETS == [0, 9]
