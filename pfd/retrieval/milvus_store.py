"""A gallery in a Milvus collection: the FAISS index folder's contract on Milvus Lite or a Milvus server.

Locations (pfd.retrieval.stores): ``milvus:PATH.db`` is Milvus Lite (the ``milvus-lite`` package: a
local folder, served inside this process, one process at a time; the folder is claimed by the output
guard like an index folder), ``milvus://HOST:PORT/COLLECTION`` a Milvus Standalone or Distributed server
(pymilvus's ``MilvusClient``; a token, when the server wants one, from $PFD_MILVUS_TOKEN, never the
command line). The same code talks to both.

One entity per image: ``id`` (INT64 primary key: the image's number, as a FAISS row; never reused),
``vector`` (the L2-normalized feature, or its PCA/OPQ reduction), ``path``, ``pid``, ``camid``, ``sha256``,
``time`` (seconds since the epoch, nullable) and ``keypoints`` (stores.encode_keypoints, nullable).
The collection's properties hold what every insert and search checks first (``pfd.model_id``,
``pfd.config_hash``, ``pfd.feature_dim``: a collection rebuilt by another model since it was opened is
refused), the next id (``pfd.next_id``) and the rest of the metadata as JSON (``pfd.meta``: kind,
parameters, config, checkpoint path...). A reducing kind's PCA/OPQ stage is trained on our side
and kept in a second collection, ``COLLECTION_pfd_transform`` (serialized FAISS bytes in VARCHAR rows).

Kinds: ``flat`` -> FLAT, ``ivfpq`` -> IVF_PQ (our nlist, m, nbits; our nprobe at search), ``pca+ivfpq`` /
``opq+ivfpq`` -> IVF_PQ over the PCA/OPQ output. Milvus Lite has no IVF_PQ: there only ``flat`` (the
refusal names what Lite offers). A vector field holds at most 32,768 values: a bigger feature is
refused, naming the reducing kinds. One insert carries at most 64 MB: inserts go in chunks of
``INSERT_BYTES``. The collection is created with Strong consistency, so a search or the duplicate check
sees every insert made before it.

A kill during ``add``: each chunk's insert is whole or absent (ids are handed out by raising
``pfd.next_id`` before the insert, so a rerun never reuses one); rerunning the same add skips the images
already in (same path and SHA-256) and inserts the rest: no duplicates. One writer at a time.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError, OutputExistsError, UserError
from ..io import claim_output_dir, output_kind
from .gallery_index import RENORM, check_row_extras, index_params
from .index import _faiss, _features, _l2_normalize, _to_distance
from .index_folder import IndexLoadError
from .stores import Hit, SearchFilter, decode_keypoints, plan_additions

__all__ = ["MilvusGallery", "MilvusLocation", "Reduction", "check_output", "parse_location"]

MILVUS_FORMAT = "pfd-milvus-v1"
TOKEN_ENV = "PFD_MILVUS_TOKEN"
LITE_FOLDER_KIND = "milvus-lite"  # the output guard's kind of a Milvus Lite folder
LITE_COLLECTION = "gallery"  # the collection of a milvus:PATH.db location
MAX_DIM = 32768  # values per vector field (Milvus's limit)
INSERT_BYTES = 32 * 2 ** 20  # aimed-for size of one insert call: half Milvus's 64 MB, room for the framing
MAX_TOPK = 16384  # Milvus's largest `limit` per search
PATH_BATCH = 256  # paths per `path in [...]` query
BLOB_BYTES = 48000  # bytes of the PCA/OPQ stage per VARCHAR(65535) row (base64: 64,000 characters)
MILVUS_INDEX = {"flat": "FLAT", "ivfpq": "IVF_PQ", "pca+ivfpq": "IVF_PQ", "opq+ivfpq": "IVF_PQ"}
REDUCERS = {"pca+ivfpq": "PCA{d_out},{renorm}Flat", "opq+ivfpq": "OPQ{m}_{d_out},Flat"}  # the stage on our side
LITE_INDEXES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "HNSW_SQ")  # what milvus-lite 3.2 builds
FIELDS = ["path", "pid", "camid", "sha256", "time", "keypoints"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
_SERVER = re.compile(r"^milvus://([^/:\s]+):(\d{1,5})/([^/\s]+)$")


class MilvusError(UserError, RuntimeError):
    """A Milvus server or Lite folder that cannot be reached or used (the message says which and why)."""


@dataclass(frozen=True)
class MilvusLocation:
    """A parsed location: `text` as given, `uri` for MilvusClient (a Lite folder, or http://HOST:PORT)."""

    text: str
    uri: str
    collection: str

    @property
    def lite(self) -> bool:
        return not self.uri.startswith("http://")

    def __str__(self) -> str:
        return self.text


def parse_location(text: str) -> MilvusLocation:
    """``milvus:PATH.db`` or ``milvus://HOST:PORT/COLLECTION``; InvalidInputError naming the form otherwise."""
    forms = "expected milvus:PATH.db (Milvus Lite) or milvus://HOST:PORT/COLLECTION (a Milvus server)"
    if text.startswith("milvus://"):
        match = _SERVER.match(text)
        if not match or not _NAME.match(match.group(3)):
            raise InvalidInputError(f"{text}: {forms}; a collection name is letters, digits and _, not starting "
                                    f"with a digit")
        return MilvusLocation(text, f"http://{match.group(1)}:{match.group(2)}", match.group(3))
    path = text[len("milvus:"):]
    if not path.endswith(".db") or Path(path).name == ".db":
        raise InvalidInputError(f"{text}: {forms} (Milvus Lite needs a name ending in .db)")
    return MilvusLocation(text, os.path.abspath(path), LITE_COLLECTION)


def _client(location: MilvusLocation, create: bool):
    """A MilvusClient on `location`. Lite: the folder must be ours (`create`: claimed, made when new)."""
    if location.lite:
        folder = Path(location.uri)
        if create:
            claim_output_dir(folder, LITE_FOLDER_KIND, hint="choose a new milvus:PATH.db (or one pfd made)")
        elif output_kind(folder) != LITE_FOLDER_KIND:
            raise IndexLoadError(f"{location}: no Milvus Lite gallery at {folder}; build one with `python query.py "
                                 f"index ... --out {location}`")
    from pymilvus import MilvusClient
    # Their errors become ours, one line each (levels set after pymilvus's import, which sets its own); Lite's
    # in-process gRPC server logs a traceback for each call it lacks (AllocTimestamp, which pymilvus 2.5 tries).
    for name in ("pymilvus", "pymilvus.milvus_client", "milvus_lite", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return MilvusClient(uri=location.uri, token="" if location.lite else os.environ.get(TOKEN_ENV, ""))
    except Exception as err:  # pymilvus raises several types, none of them a user's bug
        why = ("Milvus Lite serves one process at a time: is another pfd command using it?" if location.lite else
               f"is the server running (docs/ARCHITECTURE.md, 'Beyond one machine'), and ${TOKEN_ENV} set if it "
               f"needs a token?")
        raise MilvusError(f"{location}: cannot open it ({type(err).__name__}: {_reason(err)}); {why}") from err


def _reason(err: Exception) -> str:
    return " ".join(str(getattr(err, "message", None) or err).split())


def _check_kind(kind: str, location: MilvusLocation) -> None:
    if kind not in MILVUS_INDEX:
        raise InvalidInputError(f"index kind {kind!r} has no Milvus counterpart; on Milvus use one of "
                                f"{', '.join(MILVUS_INDEX)}")
    if location.lite and MILVUS_INDEX[kind] not in LITE_INDEXES:
        raise InvalidInputError(f"{location}: Milvus Lite has no {MILVUS_INDEX[kind]} index (kind {kind}; Lite offers "
                                f"{', '.join(LITE_INDEXES)}): index with --index-type flat on Lite, or use a Milvus "
                                f"server (milvus://HOST:PORT/COLLECTION) or a FAISS index folder for {kind}")


def _check_dim(vector_dim: int) -> None:
    if vector_dim > MAX_DIM:
        raise InvalidInputError(f"features of {vector_dim} values exceed Milvus's {MAX_DIM:,} values per vector field: "
                                f"index them with a reducing kind (--index-type pca+ivfpq or opq+ivfpq: PCA or OPQ to "
                                f"256 values on our side), or in a FAISS index folder")


def _quoted(values: Sequence[str]) -> str:
    """A Milvus expression list of string literals."""
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def _claim(location: MilvusLocation, replace: bool):
    """A client on `location` for writing a new gallery there: refused (OutputExistsError, nothing written)
    when its collection holds a gallery and not `replace`, or holds anything else (never replaced)."""
    client = _client(location, create=True)
    name = location.collection
    if client.has_collection(name):
        props = client.describe_collection(name).get("properties", {})
        if props.get("pfd.format") != MILVUS_FORMAT:
            raise OutputExistsError(f"{location}: collection {name!r} exists and is not a pfd gallery; it is never "
                                    f"replaced: choose another collection name")
        if not replace:
            raise OutputExistsError(f"{location} already holds a gallery; nothing was written. Replace it with "
                                    "`query.py index --replace` (Gallery.build(..., replace=True)), or add images to "
                                    "it with `query.py index --append` (Gallery.add)")
    return client


def check_output(location: str, kind: str, replace: bool) -> None:
    """Refuse now, before any work, a location ``MilvusGallery.create`` would refuse (its kind, an existing
    collection); the feature size is checked by ``create``."""
    location = parse_location(location)
    _check_kind(kind, location)
    _claim(location, replace)


class Reduction:
    """The PCA or OPQ stage of a reducing kind, trained on our side (FAISS) on `transform_rows` gallery
    features; what ``Gallery.build`` trains like an IndexBuilder (``params``, ``needs_training``, ``train``)."""

    def __init__(self, kind: str, dim: int, params: dict, normalize: bool):
        self.params = {**params, "train_rows": params["transform_rows"]}
        self.normalize = normalize
        renorm = RENORM if normalize else ""  # as the FAISS store's pca+ivfpq (gallery_index.factory_string)
        self.index = _faiss().index_factory(dim, REDUCERS[kind].format(**params, renorm=renorm))  # PreTransform + Flat

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, chunks) -> int:
        want, rows = self.params["train_rows"], []
        for chunk in chunks:
            rows.append(_normalized(chunk, self.normalize)[:want - sum(map(len, rows))])
            if sum(map(len, rows)) >= want:
                break
        sample = np.ascontiguousarray(np.concatenate(rows))
        self.index.train(sample)
        return len(sample)


def _normalized(x, normalize: bool) -> np.ndarray:
    t = _features(x, "features").cpu()
    return np.ascontiguousarray((_l2_normalize(t) if normalize else t).numpy())


def _reduce(stage, vectors: np.ndarray) -> np.ndarray:
    """`vectors` through the PCA/OPQ chain of an IndexPreTransform (as FAISS applies it before its index)."""
    faiss = _faiss()
    for i in range(stage.chain.size()):
        vectors = faiss.downcast_VectorTransform(stage.chain.at(i)).apply(vectors)
    return vectors


class MilvusGallery:
    """A gallery in a Milvus collection (see the module docstring); ``create`` a new one or ``open`` one."""

    def __init__(self, location: MilvusLocation, client, meta: dict, stage=None):
        self.location, self.client, self.meta, self.stage = location, client, meta, stage
        self.name = location.collection

    # ------------------------------------------------------------------ making and opening
    @classmethod
    def create(cls, location: str | MilvusLocation, kind: str, dim: int, num_items: int, normalize: bool,
               params: dict | None = None, replace: bool = False,
               **ids) -> tuple["MilvusGallery", Reduction | None]:
        """An empty gallery collection at `location` and, for a reducing kind, the stage to train before
        the first ``add``. Refused (nothing written): a kind the location lacks, a feature too big, an
        existing collection unless `replace` (and never one that is not a pfd gallery)."""
        location = parse_location(location) if isinstance(location, str) else location
        _check_kind(kind, location)
        params = index_params(kind, num_items, dim, params)
        vector_dim = params["d_out"] if kind in REDUCERS else dim
        _check_dim(vector_dim)
        client = _claim(location, replace)
        name = location.collection
        if client.has_collection(name):
            client.drop_collection(name)
        if client.has_collection(f"{name}_pfd_transform"):  # a replaced gallery's stage, or an orphan of one
            client.drop_collection(f"{name}_pfd_transform")
        meta = {"format": MILVUS_FORMAT, "index_type": kind, "milvus_index": MILVUS_INDEX[kind], "params": params,
                "normalized": bool(normalize), "metric": "inner_product" if normalize else "l2", "feature_dim": dim,
                "vector_dim": vector_dim, "recall_at_10": None, "transform": None, **ids}
        cls._create_collection(client, name, meta)
        stage = Reduction(kind, dim, params, normalize) if kind in REDUCERS else None
        return cls(location, client, meta), stage

    @staticmethod
    def _create_collection(client, name: str, meta: dict) -> None:
        from pymilvus import DataType, MilvusClient
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=meta["vector_dim"])
        schema.add_field("path", DataType.VARCHAR, max_length=4096)
        schema.add_field("pid", DataType.INT64)
        schema.add_field("camid", DataType.INT64)
        schema.add_field("sha256", DataType.VARCHAR, max_length=64, nullable=True)
        schema.add_field("time", DataType.DOUBLE, nullable=True)
        schema.add_field("keypoints", DataType.VARCHAR, max_length=1024, nullable=True)
        index = client.prepare_index_params()
        p, kind = meta["params"], meta["milvus_index"]
        build = {"nlist": p["nlist"], "m": p["m"], "nbits": p["nbits"]} if kind == "IVF_PQ" else {}
        index.add_index(field_name="vector", index_type=kind, metric_type=_metric(meta), params=build)
        client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong",
                                 properties={"pfd.format": MILVUS_FORMAT, "pfd.model_id": meta.get("model_id", ""),
                                             "pfd.config_hash": meta.get("config_hash", ""),
                                             "pfd.feature_dim": str(meta["feature_dim"]), "pfd.next_id": "0",
                                             "pfd.meta": json.dumps(meta)})

    @classmethod
    def open(cls, location: str | MilvusLocation) -> "MilvusGallery":
        """The gallery at `location`; IndexLoadError when there is none or it is not whole."""
        location = parse_location(location) if isinstance(location, str) else location
        client = _client(location, create=False)
        if not client.has_collection(location.collection):
            raise IndexLoadError(f"{location}: no collection {location.collection!r}; build the gallery first "
                                 f"(`python query.py index ... --out {location}`)")
        props = client.describe_collection(location.collection).get("properties", {})
        if props.get("pfd.format") != MILVUS_FORMAT:
            raise IndexLoadError(f"{location}: collection {location.collection!r} is not a pfd gallery (no "
                                 f"pfd.format property {MILVUS_FORMAT!r})")
        meta = json.loads(props["pfd.meta"])
        gallery = cls(location, client, meta)
        if meta["index_type"] in REDUCERS:
            gallery.stage = gallery._load_stage()
        client.load_collection(location.collection)
        return gallery

    def is_at(self, location: str) -> bool:
        """Whether `location` names this gallery's collection (however it is spelled)."""
        other = parse_location(location)
        return (other.uri, other.collection) == (self.location.uri, self.location.collection)

    @property
    def where(self) -> str:
        return f"{self.location} (collection {self.name!r})"

    # ------------------------------------------------------------------ the PCA/OPQ stage
    @property
    def _stage_name(self) -> str:
        return f"{self.name}_pfd_transform"

    def _save_stage(self, stage) -> None:
        """Keep the trained stage in its collection, then name its checksum in pfd.meta (the switch)."""
        from pymilvus import DataType, MilvusClient
        blob = _faiss().serialize_index(stage).tobytes()
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("part", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants one; unused
        schema.add_field("data", DataType.VARCHAR, max_length=65535)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        self.client.create_collection(self._stage_name, schema=schema, index_params=index, consistency_level="Strong")
        parts = [blob[i:i + BLOB_BYTES] for i in range(0, len(blob), BLOB_BYTES)]
        self.client.insert(self._stage_name, [{"part": i, "vector": [0.0, 0.0], "data": base64.b64encode(p).decode()}
                                              for i, p in enumerate(parts)])
        self.meta["transform"] = {"parts": len(parts), "sha256": hashlib.sha256(blob).hexdigest()}
        self.client.alter_collection_properties(self.name, properties={"pfd.meta": json.dumps(self.meta)})
        self.stage = stage

    def _load_stage(self):
        record = self.meta.get("transform")
        rows = []
        if record and self.client.has_collection(self._stage_name):
            self.client.load_collection(self._stage_name)
            rows = self.client.query(self._stage_name, filter="part >= 0", output_fields=["part", "data"],
                                     limit=MAX_TOPK)
        blob = b"".join(base64.b64decode(r["data"]) for r in sorted(rows, key=lambda r: r["part"]))
        if not record or hashlib.sha256(blob).hexdigest() != record["sha256"]:
            raise IndexLoadError(f"{self.where}: its {self.meta['index_type']} stage (collection {self._stage_name!r}) "
                                 f"is missing or damaged (a build stopped before its first insert?); rebuild it with "
                                 f"`python query.py index ... --replace`")
        return _faiss().deserialize_index(np.frombuffer(blob, np.uint8))

    # ------------------------------------------------------------------ checks
    def check_unchanged(self) -> None:
        """IndexLoadError when the collection is gone or was rebuilt by another model, config or feature size
        since it was opened (before every insert and search)."""
        try:
            props = self.client.describe_collection(self.name).get("properties", {})
        except Exception as err:
            raise IndexLoadError(f"{self.where} is gone ({_reason(err)}); open the gallery again") from err
        for key in ("model_id", "config_hash", "feature_dim"):
            if props.get(f"pfd.{key}") != str(self.meta.get(key, "")):
                raise IndexLoadError(f"{self.where} now holds {key}={props.get(f'pfd.{key}')!r}, not the "
                                     f"{self.meta.get(key)!r} it had when opened: another model's gallery replaced it")

    def _vectors(self, x, what: str) -> np.ndarray:
        """[n, F] features as stored: L2-normalized when the gallery is, through the PCA/OPQ stage if any."""
        vecs = _normalized(x, self.meta["normalized"])
        if vecs.shape[1] != self.meta["feature_dim"]:
            raise ValueError(f"{what} have dim {vecs.shape[1]} but the gallery holds dim {self.meta['feature_dim']} "
                             f"features ({self.meta.get('feature_kind')!r})")
        if self.meta["index_type"] in REDUCERS:
            vecs = _reduce(self.stage, vecs)
        return vecs

    # ------------------------------------------------------------------ size, growing and shrinking
    def __len__(self) -> int:
        return int(self.client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def _existing(self, paths: Sequence[str]) -> list[dict]:
        """The entities (id, path, sha256) whose path is one of `paths`."""
        found = []
        unique = sorted(set(paths))
        for i in range(0, len(unique), PATH_BATCH):
            found += self.client.query(self.name, filter=f"path in {_quoted(unique[i:i + PATH_BATCH])}",
                                       output_fields=["id", "path", "sha256"], limit=MAX_TOPK)
        return found

    def plan_add(self, paths: Sequence[str], sha256s: Sequence[str]) -> tuple[list[int], int, list[str]]:
        return plan_additions(paths, sha256s, {e["path"]: e["sha256"] for e in self._existing(paths)})

    def add(self, vectors, records: Sequence, sha256s: Sequence[str | None], builder=None,
            times: Sequence[float | None] | None = None, keypoints: np.ndarray | None = None) -> None:
        """Insert features [n, F] of `records` with their checksums, times and keypoints, in chunks under
        INSERT_BYTES; a reducing kind's trained stage (`builder`, a Reduction) is saved before the first."""
        self.check_unchanged()
        if self.meta["index_type"] in REDUCERS and self.stage is None:
            if builder is None or builder.needs_training:
                raise RuntimeError("MilvusGallery.add of a reducing kind before its stage was trained")
            self._save_stage(builder.index)
        vecs = self._vectors(vectors, "features")
        times, encoded = check_row_extras(len(records), times, keypoints)
        if len(vecs) != len(records) or len(records) != len(sha256s):
            raise ValueError(f"{len(records)} records, {len(sha256s)} checksums but {len(vecs)} feature rows")
        per_insert = max(1, INSERT_BYTES // (4 * vecs.shape[1] + 4096 + 1200))  # vector + the longest strings
        for s in range(0, len(records), per_insert):
            start = self._reserve_ids(min(per_insert, len(records) - s))
            rows = [{"id": start + j, "vector": vecs[s + j], "path": str(r.path), "pid": int(r.pid),
                     "camid": int(r.camid), "sha256": sha256s[s + j], "time": times[s + j], "keypoints": encoded[s + j]}
                    for j, r in enumerate(records[s:s + per_insert])]
            self.client.insert(self.name, rows)

    def flush(self) -> None:
        """Seal what was inserted into indexed segments (after a build or an add: Milvus Lite searches a
        growing segment about 10x slower; a server seals segments on its own too)."""
        self.client.flush(self.name)

    def _reserve_ids(self, count: int) -> int:
        """Hand out `count` ids: raise pfd.next_id first, so that a kill after this never reuses them."""
        start = int(self.client.describe_collection(self.name)["properties"]["pfd.next_id"])
        self.client.alter_collection_properties(self.name, properties={"pfd.next_id": str(start + count)})
        return start

    def remove(self, paths) -> int:
        """Delete these images (by path); returns how many were here."""
        ids = [e["id"] for e in self._existing(list(paths))]
        for i in range(0, len(ids), MAX_TOPK):
            self.client.delete(self.name, filter=f"id in {ids[i:i + MAX_TOPK]}")
        return len(ids)

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The stored vectors [n, F] float32 of these rows (L2-normalized when the gallery is), for a
        re-ranking; ValueError for a reducing kind, which stores only the PCA/OPQ output."""
        if self.meta["index_type"] in REDUCERS:
            raise ValueError(f"a {self.meta['index_type']!r} gallery stores its vectors reduced; re-ranking reads "
                             f"them whole, which the kinds flat and ivfpq keep")
        rows = [int(r) for r in rows]
        found = {}
        for i in range(0, len(rows), MAX_TOPK):
            batch = self.client.query(self.name, filter=f"id in {rows[i:i + MAX_TOPK]}", output_fields=["id", "vector"])
            found.update((int(e["id"]), e["vector"]) for e in batch)
        missing = [r for r in rows if r not in found]
        if missing:
            raise ValueError(f"rows {missing} are not in {self.where}")
        return np.asarray([found[r] for r in rows], np.float32).reshape(len(rows), self.meta["feature_dim"])

    def path_of(self, row: int) -> str | None:
        found = self.client.query(self.name, filter=f"id == {int(row)}", output_fields=["path"])
        return found[0]["path"] if found else None

    # ------------------------------------------------------------------ search
    def _search(self, query_feats, k: int, where: SearchFilter | None, fields: list[str]) -> tuple[list, int]:
        """Milvus's hits of each query, (lists, k); when an IVF search finds fewer than k, every list is
        probed again, so k come back whenever k images pass the filter."""
        self.check_unchanged()
        q = self._vectors(query_feats, "query features")
        k = max(1, min(k, MAX_TOPK))
        params = {"metric_type": _metric(self.meta), "params": {}}
        ivf = self.meta["milvus_index"] != "FLAT"
        if ivf:
            params["params"]["nprobe"] = self.meta["params"]["nprobe"]
        run = dict(data=list(q), anns_field="vector", limit=k, filter=where.expression() if where else "",
                   output_fields=fields)
        hits = self.client.search(self.name, search_params=params, **run)
        if ivf and any(len(h) < k for h in hits) and params["params"]["nprobe"] < self.meta["params"]["nlist"]:
            params["params"]["nprobe"] = self.meta["params"]["nlist"]
            hits = self.client.search(self.name, search_params=params, **run)
        return hits, k

    def _distances(self, scores) -> np.ndarray:
        """Milvus's scores -> pfd.retrieval's distances (2 - 2 cos; squared L2: Lite returns it unsquared)."""
        scores = np.asarray(scores, np.float32)
        if self.meta["normalized"]:
            return _to_distance(scores, True).astype(np.float32)
        return scores ** 2 if self.location.lite else scores

    def search(self, query_feats, topk: int = 10, where: SearchFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distances [Q, k] float32, rows [Q, k] int64; -1 and inf pad), as GalleryIndex.search."""
        hits, k = self._search(query_feats, topk, where, ["id"])  # (Lite returns every field, vector too, for [])
        dist, rows = np.full((len(hits), k), np.inf, np.float32), np.full((len(hits), k), -1, np.int64)
        for i, found in enumerate(hits):
            rows[i, :len(found)] = [h["id"] for h in found]
            dist[i, :len(found)] = self._distances([h["distance"] for h in found])
        return dist, rows

    def find(self, query_feat, k: int, where: SearchFilter | None = None) -> list[Hit]:
        """The k nearest images of one query [1, F] that pass `where`, with their stored fields."""
        found = self._search(query_feat, k, where, FIELDS)[0][0]
        dist = self._distances([h["distance"] for h in found])
        return [Hit(int(h["id"]), float(d), e["path"], int(e["pid"]), int(e["camid"]), e["sha256"], e["time"],
                    decode_keypoints(e["keypoints"])) for h, d in zip(found, dist) for e in [h["entity"]]]

    def close(self) -> None:
        """Let go of the connection; for Lite, of the folder too (another process may then open it)."""
        self.client.close()
        if self.location.lite:
            from milvus_lite.server_manager import server_manager_instance
            server_manager_instance.release_server(self.location.uri)


def _metric(meta: dict) -> str:
    return "IP" if meta["normalized"] else "L2"
