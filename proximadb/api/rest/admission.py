"""REST side of admission (:mod:`proximadb.service.admission`): concurrency limit and request timeout.

Runs in ``process_resource`` after the auth middleware, so a refused key
never takes a slot. Probes (operations of kind PROBE in
:mod:`proximadb.api.operations`, as for gRPC) are not limited. A client
may shorten its own budget with the ``X-Request-Timeout`` header (seconds, a
positive number); the server's ``request_timeout`` is the upper bound. The
same budget is set as the connection's socket timeout while the body is read,
so a client that stalls mid-body gets 408 instead of holding a thread.
"""

from __future__ import annotations

import math
from typing import Any

import falcon

from proximadb.api import operations
from proximadb.api.rest.media import send_error
from proximadb.errors import ProximaDBError, ResourceExhaustedError, ValidationError
from proximadb.service.admission import RETRY_AFTER_SECONDS, Admission

TIMEOUT_HEADER = "X-Request-Timeout"
MIN_CLIENT_TIMEOUT = 0.001
MAX_CLIENT_TIMEOUT = 24 * 3600.0


def client_timeout(req: falcon.Request) -> float | None:
    raw = req.get_header(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and MIN_CLIENT_TIMEOUT <= value <= MAX_CLIENT_TIMEOUT):
        raise ValidationError(f"{TIMEOUT_HEADER} must be a number of seconds from {MIN_CLIENT_TIMEOUT:g} to "
                              f"{MAX_CLIENT_TIMEOUT:g}, not {raw[:40]!r}")
    return value


class AdmissionMiddleware:
    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if resp.complete or not operations.for_route(req.method, req.uri_template or "").admitted:
            return  # refused by auth already, or a probe
        try:
            scope = self.admission.request("rest", client_timeout(req))
            budget = scope.__enter__()  # left in process_response
        except ProximaDBError as exc:
            if isinstance(exc, ResourceExhaustedError):
                resp.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
            send_error(resp, exc.http_status, exc.code, exc.message)
            resp.complete = True  # skip the responder; process_response (metrics) still runs
            return
        req.context.admission = scope
        sock = req.env.get("gunicorn.socket")
        if sock is not None and budget is not None:
            sock.settimeout(budget)  # body reads (and the response write) give up after the budget

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        scope = getattr(req.context, "admission", None)
        if scope is not None:
            req.context.admission = None
            scope.__exit__(None, None, None)
