"""config_hash covers every key that changes the evaluation feature of given weights.

Every MODEL / INPUT / TEST key is changed in turn (CHANGES) and the features of a few query images
are recomputed from the same checkpoint through test.py's own loading (`load_eval_model`), keypoints
(`load_keypoints`), heatmaps (`HeatmapMaker`), precision (`eval_dtype`) and extraction
(`extract_features`). Whenever the features change, or the checkpoint no longer fits the model, the
hash must change. A key added to those sections fails the test until it gets an entry here.
"""
import json

import pytest
import torch

from pfd.config import FEATURE_KEYS, config_hash, get_cfg_defaults
from pfd.data.datasets import build_dataset
from pfd.data.sets import load_keypoints
from pfd.engine.evaluator import extract_features
from pfd.inference.checkpoint import FORMAT, load_eval_model
from pfd.model import build_model
from pfd.pose.heatmap_maker import HeatmapMaker
from pfd.pose.hrnet import build_hrnet
from pfd.pose.learned import FORMAT as LEARNED_FORMAT
from pfd.pose.learned import KeypointNet
from pfd.precision import eval_dtype

from engine_tiny import make_data, tiny_config

CPU = torch.device("cpu")
ONLINE = ("MODEL.POSE_ONLINE", "true", "MODEL.POSE_ARCH", "hrnet_w32", "MODEL.POSE_WEIGHT", "{hrnet_a}")
BASELINE = ("MODEL.NAME", "vit_baseline")
# key -> (another valid value, options applied to both sides). "{name}" is filled from `files`.
CHANGES = {
    "MODEL.NAME": ("vit_baseline", ()),
    "MODEL.DEVICE_ID": ("1", ()),
    "MODEL.TRANSFORMER_TYPE": ("vit_small_patch16_224", ()),
    "MODEL.VIT_DEPTH": ("3", ()),
    "MODEL.PRETRAIN_CHOICE": ("imagenet", ()),
    "MODEL.PRETRAIN_PATH": ("{absent}", ()),
    "MODEL.STRIDE_SIZE": ("[12, 12]", ()),
    "MODEL.PATCH_EMBED": ("conv_stem", ()),
    "MODEL.SIE_CAMERA": ("false", ()),
    "MODEL.SIE_VIEW": ("true", ()),
    "MODEL.SIE_COE": ("1.0", ()),
    "MODEL.DROP_PATH": ("0.3", ()),
    "MODEL.DROP_OUT": ("0.2", ()),
    "MODEL.ATT_DROP_RATE": ("0.2", ()),
    "MODEL.SKT_THRES": ("0.87", ()),
    "MODEL.QUERY_NUM": ("16", ("MODEL.PVM_MODE", "paper")),
    "MODEL.NUM_DECODER_LAYER": ("1", ()),
    "MODEL.NUM_HEAD": ("2", ()),
    "MODEL.DECODER_FFN_DIM": ("256", ()),
    "MODEL.DECODER_DROPOUT": ("0.3", ()),
    "MODEL.PVM_MODE": ("paper", ()),
    "MODEL.DECODER_FFN_RESIDUAL": ("true", ()),
    "MODEL.PUSH_LOSS": ("paper", ()),
    "MODEL.FEAT_KIND": ("global", ()),
    "MODEL.HEAT_WEIGHT": ("false", ()),
    "MODEL.PFA": ("false", ()),
    "MODEL.PVM": ("false", ()),
    "MODEL.DISENTANGLE": ("false", ()),
    "MODEL.PART_POOL": ("pose", ()),
    "MODEL.TOKEN_MASK": ("none", ()),  # the base (demo_synthetic.yaml) masks
    "MODEL.TOKEN_MASK_RADIUS": ("0", ()),
    "MODEL.TOKEN_MASK_SHAPE": ("column", ()),
    "MODEL.NO_MARGIN": ("false", ()),
    "MODEL.IF_LABELSMOOTH": ("off", ()),
    "MODEL.LABEL_SMOOTH_EPS": ("0.2", ()),
    "MODEL.ID_LOSS_WEIGHT": ("0.5", ()),
    "MODEL.TRIPLET_LOSS_WEIGHT": ("0.5", ()),
    "MODEL.GLOBAL_LOSS_SHARE": ("0.3", ()),
    "MODEL.DECODER_LOSS_WEIGHT": ("0.3", ()),
    "MODEL.PUSH_LOSS_WEIGHT": ("0.5", ()),
    "MODEL.LAST_STRIDE": ("2", ()),
    "MODEL.COS_LAYER": ("true", ()),
    "MODEL.JPM": ("true", ()),
    "MODEL.SHIFT_NUM": ("3", ()),
    "MODEL.SHUFFLE_GROUP": ("1", ()),
    "MODEL.DEVIDE_LENGTH": ("2", ()),
    "MODEL.RE_ARRANGE": ("false", ()),
    "MODEL.DIST_TRAIN": ("true", ()),
    "MODEL.POSE_BACKEND": ("hrnet", ("MODEL.POSE_ARCH", "hrnet_w32", "MODEL.POSE_WEIGHT", "{hrnet_a}")),
    "MODEL.POSE_ARCH": ("hrnet_w48", ONLINE),
    "MODEL.POSE_WEIGHT": ("{hrnet_b}", ONLINE),
    "MODEL.POSE_FILE": ("{moved_keypoints}", ("MODEL.POSE_BACKEND", "file", "MODEL.POSE_FILE", "{keypoints}")),
    "MODEL.POSE_LEARNED_WEIGHT": ("{learned_b}", ("MODEL.POSE_BACKEND", "learned", "MODEL.POSE_LEARNED_WEIGHT",
                                                  "{learned_a}")),
    "MODEL.POSE_ONLINE": ("true", ("MODEL.POSE_ARCH", "hrnet_w32", "MODEL.POSE_WEIGHT", "{hrnet_a}")),
    "MODEL.POSE_INPUT_NORM": ("imagenet", ONLINE),
    "MODEL.POSE_CACHE_DIR": ("{other_cache}", ()),
    "MODEL.RESUME": ("auto", ()),
    "INPUT.SIZE_TRAIN": ("[160, 80]", ()),
    "INPUT.SIZE_TEST": ("[160, 80]", ()),
    "INPUT.PROB": ("0.2", ()),
    "INPUT.RE_PROB": ("0.2", ()),
    "INPUT.PADDING": ("3", ()),
    "INPUT.PIXEL_MEAN": ("[0.4, 0.45, 0.5]", ()),
    "INPUT.PIXEL_STD": ("[0.25, 0.25, 0.25]", ()),
    "INPUT.HEATMAP_SIGMA": ("2.0", ()),
    "TEST.NO_POSE": ("prior", ()),
    "INPUT.OCCLUDE_PROB": ("0.5", ()),
    "INPUT.HIDE_PROB": ("0.5", ()),
    "INPUT.OCCLUDE_KINDS": ("['patch']", ()),
    "INPUT.OCCLUDE_COVERAGE": ("[0.3, 0.5]", ()),
    "TEST.EVAL": ("false", ()),
    "TEST.IMS_PER_BATCH": ("3", ()),
    "TEST.RE_RANKING": ("true", ()),
    "TEST.RE_RANKING_K1": ("10", ()),
    "TEST.RE_RANKING_K2": ("3", ()),
    "TEST.RE_RANKING_LAMBDA": ("0.5", ()),
    "TEST.NECK_FEAT": ("after", BASELINE),
    "TEST.FEAT_NORM": ("no", ()),
    "TEST.FLIP_FEATS": ("true", ()),
    "TEST.DIST_MAT": ("other.npy", ()),
    "TEST.AMP": ("bf16", ()),
    "TEST.NUM_VIS": ("2", ()),
    "TEST.VIS_ORDER": ("list", ()),
    "TEST.VIS_BUCKETS": ("[0, 9]", ()),
    "TEST.POSE_DEPENDENCE": ("true", ()),
    "TEST.PART_DISTANCE": ("visible", ()),
    "TEST.PART_WEIGHT": ("0.5", ()),
    "TEST.PART_RERANK_TOP": ("7", ()),
}
NOT_CHANGED = {  # keys of those sections this test cannot vary, and why they stay out of the hash
    "MODEL.DEVICE": "where it runs (one device here); metrics.json's provenance records the device",
    "TEST.WEIGHT": "the weights themselves; metrics.json's provenance records their SHA-256",
    "MODEL.METRIC_LOSS_TYPE": "training loss, one value accepted",
    "MODEL.ID_LOSS_TYPE": "training loss, one value accepted",
    "MODEL.IF_WITH_CENTER": "training loss, one value accepted",
    "MODEL.NECK": "one value accepted",
}
# Sections that decide which images are used and how training runs, never the feature of given weights.
OTHER_SECTIONS = ("DATASETS", "DATALOADER", "SOLVER", "OUTPUT_DIR")
RECORDS = 4  # query images whose features are compared
# Keys that do change the feature here: the test computes them even though they are hashed, to show
# it would catch each one if it were left out of the hash (most were, before MODEL.POSE_INPUT_NORM).
SHOWN_TO_CHANGE = {"TEST.AMP", "TEST.NECK_FEAT", "MODEL.POSE_ONLINE", "MODEL.POSE_INPUT_NORM", "MODEL.POSE_WEIGHT",
                   "MODEL.POSE_BACKEND", "MODEL.POSE_FILE", "MODEL.POSE_LEARNED_WEIGHT", "MODEL.NUM_HEAD",
                   "MODEL.HEAT_WEIGHT", "MODEL.PFA",
                   "MODEL.FEAT_KIND", "INPUT.HEATMAP_SIGMA", "INPUT.PIXEL_MEAN", "INPUT.SIZE_TEST",
                   "TEST.FLIP_FEATS"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_data(tmp_path_factory.mktemp("config_hash"))
    files = {"absent": str(root / "absent_vit.pth"), "other_cache": str(root / "other_cache"),
             "keypoints": str(root / "synthetic" / "keypoints.json"), "moved_keypoints": str(root / "moved.json")}
    for name, seed in (("hrnet_a", 0), ("hrnet_b", 1)):
        torch.manual_seed(seed)
        files[name] = str(root / f"{name}.pth")
        torch.save(build_hrnet("hrnet_w32").state_dict(), files[name])
    for name, seed in (("learned_a", 0), ("learned_b", 1)):
        torch.manual_seed(seed)
        files[name] = str(root / f"{name}.pth")
        torch.save({"format": LEARNED_FORMAT, "backbone": "regnetx_002", "state_dict": KeypointNet().state_dict()},
                   files[name])
    moved = json.loads((root / "synthetic" / "keypoints.json").read_text())
    moved["root"] = str(root / "synthetic")
    for points in moved["keypoints"].values():
        for point in points:
            point[0] += 3.0  # every keypoint 3 pixels to the right
    (root / "moved.json").write_text(json.dumps(moved))
    dataset = build_dataset("synthetic", root)
    return root, files, dataset


def _cfg(setup, opts):
    root, files, _ = setup
    return tiny_config(root, root / "out", *(o.format(**files) for o in opts))


def _checkpoint(setup, cfg, cache) -> str:
    """Our checkpoint of a model built from `cfg` (seeded), one per context."""
    key = config_hash(cfg)
    if key not in cache:
        root, _, dataset = setup
        torch.manual_seed(0)
        model = build_model(cfg, dataset.num_train_pids, dataset.num_cameras, load_pretrained=False)
        for module in model.modules():  # trained-looking BNNecks, so that "before" and "after" them differ
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        path = root / f"weights_{key}.pth"
        torch.save({"format": FORMAT, "model": model.state_dict(), "num_classes": dataset.num_train_pids,
                    "num_cameras": dataset.num_cameras}, path)
        cache[key] = str(path)
    return cache[key]


def _features(setup, cfg, weights: str) -> torch.Tensor | None:
    """Eval features [RECORDS, F] of the first query images, or None when the checkpoint does not fit."""
    records = setup[2].query[:RECORDS]
    try:
        model, _ = load_eval_model(cfg, weights, CPU)
        keypoints = load_keypoints(cfg, records, "synthetic")
        return extract_features(model, cfg, records, keypoints, CPU, HeatmapMaker(cfg, cfg.INPUT.SIZE_TEST),
                                eval_dtype(cfg, CPU)).feats
    except (ValueError, RuntimeError) as err:
        assert any(word in str(err) for word in ("fit", "size", "shape", "match")), err
        return None


def test_every_key_of_the_feature_sections_is_classified():
    keys = {f"{s}.{k}" for s, node in get_cfg_defaults().items() if s not in OTHER_SECTIONS for k in node}
    assert keys == set(CHANGES) | set(NOT_CHANGED)
    assert set(FEATURE_KEYS) <= keys


@pytest.mark.slow  # a feature extraction per feature key
def test_a_changed_feature_always_changes_the_hash(setup):
    weights_cache, base_features, changed, missed = {}, {}, [], []
    for key, (value, context) in CHANGES.items():
        base = _cfg(setup, context)
        other = _cfg(setup, (*context, key, value))
        hashed = config_hash(other) != config_hash(base)
        if hashed and key not in SHOWN_TO_CHANGE:
            continue  # covered by the hash whatever it does to the feature
        weights = _checkpoint(setup, base, weights_cache)
        if context not in base_features:
            base_features[context] = _features(setup, base, weights)
        before, after = base_features[context], _features(setup, other, weights)
        assert before is not None, key
        if after is None or after.shape != before.shape or not torch.allclose(before, after, rtol=1e-4, atol=1e-5):
            changed.append(key)
            if not hashed:
                missed.append(key)
    assert not missed, f"these keys change the evaluation feature but not config_hash: {missed}"
    assert SHOWN_TO_CHANGE <= set(changed), SHOWN_TO_CHANGE - set(changed)
    # ... and training-only keys do not (so the comparison is not merely noisy).
    assert not {"MODEL.DROP_PATH", "MODEL.PUSH_LOSS", "TEST.IMS_PER_BATCH", "INPUT.RE_PROB",
                "INPUT.OCCLUDE_PROB", "INPUT.HIDE_PROB"} & set(changed)
