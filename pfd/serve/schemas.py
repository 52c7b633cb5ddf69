"""The service's JSON contract as Pydantic models: FastAPI validates each answer against them and publishes
them in /openapi.json (and the /docs page), so the page, bench/serve.py and any other client read one
declared shape."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ErrorAnswer", "Health", "Match", "Query", "SearchAnswer"]


class ErrorAnswer(BaseModel):
    """Every refusal (4xx) and bug (500): one line saying what was wrong and, where it helps, what to send."""

    error: str = Field(description="one line naming the field or file and what was expected")


class Health(BaseModel):
    """The loaded model and gallery, and the limits a request must keep."""

    status: Literal["ok"]
    model: str = Field(description="MODEL.NAME: pfd or the ViT baseline")
    weights: str = Field(description="the checkpoint's file name")
    model_id: str = Field(description="the first 12 hex digits of the checkpoint's id")
    config_hash: str = Field(description="the hash of the config keys that change the feature")
    gallery_size: int = Field(description="images the gallery holds")
    index_type: str
    feature_kind: str
    device: str
    store: Literal["faiss", "milvus"]
    num_cameras: int
    keypoint_threshold: float = Field(description="MODEL.SKT_THRES: a keypoint counts as visible above it")
    upload_pose_backend: str = Field(description="the index's pose backend, which gives a query sent without "
                                     "keypoints its keypoints: a pixel one (mediapipe, hrnet) poses the photo, a "
                                     "file-based one (synthetic, file) looks it up by path or file name")
    pose_fallback: str | None = Field(description="the backend posing a photo the index's keypoint file does not "
                                      "list (--pose-backend); null: such a photo needs keypoints")
    max_k: int = Field(description="most matches one search returns (also capped by the gallery size)")
    max_upload_bytes: int
    max_pixels: int


class Query(BaseModel):
    """The query as the service read it."""

    source: Literal["upload", "gallery"]
    name: str = Field(description="the uploaded file's name, or the gallery image's")
    id: int = Field(description="person id parsed from a Market-1501 style name, else -1")
    camera: int = Field(description="0-based camera: the request's, else the name's, else -1")
    width: int
    height: int
    pose: str = Field(description="where the keypoints came from: request, online, or the pose backend's name")
    pose_reason: str = Field(description="one line saying which keypoints were used and why (the one query "
                             "keypoint policy of query.py search, the Python API and this service)")
    keypoint_threshold: float
    keypoints: list[list[float]] | None = Field(description="COCO-17 [17, 3] (x, y, confidence); null when the "
                                                "model poses the image itself (online)")
    visible_keypoints: int | None


class Match(BaseModel):
    """One gallery image in the ranking."""

    rank: int = Field(description="1 for the closest")
    index: int = Field(description="the gallery image's number: GET /api/gallery/{index} returns it")
    path: str = Field(description="relative to the folder the gallery was built from")
    id: int
    camera: int
    distance: float
    time: float | None = Field(description="seconds since 1970 (UTC), when the index was given times")
    url: str


class SearchAnswer(BaseModel):
    """The top k matches of one query, closest first."""

    k: int
    query: Query
    matches: list[Match]
    elapsed_ms: float
