"""What a search request may carry, checked before any model work: the uploaded photo (bytes and pixel
limits, decodable), the keypoints (COCO-17 JSON), k and the camera. Each refusal is a `RequestError`
with the HTTP status to answer and a one-line message naming the field."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import InvalidInputError
from ..image import BAD_IMAGE_ERRORS, ImageReadError, open_image, to_rgb
from ..pose.keypoints import keypoints_from_json

__all__ = ["Limits", "RequestError", "check_camera", "check_k", "decode_upload", "parse_cameras", "parse_keypoints"]


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (`python -m pfd.serve` flags --max-upload-mb, --max-pixels, --max-k)."""

    max_bytes: int = 8 * 2 ** 20  # an uploaded file, in bytes
    max_pixels: int = 16_000_000  # width x height of the decoded photo
    max_k: int = 100  # matches per request (also capped by the gallery size)


class RequestError(InvalidInputError):
    """A request the service refuses: `status` is the HTTP status of the answer (4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, name: str, limits: Limits) -> Image.Image:
    """The uploaded bytes as an RGB image; 413 over the byte or pixel limit, 400 empty or not an image.
    The pixel count is read from the header, before the pixels are decoded."""
    if not data:
        raise RequestError(f"image {name!r}: the upload is empty")
    if len(data) > limits.max_bytes:
        raise RequestError(f"image {name!r}: {len(data)} bytes, over the limit of {limits.max_bytes} "
                           f"(--max-upload-mb)", 413)
    try:
        img = open_image(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as err:
        raise RequestError(f"image {name!r}: too many pixels ({err})", 413) from err
    except BAD_IMAGE_ERRORS as err:  # PIL's "cannot identify image file"
        raise RequestError(f"image {name!r}: not an image PIL can read ({type(err).__name__}: {err})") from err
    with img:
        width, height = img.size
        if width * height > limits.max_pixels:
            raise RequestError(f"image {name!r}: {width}x{height} = {width * height} pixels, over the limit of "
                               f"{limits.max_pixels} (--max-pixels)", 413)
        try:
            return to_rgb(img, f"image {name!r}")  # every PIL mode by its value range, as files are read
        except ImageReadError as err:
            raise RequestError(str(err)) from err
        except BAD_IMAGE_ERRORS as err:  # truncated or corrupt pixel data
            raise RequestError(f"image {name!r}: cannot decode it ({type(err).__name__}: {err})") from err


def parse_keypoints(text: str) -> np.ndarray:
    """[17, 3] float32 from JSON `[[x, y, confidence], ...]` (COCO-17 order, the photo's own pixels,
    confidence in [0, 1]); 400 naming what is wrong otherwise."""
    try:
        kps = keypoints_from_json(text, "keypoints")
    except InvalidInputError as err:
        raise RequestError(str(err)) from err
    if not np.isfinite(kps).all():
        raise RequestError("keypoints: contains NaN or infinite values")
    if ((kps[:, 2] < 0) | (kps[:, 2] > 1)).any():
        raise RequestError("keypoints: confidences (third column) must lie in [0, 1]")
    return kps


def check_k(k: int, gallery_size: int, limits: Limits) -> int:
    """k itself when 1 <= k <= min(--max-k, gallery size); 400 otherwise."""
    top = min(limits.max_k, gallery_size)
    if not 1 <= k <= top:
        raise RequestError(f"k: expected 1 to {top} (the gallery holds {gallery_size} images, --max-k is "
                           f"{limits.max_k}), got {k}")
    return k


def check_camera(camera: int | None, num_cameras: int) -> int | None:
    """The query's 0-based camera: None (unknown) or -1 .. num_cameras - 1; 400 otherwise."""
    if camera is not None and not -1 <= camera < num_cameras:
        raise RequestError(f"camera: expected a 0-based camera from 0 to {num_cameras - 1} (or -1 = unknown), "
                           f"got {camera}")
    return camera


def parse_cameras(text: str | None) -> list[int] | None:
    """The `cameras` filter ("0,2": 0-based camera numbers) as a list; None or empty = every camera."""
    if text is None or not text.strip():
        return None
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise RequestError(f"cameras: expected 0-based camera numbers separated by commas, e.g. 0,2; got "
                           f"{text!r}") from None
