"""The search service: a FastAPI app over one loaded `Gallery` (its index and its model).

    GET  /                     the page (static/index.html: plain HTML, CSS and JavaScript)
    GET  /api/health           model, config hash, gallery size, device, limits
    POST /api/search           multipart: `image` (a file) or `gallery` (an index number), optional `k`,
                               `keypoints` (JSON [17, 3]), `camera` (0-based) -> the top k matches;
                               filters: `cameras` ("0,2": only these), `exclude_camera`, `since`, `until`
                               (seconds or ISO 8601)
    GET  /api/gallery/{n}      gallery image number n: the file named by the index's own list, never a
                               path taken from the request

Gallery images are numbered 0 .. size - 1 in the order of the index's list, skipping the rows of images
removed from it (`Gallery.remove`, or a changed file replaced by `--append`), which stay in the list as
None: every number names an image the gallery holds.

Errors are `{"error": "<one line>"}` with a 4xx status (5xx for a bug, logged with its traceback); a
failing request never stops the server. The answers' shapes are schemas.py's models: /openapi.json and the
/docs page publish them with the routes (the /api routes sit on `router`; each reads the shared `_Searcher`
through the `searcher` dependency).

Concurrency: the endpoints are plain `def`, so FastAPI runs them in its worker thread pool. The model
is shared read-only (eval mode, features under torch.inference_mode); a FAISS index is safe to search
from several threads at once (only `add`/`train` are not, and the service never calls them), and so is a
Milvus collection (pymilvus's gRPC client). The pose
estimators (mediapipe graphs, a lazily built keypoint table) are not thread safe: one lock serializes
keypoint estimation, which is short next to the forward pass.

A query's keypoints follow the one policy of `query.py search` and the Python API
(pfd.inference.query_pose): the request's `keypoints`, else the index's pose backend when it reads pixels,
else the photo's entry in the index's keypoint file (a gallery image by its path, an upload by its file
name). A photo that file does not list is refused (400, saying how to send keypoints) unless the operator
chose a fallback backend, `--pose-backend`: a mixed pose source is then a deliberate choice, and every
answer's `pose_reason` says the fallback posed the photo. Refusing by default is what `query.py search`
does: features from another backend's keypoints are features of another config than the index's.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .. import __version__
from ..api import Gallery, parse_name
from ..errors import UserError
from ..image import image_size
from ..pose.base import PIXEL_BACKENDS
from ..retrieval.occlusion import visible_counts
from ..retrieval.stores import SearchFilter
from .inputs import (
    Limits,
    RequestError,
    check_camera,
    check_k,
    decode_upload,
    parse_cameras,
    parse_keypoints,
)
from .schemas import ErrorAnswer, Health, Match, Query, SearchAnswer

__all__ = ["create_app", "router"]

logger = logging.getLogger("pfd.serve")
STATIC = Path(__file__).resolve().parent / "static"


def relative_path(path: str, root: str | None) -> str:
    """A gallery path relative to the folder the index was built from (its file name when outside it)."""
    inside = root and os.path.commonpath([root, path]) == os.path.normpath(root)
    return os.path.relpath(path, root) if inside else os.path.basename(path)


class _Searcher:
    """The shared state of every request: the gallery, its model and the pose lock."""

    def __init__(self, gallery: Gallery, limits: Limits, pose_backend: str | None):
        self.gallery, self.limits = gallery, limits
        self.model = gallery.model
        self.cfg = self.model.cfg
        self.threshold = float(self.cfg.MODEL.SKT_THRES)
        give = "the request's `keypoints` field, JSON [17, 3] of x, y, confidence in its pixels"
        if pose_backend is None:
            give += "; or have the service started with --pose-backend mediapipe, which then poses such photos"
        self.poser = gallery.query_poser(give=give, fallback=pose_backend)
        if pose_backend is not None and self.poser.backend in PIXEL_BACKENDS:
            logger.warning("--pose-backend %s is not used: the index's own backend, %s, poses every photo",
                           pose_backend, self.poser.backend)
        self.root = gallery.meta.get("gallery")  # the folder the gallery was built from
        self._pose_lock = threading.Lock()

    def health(self) -> Health:
        meta, model = self.gallery.meta, self.model
        return Health(status="ok", model=self.cfg.MODEL.NAME, weights=model.checkpoint.name,
                      model_id=model.model_id[:12], config_hash=model.config_hash, gallery_size=len(self.gallery),
                      index_type=meta["index_type"], feature_kind=meta["feature_kind"], device=str(model.device),
                      store="milvus" if meta.get("format", "").startswith("pfd-milvus") else "faiss",
                      num_cameras=model.num_cameras, keypoint_threshold=self.threshold,
                      upload_pose_backend=self.poser.backend, pose_fallback=self.poser.fallback,
                      max_k=min(self.limits.max_k, len(self.gallery)),
                      max_upload_bytes=self.limits.max_bytes, max_pixels=self.limits.max_pixels)

    def gallery_file(self, number: int) -> Path:
        """The file of gallery image `number`, from the index's list only; 404 when out of range or gone."""
        path = self.gallery.index.path_of(number) if number >= 0 else None
        if path is None:
            raise RequestError(f"gallery image {number}: no such image (the gallery holds {len(self.gallery)}, "
                               f"numbered from 0; a removed image's number is not reused)", 404)
        if not Path(path).is_file():
            raise RequestError(f"gallery image {number} ({relative_path(path, self.root)}) is missing from the disk",
                               404)
        return Path(path)

    def search(self, *, image, name: str, keypoints_text: str | None, k: int, camera: int | None,
               source: str, filters: dict | None = None) -> SearchAnswer:
        """Match one query (`image`: an RGB PIL image or a gallery file path) and describe the answer."""
        start = time.perf_counter()
        k = check_k(k, len(self.gallery), self.limits)
        camera = check_camera(camera, self.model.num_cameras)
        pid, name_camera = parse_name(name)
        camera = name_camera if camera is None and name_camera >= 0 else camera
        width, height = image_size(image) if isinstance(image, str) else image.size
        given = parse_keypoints(keypoints_text) if keypoints_text else None
        with self._pose_lock:
            pose = self.poser.pose(image, given, name=name, where=f"image {name!r}")
        kps = pose.keypoints
        with torch.inference_mode():
            matches = self.gallery.search(image, k, keypoints=kps, camid=camera, **(filters or {}))
        query = Query(source=source, name=name, id=pid, camera=-1 if camera is None else camera, width=width,
                      height=height, pose=pose.source, pose_reason=pose.reason, keypoint_threshold=self.threshold,
                      keypoints=None if kps is None else np.asarray(kps).round(2).tolist(),
                      visible_keypoints=None if kps is None else int(visible_counts(kps[None], self.threshold)[0]))
        return SearchAnswer(k=k, query=query, matches=[
            Match(rank=rank, index=m.index, path=relative_path(m.path, self.root), id=m.id, camera=m.camera,
                  distance=round(m.distance, 6), time=m.time, url=f"/api/gallery/{m.index}")
            for rank, m in enumerate(matches, 1)], elapsed_ms=round(1000 * (time.perf_counter() - start), 1))



