"""The key reference in docs/USAGE.md, regenerated from the config schema (`make docs`).

    python -m pfd.cli.docs [docs/USAGE.md]

Only the text between the markers is replaced (a file without them is refused); tests/test_config_schema.py
fails while the file's block and the schema differ. A tool for the repository's docs: pip installs no command.
"""
import argparse

from pfd.cli.common import command_parser, one_line_errors
from pfd.config.docs import update_key_reference


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser(__doc__)
    parser.add_argument("path", nargs="?", default="docs/USAGE.md", help="markdown file holding the markers")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> None:
    with one_line_errors(parse_args(argv)) as args:  # a missing file, or one without the markers: one line, exit 2
        changed = update_key_reference(args.path)
    print(f"{args.path}: key reference {'updated' if changed else 'already up to date'}")


if __name__ == "__main__":
    main()
