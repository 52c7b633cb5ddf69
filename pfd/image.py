"""Image reading: every file or in-memory image comes back as an 8-bit RGB PIL image, or an error naming it.

The one reader of the datasets, the API, `query.py` and the pose backends. Every PIL mode is read by
its real value range (PIL's own `convert("RGB")` clips 16-bit and 32-bit grey at 255, turning a
16-bit PNG almost white):

- I;16, I;16L, I;16B, I;16N (16-bit grey): v -> round(v / 257), so 0..65535 maps onto 0..255 and an
  8-bit image saved as 16 bits (v * 257) reads back exactly (ImageMagick's 16 -> 8 bit scaling).
- I (32-bit integer grey, which PIL also uses for some 16-bit PNG and TIFF files): read as 16-bit
  samples as above; values outside 0..65535 have no agreed meaning and are refused.
- F (32-bit float grey): values in [0, 1] (the float-image convention) -> round(v * 255); values
  outside [0, 1] or NaN are refused.
- 1, L, LA, La, P, PA, RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV: PIL's conversions; alpha (also a
  palette's transparency) is dropped, as the reference implementation's `convert("RGB")` drops it.

Images over MAX_PIXELS (decompression bombs included) are refused from the header, before decoding.

Also the mark of the pictures pfd writes (plots, ranked lists): a PNG text chunk `Software: pfd ...`
(`PNG_TEXT`), so that a picture output may replace a file only when `is_pfd_png` finds it there.
"""
from __future__ import annotations

import os
import warnings
from typing import BinaryIO, Iterable

import numpy as np
from PIL import Image, PngImagePlugin

from . import __version__
from .errors import UserError

__all__ = ["ImageReadError", "MAX_PIXELS", "PNG_TEXT", "check_image_file", "check_image_files", "image_size",
           "is_pfd_png", "open_image", "png_info", "read_image", "to_rgb"]

MAX_PIXELS = 64_000_000  # 8000 x 8000: far above any person crop or camera frame, far below a decompression bomb
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Modes PIL converts to RGB only through another mode (premultiplied alpha, palette with alpha).
VIA_MODE = {"La": "LA", "RGBa": "RGBA", "PA": "RGBA"}
# The last bytes of a complete file, for the cheap truncation check of `check_image_file`.
JPEG_END, PNG_END = b"\xff\xd9", b"IEND\xaeB`\x82"
TAIL_BYTES = 4096  # how far from the end a JPEG's end marker may lie (padding some writers add after it)
MAX_LISTED = 3  # problems one check_image_files error shows
BAD_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
PNG_SOFTWARE = "pfd"  # the start of the Software text chunk of every PNG pfd writes
PNG_TEXT = {"Software": f"{PNG_SOFTWARE} {__version__}"}  # matplotlib savefig(metadata=PNG_TEXT)


class ImageReadError(UserError, OSError):
    """An image file that is missing or cannot be decoded; the message names the path."""


