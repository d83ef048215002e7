"""Health, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import falcon

from proximadb.api.rest.media import send, send_error
from proximadb.api.rest.openapi import openapi_document
from proximadb.service.unified import UnifiedAvroService

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class HealthResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, self.service.health())


class ReadyResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.service.ready():
            send(resp, {"ready": True})
        else:
            send_error(resp, 503, "unavailable", "the service is not ready")


class MetricsResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = PROMETHEUS_TEXT
        resp.text = self.service.metrics.render()


class OpenAPIResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self._document = openapi_document(service.health().get("version", "0"))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._document
