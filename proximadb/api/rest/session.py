"""REST side of the per-request scopes: read consistency (:mod:`proximadb.consistency`, the
``ProximaDB-Session`` header) and write request ids (:mod:`proximadb.idempotency`, the
``ProximaDB-Request-Id`` header: malformed, 400 ``validation_error`` and nothing runs).

Runs in ``process_resource`` after admission: the request's session token (request header
``ProximaDB-Session``, sent by clients that read with ``consistency=session``) opens the request's
consistency scope; a malformed one is answered 400 (``validation_error``) and the responder does not
run. A response to a request that wrote carries the token back in the same header (the client's token
merged with the sequences this write was acknowledged; cluster mode only: one node acknowledges no log
sequences).
"""

from __future__ import annotations

from typing import Any

import falcon

from proximadb import consistency, idempotency
from proximadb.api.rest.media import send_error
from proximadb.errors import ValidationError


class SessionMiddleware:
    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if resp.complete:
            return  # refused already (auth, admission)
        scopes = (consistency.request(req.get_header(consistency.SESSION_HEADER)),
                  idempotency.request(req.get_header(idempotency.REQUEST_ID_HEADER)))
        try:  # both left in process_response (no ExitStack: every request comes here)
            req.context.consistency = scopes[0].__enter__()
            try:
                scopes[1].__enter__()
            except BaseException:
                scopes[0].__exit__(None, None, None)
                raise
        except ValidationError as exc:
            send_error(resp, exc.http_status, exc.code, exc.message)
            resp.complete = True
            return
        req.context.consistency_scope = scopes

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        scopes = getattr(req.context, "consistency_scope", None)
        if scopes is None:
            return
        req.context.consistency_scope = None
        token = consistency.response_token(req.context.consistency)
        if req_succeeded and token is not None:
            resp.set_header(consistency.SESSION_HEADER, token)
        scopes[1].__exit__(None, None, None)
        scopes[0].__exit__(None, None, None)
