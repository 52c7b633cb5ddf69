"""One declaration per config key (pfd/config/schema.py), walked against the loader, the checks, the hash,
the resume rules and the generated key reference in docs/USAGE.md; stored configs keep their hashes."""
from pathlib import Path

import pytest
import yaml

import pfd.config.checks as checks
from pfd.config import FEATURE_KEYS, REFERENCE_ONLY, SCHEMA, ConfigError, config_from_text, config_hash, load_config
from pfd.config.docs import BEGIN, END, key_reference, with_key_reference
from pfd.config.schema import FIXED, FREE, SILENT, get_cfg_defaults
from pfd.errors import InvalidInputError
from pfd.inference.checkpoint import config_differences, resume_blockers

REPO = Path(__file__).resolve().parents[2]
STORED = Path(__file__).resolve().parent / "stored_configs"
# config_hash of configs stored before the schema replaced defaults.py and the tables of pfd/config
# (computed with main at a680144): checkpoints and indexes holding them must stay loadable and equal.
STORED_HASHES = {"demo_synthetic": "a1b89ece4f3d", "cuhk03_cpu": "2c113c3d9ff6", "vit_baseline_after": "a874fc0ca936"}
LIVE = [name for name, key in SCHEMA.items() if not key.reference_only]
CHANGEABLE = [name for name in LIVE if len(SCHEMA[name].choices) != 1]  # not the one-value keys (ID loss...)
# Values the generic rule of `other_value` would not give: a rule's own shape, or a list of choices.
OTHER = {"INPUT.OCCLUDE_COVERAGE": [0.3, 0.5], "INPUT.OCCLUDE_KINDS": ["patch"], "TEST.VIS_BUCKETS": [0, 9],
         "MODEL.DEVICE": "cpu", "INPUT.OCCLUDE_PROB": 0.5, "INPUT.HIDE_PROB": 0.5}
CONTEXT = {"MODEL.QUERY_NUM": ["MODEL.PVM_MODE", "paper"],  # other keys a value needs, set on both sides
           "SOLVER.IMS_PER_BATCH": ["DATALOADER.NUM_INSTANCE", "1"]}


