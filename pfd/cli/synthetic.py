"""Render the synthetic occluded re-ID dataset: Market-1501 layout + keypoints.json.

    python -m pfd.data.synthetic --out DIR [--ids-train N --ids-test M --seed S ...]

(Installed by pip as `pfd-synthetic`.)
"""
import argparse
from dataclasses import fields

from pfd.cli.common import command_parser, one_line_errors
from pfd.data.synthetic.generate import SyntheticConfig, generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser(__doc__)
    parser.add_argument("--out", required=True, help="dataset folder to create")
    for f in fields(SyntheticConfig):  # one option per setting, e.g. --ids-train, --images-per-id
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                            help=f"{f.metadata['help']} (default {f.default})")
    parser.add_argument("--force", action="store_true",
                        help="replace an --out folder made by this generator (other folders are never replaced)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes rendering the images (default 0: one per CPU core; the bytes are the same)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # bad settings, or an --out it must not replace: one line, exit 2
        cfg = SyntheticConfig(**{f.name: getattr(args, f.name) for f in fields(SyntheticConfig)})
        print(generate(args.out, cfg, force=args.force, progress=not args.quiet, workers=args.workers))


if __name__ == "__main__":
    main()
