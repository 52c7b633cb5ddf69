"""PFD against its ViT baseline (and ablations), same data, budget and seed, by occlusion bucket.

    python -m pfd.compare --config configs/demo_synthetic.yaml --out demo_output/compare [KEY VALUE ...]
    python -m pfd.compare --config CFG --out DIR --variant no_pfa MODEL.PFA false --reuse

Trains `pfd` and `vit_baseline` (plus every --variant NAME KEY VALUE ...) into OUT/NAME, evaluates
each like test.py (OUT/NAME/test/metrics.json) and prints one table per test set: mAP / Rank-1 over all
queries and per visible-keypoint bucket (TEST.VIS_BUCKETS), and each variant minus the baseline.
(Installed by pip as `pfd-compare`.)
"""
import argparse

from pfd.cli.common import command_parser, one_line_errors
from pfd.config import load_config
from pfd.distributed import cleanup
from pfd.engine.compare import DEFAULT_VARIANTS, compare_tables, run_compare
from pfd.errors import InvalidInputError
from pfd.io import child_path


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser(__doc__, config="YAML config shared by every variant", required=True,
                            overrides="config overrides for every variant: KEY VALUE ...")
    parser.add_argument("--out", required=True, help="folder for the runs (OUT/NAME) and compare.json")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME [KEY VALUE]",
                        help="an extra variant: a name, then its config overrides (repeatable)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="run only these variants (e.g. --only pfd to add a run to an earlier --out)")
    parser.add_argument("--reuse", action="store_true", help="evaluate finished runs in OUT instead of retraining")
    return parser.parse_intermixed_args(argv)


def variants_from_args(args) -> dict[str, list[str]]:
    variants = dict(DEFAULT_VARIANTS)
    for name, *overrides in args.variant:
        child_path(args.out, name, "--variant")  # a plain name: it trains into OUT/NAME
        if len(overrides) % 2:
            raise InvalidInputError(f"--variant {name}: overrides come in KEY VALUE pairs, got {overrides}")
        if name in variants:
            raise InvalidInputError(f"--variant {name}: the name is taken (variants: {', '.join(variants)})")
        variants[name] = ["MODEL.NAME", "pfd", *overrides]
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise InvalidInputError(f"--only {' '.join(unknown)}: no such variant (variants: {', '.join(variants)})")
        variants = {n: o for n, o in variants.items() if n in args.only}
    for overrides in variants.values():  # every variant's config is checked before hours of training
        load_config(args.config, [*args.opts, *overrides])
    return variants


def main(argv=None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # a bad variant, config or --out: one line, exit status 2
        variants = variants_from_args(args)
        try:
            results = run_compare(args.config, args.opts, args.out, variants, reuse=args.reuse)
        finally:
            cleanup()
    print("\n" + compare_tables(results), flush=True)


if __name__ == "__main__":
    main()
