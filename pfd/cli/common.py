"""What every command's command line shares, written once: the program name as the user typed it,
`--config` with the trailing `KEY VALUE` config overrides, `--debug`, and the one-line report of a
user's mistake.

Each command of this package builds its parser with `command_parser` (query's two subcommands add the
shared arguments with `add_shared_arguments`), reads it with `parse_intermixed_args` (so the overrides
may come before, between or after the options) and runs its work inside `one_line_errors(args)`: a
UserError, or the operating system's refusal on a path the user named, prints `error: <message>` and
exits with status 2 (pfd.errors.user_errors); with `--debug` it keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Iterator

from pfd.errors import user_errors

__all__ = ["OVERRIDES_HELP", "add_shared_arguments", "command_parser", "one_line_errors", "program_name"]

OVERRIDES_HELP = "config overrides: KEY VALUE ..."


def program_name() -> str:
    """The command as the user ran it, named as Python 3.14's argparse names it: an installed command or a
    script by its file name (`pfd-serve`, `train.py`), a module run with -m as `python -m pfd.serve`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None:  # a script, or the wrapper pip writes for an installed command
        return os.path.basename(sys.argv[0])
    return f"{os.path.basename(sys.executable)} -m {spec.name.removesuffix('.__main__')}"


def add_shared_arguments(parser: argparse.ArgumentParser, *, config: str | None = None, required: bool = False,
                         overrides: str = OVERRIDES_HELP) -> argparse.ArgumentParser:
    """Add `--debug` to `parser` and, for a command that reads a config (`config`: the help of its `--config`,
    which `required` makes compulsory), `--config` and the config overrides `opts` (`overrides`: their help)."""
    if config is not None:
        parser.add_argument("--config", required=required, help=config)
        parser.add_argument("opts", nargs="*", help=overrides)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an expected error too")
    return parser


def command_parser(description: str, **shared) -> argparse.ArgumentParser:
    """A command's parser: named as the user ran it (`program_name`), `description` printed as written, with
    the shared arguments (`add_shared_arguments(parser, **shared)`)."""
    parser = argparse.ArgumentParser(prog=program_name(), description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_shared_arguments(parser, **shared)


@contextlib.contextmanager
def one_line_errors(args: argparse.Namespace) -> Iterator[argparse.Namespace]:
    """Run a command's work on its parsed `args`: a user's mistake is one `error:` line and exit status 2, with
    its traceback under `args.debug` (pfd.errors.user_errors)."""
    with user_errors(args.debug):
        yield args
