"""A saved gallery index: one folder that a kill at any moment leaves whole, holding the old or the new gallery.

Layout (``save_index`` writes it, ``load_index`` reads it, ``query.py`` and ``pfd.Gallery`` use both)::

    INDEX/.pfd-output.json     marker of an index folder (pfd.io.claim_output_dir, kind "index")
    INDEX/manifest.json        {"format": "pfd-index-v2", "version": "v0003", "files": {name: SHA-256}}
    INDEX/v0003/index.faiss    the FAISS index
    INDEX/v0003/meta.json      paths, ids, cameras, each image's SHA-256, model id, config hash, kind, ...

A save writes the next version folder completely, then replaces ``manifest.json`` atomically (the one
switch), then removes the older versions (only the files it wrote there). The manifest's checksums
cover both files, so an edited, swapped or shortened ``meta.json`` is refused rather than believed.
Replacing a folder that holds an index needs ``replace=True`` (``query.py index --replace``); saving
a gallery back to the folder it was loaded from is an update, refused if another process saved there
in between. Folders of the first layout (``index.faiss`` + ``meta.json`` at the top, pfd-index-v1)
are not loaded: the message says to re-index; ``--replace`` accepts them as ours. A folder holding a
symbolic link where its own files or version folders belong is refused before any write, and no
removal follows a link (pfd.io.remove_inside).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import OutputExistsError, UserError
from ..io import OUTPUT_MARKER, atomic_write, claim_output_dir, listing, remove_inside, sha256_file
from .gallery_index import META_FORMAT, GalleryIndex
from .index import _faiss, _faiss_has_gpu

__all__ = ["IndexLoadError", "check_built_with", "check_index_output", "load_index", "save_index",
           "is_index_folder", "INDEX_FILE",
           "META_FILE", "MANIFEST_FILE"]

INDEX_FILE, META_FILE, MANIFEST_FILE = "index.faiss", "meta.json", "manifest.json"
LEGACY_FORMAT = "pfd-index-v1"
_VERSION = re.compile(r"^v(\d{4,})$")
_REBUILD = "rebuild it with `python query.py index ... --replace`"


class IndexLoadError(UserError, ValueError):
    """A saved index that is missing, damaged, or built for another model/config."""


def check_built_with(meta: dict, meta_path, *, config_hash: str | None = None, model_id: str | None = None) -> None:
    """Raise ``IndexLoadError`` naming ``meta_path`` when the index metadata ``meta`` was built with another
    config hash or model id than the given ones (None = not checked)."""
    for key, expected in (("config_hash", config_hash), ("model_id", model_id)):
        if expected is not None and meta.get(key) != expected:
            raise IndexLoadError(f"{meta_path} was built with {key}={meta.get(key)!r} but the caller has "
                                 f"{key}={expected!r}: the index belongs to another model/config; rebuild it")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _is_legacy_index(folder: Path) -> bool:
    """A first-layout index of ours: meta.json of pfd-index-v1 whose checksum matches the index.faiss beside it."""
    meta, index = _read_json(folder / META_FILE), folder / INDEX_FILE
    return (isinstance(meta, dict) and meta.get("format") == LEGACY_FORMAT and index.is_file()
            and sha256_file(index) == meta.get("index_sha256"))


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest when it is one of ours, else None."""
    manifest = _read_json(folder / MANIFEST_FILE)
    ok = (isinstance(manifest, dict) and manifest.get("format") == META_FORMAT
          and isinstance(manifest.get("version"), str) and _VERSION.match(manifest["version"])
          and isinstance(manifest.get("files"), dict))
    return manifest if ok else None


def is_index_folder(folder) -> bool:
    """Whether ``folder`` holds a gallery index of ours (either layout)."""
    folder = Path(folder)
    return read_manifest(folder) is not None or _is_legacy_index(folder)


def _versions(folder: Path) -> list[str]:
    return sorted((p.name for p in folder.iterdir() if _VERSION.match(p.name) and p.is_dir() and not p.is_symlink()),
                  key=lambda name: int(name[1:]))