def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)  # one line


def _validation_message(err: RequestValidationError) -> str:
    """FastAPI's list of field errors as one line: `k: Input should be a valid integer (got 'x')`."""
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
        parts.append(f"{field}: {e.get('msg', 'invalid')}" + (f" (got {e['input']!r})" if "input" in e and
                                                                isinstance(e["input"], (str, int, float)) else ""))
    return "; ".join(parts)


def searcher(request: Request) -> _Searcher:
    """The dependency every /api route reads: the app's one `_Searcher` (create_app made it)."""
    return request.app.state.searcher


Searcher = Annotated[_Searcher, Depends(searcher)]


def errors(*statuses: int) -> dict:
    """The error answers a route may give, for /openapi.json: each an `ErrorAnswer`."""
    meaning = {400: "a bad request (field, image or filter)", 404: "no such gallery image",
               413: "an upload over the byte or pixel limit", 422: "a field of the wrong type",
               500: "a bug (the server log has the traceback)"}
    return {status: {"model": ErrorAnswer, "description": meaning[status]} for status in statuses}


router = APIRouter(prefix="/api", responses=errors(500))


@router.get("/health")
def health(state: Searcher) -> Health:
    """The loaded model and gallery, and the limits a search must keep."""
    return state.health()


@router.get("/gallery/{number}", response_class=FileResponse, responses={
    **errors(404, 422), 200: {"content": {"image/*": {}}, "description": "the image file, as stored"}})
