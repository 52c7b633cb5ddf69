"""Write an occluded copy of a Market-layout dataset: occluded queries, the original gallery and
training images, per-query occluder masks and a manifest (occlusion.json).

    python -m pfd.data.occlude --dataset cuhk03 --root ROOT_DIR --out ROOT_DIR/cuhk03_occ [--kinds ... --seed S]

(Installed by pip as `pfd-occlude`.)
"""
import argparse

from pfd.cli.common import command_parser, one_line_errors
from pfd.data.occlude.build import OccludeConfig, build_occluded
from pfd.data.occlude.occluders import KINDS
from pfd.errors import InvalidInputError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser(__doc__)
    parser.add_argument("--dataset", required=True,
                        help="source dataset: a registered name under --root, or folder:PATH")
    parser.add_argument("--root", default=".", help="DATASETS.ROOT_DIR the name is looked up under (default .)")
    parser.add_argument("--out", required=True, help="dataset folder to create (e.g. ROOT/cuhk03_occ)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"occluder kinds to mix, comma-separated subset of {','.join(KINDS)} (default all)")
    parser.add_argument("--coverage", default="0.2,0.6",
                        help="MIN,MAX share of the person box covered (default 0.2,0.6)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives the same bytes (default 0)")
    parser.add_argument("--force", action="store_true", help="replace an --out folder made by this command "
                                                             "(other folders are never replaced)")
    return parser.parse_intermixed_args(argv)


def parse_coverage(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInputError(f"--coverage {text!r}: expected MIN,MAX, e.g. 0.2,0.6") from None
    return low, high


def main(argv: list[str] | None = None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # bad settings, or an --out it must not replace: one line, exit 2
        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
        cfg = OccludeConfig(kinds=kinds, coverage=parse_coverage(args.coverage), seed=args.seed)
        summary = build_occluded(args.dataset, args.root, args.out, cfg, force=args.force)
        print(f"occluded {args.dataset} -> {summary['out']}: {summary['queries']} queries {summary['kinds']}, "
              f"mean covered share {summary['mean_fraction']:.2f}")


if __name__ == "__main__":
    main()
