"""API-key check for the REST API: a Falcon middleware over :class:`proximadb.server.auth.KeyStore`.

Runs in ``process_resource`` (after routing, so it knows the route template).
Which requests need a key, and which need a read-write one, is the operation
table's (:mod:`proximadb.api.operations`), shared with gRPC: ``GET /health``
is open, reads and probes take any key, writes a read-write key. Writes are
decided by operation, not method: search, get, scroll and count are POSTs that
only read. A route missing from the table is a write: the safe default.
Unmatched paths get their 404 without a key check (Falcon skips resource
middleware for them), which reveals nothing the OpenAPI document does not.
The one exception, for the cluster key only: compact and flush of a shard address (a peer's maintenance of
its replicas; :mod:`proximadb.server.auth` says why).
"""

from __future__ import annotations

from typing import Any

import falcon

from proximadb.api import operations
from proximadb.api.rest.media import send_error
from proximadb.cluster.placement import is_shard_address
from proximadb.errors import AuthenticationError, ProximaDBError
from proximadb.server.auth import PEER_MAINTENANCE, KeyStore, bearer_token


class AuthMiddleware:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        route = req.uri_template or ""
        op = operations.for_route(req.method, route)
        if op.open:
            return
        maintenance = op.name in PEER_MAINTENANCE and is_shard_address(str((params or {}).get("collection", "")))
        try:
            self.keys.check(bearer_token(req.get_header("Authorization")), op.write, what=f"{req.method} {route}",
                            peer_maintenance=maintenance)
        except ProximaDBError as exc:
            if isinstance(exc, AuthenticationError):
                resp.set_header("WWW-Authenticate", 'Bearer realm="proximadb"')
            send_error(resp, exc.http_status, exc.code, exc.message)
            resp.complete = True  # skip the responder; process_response (metrics) still runs
