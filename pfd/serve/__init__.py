"""A search service over a saved gallery: `python -m pfd.serve --index DIR` (see app.py for the API).

It sits at the API's level: it serves a `pfd.api.Gallery` and its `ReIDModel`, nothing lower.
"""
from .app import create_app
from .inputs import Limits

__all__ = ["Limits", "create_app"]
