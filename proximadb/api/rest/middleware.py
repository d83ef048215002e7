"""Request metrics: a count per route template, method and status, and a latency histogram per route."""

from __future__ import annotations

import time
from typing import Any

import falcon

from proximadb.service.metrics import Metrics

REQUESTS_TOTAL = "proximadb_requests_total"
REQUEST_SECONDS = "proximadb_request_seconds"
UNMATCHED_ROUTE = "unmatched"  # unknown paths share one label value, so they cannot grow the series


class MetricsMiddleware:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # The service describes these; describing again is harmless and keeps this module self-sufficient.
        metrics.describe(REQUESTS_TOTAL, "counter", "Requests by protocol, route and outcome code.")
        metrics.describe(REQUEST_SECONDS, "histogram", "Request latency by protocol and route.")

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
        self.metrics.inc(
            REQUESTS_TOTAL,
            (("protocol", "rest"), ("route", route), ("method", method), ("code", str(resp.status_code))),
        )
        self.metrics.observe(REQUEST_SECONDS, time.perf_counter() - started, (("protocol", "rest"), ("route", route)))
