"""What both gallery stores share: where a gallery lives, the search filters, and how a match comes back.

A gallery lives in one of two stores with one contract (``pfd.Gallery`` uses either):
- the FAISS index folder (``gallery_index.GalleryIndex``, saved by ``index_folder``): any other path;
- a Milvus collection (``milvus_store.MilvusGallery``): ``milvus:PATH.db`` (Milvus Lite, a local folder)
  or ``milvus://HOST:PORT/COLLECTION`` (a Milvus server).

Contract of a store: ``meta`` (model id, config hash, feature size, kind, ...), ``len()``,
``plan_add(paths, sha256s)``, ``add(vectors, records, sha256s, builder=None, times=None, keypoints=None)``,
``remove(paths)``, ``search(query_feats, topk, where=None) -> (distances [Q, k], rows [Q, k])`` and
``find(query_feat, k, where=None) -> [Hit]`` (one query, with each image's stored fields), ``path_of(row)``
and ``vectors(rows) -> [n, F]`` (the stored vectors, for a re-ranking; ValueError where they are compressed).

Filters (``SearchFilter``): only some cameras, not one camera (the re-ID protocol's "not the query's own
camera"), a time window. Both stores return k matches whenever k images pass the filter: Milvus runs
the filter inside the search (``expression()``), the FAISS store fetches more and filters (``allowed()``).
Times are seconds since the epoch (UTC); an image without a time never passes a time window.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import InvalidInputError

__all__ = ["Hit", "SearchFilter", "decode_keypoints", "encode_keypoints", "is_milvus_location", "plan_additions",
           "to_timestamp"]

MILVUS_SCHEME = "milvus:"


def is_milvus_location(location) -> bool:
    """Whether `location` names a Milvus collection (``milvus:PATH.db`` or ``milvus://HOST:PORT/NAME``)."""
    return isinstance(location, str) and location.startswith(MILVUS_SCHEME)


class Hit(NamedTuple):
    """One match as a store returns it: its row (the image's number), distance and stored fields."""

    row: int
    distance: float
    path: str
    pid: int
    camid: int
    sha256: str | None
    time: float | None
    keypoints: np.ndarray | None  # [17, 3] the feature was made from (None: not stored)


def plan_additions(paths: Sequence[str], sha256s: Sequence[str],
                   existing: dict[str, str | None]) -> tuple[list[int], int, list[str]]:
    """Which of `paths` to embed, given `existing` (path -> SHA-256 of each image already in the gallery):
    (their positions, how many are already in with the same SHA-256 or repeat an earlier entry, paths in
    the gallery whose file changed: to remove before adding their new content)."""
    new, duplicates, changed, seen = [], 0, [], set()
    for i, (path, digest) in enumerate(zip(paths, sha256s)):
        if (path, digest) in seen or (path in existing and existing[path] == digest):
            duplicates += 1
            continue
        seen.add((path, digest))
        if path in existing:
            changed.append(path)
        new.append(i)
    return new, duplicates, changed


def encode_keypoints(keypoints: np.ndarray | None) -> str | None:
    """[K, 3] keypoints (COCO-17: 17 rows of x, y, confidence) as base64 of float16 (136 characters; within
    0.25 px below 512 px, 0.5 px below 1,024): how both stores keep them, so both return the same values."""
    if keypoints is None:
        return None
    values = np.asarray(keypoints, np.float32).reshape(-1).astype("<f2")
    return base64.b64encode(values.tobytes()).decode("ascii")


def decode_keypoints(text: str | None) -> np.ndarray | None:
    if not text:
        return None
    return np.frombuffer(base64.b64decode(text), "<f2").astype(np.float32).reshape(-1, 3)


def to_timestamp(value, what: str) -> float | None:
    """Seconds since the epoch from a number, a datetime or an ISO 8601 text (no zone = UTC); None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidInputError(f"{what}: expected a finite time, got {value}")
        return float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            return to_timestamp(float(text), what)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInputError(f"{what}: expected seconds since 1970 or an ISO 8601 time such as "
                                    f"2024-05-01T13:45:00, got {value!r}") from None
    else:
        raise InvalidInputError(f"{what}: expected a time (seconds, datetime or ISO 8601 text), got "
                                f"{type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass(frozen=True)
class SearchFilter:
    """Which gallery images a search may return: cameras (0-based) in `cameras` (None = any), not
    `exclude_camera`, taken at `since` <= time <= `until` (seconds since the epoch; None = open)."""

    cameras: tuple[int, ...] | None = None
    exclude_camera: int | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def of(cls, cameras: Sequence[int] | None = None, exclude_camera: int | None = None, since=None,
           until=None) -> "SearchFilter | None":
        """The filter of a search's arguments (checked: one line naming a bad one), None when it keeps all."""
        if cameras is not None:
            if isinstance(cameras, (int, np.integer)):
                cameras = [cameras]
            try:
                cameras = tuple(sorted({int(c) for c in cameras}))
            except (TypeError, ValueError):
                raise InvalidInputError(f"cameras: expected 0-based camera numbers, got {cameras!r}") from None
            if not cameras:
                raise InvalidInputError("cameras: an empty list keeps no image; pass None for all cameras")
        if exclude_camera is not None and not isinstance(exclude_camera, (int, np.integer)):
            raise InvalidInputError(f"exclude_camera: expected a 0-based camera number, got {exclude_camera!r}")
        since, until = to_timestamp(since, "since"), to_timestamp(until, "until")
        if since is not None and until is not None and since > until:
            raise InvalidInputError(f"since ({since}) is after until ({until}): the window holds no time")
        found = cls(cameras, None if exclude_camera is None else int(exclude_camera), since, until)
        return None if found == cls() else found

    def allowed(self, camids: np.ndarray, times: np.ndarray) -> np.ndarray:
        """[N] bool of the rows this filter keeps, from the rows' cameras [N] and times [N] (NaN = none)."""
        keep = np.ones(len(camids), bool)
        if self.cameras is not None:
            keep &= np.isin(camids, self.cameras)
        if self.exclude_camera is not None:
            keep &= camids != self.exclude_camera
        with np.errstate(invalid="ignore"):  # NaN compares False: an image without a time is outside a window
            if self.since is not None:
                keep &= times >= self.since
            if self.until is not None:
                keep &= times <= self.until
        return keep

    def expression(self) -> str:
        """The filter as a Milvus boolean expression over the fields camid and time."""
        terms = []
        if self.cameras is not None:
            terms.append(f"camid in [{', '.join(map(str, self.cameras))}]")
        if self.exclude_camera is not None:
            terms.append(f"camid != {self.exclude_camera}")
        if self.since is not None:
            terms.append(f"time >= {self.since!r}")
        if self.until is not None:
            terms.append(f"time <= {self.until!r}")
        return " and ".join(terms)
