"""Convert a reference PFD (or TransReID baseline) checkpoint into this project's layout.

    python -m pfd.model.convert IN.pth OUT.pth

(Installed by pip as `pfd-convert`.) Optional: the other commands also read a reference checkpoint as it
is, converting it on load.
"""
import argparse

from pfd.cli.common import command_parser, one_line_errors
from pfd.model.convert import convert_checkpoint_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser(__doc__)
    parser.add_argument("src", help="reference checkpoint (.pth)")
    parser.add_argument("dst", help="output file: {'model': state_dict, 'source': src}")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # a missing or foreign checkpoint, a dst of the user's: exit 2
        layout = convert_checkpoint_file(args.src, args.dst)
    print(f"{args.src} ({layout}) -> {args.dst}")


if __name__ == "__main__":
    main()
