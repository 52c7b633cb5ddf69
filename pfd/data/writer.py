"""The output folder of both dataset writers (`python -m pfd.data.synthetic`, `python -m pfd.data.occlude`):
one claim with one `--force` rule, and one way of writing.

`claim_dataset_dir` decides, before any work, whether `--out` may be written: new or empty; or a folder
of the writer's own kind (or an earlier version's marker) that holds nothing the writer did not write
and nothing changed since, replaced only with `force`. "Did not write" is decided by content: every
finished folder records the SHA-256 of each file it holds (pfd.io.record_written), so a user's photo
copied into `query/`, a file edited under a generated name and a planted symbolic link are all refused
(pfd.io.unowned_entries; `legacy_owned` patterns only for folders of earlier versions, which have no
record). A symbolic link given as `--out` is followed once, here: the dataset is written where it points
and the link stays. `--out` inside the source dataset is refused (the copy would join its listings).
Folders that killed writers left beside `--out` (`OUT.tmp-*`, `OUT.old-*`) are removed first.

`write_dataset_dir` fills a temp folder beside `--out`, records what it wrote and renames it into place
(pfd.io.replace_folder): a kill leaves the old dataset or the new one, never half of one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from ..errors import InvalidInputError, OutputExistsError
from ..io import (
    OUTPUT_MARKER,
    check_writable,
    claim_output_dir,
    disk_full_reported,
    listing,
    output_kind,
    record_written,
    refuse_inside_ours,
    remove_inside,
    remove_stale_folders,
    replace_folder,
    temp_folder,
    unowned_entries,
)

__all__ = ["claim_dataset_dir", "write_dataset_dir"]

HINT = "choose another --out"


def _followed(out: Path) -> Path:
    """`out`, or the folder it links to when it is a symbolic link (a link to nothing is refused)."""
    if not out.is_symlink():
        return out
    if not out.is_dir():
        raise OutputExistsError(f"{out} is a symbolic link to {os.readlink(out)}, which is not a folder; {HINT}")
    return out.resolve()


def claim_dataset_dir(out: str | os.PathLike, kind: str, writer: str, force: bool, *, legacy_marker: str,
                      legacy_owned: Callable[[Path], Iterable[str]] = lambda folder: (),
                      source: str | os.PathLike | None = None) -> Path:
    """The folder a dataset writer (`writer`, for messages; output-guard `kind`) may write its dataset to,
    or an OutputExistsError saying why not (nothing is written here). `legacy_marker`: the marker file of
    the writer's earlier versions; `legacy_owned(folder)`: the glob patterns of what such a folder's files
    may be; `source`: the dataset it copies from, which must not hold `out`."""
    out = _followed(Path(out))
    if source is not None and out.resolve().is_relative_to(Path(source).resolve()):
        raise InvalidInputError(f"--out {out} lies inside the source dataset {source}: the copy would join its "
                                "image listings; write it outside that folder")
    refuse_inside_ours(out, kind, HINT)
    if out.parent.is_dir():
        remove_stale_folders(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; {HINT}")
    found = output_kind(out)
    if found not in (None, kind):
        raise OutputExistsError(f"{out} is a pfd {found} folder, not a {kind} folder; {HINT}")
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()) if out.is_dir() else []
    if not set(entries) - {OUTPUT_MARKER, legacy_marker}:
        check_writable(out)  # a read-only folder fails now, naming it
        return out
    if found is None and not (out / legacy_marker).is_file():
        raise OutputExistsError(f"{out} is not a folder made by {writer} (it holds {listing(entries)}); it is never "
                                f"replaced: {HINT}")
    unowned = [rel for rel in unowned_entries(out, legacy_owned(out)) if rel != legacy_marker]
    if unowned:
        raise OutputExistsError(f"{out} holds files {writer} did not write, or changed since ({listing(unowned)}); "
                                f"nothing was replaced: move them out, or {HINT}")
    if not force:
        raise OutputExistsError(f"{out} holds a dataset made by {writer}; pass --force to replace it, or {HINT}")
    return out


def write_dataset_dir(out: Path, kind: str, fill: Callable[[Path], object]) -> None:
    """Call `fill(folder)` on a new folder of ours beside `out` (claimed, of `kind`), record the SHA-256 of
    every file it holds, then move it to `out`, replacing what `claim_dataset_dir` allowed. Any error
    (a full disk: DiskFullError naming `out`) removes the temp folder and leaves `out` as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with disk_full_reported(out, "nothing was written"):
        tmp = temp_folder(out)
        try:
            claim_output_dir(tmp, kind)
            fill(tmp)
            record_written(tmp)  # --force later replaces only files whose bytes are still these
            replace_folder(tmp, out)
        except BaseException:
            remove_inside(tmp.parent, tmp, tree=True)
            raise
