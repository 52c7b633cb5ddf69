"""Every configuration key, its default and what it means.

Key names follow the reference PFD implementation (itself TransReID-based) so that its
YAML files load unchanged. Keys the reference has but this project does not use are kept
(marked "accepted, unused") so those files still validate, and loading warns when a file sets one to a
value that would change the reference's behaviour (pfd.config.NO_EFFECT); keys added here are marked "new".
"""
from yacs.config import CfgNode as CN

_C = CN()

# ----------------------------------------------------------------------------- MODEL
_C.MODEL = CN()
_C.MODEL.NAME = "pfd"  # pfd | vit_baseline ("skeleton_transformer" = pfd, "transformer" = vit_baseline)
_C.MODEL.DEVICE = "auto"  # auto | cpu | cuda | cuda:N
_C.MODEL.DEVICE_ID = "0"  # accepted, unused: select GPUs with CUDA_VISIBLE_DEVICES or torchrun
_C.MODEL.TRANSFORMER_TYPE = "vit_base_patch16_224"  # any timm ViT name; reference names are mapped
_C.MODEL.VIT_DEPTH = 0  # new: number of ViT blocks, 0 = the architecture's own (tiny configs use 2-4)
_C.MODEL.PRETRAIN_CHOICE = "imagenet"  # imagenet | self (our own checkpoint) | none
_C.MODEL.PRETRAIN_PATH = ""  # local ImageNet ViT weights (.pth/.bin/.safetensors/.npz); "" = from scratch
_C.MODEL.STRIDE_SIZE = [16, 16]  # patch stride (12 = overlapping "PFD*" setting)
# new: linear = one 16x16 conv (the reference) | conv_stem = timm ConvStem (three 3x3 stride-2
# conv-BN-ReLU, then a 2x2 projection): learns far faster from scratch; strides 8 or 16 only, no ImageNet weights
_C.MODEL.PATCH_EMBED = "linear"
_C.MODEL.SIE_CAMERA = True  # side-information (camera) embedding
_C.MODEL.SIE_VIEW = False  # accepted, unused (view index is always 0)
_C.MODEL.SIE_COE = 3.0  # lambda of the camera embedding
_C.MODEL.DROP_PATH = 0.1
_C.MODEL.DROP_OUT = 0.0
_C.MODEL.ATT_DROP_RATE = 0.0
# PFD head
_C.MODEL.SKT_THRES = 0.3  # keypoint visibility threshold tau on heatmap peaks
_C.MODEL.QUERY_NUM = 17  # learnable semantic views (must be 17 with PVM_MODE reference)
_C.MODEL.NUM_DECODER_LAYER = 2
_C.MODEL.NUM_HEAD = 8  # decoder attention heads
_C.MODEL.DECODER_FFN_DIM = 2048  # new
_C.MODEL.DECODER_DROPOUT = 0.1  # new
_C.MODEL.PVM_MODE = "reference"  # new: reference | paper (spec section 7)
_C.MODEL.DECODER_FFN_RESIDUAL = False  # new: True = paper/DETR feed-forward residual (spec section 6)
_C.MODEL.PUSH_LOSS = "reference"  # new: reference (1-cos)/2 | paper cos
# new: the K part features: cls (the reference: b2's cls output over each contiguous token group) | pose
# (the b2 tokens pooled by each keypoint's heatmap; a hidden keypoint's part is a zero block of the eval
# feature, so retrieval compares only the parts both images show; docs/EXPERIMENTS.md, issue 34)
_C.MODEL.PART_POOL = "cls"
_C.MODEL.FEAT_KIND = "full"  # new: inference feature: full | global | global_visible
# ablation switches (new; the defaults are the reference model, see docs/ARCHITECTURE.md)
_C.MODEL.HEAT_WEIGHT = True  # weight the global feature and the decoder memory by the heatmaps (spec section 2)
_C.MODEL.PFA = True  # pose-guided feature aggregation; false: A = L
_C.MODEL.PVM = True  # pose-view matching; false: view j is paired with keypoint j
# split outputs by keypoint visibility; false: every keypoint counts as visible, and no push loss
_C.MODEL.DISENTANGLE = True
# losses
_C.MODEL.METRIC_LOSS_TYPE = "triplet"
_C.MODEL.NO_MARGIN = True  # True: soft-margin triplet; False: margin SOLVER.MARGIN
_C.MODEL.IF_LABELSMOOTH = "on"
_C.MODEL.LABEL_SMOOTH_EPS = 0.1  # new
_C.MODEL.ID_LOSS_TYPE = "softmax"
_C.MODEL.ID_LOSS_WEIGHT = 1.0
_C.MODEL.TRIPLET_LOSS_WEIGHT = 1.0
_C.MODEL.GLOBAL_LOSS_SHARE = 0.5  # new: weight of the global entry against the mean of the parts, per branch
_C.MODEL.DECODER_LOSS_WEIGHT = 0.5  # new: weight of the decoder branch's loss (the encoder's is 0.5)
_C.MODEL.PUSH_LOSS_WEIGHT = 1.0  # new: weight of the push loss between f_h and f_l
_C.MODEL.IF_WITH_CENTER = "no"  # accepted, unused
_C.MODEL.NECK = "bnneck"  # accepted, unused
_C.MODEL.LAST_STRIDE = 1  # accepted, unused
_C.MODEL.COS_LAYER = False  # accepted, unused
_C.MODEL.JPM = False  # accepted, unused (TransReID jigsaw branch)
_C.MODEL.SHIFT_NUM = 5  # accepted, unused
_C.MODEL.SHUFFLE_GROUP = 2  # accepted, unused
_C.MODEL.DEVIDE_LENGTH = 4  # accepted, unused
_C.MODEL.RE_ARRANGE = True  # accepted, unused
_C.MODEL.DIST_TRAIN = False  # accepted, unused: distributed training is detected from torchrun
# pose
_C.MODEL.POSE_BACKEND = "auto"  # new: auto | hrnet | mediapipe | file | synthetic
_C.MODEL.POSE_ARCH = "hrnet_w48"  # new: hrnet_w32 | hrnet_w48
_C.MODEL.POSE_WEIGHT = ""  # HRNet COCO checkpoint (pose_hrnet_w48_256x192.pth)
_C.MODEL.POSE_FILE = ""  # new: keypoint file for the `file` backend (COCO JSON, OpenPose CSV, cache)
_C.MODEL.POSE_ONLINE = False  # new: run HRNet on every augmented batch (reference behaviour)
_C.MODEL.POSE_INPUT_NORM = "reference"  # new: online HRNet input: reference (the ViT's input as is) | imagenet
_C.MODEL.POSE_CACHE_DIR = ""  # new: where keypoint caches go ("" = OUTPUT_DIR/../pose_cache)
_C.MODEL.RESUME = ""  # new: checkpoint path to resume, or "auto" (last one in OUTPUT_DIR)

