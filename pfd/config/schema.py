"""Every configuration key, declared once: its default, what it means, the values it accepts and its flags.

Key names follow the reference PFD implementation (itself TransReID-based) so that its YAML files and
every stored config (our checkpoints, indexes) load unchanged. A key's type is its default's type. Flags:

- `feature`: the key changes the evaluation feature of given weights, or the heatmaps it is computed
  from; `config_hash` (pfd.config.hashing) covers exactly these keys.
  A feature key added after hashes were first stored is `added_later`: hashed only when it differs
  from its default, so every index and checkpoint made before it existed keeps its hash.
- `resume`: FIXED (a resumed run refuses a changed value), FREE (may change on `--resume`; the change
  is logged) or SILENT (may change and is not compared: MODEL.RESUME itself).
- `reference_only`: a reference key this project does not use: accepted so the reference's files load,
  warned about when set to a value that would change the reference's behaviour (for `only_with` keys
  only while that switch is on), then dropped from the loaded config. The text says what does the job.
- `new`: a key of this project; the others are the reference implementation's.

docs/USAGE.md's key reference is generated from this table (`make docs`; tests/config/test_config_schema.py
fails when they differ).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from yacs.config import CfgNode as CN

from ..errors import UserError
from ..skeleton import NUM_KEYPOINTS

__all__ = ["ConfigError", "Key", "SCHEMA", "FIXED", "FREE", "SILENT", "FEATURE_KEYS", "REFERENCE_ONLY",
           "RESUME_FREE", "POSE_BACKENDS", "OCCLUDER_KINDS", "COVERAGE_RULE", "valid_coverage", "get_cfg_defaults"]

FIXED, FREE, SILENT = "fixed", "free", "silent"  # Key.resume


class ConfigError(UserError, ValueError):
    """A configuration key or value that cannot be used."""


@dataclass(frozen=True)
class Key:
    """One key's declaration: its default (which gives its type), a one-line doc, what its checks accept
    (pfd.config.checks reads these fields) and its flags (the module's docstring)."""

    default: Any
    doc: str
    choices: tuple = ()  # the allowed values (list keys: each element, and at least one)
    low: float | None = None  # smallest allowed value (list keys: of each element)
    high: float | None = None  # largest allowed value
    positive: bool = False  # must be > 0
    length: int | None = None  # list keys: the number of values ...
    parts: str = ""  # ... and what they are, e.g. "[height, width]"
    form: str = ""  # a regular expression the whole value must match
    rule: Callable[[Any], None] | None = None  # raises ConfigError naming the key and value when broken
    allowed: str = ""  # how docs and errors describe `form` or `rule`
    aliases: Mapping[str, str] = field(default_factory=dict)  # the reference's names for some values
    feature: bool = False
    added_later: bool = False  # a feature key hashed only away from its default, so older hashes stay valid
    resume: str = FIXED
    reference_only: str = ""
    only_with: str = ""
    new: bool = False


# MODEL.POSE_BACKEND's names besides `auto` (pfd.pose.estimator builds each; pfd.pose.base re-exports this list).
POSE_BACKENDS = ("hrnet", "mediapipe", "learned", "file", "synthetic")
OCCLUDER_KINDS = ("person", "object", "patch")  # INPUT.OCCLUDE_KINDS, pfd.data.occlude's kinds
COVERAGE_RULE = "0.05 <= MIN, MIN + 0.05 <= MAX <= 0.95"  # an occluder's covered share, as valid_coverage


def valid_coverage(low: float, high: float) -> bool:
    """Whether [low, high] is a range of covered shares the occluders can draw from (COVERAGE_RULE); the
    config (INPUT.OCCLUDE_COVERAGE) and `python -m pfd.data.occlude --coverage` both check it."""
    return 0.05 <= low < high <= 0.95 and high - low >= 0.05


def _check_coverage(cover: list) -> None:
    if not valid_coverage(*cover):
        raise ConfigError(f"INPUT.OCCLUDE_COVERAGE {cover}: expected [MIN, MAX] with {COVERAGE_RULE}")


def _check_vis_buckets(lows: list) -> None:
    """Lower ends that start at 0, increase strictly and stay <= NUM_KEYPOINTS, so that every query falls in
    exactly one bucket (pfd.retrieval.occlusion splits by them)."""
    if not lows or lows[0] != 0 or any(b <= a for a, b in zip(lows, lows[1:])) or lows[-1] > NUM_KEYPOINTS:
        raise ConfigError(f"TEST.VIS_BUCKETS {lows}: expected increasing lower ends of visible-keypoint buckets, "
                          f"starting at 0 and at most {NUM_KEYPOINTS}, e.g. [0, 6, 12] for 0-5, 6-11, 12-17")


JIGSAW = "TransReID's jigsaw branch is not part of PFD"
NO_CENTER = "there is no center loss"
LINEAR_IDS = "the ID classifiers are linear layers"
COSINE = "the schedule is linear warm-up then cosine (SOLVER.LR_MIN_FACTOR)"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
HW, RGB = "[height, width]", "one value per RGB channel"  # Key.parts

SCHEMA: dict[str, Key] = {
    # ------------------------------------------------------------------------------------------- MODEL
    "MODEL.NAME": Key("pfd", "the model: PFD or the plain ViT baseline", choices=("pfd", "vit_baseline"),
                      aliases={"skeleton_transformer": "pfd", "transformer": "vit_baseline"}, feature=True),
    "MODEL.DEVICE": Key("auto", "where it runs", form=r"auto|cpu|cuda(:\d+)?", allowed="auto, cpu, cuda or cuda:N",
                        resume=FREE),
    "MODEL.DEVICE_ID": Key("0", "the reference's GPU list",
                           reference_only="select GPUs with CUDA_VISIBLE_DEVICES or torchrun"),
    "MODEL.TRANSFORMER_TYPE": Key("vit_base_patch16_224", "any timm ViT name; the reference's names are mapped",
                                  feature=True),
    "MODEL.VIT_DEPTH": Key(0, "number of ViT blocks, 0 = the architecture's own (tiny configs use 2-4)", low=0,
                           feature=True, new=True),
    "MODEL.PRETRAIN_CHOICE": Key("imagenet", "starting weights: ImageNet ViT, our own checkpoint, or none",
                                 choices=("imagenet", "self", "none")),
    "MODEL.PRETRAIN_PATH": Key("", "local ImageNet ViT weights (.pth/.bin/.safetensors/.npz) or, with self, a "
                                   "checkpoint; empty = from scratch", resume=FREE),
    "MODEL.STRIDE_SIZE": Key([16, 16], "patch stride (12 = the overlapping PFD* setting)", low=1,
                             length=2, parts=HW, feature=True),
    "MODEL.PATCH_EMBED": Key("linear", "linear: one 16x16 conv (the reference); conv_stem: timm's ConvStem, learns "
                                       "far faster from scratch (strides 8 or 16, no ImageNet weights)",
                             choices=("linear", "conv_stem"), feature=True, new=True),
    "MODEL.SIE_CAMERA": Key(True, "side-information (camera) embedding", feature=True),
    "MODEL.SIE_VIEW": Key(False, "the reference's view embedding", reference_only="the view index is always 0"),
    "MODEL.SIE_COE": Key(3.0, "lambda of the camera embedding", feature=True),
    "MODEL.DROP_PATH": Key(0.1, "stochastic depth rate of the ViT blocks (training)"),
    "MODEL.DROP_OUT": Key(0.0, "dropout rate of the ViT (training)"),
    "MODEL.ATT_DROP_RATE": Key(0.0, "attention dropout rate of the ViT (training)"),
    "MODEL.SKT_THRES": Key(0.3, "keypoint visibility threshold tau on heatmap peaks", feature=True),
    "MODEL.QUERY_NUM": Key(17, "learnable semantic views (17 with PVM_MODE reference)", low=1, feature=True),
    "MODEL.NUM_DECODER_LAYER": Key(2, "pose-guided decoder layers", low=1, feature=True),
    "MODEL.NUM_HEAD": Key(8, "decoder attention heads", low=1, feature=True),
    "MODEL.DECODER_FFN_DIM": Key(2048, "decoder feed-forward width", feature=True, new=True),
    "MODEL.DECODER_DROPOUT": Key(0.1, "decoder dropout rate (training)", new=True),
    "MODEL.PVM_MODE": Key("reference", "pose-view matching as the reference code or as the paper (any number of "
                                       "views; spec section 7)", choices=("reference", "paper"), feature=True,
                          new=True),
    "MODEL.DECODER_FFN_RESIDUAL": Key(False, "true: the paper's/DETR's feed-forward residual (spec section 6)",
                                      feature=True, new=True),
    "MODEL.PUSH_LOSS": Key("reference", "push loss: reference (1 - cos) / 2, paper cos",
                           choices=("reference", "paper"), new=True),
    "MODEL.FEAT_KIND": Key("full", "PFD's inference feature: every part, the global one, or the global one and "
                                   "the visible parts", choices=("full", "global", "global_visible"), feature=True,
                           new=True),
    "MODEL.PART_POOL": Key("cls", "the K part features: cls (the reference: b2's cls output over each contiguous "
                                  "token group) or pose (b2's tokens pooled by each keypoint's heatmap; a hidden "
                                  "keypoint's part is a zero block of the eval feature)", choices=("cls", "pose"),
                           feature=True, added_later=True, new=True),
    "MODEL.TOKEN_MASK": Key("none", "patches the ViT sees: all (none, the reference) or, with pose, only those within "
                                    "MODEL.TOKEN_MASK_RADIUS tokens of a visible keypoint, the others replaced by a "
                                    "learned mask token (all seen when no keypoint is visible)",
                            choices=("none", "pose"), feature=True, added_later=True, new=True),
    "MODEL.TOKEN_MASK_RADIUS": Key(1, "with MODEL.TOKEN_MASK pose: how many tokens around a visible keypoint stay seen",
                                   low=0, feature=True, added_later=True, new=True),
    "MODEL.TOKEN_MASK_SHAPE": Key("square", "with MODEL.TOKEN_MASK pose: what a visible keypoint keeps seen: square "
                                            "(MODEL.TOKEN_MASK_RADIUS tokens every way) or column (that many rows of "
                                            "its own column, so an occluder beside the body is hidden too)",
                                  choices=("square", "column"), feature=True, added_later=True, new=True),
    "MODEL.HEAT_WEIGHT": Key(True, "weight the global feature and the decoder memory by the heatmaps (ablation "
                                   "switch, spec section 2)", feature=True, new=True),
    "MODEL.PFA": Key(True, "pose-guided feature aggregation; false: A = L (ablation switch)", feature=True, new=True),
    "MODEL.PVM": Key(True, "pose-view matching; false: view j is paired with keypoint j (ablation switch)",
                     feature=True, new=True),
    "MODEL.DISENTANGLE": Key(True, "split outputs by keypoint visibility; false: every keypoint counts as "
                                   "visible, and no push loss (ablation switch)", feature=True, new=True),
    "MODEL.METRIC_LOSS_TYPE": Key("triplet", "metric loss (the only one implemented)", choices=("triplet",)),
    "MODEL.NO_MARGIN": Key(True, "true: soft-margin triplet; false: margin SOLVER.MARGIN"),
    "MODEL.IF_LABELSMOOTH": Key("on", "label smoothing of the ID loss", choices=("on", "off")),
    "MODEL.LABEL_SMOOTH_EPS": Key(0.1, "label smoothing epsilon", new=True),
    "MODEL.ID_LOSS_TYPE": Key("softmax", "ID loss (the only one implemented)", choices=("softmax",)),
    "MODEL.ID_LOSS_WEIGHT": Key(1.0, "weight of the ID loss"),
    "MODEL.TRIPLET_LOSS_WEIGHT": Key(1.0, "weight of the triplet loss"),
    "MODEL.GLOBAL_LOSS_SHARE": Key(0.5, "weight of the global entry against the mean of the parts, per branch",
                                   new=True),
    "MODEL.DECODER_LOSS_WEIGHT": Key(0.5, "weight of the decoder branch's loss (the encoder's is 0.5)", new=True),
    "MODEL.PUSH_LOSS_WEIGHT": Key(1.0, "weight of the push loss between f_h and f_l", new=True),
    "MODEL.IF_WITH_CENTER": Key("no", "the reference's center loss switch", reference_only=NO_CENTER),
    "MODEL.NECK": Key("bnneck", "the reference's neck", reference_only="the neck is always the BNNeck"),
    "MODEL.LAST_STRIDE": Key(1, "the reference's ResNet last stride",
                             reference_only="it applies to ResNet backbones only"),
    "MODEL.COS_LAYER": Key(False, "the reference's cosine classifier", reference_only=LINEAR_IDS),
    "MODEL.JPM": Key(False, "TransReID's jigsaw patch module", reference_only=JIGSAW),
    "MODEL.SHIFT_NUM": Key(5, "TransReID's jigsaw shift", reference_only=JIGSAW, only_with="MODEL.JPM"),
    "MODEL.SHUFFLE_GROUP": Key(2, "TransReID's jigsaw groups", reference_only=JIGSAW, only_with="MODEL.JPM"),
    "MODEL.DEVIDE_LENGTH": Key(4, "TransReID's jigsaw split", reference_only=JIGSAW, only_with="MODEL.JPM"),
    "MODEL.RE_ARRANGE": Key(True, "TransReID's jigsaw rearrangement", reference_only=JIGSAW, only_with="MODEL.JPM"),
    "MODEL.DIST_TRAIN": Key(False, "the reference's distributed switch",
                            reference_only="distributed training is detected from torchrun"),
    "MODEL.POSE_BACKEND": Key("auto", "pose estimator; auto: hrnet with POSE_WEIGHT, else learned with "
                                      "POSE_LEARNED_WEIGHT, else file with POSE_FILE, else synthetic for a synthetic "
                                      "set, else mediapipe",
                              choices=("auto", *POSE_BACKENDS), feature=True, new=True),
    "MODEL.POSE_ARCH": Key("hrnet_w48", "HRNet architecture", choices=("hrnet_w32", "hrnet_w48"), feature=True,
                           new=True),
    "MODEL.POSE_WEIGHT": Key("", "HRNet COCO checkpoint (pose_hrnet_w48_256x192.pth)", feature=True, resume=FREE),
    "MODEL.POSE_LEARNED_WEIGHT": Key("", "the learned keypoint and visibility estimator (pfd-train-pose writes it)",
                                     feature=True, resume=FREE, added_later=True, new=True),
    "MODEL.POSE_FILE": Key("", "keypoint file of the file backend (COCO JSON, OpenPose CSV, our own)", feature=True,
                           resume=FREE, new=True),
    "MODEL.POSE_ONLINE": Key(False, "run HRNet on every augmented batch (the reference) instead of cached keypoints",
                             feature=True, new=True),
    "MODEL.POSE_INPUT_NORM": Key("reference", "online HRNet's input: the ViT's input as is (the reference) or "
                                              "re-normalized to ImageNet statistics",
                                 choices=("reference", "imagenet"), feature=True, new=True),
    "MODEL.POSE_CACHE_DIR": Key("", "where keypoint caches go (empty = OUTPUT_DIR/../pose_cache)", resume=FREE,
                                new=True),
    "MODEL.RESUME": Key("", "checkpoint to resume, or auto (OUTPUT_DIR/last.pth); train.py --resume sets it",
                        resume=SILENT, new=True),
    # ------------------------------------------------------------------------------------------- INPUT
    "INPUT.SIZE_TRAIN": Key([256, 128], "training input size", low=16, length=2, parts=HW, feature=True),
    "INPUT.SIZE_TEST": Key([256, 128], "evaluation input size", low=16, length=2, parts=HW, feature=True),
    "INPUT.PROB": Key(0.5, "horizontal flip probability (training)"),
    "INPUT.RE_PROB": Key(0.5, "random erasing probability (training)"),
    "INPUT.PADDING": Key(10, "padding before the random crop (training)"),
    "INPUT.PIXEL_MEAN": Key([0.5, 0.5, 0.5], "input normalization mean", length=3, parts=RGB,
                            feature=True),
    "INPUT.PIXEL_STD": Key([0.5, 0.5, 0.5], "input normalization std", length=3, parts=RGB,
                           feature=True),
    "INPUT.HEATMAP_SIGMA": Key(2.0, "Gaussian sigma in heatmap pixels (heatmaps are H/4 x W/4)", positive=True,
                               feature=True, new=True),
    "INPUT.OCCLUDE_PROB": Key(0.0, "share of training images given an occluder (pfd.data.occlude.augment; 0 = "
                                   "off, the reference; evaluation images never)", low=0, high=1, new=True),
    "INPUT.OCCLUDE_KINDS": Key(["person", "object", "patch"], "occluders drawn from: another identity of the batch "
                                                              "from a side, a synthetic object, a plain or noise "
                                                              "patch", choices=OCCLUDER_KINDS, new=True),
    "INPUT.HIDE_PROB": Key(0.0, "share of the training images not given an occluder whose keypoints inside a bottom or "
                                "side box (INPUT.OCCLUDE_COVERAGE of the image) get confidence 0 while the pixels "
                                "stay: with MODEL.TOKEN_MASK pose the ViT then sees only the rest of the person",
                           low=0, high=1, new=True),
    "INPUT.OCCLUDE_COVERAGE": Key([0.2, 0.6], "range [MIN, MAX] of the image share an occluder covers; covered "
                                              "keypoints get confidence 0", length=2, parts="[MIN, MAX]",
                                  rule=_check_coverage,
                                  allowed=COVERAGE_RULE, new=True),
    # ---------------------------------------------------------------------------------------- DATASETS
    "DATASETS.NAMES": Key("market1501", "training (and default test) datasets, comma-separated"),
    "DATASETS.ROOT_DIR": Key("datasets", "folder the dataset names are looked up under", resume=FREE),
    "DATASETS.TEST_NAMES": Key("", "comma-separated evaluation datasets (empty = NAMES)", resume=FREE, new=True),
    "DATASETS.VAL_IDS": Key(0, "training ids held out as a validation split (best.pth is selected on it); 0 = none",
                            low=0, new=True),
    # -------------------------------------------------------------------------------------- DATALOADER
    "DATALOADER.NUM_WORKERS": Key(8, "data loading processes", low=0, resume=FREE),
    "DATALOADER.SAMPLER": Key("softmax_triplet", "PK batches (softmax_triplet) or a plain shuffle (softmax)",
                              choices=("softmax_triplet", "softmax")),
    "DATALOADER.NUM_INSTANCE": Key(4, "K images per identity in a PK batch", low=1),
    "DATALOADER.SHUFFLE_KEYPOINTS": Key(False, "train on shuffled keypoints (each image gets another's, a derangement "
                                               "seeded by SOLVER.SEED): the control run of whether the pose helps "
                                               "training", new=True),
    # ------------------------------------------------------------------------------------------ SOLVER
    "SOLVER.OPTIMIZER_NAME": Key("SGD", "optimizer", choices=("SGD", "Adam", "AdamW")),
    "SOLVER.MAX_EPOCHS": Key(120, "training epochs", low=1),
    "SOLVER.BASE_LR": Key(0.008, "base learning rate", positive=True),
    "SOLVER.LARGE_FC_LR": Key(False, "the reference's switch: ID classifiers at 2x BASE_LR (its configs: off)"),
    "SOLVER.BIAS_LR_FACTOR": Key(2, "learning rate multiplier of biases"),
    "SOLVER.CLASSIFIER_LR_FACTOR": Key(1.0, "learning rate multiplier of the ID classifiers (1 = the reference)",
                                       positive=True, new=True),
    "SOLVER.SEED": Key(1234, "random seed of initialization, sampling and augmentation"),
    "SOLVER.MOMENTUM": Key(0.9, "SGD momentum"),
    "SOLVER.MARGIN": Key(0.3, "triplet margin when MODEL.NO_MARGIN is false"),
    "SOLVER.CENTER_LR": Key(0.5, "the reference's center loss LR", reference_only=NO_CENTER),
    "SOLVER.CENTER_LOSS_WEIGHT": Key(0.0005, "the reference's center loss weight", reference_only=NO_CENTER),
    "SOLVER.WEIGHT_DECAY": Key(1e-4, "weight decay"),
    "SOLVER.WEIGHT_DECAY_BIAS": Key(1e-4, "weight decay of biases"),
    "SOLVER.GAMMA": Key(0.1, "the reference's step schedule factor", reference_only=COSINE),
    "SOLVER.STEPS": Key([40, 70], "the reference's step schedule epochs", reference_only=COSINE),
    "SOLVER.WARMUP_FACTOR": Key(0.01, "warm-up starts at this fraction of BASE_LR"),
    "SOLVER.WARMUP_EPOCHS": Key(5, "linear warm-up epochs", low=0),
    "SOLVER.WARMUP_METHOD": Key("linear", "the reference's warm-up shape (read only by its step schedule)",
                                reference_only="the warm-up is linear (SOLVER.WARMUP_FACTOR, WARMUP_EPOCHS)"),
    "SOLVER.LR_MIN_FACTOR": Key(0.002, "cosine floor as a fraction of BASE_LR", new=True),
    "SOLVER.COSINE_MARGIN": Key(0.5, "the reference's cosine classifier margin", reference_only=LINEAR_IDS,
                                only_with="MODEL.COS_LAYER"),
    "SOLVER.COSINE_SCALE": Key(30, "the reference's cosine classifier scale", reference_only=LINEAR_IDS,
                               only_with="MODEL.COS_LAYER"),
    "SOLVER.CHECKPOINT_PERIOD": Key(10, "epochs between epoch_NNN.pth copies (below 1: only the last epoch's)",
                                    resume=FREE),
    "SOLVER.LOG_PERIOD": Key(50, "iterations between log lines (below 1: only the epoch's summary)", resume=FREE),
    "SOLVER.EVAL_PERIOD": Key(10, "epochs between evaluations during training (below 1: only after the last)",
                              resume=FREE),
    "SOLVER.IMS_PER_BATCH": Key(64, "training batch size", low=1),
    "SOLVER.AMP": Key("auto", "training precision (auto: GPU bf16 if supported, else fp16; CPU bf16 with AMX, else "
                              "fp32)", choices=PRECISIONS, resume=FREE, new=True),
    "SOLVER.GRAD_CLIP": Key(0.0, "max gradient norm, 0 = off", new=True),
    "SOLVER.COMPILE": Key(False, "torch.compile the model", resume=FREE, new=True),
    # -------------------------------------------------------------------------------------------- TEST
    "TEST.EVAL": Key(True, "evaluate the test sets during training", resume=FREE),
    "TEST.IMS_PER_BATCH": Key(256, "evaluation batch size", low=1, resume=FREE),
    "TEST.RE_RANKING": Key(False, "k-reciprocal re-ranking", resume=FREE),
    "TEST.RE_RANKING_K1": Key(20, "re-ranking k1", resume=FREE, new=True),
    "TEST.RE_RANKING_K2": Key(6, "re-ranking k2", resume=FREE, new=True),
    "TEST.RE_RANKING_LAMBDA": Key(0.3, "re-ranking lambda", resume=FREE, new=True),
    "TEST.WEIGHT": Key("", "checkpoint to evaluate (ours or a reference PFD checkpoint)", resume=FREE),
    "TEST.NECK_FEAT": Key("before", "the ViT baseline's inference feature: before or after its BNNeck (PFD's is set "
                                    "by MODEL.FEAT_KIND)", choices=("before", "after"), feature=True, resume=FREE),
    "TEST.FEAT_NORM": Key("yes", "L2-normalize features before retrieval", choices=("yes", "no"), resume=FREE),
    "TEST.FLIP_FEATS": Key(False, "feature = mean of the image's and its mirror image's (test-time flip)",
                           feature=True, resume=FREE, new=True),
    "TEST.DIST_MAT": Key("dist_mat.npy", "the reference's distance matrix file",
                         reference_only="the distance matrix is not written"),
    "TEST.AMP": Key("fp32", "evaluation precision: fp32 (the reference), bf16, fp16 or auto (as SOLVER.AMP)",
                    choices=PRECISIONS, feature=True, resume=FREE, new=True),
    "TEST.NUM_VIS": Key(8, "queries shown in the ranked-list picture (0: no picture)", low=0, resume=FREE, new=True),
    "TEST.VIS_ORDER": Key("ap", "the picture's rows: one per equal share of the queries sorted by AP (ap), or evenly "
                                "spaced in the query list (list)", choices=("ap", "list"), resume=FREE, new=True),
    "TEST.NO_POSE": Key("invisible", "heatmaps of an evaluation image with no person found: every keypoint at "
                                     "confidence 0 (the reference), or a whole-body prior",
                        choices=("invisible", "prior"), feature=True, resume=FREE, new=True),
    "TEST.VIS_BUCKETS": Key([0, 6, 12], "lower ends of the visible-keypoint buckets of the per-occlusion metrics",
                            rule=_check_vis_buckets, allowed=f"increasing from 0, at most {NUM_KEYPOINTS}",
                            resume=FREE, new=True),
    "TEST.PART_DISTANCE": Key("concat", "how evaluation compares features: concat (the reference: one vector) or "
                                        "visible (PFD's part blocks only where both images show the part; "
                                        "pfd.retrieval.part_distance)", choices=("concat", "visible"), resume=FREE,
                              new=True),
    "TEST.PART_WEIGHT": Key(1.0, "with TEST.PART_DISTANCE visible: the weight of the part term against the other "
                                 "blocks", low=0.0, resume=FREE, new=True),
    "TEST.PART_RERANK_TOP": Key(100, "with TEST.PART_DISTANCE visible: a gallery search (pfd.Gallery, query.py "
                                     "search, the service) re-ranks this many nearest by the whole feature with the "
                                     "visible-part distance", positive=True, resume=FREE, new=True),
    "TEST.POSE_DEPENDENCE": Key(False, "evaluate each test set again with no, shuffled and (on a pfd.data.occlude set) "
                                       "oracle keypoints: how much retrieval depends on the pose "
                                       "(pfd.engine.pose_dependence)", resume=FREE, new=True),
    # --------------------------------------------------------------------------------------------------
    "OUTPUT_DIR": Key("logs", "checkpoints, logs, metrics", resume=FREE),
}

FEATURE_KEYS = tuple(name for name, key in SCHEMA.items() if key.feature)  # what config_hash covers
REFERENCE_ONLY = tuple(name for name, key in SCHEMA.items() if key.reference_only)  # dropped once loaded
RESUME_FREE = tuple(name for name, key in SCHEMA.items() if key.resume != FIXED)  # may change on --resume


def get_cfg_defaults() -> CN:
    """A fresh, mutable tree of every declared key at its default (reference-only keys included: a file may
    set them); loading merges files and overrides into it."""
    cfg = CN()
    for name, key in SCHEMA.items():
        *sections, leaf = name.split(".")
        node = cfg
        for section in sections:
            node = node.setdefault(section, CN())
        node[leaf] = list(key.default) if isinstance(key.default, list) else key.default
    return cfg

