"""API-key check for the REST API: a Falcon middleware over :class:`proximadb.server.auth.KeyStore`.

Runs in ``process_resource`` (after routing, so it knows the route template).
``GET /health`` is always open; every other matched route needs a key when keys
are configured. Unmatched paths get their 404 without a key check (Falcon skips
resource middleware for them), which reveals nothing the OpenAPI document does not.

Writes are decided by route, not method: a non-GET/HEAD/OPTIONS request is a
write unless its route is one of :data:`READ_POST_ROUTES` (search, get, scroll,
count take a body but only read). A route added later is a write until listed
here: the safe default.
"""

from __future__ import annotations

from typing import Any

import falcon

from proximadb.api.rest.media import send_error
from proximadb.errors import AuthenticationError, ProximaDBError
from proximadb.server.auth import KeyStore, bearer_token

OPEN_ROUTES = frozenset({("GET", "/health"), ("HEAD", "/health")})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_POST_ROUTES = frozenset({
    "/collections/{collection}/vectors/get",
    "/collections/{collection}/vectors/scroll",
    "/collections/{collection}/vectors/count",
    "/collections/{collection}/search",
    "/collections/{collection}/search/batch",
})


def is_write(method: str, route: str) -> bool:
    return method not in READ_METHODS and route not in READ_POST_ROUTES


class AuthMiddleware:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        route = req.uri_template or ""
        if (req.method, route) in OPEN_ROUTES:
            return
        try:
            self.keys.check(bearer_token(req.get_header("Authorization")), is_write(req.method, route),
                            what=f"{req.method} {route}")
        except ProximaDBError as exc:
            if isinstance(exc, AuthenticationError):
                resp.set_header("WWW-Authenticate", 'Bearer realm="proximadb"')
            send_error(resp, exc.http_status, exc.code, exc.message)
            resp.complete = True  # skip the responder; process_response (metrics) still runs
