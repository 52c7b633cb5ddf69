"""Image reading: every file comes back as a decoded RGB PIL image, or an error naming it.

Also the mark of the pictures pfd writes (plots, ranked lists): a PNG text chunk `Software: pfd ...`
(`PNG_TEXT`), so that a picture output may replace a file only when `is_pfd_png` finds it there.
"""
from __future__ import annotations

import os

from PIL import Image, PngImagePlugin

from . import __version__
from .errors import UserError

PNG_SOFTWARE = "pfd"  # the start of the Software text chunk of every PNG pfd writes
PNG_TEXT = {"Software": f"{PNG_SOFTWARE} {__version__}"}  # matplotlib savefig(metadata=PNG_TEXT)


class ImageReadError(UserError, OSError):
    """An image file that is missing or cannot be decoded; the message names the path."""


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError as e:
        raise ImageReadError(f"image file not found: {path}") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode `path` fully and return it in RGB.

    Grayscale, palette (with or without transparency), RGBA and CMYK files are converted; the
    alpha channel is dropped. Decoding happens here, not lazily, so a truncated or corrupt file
    fails in this call with its path in the message instead of deep inside a transform.
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "RGB":
                return img
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # PIL warns when a palette image with transparency goes straight to RGB
            return img.convert("RGB")
    except FileNotFoundError as e:
        raise ImageReadError(f"image file not found: {path}") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot decode image {path}: {type(e).__name__}: {e}") from e


def check_image_file(path: str | os.PathLike) -> None:
    """Fail now, naming `path`, when it is missing or not an image PIL can open (reads the header only)."""
    try:
        with Image.open(path):
            pass
    except FileNotFoundError as e:
        raise ImageReadError(f"image file not found: {path}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"not an image PIL can read: {path} ({type(e).__name__}: {e})") from e


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
