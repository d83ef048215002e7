"""Every failure becomes the JSON envelope with the right HTTP status.

* :class:`~proximadb.errors.ProximaDBError`: its own ``http_status`` and ``code``.
* Falcon's HTTP errors (unknown route 404, wrong method 405, 415, a bad query
  parameter or header 400): the status Falcon chose and the code of
  :func:`code_for_status`: the code of ProximaDB's error for that status
  (:data:`proximadb.errors.BY_HTTP_STATUS`: 400 ``validation_error``, 404
  ``not_found``...) or, for the statuses only Falcon gives, :data:`FALCON_CODES`.
* Anything else (Falcon picks the most specific handler, so this never sees
  the two kinds above): 500 with a generic message; the traceback goes to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from proximadb.api.rest.media import send_error
from proximadb.errors import BY_HTTP_STATUS, ProximaDBError

log = logging.getLogger("proximadb.rest")

# Stable codes for the statuses only Falcon gives (no ProximaDB error has them).
FALCON_CODES = {
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    415: "unsupported_media_type",
}


def code_for_status(status: int) -> str:
    error = BY_HTTP_STATUS.get(status)
    return error.code if error is not None else FALCON_CODES.get(status, f"http_{status}")


def handle_proximadb_error(req: falcon.Request, resp: falcon.Response, ex: ProximaDBError, params: Any) -> None:
    send_error(resp, ex.http_status, ex.code, ex.message)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    log.exception("unexpected error in %s %s", req.method, req.path)
    send_error(resp, 500, "internal", "internal server error (details are in the server log)")


def serialize_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    status = ex.status_code
    if isinstance(ex, falcon.HTTPRouteNotFound):
        message = f"no route for {req.method} {req.path}"
    elif isinstance(ex, falcon.HTTPMethodNotAllowed):
        allowed = dict(ex.headers or {}).get("Allow", "")
        message = f"method {req.method} is not allowed on {req.path} (allowed: {allowed})"
    else:
        message = ex.description or ex.title or f"HTTP {status}"
    send_error(resp, status, code_for_status(status), message)


def install(app: falcon.App) -> None:
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(ProximaDBError, handle_proximadb_error)
    app.set_error_serializer(serialize_http_error)