def open_image(path: str | os.PathLike | BinaryIO) -> Image.Image:
    """Image.open (a file path or an open binary file; the header only) with PIL's decompression-bomb
    warning silenced: `to_rgb` refuses those images with one line of its own (PIL's error, at twice its
    limit, is caught by the callers). The project's only Image.open: decode with `to_rgb`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _check_size(img: Image.Image, source) -> None:
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageReadError(f"{source}: image of {width}x{height} pixels; expected at least 1x1")
    if width * height > MAX_PIXELS:
        raise ImageReadError(f"{source}: image of {width}x{height} pixels is over pfd.image.MAX_PIXELS "
                             f"({MAX_PIXELS}, a possible decompression bomb); crop or downscale it first")


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    """uint8 grey [H, W] -> RGB image."""
    return Image.fromarray(np.ascontiguousarray(values, dtype=np.uint8), "L").convert("RGB")


def _sixteen_bit_to_rgb(values: np.ndarray) -> Image.Image:
    """16-bit grey samples [H, W] (any integer dtype, within 0..65535) -> RGB by round(v / 257)."""
    return _grey_to_rgb((values.astype(np.uint32) + 128) // 257)


def to_rgb(img: Image.Image, source="image") -> Image.Image:
    """`img` (any PIL mode) as 8-bit RGB by the rules of this module's docstring; errors name `source`.
    A lazily opened image is decoded here (after the size check), so its decoding errors surface here."""
    _check_size(img, source)
    img.load()
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(np.asarray(img))  # numpy honours each mode's byte order
    if mode == "I":
        values = np.asarray(img)  # int32 [H, W]
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise ImageReadError(f"{source}: 32-bit integer image with values {low}..{high}; pfd reads mode I "
                                 f"as 16-bit samples (0..65535): save it as 8- or 16-bit")
        return _sixteen_bit_to_rgb(values)
    if mode == "F":
        values = np.asarray(img)  # float32 [H, W]
        if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ImageReadError(f"{source}: 32-bit float image with values {np.nanmin(values):g}.."
                                 f"{np.nanmax(values):g}; pfd reads mode F as values in [0, 1]: save it as 8- or "
                                 f"16-bit, or scale it to [0, 1]")
        return _grey_to_rgb(np.rint(values * 255))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL warns when a palette image with transparency goes straight to RGB
    elif mode in VIA_MODE:
        img = img.convert(VIA_MODE[mode])
    return img.convert("RGB")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    try:
        with open_image(path) as img:
            return img.size
    except FileNotFoundError as e:
        raise ImageReadError(f"image file not found: {path}") from e
    except BAD_IMAGE_ERRORS as e:
        raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode `path` fully and return it as 8-bit RGB (see the module docstring for each mode).

    Decoding happens here, not lazily, so a truncated or corrupt file fails in this call with its
    path in the message instead of deep inside a transform.
    """
    try:
        with open_image(path) as img:
            return to_rgb(img, path)
    except FileNotFoundError as e:
        raise ImageReadError(f"image file not found: {path}") from e
    except ImageReadError:
        raise
    except BAD_IMAGE_ERRORS as e:
        raise ImageReadError(f"cannot decode image {path}: {type(e).__name__}: {e}") from e


def _complete(path: str | os.PathLike, image_format: str | None) -> bool:
    """False when a JPEG or PNG file lacks its end marker (a truncated file); one small read at its end."""
    end = {"JPEG": JPEG_END, "PNG": PNG_END}.get(image_format)
    if end is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - (TAIL_BYTES if end is JPEG_END else len(end))))
        return end in f.read()


def check_image_file(path: str | os.PathLike) -> None:
    """Fail now, naming `path`, when it is missing, not an image PIL can open, of an unusable size, or a
    JPEG / PNG cut short. Reads the header and the file's last bytes only, never the pixels."""
    try:
        with open_image(path) as img:
            _check_size(img, path)
            image_format = img.format
        if not _complete(path, image_format):
            raise ImageReadError(f"truncated image: {path} ({image_format} without its end marker; "
                                 f"copy the file again)")
    except FileNotFoundError as e:
        raise ImageReadError(f"image file not found: {path}") from e
    except ImageReadError:
        raise
    except BAD_IMAGE_ERRORS as e:
        raise ImageReadError(f"not an image PIL can read: {path} ({type(e).__name__}: {e})") from e


def check_image_files(paths: Iterable[str | os.PathLike], what: str = "images") -> None:
    """`check_image_file` on every path, before any long work on them starts: one ImageReadError
    naming how many of `what` are bad and the first MAX_LISTED problems."""
    paths, problems = list(paths), []
    count = len(paths)
    for path in paths:
        try:
            check_image_file(path)
        except ImageReadError as err:
            problems.append(str(err))
    if len(problems) == 1:
        raise ImageReadError(problems[0] if count == 1 else f"{what}: {problems[0]}")
    if problems:
        shown = "; ".join(problems[:MAX_LISTED]) + ("; ..." if len(problems) > MAX_LISTED else "")
        raise ImageReadError(f"{what}: {len(problems)} of {count} files are not readable images: {shown}")


def png_info() -> PngImagePlugin.PngInfo:
    """PIL's `pnginfo=` for a PNG pfd writes: the `PNG_TEXT` chunk."""
    info = PngImagePlugin.PngInfo()
    for key, value in PNG_TEXT.items():
        info.add_text(key, value)
    return info


def is_pfd_png(path: str | os.PathLike) -> bool:
    """True when `path` is a PNG whose Software text chunk says pfd wrote it (reads the header only)."""
    try:
        with Image.open(path) as img:
            software = img.info.get("Software", "") if img.format == "PNG" else ""
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
    return isinstance(software, str) and software.split(" ")[0] == PNG_SOFTWARE
