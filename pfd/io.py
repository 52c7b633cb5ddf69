"""Files of every package: crash-safe writing and content hashing.

Every writer of the project (checkpoints, caches, indexes, metrics, plots) writes a temp file in
the target folder, fsyncs it, then `os.replace`s it into place, so a crash leaves either the old
file or the new one, never a half-written one. A temp file is named after its target, host and
process (`.NAME.tmp-HOST-PID-XXXX.tmp`): one orphaned by a killed writer is removed at the next write
of the same target (only when its process is gone; a live writer's temp file is never touched).
A full disk is reported as `DiskFullError`, naming the file. `sha256_file` is the one content hash of
a file (checkpoint identities, index integrity, keypoint files).

The output guard: every path a command or the API writes is first claimed here. A folder is claimed
with `claim_output_dir(path, kind)`: a new or empty folder is created and marked as ours (a
`.pfd-output.json` marker naming its kind: run, eval, index, ...); a folder already marked with that
kind (or one it may share) is ours to write into; anything else (a user's folder with files in it,
our folder of another kind, a file) is refused with an `OutputExistsError` saying how to proceed.
`foreign_entries` lists what in one of our folders we did not make, so that replacing it (`--force`,
`--replace`) can refuse when a user's file is inside. A single output file is claimed with
`claim_output_file(path, is_ours)`: new, or an existing file that `is_ours` recognizes (a picture or
ONNX file this program wrote), and never inside one of our folders of another purpose. Both check
that the folder can be written (`check_writable`: a read-only or forbidden folder fails at once, as
an OSError naming it, which pfd.errors.user_errors prints as one line). What a claim made is undone
when the command is then refused on its input (pfd.errors.undo_if_refused): a new folder holding only
its marker and log is removed, with the empty folders made above it. No output lies inside one of our
folders of another purpose (`NESTS` lists the exceptions: an evaluation in its run, a compare's runs).

Names and links: a name a user gives (a test set, a variant, a `folder:` dataset) becomes a path only
through `child_path` (a plain name, `flat_name` makes one of any text), so it never leads outside its
folder; and every removal goes through `remove_inside`, which never follows a symbolic link.
"""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from .errors import InvalidInputError, OutputExistsError, UserError, undo_if_refused

__all__ = ["DiskFullError", "NESTS", "OUTPUT_MARKER", "WRITTEN_RECORD", "atomic_write", "atomic_path", "atomic_save",
           "changed_entries", "child_path", "claim_output_dir", "check_writable", "claim_output_file",
           "disk_full_reported", "flat_name", "foreign_entries", "listing", "output_kind", "record_written",
           "refuse_inside_ours", "remove_inside", "remove_stale_folders", "replace_folder", "sha256_file",
           "temp_folder", "unowned_entries"]

OUTPUT_MARKER = ".pfd-output.json"  # in every folder the project made: {"format", "kind"}
WRITTEN_RECORD = ".pfd-written.sha256"  # `sha256sum` lines of the files a dataset writer put in its folder
STARTUP_FILES = frozenset({OUTPUT_MARKER, "log.txt"})  # what a command writes into its folder before its work

# The kinds of our folders each kind of output may be made in, at any depth: an evaluation beside its run (or
# per test set inside its own folder), a compare's variant runs and their evaluations, a pose cache next to
# either. Anything else inside one of our folders is refused, and a single file always (claim_output_file).
NESTS = {"run": frozenset({"compare"}), "eval": frozenset({"run", "eval", "compare"}),
         "pose_cache": frozenset({"run", "eval", "compare"})}

_FULL = (errno.ENOSPC, errno.EDQUOT)
_GLOB_MAGIC = re.compile(r"[*?[]")
PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # what a name a user gives may become, as one path component


class DiskFullError(UserError, OSError):
    """No space left (or quota exceeded) while writing a file; the old file is unchanged."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def remove_orphaned_temps(path: Path) -> list[Path]:
    """Delete temp files of `path` left by writers of this host whose process is gone; returns them."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.tmp-(?P<host>.+)-(?P<pid>\d+)-[^-]*\.tmp$")
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.tmp-*.tmp"):
        match = pattern.match(candidate.name)
        if match and match["host"] == socket.gethostname() and _process_gone(int(match["pid"])):
            remove_inside(path.parent, candidate)  # a link of that name goes, never what it points to
            removed.append(candidate)
    return removed


