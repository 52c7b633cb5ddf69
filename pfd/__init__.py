"""PFD: pose-guided feature disentangling for occluded person re-identification.

The Python API (pfd.api) is importable from here; it loads torch, timm and FAISS on first use, so
`import pfd` itself stays light:

    from pfd import ReIDModel, Gallery
"""

from .lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["ReIDModel", "Gallery", "Match"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "api"))
