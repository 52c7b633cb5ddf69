"""The one exception type for expected failures, and how the commands report them.

A `UserError` is a failure the user can fix without reading code: a bad config value, a missing or
damaged file, a checkpoint of another model, a full disk. Its message names the file, key or value
and what was expected. Every command (pfd/cli, through `user_errors`) prints it as one line and exits
with status 2; anything else is a bug and keeps its traceback (so does a UserError under `--debug`).
Subclasses also derive from the builtin type that callers may already catch (ValueError, OSError).

The operating system's refusals on a path the user gave are reported the same way: an OSError that
names its file (`filename`) with an errno of `USER_ERRNOS` (permission denied, read-only file system,
disk full or over quota, a file where a folder is needed or the reverse, a path that exists) prints
`error: <path>: <reason>`. Any other OSError, or one without a file name, is a bug and keeps its traceback.

A command refused on its input leaves nothing behind: what it made while starting (a new output folder
holding only its marker and log, the folders above it) registers an undo with `undo_if_refused`, run
when a user error ends the command; `outputs_kept()` marks where the command's long work starts, after
which what it made stays whatever happens (long work keeps what it has done when it fails).
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["UserError", "InvalidInputError", "MissingFileError", "OutputExistsError", "outputs_kept", "require_file",
           "require_folder", "undo_if_refused", "user_errors"]

EXIT_USER_ERROR = 2  # the status argparse uses for a bad command line
USER_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST,
                         errno.ENOTDIR, errno.EISDIR})  # the OS's answers about a path, not bugs


class UserError(Exception):
    """An expected failure caused by the user's input; the message says what to change."""


class InvalidInputError(UserError, ValueError):
    """A file, value or option whose content cannot be used."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or the config points at) does not exist."""


class OutputExistsError(UserError, FileExistsError):
    """An output path holds something this run did not make; it is never replaced (the message says
    how to proceed)."""


CHECKPOINT_FILE = "a checkpoint file (e.g. last.pth or best.pth inside it)"  # `expected` of require_file


def require_file(path: str | os.PathLike, what: str, expected: str = "a file") -> Path:
    """`path` as a Path when it is a file. Else MissingFileError "`what` not found: `path`" when nothing is
    there, or InvalidInputError "`what` `path` is a folder, expected `expected`": a path that exists is
    never reported as not found."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{what} {path} is a folder, expected {expected}")
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    return path


def require_folder(path: str | os.PathLike, what: str, expected: str = "a folder") -> Path:
    """`path` as a Path when it is a folder; MissingFileError when nothing is there, InvalidInputError
    "`what` `path` is a file, expected `expected`" when it is something else."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{what} {path} is a file, expected {expected}")
    if not path.is_dir():
        raise MissingFileError(f"{what} not found: {path}")
    return path


_UNDO: list[list[Callable[[], object]]] = []  # per running command (nested user_errors blocks): its undos


def undo_if_refused(action: Callable[[], object]) -> None:
    """Run `action` if the running command ends with a user error before `outputs_kept()` (a no-op outside
    a command: library callers keep what they made)."""
    if _UNDO:
        _UNDO[-1].append(action)


def outputs_kept() -> None:
    """The running command's long work starts: what it made so far is kept even if it fails later."""
    if _UNDO:
        _UNDO[-1].clear()


def _undo_all(actions: list[Callable[[], object]]) -> None:
    while actions:
        actions.pop()()  # newest first: a folder made inside another is removed before it


@contextlib.contextmanager
def user_errors(debug: bool = False) -> Iterator[None]:
    """Turn a UserError, or an OSError of `USER_ERRNOS` naming its path, into `error: <message>` on
    stderr and exit status 2 (re-raised when `debug`), after undoing what the command made while starting
    (`undo_if_refused`)."""
    _UNDO.append([])
    try:
        yield
    except UserError as err:
        _undo_all(_UNDO[-1])
        if debug:
            raise
        _report(str(err))
    except OSError as err:
        if err.errno not in USER_ERRNOS or not err.filename:
            raise
        _undo_all(_UNDO[-1])
        if debug:
            raise
        paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p)
        _report(f"{paths}: {err.strerror}")
    finally:
        _UNDO.pop()


def _report(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR) from None
