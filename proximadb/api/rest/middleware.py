"""Request metrics: a count per route template, method and status, and a latency histogram per route.

The series are both protocols' (:func:`proximadb.api.operations.record_request`); over REST the route
label is the route template, or ``unmatched`` for a path no route matches.
"""

from __future__ import annotations

import time
from typing import Any

import falcon

from proximadb.api.operations import UNMATCHED_ROUTE, describe_request_metrics, record_request
from proximadb.service.metrics import Metrics


class MetricsMiddleware:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        describe_request_metrics(metrics)  # the service describes them too; again is harmless

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        route = req.uri_template if resource is not None and req.uri_template else UNMATCHED_ROUTE
        method = req.method if req.method in falcon.COMBINED_METHODS else "OTHER"
        record_request(self.metrics, "rest", route, str(resp.status_code), time.perf_counter() - started, method)