def _remove_old_versions(folder: Path, keep: str) -> None:
    """Delete the files we wrote in every version folder but ``keep`` (a user's file there stays, and so
    does its folder), and a first-layout index's two files; never through a link (pfd.io.remove_inside)."""
    for version in _versions(folder):
        if version == keep:
            continue
        vdir = folder / version
        for path in vdir.iterdir():
            if path.name in (INDEX_FILE, META_FILE) or path.name.startswith((f".{INDEX_FILE}.tmp-",
                                                                             f".{META_FILE}.tmp-")):
                remove_inside(folder, path)
        remove_inside(folder, vdir)  # when emptied
    if _is_legacy_index(folder):
        remove_inside(folder, folder / INDEX_FILE)
        remove_inside(folder, folder / META_FILE)


def _refuse_links(folder: Path) -> None:
    """OutputExistsError naming the symbolic links an index folder holds where its own files and version
    folders belong (manifest, marker, vNNNN, the files inside a version, a first layout's two files): a save
    writes and removes there, and would do it through a link, in another index or a user's folder."""
    top = [folder / name for name in (MANIFEST_FILE, OUTPUT_MARKER, INDEX_FILE, META_FILE)]
    versions = [p for p in folder.iterdir() if _VERSION.match(p.name)]
    inside = [p for v in versions if v.is_dir() and not v.is_symlink() for p in v.iterdir()]
    links = [p.relative_to(folder).as_posix() for p in [*top, *versions, *inside] if p.is_symlink()]
    if links:
        raise OutputExistsError(f"{folder} holds symbolic links where the index's own files belong ({listing(links)});"
                                " nothing was written: remove them, or choose another folder for the index")


def check_index_output(index_dir, replace: bool = False, loaded_from: tuple[Path, str] | None = None) -> Path:
    """The index folder ``index_dir``, claimed for writing a gallery into (see ``save_index``), or
    OutputExistsError saying how to proceed. ``loaded_from``: (folder, version) the gallery came from."""
    hint = ("choose a new or empty folder for the index (an existing index is replaced with --replace / "
            "replace=True, or grown with --append / Gallery.add)")
    folder = claim_output_dir(index_dir, "index", adopt=_is_legacy_index, hint=hint)
    _refuse_links(folder)
    manifest = read_manifest(folder)
    current = manifest["version"] if manifest else None
    if replace or (manifest is None and not _is_legacy_index(folder)):
        return folder
    if loaded_from is None or loaded_from[0] != folder.resolve():
        raise OutputExistsError(f"{folder} already holds a gallery index; nothing was written. Replace it with "
                                "`query.py index --replace` (Gallery.save(..., replace=True)), or add images "
                                "to it with `query.py index --append` (Gallery.add)")
    if loaded_from[1] != current:
        raise OutputExistsError(f"{folder} was saved by another process since this gallery was loaded from it "
                                f"(version {loaded_from[1]} -> {current}); nothing was written: load it again "
                                "and repeat the change")
    return folder


def save_index(gallery: GalleryIndex, index_dir, *, replace: bool = False) -> Path:
    """Write ``gallery`` into the index folder ``index_dir`` as a new version and switch to it atomically.

    Refused (OutputExistsError, nothing written): a folder that is not empty and not an index folder
    of ours; one holding an index, unless ``replace`` or it is the folder ``gallery`` was loaded from
    (then: unless another process saved there since).
    """
    folder = check_index_output(index_dir, replace, gallery.saved_as)
    existing = _versions(folder)
    version = f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"
    vdir = folder / version
    vdir.mkdir()
    try:  # until the manifest names it, the new version is ours to remove: a failed save leaves no trace
        faiss = _faiss()
        # through Python's file object, so that a full disk is an OSError (DiskFullError) and not FAISS's text
        atomic_write(vdir / INDEX_FILE, lambda f: faiss.write_index(gallery.index, faiss.PyCallbackIOWriter(f.write)))
        payload = json.dumps(gallery.meta).encode()
        atomic_write(vdir / META_FILE, lambda f: f.write(payload))
        files = {INDEX_FILE: sha256_file(vdir / INDEX_FILE), META_FILE: sha256_file(vdir / META_FILE)}
    except BaseException:
        remove_inside(folder, vdir, tree=True)
        raise
    record = {"format": META_FORMAT, "version": version, "files": files, "num_items": len(gallery),
              "index_type": gallery.meta["index_type"]}
    atomic_write(folder / MANIFEST_FILE, lambda f: f.write(json.dumps(record, indent=1).encode()))  # the switch
    gallery.saved_as = (folder.resolve(), version)
    _remove_old_versions(folder, keep=version)
    return folder


