"""Train PFD (or the ViT baseline): `python train.py --config configs/occluded_duke.yaml [KEY VALUE ...]`.
(Installed by pip as `pfd-train`.)

Multi-GPU / multi-node: `torchrun --nproc_per_node N train.py --config ...`.
Resume: `--resume` (= MODEL.RESUME auto, OUTPUT_DIR/last.pth) or `--resume path.pth`.
Start over: `--replace` deletes an earlier run in OUTPUT_DIR first (refused when a file there is not a run's).
"""
import argparse

from pfd.cli.common import command_parser, one_line_errors
from pfd.config import load_config
from pfd.distributed import cleanup
from pfd.engine.trainer import train


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser(__doc__, config="YAML config file", required=True)
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue from a checkpoint (no value: OUTPUT_DIR/last.pth if present)")
    parser.add_argument("--replace", action="store_true",
                        help="start over in an OUTPUT_DIR holding an earlier run of ours: its files are deleted "
                             "first (refused when OUTPUT_DIR holds anything a run does not write)")
    return parser.parse_intermixed_args(argv)  # --resume may come before or after the overrides


def main(argv=None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # a bad config, file or checkpoint: one line, exit status 2
        opts = list(args.opts) + (["MODEL.RESUME", args.resume] if args.resume else [])
        cfg = load_config(args.config, opts)
        try:
            train(cfg, replace=args.replace)
        finally:
            cleanup()


if __name__ == "__main__":
    main()
