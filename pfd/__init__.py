"""PFD: pose-guided feature disentangling for occluded person re-identification.

The Python API (pfd.api) is importable from here; it loads torch, timm and FAISS on first use, so
`import pfd` itself stays light:

    from pfd import ReIDModel, Gallery
"""

__version__ = "0.1.0"
__all__ = ["ReIDModel", "Gallery", "Match"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pfd' has no attribute {name!r}")