def gallery_image(number: int, state: Searcher) -> FileResponse:
    """Gallery image `number`, the file the index's own list names (never a path taken from the request)."""
    return FileResponse(state.gallery_file(number))


@router.post("/search", responses=errors(400, 404, 413, 422))
def search(state: Searcher, image: Annotated[UploadFile | None, File()] = None,
           gallery: Annotated[int | None, Form()] = None, k: Annotated[int, Form()] = 10,
           keypoints: Annotated[str | None, Form(description="JSON [17, 3]: x, y, confidence")] = None,
           camera: Annotated[int | None, Form(description="the query's 0-based camera")] = None,
           cameras: Annotated[str | None, Form(description='only these 0-based cameras, e.g. "0,2"')] = None,
           exclude_camera: Annotated[int | None, Form()] = None,
           since: Annotated[str | None, Form(description="seconds since 1970 or ISO 8601")] = None,
           until: Annotated[str | None, Form()] = None) -> SearchAnswer:
    """Rank the gallery for an uploaded photo (`image`) or one of its own images (`gallery`: its number)."""
    if (image is None) == (gallery is None):
        raise RequestError("send either an image file (field `image`) or a gallery image number (field "
                           "`gallery`), not both or neither")
    filters = {"cameras": parse_cameras(cameras), "exclude_camera": exclude_camera, "since": since or None,
               "until": until or None}
    SearchFilter.of(**filters)  # a bad filter is refused before any model work
    if gallery is not None:
        path = str(state.gallery_file(gallery))
        return state.search(image=path, name=Path(path).name, keypoints_text=keypoints, k=k, camera=camera,
                            source="gallery", filters=filters)
    name = image.filename or "upload"
    limits = state.limits
    data = image.file.read(limits.max_bytes + 1)  # one byte more than allowed tells "over the limit"
    return state.search(image=decode_upload(data, name, limits), name=name, keypoints_text=keypoints, k=k,
                        camera=camera, source="upload", filters=filters)


def create_app(gallery: Gallery, limits: Limits | None = None, pose_backend: str | None = None) -> FastAPI:
    """The service over `gallery` (loaded, with its model: `Gallery.load(folder, model)`).

    pose_backend: the fallback pose backend (mediapipe or hrnet) for a photo sent without keypoints that the
    keypoint file of a file-based index (synthetic, file) does not list; None: such a photo is refused
    (pfd.inference.query_pose). limits: default `Limits()`.
    """
    app = FastAPI(title="pfd search", version=__version__, redoc_url=None,
                  description="Person re-identification search over one gallery: the page is at /.")
    app.state.searcher = _Searcher(gallery, limits or Limits(), pose_backend)

    @app.exception_handler(RequestError)
    def request_error(_: Request, err: RequestError) -> JSONResponse:
        return _error(err.status, str(err))

    @app.exception_handler(UserError)
    def user_error(_: Request, err: UserError) -> JSONResponse:  # e.g. an image the model's reader refuses
        return _error(400, str(err))

    @app.exception_handler(RequestValidationError)
    def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(err))

    @app.exception_handler(HTTPException)
    def http_error(_: Request, err: HTTPException) -> JSONResponse:  # unknown routes (404), wrong methods (405)
        return _error(err.status_code, err.detail)

    @app.exception_handler(Exception)
    def bug(request: Request, err: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(err).__name__}); the server log has the traceback")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.include_router(router)
    return app
