"""The web dashboard's static files (``static/``: index.html, app.js, metrics.js, style.css), shipped as package data.

Served by :mod:`proximadb.api.rest.dashboard` at ``GET /dashboard``. Plain JavaScript, no build step and
nothing fetched from elsewhere, so it works offline; the page reads the daemon's own REST API
(collections, stats, scroll, get, search) and ``/metrics``, sending the API key the user typed.
"""

from __future__ import annotations

from importlib import resources

ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "metrics.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def read_asset(name: str) -> bytes:
    """The bytes of one of :data:`ASSETS` (KeyError for any other name)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__name__).joinpath("static", name).read_bytes()