# ----------------------------------------------------------------------------- INPUT
_C.INPUT = CN()
_C.INPUT.SIZE_TRAIN = [256, 128]
_C.INPUT.SIZE_TEST = [256, 128]
_C.INPUT.PROB = 0.5  # horizontal flip
_C.INPUT.RE_PROB = 0.5  # random erasing
_C.INPUT.PADDING = 10
_C.INPUT.PIXEL_MEAN = [0.5, 0.5, 0.5]
_C.INPUT.PIXEL_STD = [0.5, 0.5, 0.5]
_C.INPUT.HEATMAP_SIGMA = 2.0  # new: Gaussian sigma in heatmap pixels (heatmaps are H/4 x W/4)
# new (beyond the paper): occluder augmentation of training batches (pfd.data.occlude.augment). With
# probability OCCLUDE_PROB a training image gets an occluder of one of OCCLUDE_KINDS (person: a slice of
# another identity of the batch from a side; object: a synthetic car, boxes, bush, tree or sign; patch: a
# plain or noise rectangle from the bottom or a side) covering a share of the image drawn in
# OCCLUDE_COVERAGE, and the keypoints it covers get confidence 0 before the heatmaps are drawn.
# 0 = off (the reference). Evaluation images are never occluded.
_C.INPUT.OCCLUDE_PROB = 0.0
_C.INPUT.OCCLUDE_KINDS = ["person", "object", "patch"]
_C.INPUT.OCCLUDE_COVERAGE = [0.2, 0.6]

# ----------------------------------------------------------------------------- DATASETS
_C.DATASETS = CN()
_C.DATASETS.NAMES = "market1501"  # training (and default test) dataset
_C.DATASETS.ROOT_DIR = "datasets"
_C.DATASETS.TEST_NAMES = ""  # new: comma-separated evaluation datasets ("" = NAMES)
_C.DATASETS.VAL_IDS = 0  # new: hold out N training ids as a validation split (best.pth is selected on it); 0 = none

# ----------------------------------------------------------------------------- DATALOADER
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 8
_C.DATALOADER.SAMPLER = "softmax_triplet"  # softmax_triplet (PK) | softmax (random)
_C.DATALOADER.NUM_INSTANCE = 4  # K images per identity in a batch
# new: train on shuffled keypoints (each training image gets another's, a fixed derangement seeded by
# SOLVER.SEED): the control run that measures whether the pose helps training at all (docs/EXPERIMENTS.md)
_C.DATALOADER.SHUFFLE_KEYPOINTS = False