def disk_full_cause(err: BaseException | None) -> OSError | None:
    """The ENOSPC / EDQUOT OSError behind `err` (torch.save wraps it in a RuntimeError), if any."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in _FULL:
            return err
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path` for a writer that needs a file name (e.g. faiss.write_index);
    on success it becomes `path` (with the usual umask permissions), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as err:
        full = disk_full_cause(err)
        if full is None:
            raise
        tmp.unlink(missing_ok=True)
        raise disk_full_error(path, full, "nothing was replaced") from err
    finally:
        tmp.unlink(missing_ok=True)


def disk_full_error(path: Path, full: OSError, outcome: str) -> DiskFullError:
    """The one-line DiskFullError for `full` (an ENOSPC / EDQUOT OSError) met while writing `path`;
    `outcome` says what was kept (e.g. "nothing was replaced")."""
    folder = path if path.is_dir() else path.parent
    try:
        free = f"; {shutil.disk_usage(folder).free / 2 ** 20:.0f} MiB free in {folder}"
    except OSError:
        free = ""
    error = DiskFullError(f"{path}: the disk is full ({full.strerror}{free}); {outcome}. Free some space or "
                          "write elsewhere")
    error.errno = full.errno
    return error


@contextlib.contextmanager
def disk_full_reported(path: str | os.PathLike, outcome: str) -> Iterator[None]:
    """Turn a full disk met inside the block (an OSError, or an error caused by one) into a DiskFullError
    naming `path` (a writer's output folder or file); anything else passes unchanged."""
    try:
        yield
    except Exception as err:
        full = disk_full_cause(err)
        if full is None or isinstance(err, DiskFullError):
            raise
        raise disk_full_error(Path(path), full, outcome) from err


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(binary_file)` on a temp file next to `path`, then move it into place atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save through `atomic_write`: never a half-written checkpoint."""
    import torch  # here: the guard and the writers that need no torch (the synthetic generator) start light

    return atomic_write(path, lambda f: torch.save(obj, f))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file's whole content, read in 16 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def output_kind(folder: str | os.PathLike) -> str | None:
    """The kind recorded in `folder`'s marker (`claim_output_dir`), or None when it has none."""
    try:
        marker = json.loads((Path(folder) / OUTPUT_MARKER).read_text())
    except (OSError, ValueError):
        return None
    kind = marker.get("kind") if isinstance(marker, dict) else None
    return kind if isinstance(kind, str) else None


def _mark(folder: Path, kind: str) -> None:
    payload = json.dumps({"format": "pfd-output-v1", "kind": kind}).encode()
    atomic_write(folder / OUTPUT_MARKER, lambda f: f.write(payload))


def listing(entries: list[str], shown: int = 5) -> str:
    """The first `shown` entries, then "and N more": what a refusal names of a folder's contents."""
    return ", ".join(entries[:shown]) + (f" and {len(entries) - shown} more" if len(entries) > shown else "")


def flat_name(text: str) -> str:
    """A safe file or folder name for `text` (a test set such as `folder:../x/ds3`, a dataset name): `text`
    itself when it is a plain name (PLAIN_NAME, not "." or "..", at most 100 characters), else the plain
    characters of its last part and the first 8 hex digits of its SHA-256 (`ds3-1f2e3d4c`), so that two texts
    never share a name."""
    if PLAIN_NAME.fullmatch(text) and text not in (".", "..") and len(text) <= 100:
        return text
    last = re.split(r"[/\\:]", text.rstrip("/\\"))[-1]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", last).strip("._-")[:40] or "set"
    return f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def child_path(folder: str | os.PathLike, name: str, what: str) -> Path:
    """`folder / name` for a name a user gave (`what` says which, for the error): the one way such a name
    becomes a path. It must be plain (letters, digits, '.', '_', '-'; not "." or ".."; at most 255 characters),
    so it is never an absolute path nor leads out of `folder`; a symbolic link already at that place is
    refused too (what is written there would land where it points)."""
    if not PLAIN_NAME.fullmatch(name) or name in (".", "..") or len(name) > 255:
        raise InvalidInputError(f"{what} {name[:80]!r}: expected a plain name (letters, digits, '.', '_', '-'; no "
                                f"'/'; at most 255 of them), as it becomes a folder or file inside {folder}")
    path = Path(folder) / name
    if path.is_symlink():
        raise OutputExistsError(f"{path} ({what} {name!r}) is a symbolic link; pfd never writes through a link: "
                                "remove it, or choose another name")
    return path


def refuse_inside_ours(target: Path, kind: str | None, hint: str) -> None:
    """OutputExistsError when `target` lies, at any depth, inside one of our folders that an output of `kind`
    may not be made in (NESTS; a single file, kind None, in none of them)."""
    allowed = NESTS.get(kind, frozenset())
    for folder in target.absolute().parents:  # an index's files live in INDEX/v0001/: every level counts
        found = output_kind(folder)
        if found is not None and found not in allowed:
            raise OutputExistsError(f"{target} lies inside a pfd {found} folder ({folder}), whose files only its "
                                    f"own commands write; {hint}")


def claim_output_dir(path: str | os.PathLike, kind: str, *, shares: Iterable[str] = (),
                     adopt: Callable[[Path], bool] | None = None, hint: str = "choose another output folder") -> Path:
    """Make `path` a folder of ours of `kind` and return it, or refuse it.

    New or empty: created and marked. Marked with `kind` or one of `shares` (kinds whose folders
    this output may live in, e.g. an evaluation inside its training run): returned as is. Unmarked
    but recognized by `adopt` (a folder an earlier version of the project made): marked and returned.
    Anything else raises OutputExistsError naming what is there; `hint` says how to proceed. So does a
    path inside one of our folders where `kind` does not belong (NESTS).
    """
    folder = Path(path)
    refuse_inside_ours(folder, kind, hint)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder} exists and is not a folder; {hint}")
    if folder.is_dir():
        found = output_kind(folder)
        if found is not None and (found == kind or found in set(shares)):
            return folder
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
        if found is not None:
            raise OutputExistsError(f"{folder} is a pfd {found} folder, not a {kind} folder; {hint}")
        if entries and not (adopt is not None and adopt(folder)):
            raise OutputExistsError(f"{folder} is not empty and was not made by pfd (it holds {listing(entries)}); "
                                    f"nothing was written: {hint}")
    check_writable(folder)
    made = _make_folder(folder)
    _mark(folder, kind)
    undo_if_refused(lambda: _unmake(folder, made))
    return folder


def _make_folder(folder: Path) -> Path | None:
    """mkdir -p `folder`; returns the highest folder this made (None when `folder` existed)."""
    made = next((p for p in reversed([folder, *folder.parents]) if not p.exists()), None)
    folder.mkdir(parents=True, exist_ok=True)
    return made


def _unmake(folder: Path, made: Path | None) -> None:
    """Undo of a claim by a refused command (pfd.errors.undo_if_refused): when `folder` holds nothing but
    STARTUP_FILES they are removed, then the empty folders this claim made (up to `made`)."""
    try:
        if not folder.is_dir() or not set(os.listdir(folder)) <= STARTUP_FILES:
            return
        for name in STARTUP_FILES:
            remove_inside(folder, folder / name)
    except OSError:
        return  # undo is best effort: the command's own error is the one to report
    _remove_empty_folders(folder, made)


def _remove_empty_folders(folder: Path, made: Path | None) -> None:
    """rmdir `folder` and its parents up to `made` (the highest one a claim made), stopping at one not empty."""
    if made is None:
        return
    for path in [folder, *folder.parents]:
        try:
            if path.is_symlink() or not remove_inside(path.parent, path):
                return
        except (OSError, UserError):
            return
        if path == made:
            return


def check_writable(path: Path) -> None:
    """Raise the OSError a write would meet (EROFS, EACCES) when `path`, or the nearest folder of it
    that exists, cannot be written: it fails now, before any long work, naming the folder."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or os.access(existing, os.W_OK | os.X_OK):
        return  # a file in the way: mkdir names it
    code = errno.EROFS if os.statvfs(existing).f_flag & os.ST_RDONLY else errno.EACCES
    raise OSError(code, os.strerror(code), str(existing))


def _tree_entries(root: Path) -> Iterator[tuple[str, bool]]:
    """(relative path, is a symbolic link) of every file under `root` and of every link in it; a link to a
    folder is listed, never entered (os.walk does not follow links)."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            yield (rel_dir / name).as_posix(), os.path.islink(os.path.join(dirpath, name))
        dirnames.sort()


def foreign_entries(folder: str | os.PathLike, owned: Iterable[str]) -> list[str]:
    """Paths under `folder` (relative, sorted, recursive) that match none of the `owned` glob patterns
    (fnmatch against the relative path, so `*` also matches `/`; folders are entered; the markers of
    the folder and of its sub-folders, and its `record_written` file, are always owned). A symbolic
    link is always foreign, whatever its name: the project never makes one."""
    root, patterns = Path(folder), [*owned, OUTPUT_MARKER, f"*/{OUTPUT_MARKER}", WRITTEN_RECORD]
    exact = {p for p in patterns if not _GLOB_MAGIC.search(p)}  # plain paths: a set lookup, not a scan
    globs = [p for p in patterns if p not in exact]
    return sorted(rel for rel, link in _tree_entries(root)
                  if link or (rel not in exact and not any(fnmatch.fnmatchcase(rel, pattern) for pattern in globs)))


def record_written(folder: str | os.PathLike) -> None:
    """Record the SHA-256 of every file under `folder` (a dataset writer's finished output) in its
    WRITTEN_RECORD, so that replacing it later can tell a file a user changed from one it wrote."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (OUTPUT_MARKER, WRITTEN_RECORD))
    text = "".join(f"{sha256_file(p)}  {p.relative_to(root).as_posix()}\n" for p in files)
    atomic_write(root / WRITTEN_RECORD, lambda f: f.write(text.encode()))


def _recorded(root: Path) -> dict[str, str] | None:
    """Relative path -> SHA-256 of the files `record_written` recorded in `root`; None without a record."""
    try:
        lines = (root / WRITTEN_RECORD).read_text().splitlines()
    except FileNotFoundError:
        return None
    return dict(reversed(line.split("  ", 1)) for line in lines if "  " in line)


def changed_entries(folder: str | os.PathLike) -> list[str]:
    """Files `record_written` recorded under `folder` whose content differs now (a user edited or replaced
    them), relative and sorted; none when the folder has no record (an earlier version made it)."""
    root = Path(folder)
    recorded = _recorded(root) or {}
    return sorted(rel for rel, digest in recorded.items()
                  if (root / rel).is_file() and sha256_file(root / rel) != digest)


def unowned_entries(folder: str | os.PathLike, legacy_owned: Iterable[str] = ()) -> list[str]:
    """What in a dataset writer's `folder` that writer did not write or that changed since (relative, sorted):
    the one `--force` rule of both writers. With the folder's WRITTEN_RECORD: every file it does not list,
    every link, and every listed file whose SHA-256 differs. A folder of an earlier version has no record:
    then the files matching none of `legacy_owned` (glob patterns, as `foreign_entries`)."""
    root = Path(folder)
    recorded = _recorded(root)
    if recorded is None:
        return foreign_entries(root, legacy_owned)
    unlisted = [rel for rel, link in _tree_entries(root)
                if link or (rel not in recorded and Path(rel).name not in (OUTPUT_MARKER, WRITTEN_RECORD))]
    return sorted(set(unlisted + changed_entries(root)))


def claim_output_file(path: str | os.PathLike, is_ours: Callable[[Path], bool], *, what: str = "file",
                      hint: str = "choose another output path") -> Path:
    """Check that the single output file `path` may be written and return it.

    A new path is fine (its folder is created); an existing file only when `is_ours(path)` says this
    program wrote it. Refused: a folder, someone else's file, and any path at any depth inside one of
    our marked folders (an index, a run: their files are written by their own commands only).
    """
    target = Path(path)
    refuse_inside_ours(target, None, hint)
    if target.is_dir():
        raise OutputExistsError(f"{target} is a folder; {hint}")
    if target.exists() and not is_ours(target):
        raise OutputExistsError(f"{target} exists and is not a {what} written by pfd; it is never replaced: {hint}")
    check_writable(target.parent)
    made = _make_folder(target.parent)
    undo_if_refused(lambda: _remove_empty_folders(target.parent, made))
    return target


def remove_inside(root: str | os.PathLike, path: str | os.PathLike, *, tree: bool = False) -> bool:
    """Remove `path`, which lies inside the folder `root`, never following a symbolic link: the one removal
    of the project. A file or a link is unlinked (what a link points to is never touched); a folder is
    removed when empty, or with all it holds when `tree` (shutil.rmtree, which unlinks the links inside
    rather than entering them). The folders from `root` down to `path` are opened without following links,
    so a link planted on the way (INDEX/v0001 -> another index) refuses the removal (OutputExistsError)
    instead of deleting through it. Returns False when nothing was there or the folder was not empty."""
    root, path = Path(root), Path(path)
    parts = path.relative_to(root).parts
    if not parts or ".." in parts:
        raise ValueError(f"remove_inside: {path} is not a path inside {root}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth, part in enumerate(parts[:-1], 1):
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                return False
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise OutputExistsError(f"{root.joinpath(*parts[:depth])} is a symbolic link or a file where a "
                                        f"folder of ours belongs; nothing was removed through it") from None
            os.close(fd)
            fd = inner
        try:
            mode = os.lstat(parts[-1], dir_fd=fd).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(mode):
            os.unlink(parts[-1], dir_fd=fd)
        elif tree:
            shutil.rmtree(parts[-1], dir_fd=fd)
        else:
            try:
                os.rmdir(parts[-1], dir_fd=fd)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                return False
        return True
    finally:
        os.close(fd)


def temp_folder(out: Path) -> Path:
    """A new empty folder beside `out` for a writer to fill, then rename to `out`: `OUT.tmp-HOST-PID-XXXX`,
    so that one a killed writer left is recognized and removed by the next one (`remove_stale_folders`)."""
    return Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-{socket.gethostname()}-{os.getpid()}-", dir=out.parent))


def remove_stale_folders(out: Path) -> list[Path]:
    """Remove the folders that killed writers of this host left beside `out`: temp folders (`temp_folder`)
    and old versions set aside by `replace_folder` (`OUT.old-HOST-PID`), when their process is gone and
    they hold our marker or nothing. A link of such a name is left alone. Returns what was removed."""
    pattern = re.compile(rf"^{re.escape(out.name)}\.(?:tmp-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+|"
                         rf"old-(?P<old_host>.+)-(?P<old_pid>\d+))$")
    removed = []
    for candidate in sorted(out.parent.iterdir()) if out.parent.is_dir() else []:
        match = pattern.match(candidate.name)
        if not match or candidate.is_symlink() or not candidate.is_dir():
            continue
        host, pid = (match["host"], match["pid"]) if match["host"] else (match["old_host"], match["old_pid"])
        if (host == socket.gethostname() and _process_gone(int(pid))
                and (output_kind(candidate) is not None or not any(candidate.iterdir()))):
            remove_inside(out.parent, candidate, tree=True)
            removed.append(candidate)
    return removed


def replace_folder(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Move the finished folder `tmp` to `out` (a folder of ours, already checked), replacing it: the old
    one is set aside first (`OUT.old-HOST-PID`) and removed last, so a kill leaves `out` old or new, or
    the old one aside (which the next writer removes: `remove_stale_folders`)."""
    tmp, out = Path(tmp), Path(out)
    old = None
    if out.exists():
        old = out.with_name(f"{out.name}.old-{socket.gethostname()}-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        remove_inside(old.parent, old, tree=True)
