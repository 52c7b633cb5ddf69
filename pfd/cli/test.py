"""Evaluate a checkpoint: `python test.py --config CFG TEST.WEIGHT path.pth [KEY VALUE ...]`.
(Installed by pip as `pfd-test`.)

Works with our checkpoints and with reference PFD checkpoints (converted on load). Evaluates every
dataset in DATASETS.TEST_NAMES (comma-separated; default DATASETS.NAMES) under the Market-1501
protocol and writes metrics.json, cmc.png and ranked_lists.png into OUTPUT_DIR.
"""
import argparse

from pfd.cli.common import command_parser, one_line_errors
from pfd.config import load_config
from pfd.distributed import cleanup
from pfd.engine.tester import run_test


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser(__doc__, config="YAML config file", required=True,
                            overrides="config overrides: KEY VALUE ... (TEST.WEIGHT path)")
    return parser.parse_intermixed_args(argv)  # --config may come before or after the overrides


def main(argv=None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # a bad config, file or checkpoint: one line, exit status 2
        cfg = load_config(args.config, args.opts)
        try:
            run_test(cfg)
        finally:
            cleanup()


if __name__ == "__main__":
    main()
