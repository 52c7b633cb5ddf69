"""Train PFD (or the ViT baseline): `python train.py --config configs/occluded_duke.yaml [KEY VALUE ...]`.
(Installed by pip as `pfd-train`.)

Multi-GPU / multi-node: `torchrun --nproc_per_node N train.py --config ...`.
Resume: `--resume` (= MODEL.RESUME auto, OUTPUT_DIR/last.pth) or `--resume path.pth`.
Start over: `--replace` deletes an earlier run in OUTPUT_DIR first (refused when a file there is not a run's).
"""
import argparse

from pfd.config import load_config
from pfd.distributed import cleanup
from pfd.engine.trainer import train
from pfd.errors import add_debug_argument, user_errors


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue from a checkpoint (no value: OUTPUT_DIR/last.pth if present)")
    parser.add_argument("--replace", action="store_true",
                        help="start over in an OUTPUT_DIR holding an earlier run of ours: its files are deleted "
                             "first (refused when OUTPUT_DIR holds anything a run does not write)")
    add_debug_argument(parser)
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser.parse_intermixed_args(argv)  # --resume may come before or after the overrides


def main(argv=None) -> None:
    args = parse_args(argv)
    opts = list(args.opts) + (["MODEL.RESUME", args.resume] if args.resume else [])
    with user_errors(args.debug):  # a bad config, file or checkpoint: one line, exit status 2
        cfg = load_config(args.config, opts)
        try:
            train(cfg, replace=args.replace)
        finally:
            cleanup()


if __name__ == "__main__":
    main()