def _check_tables(meta: dict, index, meta_path: Path, index_path: Path) -> None:
    """Raise IndexLoadError naming the first disagreement between the metadata tables and the index."""
    rows = len(meta.get("paths", ()))
    for key in ("pids", "camids", "sha256", "times", "keypoints"):
        if key in ("times", "keypoints") and key not in meta:  # saved before these tables: unknown for every row
            continue
        if len(meta.get(key, ())) != rows:
            raise IndexLoadError(f"{meta_path}: table {key!r} has {len(meta.get(key, ()))} entries but 'paths' "
                                 f"has {rows}; {_REBUILD}")
    live = sum(p is not None for p in meta["paths"])
    if meta.get("num_items") != live:
        raise IndexLoadError(f"{meta_path}: num_items is {meta.get('num_items')} but 'paths' lists {live} images; "
                             f"{_REBUILD}")
    expected = live + len(meta.get("tombstones", ()))
    if index.ntotal != expected or index.d != meta.get("feature_dim"):
        raise IndexLoadError(f"{index_path} holds {index.ntotal} vectors of dim {index.d} but {meta_path} lists "
                             f"{expected} (images + removed ones the index kept) of dim {meta.get('feature_dim')}; "
                             f"{_REBUILD}")


def load_index(index_dir, *, config_hash: str | None = None, model_id: str | None = None,
               use_gpu: bool | None = None) -> GalleryIndex:
    """Load and validate an index saved by ``save_index``.

    ``config_hash`` / ``model_id``: when given, must equal what the index was built with.
    ``use_gpu``: search a flat index on the GPU (default: when faiss-gpu and a GPU are present).
    Raises ``IndexLoadError`` naming the file and the problem.
    """
    folder = Path(index_dir)
    manifest_path = folder / MANIFEST_FILE
    manifest = read_manifest(folder)
    if manifest is None:
        if (folder / META_FILE).is_file() and not manifest_path.exists():
            raise IndexLoadError(f"{folder} holds an index of the first layout ({META_FILE} and {INDEX_FILE} at "
                                 f"the top, written before versioned saves): {_REBUILD}")
        if manifest_path.exists():
            raise IndexLoadError(f"{manifest_path} is not a readable {META_FORMAT} manifest; {_REBUILD}")
        raise IndexLoadError(f"{manifest_path} is missing; build the index first (`python query.py index ...`) or "
                             f"point to the folder that `query.py index --out` wrote")
    vdir = folder / manifest["version"]
    for name in (INDEX_FILE, META_FILE):
        path = vdir / name
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing (named by {manifest_path}); {_REBUILD}")
        if sha256_file(path) != manifest["files"].get(name):
            raise IndexLoadError(f"{path} does not match its checksum in {manifest_path} (edited, damaged or "
                                 f"mixed-up files); {_REBUILD}")
    meta_path, index_path = vdir / META_FILE, vdir / INDEX_FILE
    meta = _read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise IndexLoadError(f"{meta_path} is not {META_FORMAT} metadata; {_REBUILD}")
    check_built_with(meta, meta_path, config_hash=config_hash, model_id=model_id)
    faiss = _faiss()
    index = faiss.read_index(str(index_path))
    _check_tables(meta, index, meta_path, index_path)
    if use_gpu is None:
        use_gpu = _faiss_has_gpu(faiss)
    loaded = GalleryIndex(index, meta)
    loaded.saved_as = (folder.resolve(), manifest["version"])
    return loaded.to_gpu() if use_gpu and meta["index_type"] == "flat" else loaded
