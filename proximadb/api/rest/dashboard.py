"""``GET /dashboard`` and ``GET /dashboard/{asset}``: the web dashboard's static files (:mod:`proximadb.dashboard`).

The files are open (operation ``dashboard`` in :mod:`proximadb.api.operations`): they hold no data. Every
data call the page makes carries the API key the user typed, so with keys enabled the page shows
"API key required" until one is given. A strict Content-Security-Policy lets the page load and call
nothing but this daemon.
"""

from __future__ import annotations

import falcon

from proximadb.api.rest.media import send_error
from proximadb.dashboard import ASSETS, read_asset
from proximadb.service.unified import UnifiedAvroService

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _serve(resp: falcon.Response, name: str) -> None:
    resp.status = 200
    resp.content_type = ASSETS[name]
    resp.data = read_asset(name)
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Content-Security-Policy", CSP)


class DashboardResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _serve(resp, "index.html")


class DashboardAssetResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, asset: str) -> None:
        if asset not in ASSETS:
            send_error(resp, 404, "not_found", f"the dashboard has no file {asset[:80]!r}")
            return
        _serve(resp, asset)
