"""Evaluate a checkpoint: `python test.py --config CFG TEST.WEIGHT path.pth [KEY VALUE ...]`.
(Installed by pip as `pfd-test`.)

Works with our checkpoints and with reference PFD checkpoints (converted on load). Evaluates every
dataset in DATASETS.TEST_NAMES (comma-separated; default DATASETS.NAMES) under the Market-1501
protocol and writes metrics.json, cmc.png and ranked_lists.png into OUTPUT_DIR.
"""
import argparse

from pfd.config import load_config
from pfd.distributed import cleanup
from pfd.engine.tester import run_test
from pfd.errors import add_debug_argument, user_errors


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config file")
    add_debug_argument(parser)
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ... (TEST.WEIGHT path)")
    return parser.parse_intermixed_args(argv)  # --config may come before or after the overrides


def main(argv=None) -> None:
    args = parse_args(argv)
    with user_errors(args.debug):  # a bad config, file or checkpoint: one line, exit status 2
        cfg = load_config(args.config, args.opts)
        try:
            run_test(cfg)
        finally:
            cleanup()


if __name__ == "__main__":
    main()