# ----------------------------------------------------------------------------- SOLVER
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER_NAME = "SGD"
_C.SOLVER.MAX_EPOCHS = 120
_C.SOLVER.BASE_LR = 0.008
# the ID classifiers at 2x BASE_LR (as CLASSIFIER_LR_FACTOR 2; the reference configs: off)
_C.SOLVER.LARGE_FC_LR = False
_C.SOLVER.BIAS_LR_FACTOR = 2
_C.SOLVER.CLASSIFIER_LR_FACTOR = 1.0  # new: LR multiplier of the ID classifiers (1 = the reference)
_C.SOLVER.SEED = 1234
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.MARGIN = 0.3
_C.SOLVER.CENTER_LR = 0.5  # accepted, unused
_C.SOLVER.CENTER_LOSS_WEIGHT = 0.0005  # accepted, unused
_C.SOLVER.WEIGHT_DECAY = 1e-4
_C.SOLVER.WEIGHT_DECAY_BIAS = 1e-4
_C.SOLVER.GAMMA = 0.1  # accepted, unused (step schedule)
_C.SOLVER.STEPS = [40, 70]  # accepted, unused (step schedule)
_C.SOLVER.WARMUP_FACTOR = 0.01  # warm-up starts at this fraction of BASE_LR
_C.SOLVER.WARMUP_EPOCHS = 5
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.LR_MIN_FACTOR = 0.002  # new: cosine floor as a fraction of BASE_LR
_C.SOLVER.COSINE_MARGIN = 0.5  # accepted, unused
_C.SOLVER.COSINE_SCALE = 30  # accepted, unused
_C.SOLVER.CHECKPOINT_PERIOD = 10
_C.SOLVER.LOG_PERIOD = 50
_C.SOLVER.EVAL_PERIOD = 10
_C.SOLVER.IMS_PER_BATCH = 64
# new: auto (GPU: bf16 if supported, else fp16; CPU: bf16 with AMX, else fp32) | bf16 | fp16 | fp32
_C.SOLVER.AMP = "auto"
_C.SOLVER.GRAD_CLIP = 0.0  # new: max gradient norm, 0 = off
_C.SOLVER.COMPILE = False  # new: torch.compile the model

# ----------------------------------------------------------------------------- TEST
_C.TEST = CN()
_C.TEST.EVAL = True
_C.TEST.IMS_PER_BATCH = 256
_C.TEST.RE_RANKING = False
_C.TEST.RE_RANKING_K1 = 20  # new
_C.TEST.RE_RANKING_K2 = 6  # new
_C.TEST.RE_RANKING_LAMBDA = 0.3  # new
_C.TEST.WEIGHT = ""  # checkpoint to evaluate (ours or a reference PFD checkpoint)
_C.TEST.NECK_FEAT = "before"  # accepted, unused: PFD's inference feature is fixed by the spec
_C.TEST.FEAT_NORM = "yes"  # L2-normalize features before retrieval
_C.TEST.FLIP_FEATS = False  # new: feature = mean of the image's and its mirror image's (test-time flip)
_C.TEST.DIST_MAT = "dist_mat.npy"  # accepted, unused
_C.TEST.AMP = "fp32"  # new: evaluation precision: fp32 (the reference) | bf16 | fp16 | auto (as SOLVER.AMP)
_C.TEST.NUM_VIS = 8  # new: queries shown in the ranked-list picture (0: no picture)
# new: its rows: ap (one per equal share of the queries sorted by AP, best first) | list (evenly spaced in the
# query list)
_C.TEST.VIS_ORDER = "ap"
# new: the heatmaps of an evaluation image where the pose estimator found no person: invisible (every
# keypoint at confidence 0, as the reference's HRNet zeros) | prior (a whole-body prior: an upright
# person filling the crop, every keypoint at confidence 1). Training images are never changed.
_C.TEST.NO_POSE = "invisible"
# new: per-occlusion metrics, lower ends of the visible-keypoint buckets (0-5, 6-11, 12-17); checked at load
_C.TEST.VIS_BUCKETS = [0, 6, 12]
# new: evaluate each test set again with no keypoints, shuffled keypoints and (on a pfd.data.occlude set) the
# unoccluded originals' keypoints with the occluded ones hidden: how much the retrieval depends on the pose
# (pfd.engine.pose_dependence; metrics.json "pose_dependence", report.html)
_C.TEST.POSE_DEPENDENCE = False

_C.OUTPUT_DIR = "logs"  # checkpoints, logs, metrics


def get_cfg_defaults() -> CN:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
