"""Train the project's own keypoint and visibility estimator (MODEL.POSE_BACKEND learned).

    pfd-train-pose --config configs/cuhk03_cpu.yaml --out weights/learned_pose.pth [--epochs 20] [KEY VALUE ...]

The teacher is the config's pose backend (MODEL.POSE_BACKEND; --teacher overrides it) on the clean
training crops of DATASETS.NAMES, from its pose cache (built first if missing). Occluders are pasted
on the fly and the keypoints they cover are taught as hidden (pfd.engine.pose_training). The weights
file is written after every epoch; a file of ours at --out is replaced, anything else refused. Use it
with `MODEL.POSE_BACKEND learned MODEL.POSE_LEARNED_WEIGHT weights/learned_pose.pth`.
Prints one JSON line per epoch.
"""
from __future__ import annotations

import argparse
import json
import logging

from pfd.cli.common import command_parser, one_line_errors
from pfd.config import load_config
from pfd.engine.pose_training import PoseTrainSettings, train_pose_estimator
from pfd.errors import InvalidInputError
from pfd.io import claim_output_file
from pfd.pose.base import BACKENDS
from pfd.pose.learned import is_learned_pose_file

DEFAULTS = PoseTrainSettings()
TEACHERS = ("auto",) + tuple(b for b in BACKENDS if b != "learned")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser(__doc__, config="YAML config file (datasets, pose backend and cache)", required=True)
    parser.add_argument("--out", required=True, help="the weights file to write (.pth)")
    parser.add_argument("--teacher", choices=TEACHERS, help="overrides MODEL.POSE_BACKEND: whose keypoints are learned")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--occlude-prob", type=float, default=DEFAULTS.occlude_prob,
                        help="share of the training crops given an occluder")
    parser.add_argument("--visibility-weight", type=float, default=DEFAULTS.visibility_weight,
                        help="weight of the visibility loss against the location loss")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    return parser.parse_intermixed_args(argv)  # options may come before or after the overrides


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with one_line_errors(args):
        settings = PoseTrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                     occlude_prob=args.occlude_prob, visibility_weight=args.visibility_weight,
                                     seed=args.seed)
        settings.check()
        opts = list(args.opts) + (["MODEL.POSE_BACKEND", args.teacher] if args.teacher else [])
        cfg = load_config(args.config, opts)
        if cfg.MODEL.POSE_BACKEND == "learned":
            raise InvalidInputError("pfd-train-pose: the teacher cannot be the learned estimator itself; set "
                                    "--teacher (mediapipe, hrnet, file or synthetic)")
        out = claim_output_file(args.out, is_learned_pose_file, what="learned pose estimator",
                                hint="name a new file, or one pfd-train-pose wrote, with --out")
        train_pose_estimator(cfg, out, settings, on_epoch=lambda row: print(json.dumps(row), flush=True))
        print(json.dumps({"weights": str(out), "use": f"MODEL.POSE_BACKEND learned MODEL.POSE_LEARNED_WEIGHT {out}"}))


if __name__ == "__main__":
    main()