def other_value(name: str):
    """A valid value of `name` other than its default."""
    key = SCHEMA[name]
    default = key.default
    if name in OTHER:
        return OTHER[name]
    if key.choices:
        return next(c for c in key.choices if c != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return type(default)(default * 2 if default else 2)
    if isinstance(default, list):
        return [v * 2 for v in default]
    return default + "_other"


def text(value) -> str:
    """A value as typed on the command line."""
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()


def test_declarations_are_consistent():
    for name, key in SCHEMA.items():
        assert type(key.default) in (bool, int, float, str, list), name
        assert key.resume in (FIXED, FREE, SILENT), name
        if key.reference_only:  # nothing reads them: no effect on the feature, nothing to check or resume
            assert not (key.feature or key.choices or key.rule or key.resume != FIXED), name
        assert not key.only_with or SCHEMA[key.only_with].reference_only, name
        assert not (key.form or key.rule) or key.allowed, f"{name}: say what its form or rule allows"
        assert key.length is None or (len(key.default) == key.length and key.parts), name
        assert not key.choices or all(v in key.choices for v in (
            key.default if isinstance(key.default, list) else [key.default])), name
        assert key.doc and "\n" not in key.doc and "|" not in key.doc, name
    assert SCHEMA["MODEL.RESUME"].resume == SILENT  # a resume of a run started without it reports nothing
    assert "TEST.NECK_FEAT" in FEATURE_KEYS and "SOLVER.WARMUP_METHOD" in REFERENCE_ONLY


def test_the_loader_holds_every_declared_key_at_its_default():
    def flat(node, prefix=""):
        out = {}
        for k, v in node.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    assert list(flat(get_cfg_defaults())) == list(SCHEMA)  # every key a file may set, in declaration order
    loaded = flat(load_config(None))
    assert list(loaded) == LIVE  # reference-only keys are dropped once loaded
    for name in LIVE:
        default = SCHEMA[name].default
        assert loaded[name] == default and type(loaded[name]) is type(default), name
        again = flat(load_config(None, [*CONTEXT.get(name, []), name, text(default)]))[name]
        assert again == default and type(again) is type(default), name


@pytest.mark.parametrize("name", LIVE)
def test_each_key_takes_another_value_and_refuses_what_it_declares_refused(name):
    key, context = SCHEMA[name], CONTEXT.get(name, [])
    if name in CHANGEABLE:
        assert checks.value(load_config(None, [*context, name, text(other_value(name))]), name) == other_value(name)
    bad = []
    if key.choices:
        bad.append(["bogus"] if isinstance(key.default, list) else "bogus")
    if key.low is not None:
        bad.append([key.low - 1] * len(key.default) if isinstance(key.default, list) else key.low - 1)
    if key.high is not None:
        bad.append(key.high + 1)
    if key.positive:
        bad.append(type(key.default)(0))
    if key.length is not None:
        bad.append(key.default[:-1])
    if key.form:
        bad.append("nowhere")
    for value in bad:
        with pytest.raises(ConfigError, match=rf"^command line: {name} "):
            load_config(None, [*context, name, text(value)])


def test_config_hash_covers_exactly_the_keys_flagged_feature():
    for name in CHANGEABLE:
        context = CONTEXT.get(name, [])
        changed = config_hash(load_config(None, [*context, name, text(other_value(name))]))
        assert (changed != config_hash(load_config(None, context))) == SCHEMA[name].feature, name


def test_resume_refuses_exactly_the_fixed_keys_and_does_not_compare_silent_ones():
    """A checkpoint's stored config against a run that changes one key: refused unless the key may change on
    resume; MODEL.RESUME (set by `train.py --resume` on a run started without it) is not even reported."""
    stored = {}  # the stored config of each context, dumped once
    for name in CHANGEABLE:
        context = CONTEXT.get(name, [])
        stored.setdefault(tuple(context), load_config(None, context).dump())
        diffs = config_differences(stored[tuple(context)], load_config(None, [*context, name, text(other_value(name))]))
        assert set(diffs) == (set() if SCHEMA[name].resume == SILENT else {name}), name
        assert bool(resume_blockers(diffs)) == (SCHEMA[name].resume == FIXED), name


@pytest.mark.parametrize("name", sorted(STORED_HASHES))
def test_configs_stored_before_the_schema_load_with_their_hash(name, caplog, monkeypatch):
    monkeypatch.setattr(checks, "_warned", set())
    cfg = config_from_text((STORED / f"{name}.yaml").read_text(), source=name)
    assert config_hash(cfg) == STORED_HASHES[name]
    if name == "vit_baseline_after":  # its reference-only values warn (and are dropped); NECK_FEAT is a real key
        assert cfg.TEST.NECK_FEAT == "after" and "JPM" not in cfg.MODEL
        assert {"MODEL.JPM", "SOLVER.GAMMA"} == {r.getMessage().split()[1] for r in caplog.records
                                                 if r.levelname == "WARNING"}


def test_the_key_reference_in_usage_is_the_schemas():
    usage = (REPO / "docs" / "USAGE.md").read_text()
    assert with_key_reference(usage, "docs/USAGE.md") == usage, "docs/USAGE.md is stale: run `make docs`"
    block = usage[usage.index(BEGIN) + len(BEGIN):usage.index(END)]
    rows = [line.split("|")[1:3] for line in block.splitlines() if line.startswith("| `")]
    assert [r[0].strip(" `") for r in rows] == list(SCHEMA)
    for (_, default), name in zip(rows, SCHEMA):
        shown = default.strip(" `")
        assert yaml.safe_load(shown) == SCHEMA[name].default or shown == SCHEMA[name].default, name
    with pytest.raises(InvalidInputError, match="no block between the markers"):
        with_key_reference("# no markers here\n", "x.md")
    assert key_reference() in usage
