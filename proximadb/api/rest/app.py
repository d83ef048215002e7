"""``create_app(service)``: the Falcon WSGI application of the REST API.

:data:`ROUTES` is the single route table; the OpenAPI document
(:mod:`proximadb.api.rest.openapi`) is checked against the mounted router by
the tests, so the two cannot drift. Every responder of every route is also an
entry of the operation table (:mod:`proximadb.api.operations`), which the auth,
admission and metrics middleware go by; tests/api/test_operations.py checks that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from proximadb.api.rest import errors
from proximadb.api.rest.admission import AdmissionMiddleware
from proximadb.api.rest.auth import AuthMiddleware
from proximadb.api.rest.cluster import ReplicaSnapshotResource
from proximadb.api.rest.collections import (
    CollectionCompactResource,
    CollectionFlushResource,
    CollectionResource,
    CollectionsResource,
    CollectionStatsResource,
)
from proximadb.api.rest.dashboard import DashboardAssetResource, DashboardResource
from proximadb.api.rest.middleware import MetricsMiddleware
from proximadb.api.rest.search import SearchBatchResource, SearchResource
from proximadb.api.rest.session import SessionMiddleware
from proximadb.api.rest.system import HealthResource, MetricsResource, OpenAPIResource, ReadyResource
from proximadb.api.rest.text_search import (
    HybridSearchResource,
    RecommendResource,
    SearchGroupsResource,
    SearchSparseResource,
    SearchTextResource,
)
from proximadb.api.rest.vectors import (
    VectorBatchResource,
    VectorResource,
    VectorsCountResource,
    VectorsDeleteResource,
    VectorsGetResource,
    VectorsResource,
    VectorsScrollResource,
)
from proximadb.server.auth import KeyStore
from proximadb.service.unified import UnifiedAvroService

ROUTES: tuple[tuple[str, Callable[[UnifiedAvroService], Any]], ...] = (
    ("/health", HealthResource),
    ("/ready", ReadyResource),
    ("/metrics", MetricsResource),
    ("/openapi.json", OpenAPIResource),
    ("/dashboard", DashboardResource),
    ("/dashboard/{asset}", DashboardAssetResource),
    ("/collections", CollectionsResource),
    ("/collections/{collection}", CollectionResource),
    ("/collections/{collection}/compact", CollectionCompactResource),
    ("/collections/{collection}/flush", CollectionFlushResource),
    ("/collections/{collection}/stats", CollectionStatsResource),
    ("/collections/{collection}/vectors", VectorsResource),
    ("/collections/{collection}/vectors/batch", VectorBatchResource),
    ("/collections/{collection}/vectors/get", VectorsGetResource),
    ("/collections/{collection}/vectors/delete", VectorsDeleteResource),
    ("/collections/{collection}/vectors/scroll", VectorsScrollResource),
    ("/collections/{collection}/vectors/count", VectorsCountResource),
    ("/collections/{collection}/vectors/{id:path}", VectorResource),
    ("/collections/{collection}/search", SearchResource),
    ("/collections/{collection}/search/batch", SearchBatchResource),
    ("/collections/{collection}/search/sparse", SearchSparseResource),
    ("/collections/{collection}/search_text", SearchTextResource),
    ("/collections/{collection}/hybrid_search", HybridSearchResource),
    ("/collections/{collection}/search_groups", SearchGroupsResource),
    ("/collections/{collection}/recommend", RecommendResource),
    ("/cluster/replicas/{replica}/snapshot", ReplicaSnapshotResource),
)


def create_app(service: UnifiedAvroService, keys: KeyStore | None = None) -> falcon.App:
    """The app; with a ``keys`` store that holds keys, every route but GET /health needs one (api/rest/auth.py)."""
    middleware: list[Any] = [MetricsMiddleware(service.metrics)]
    if keys is not None and keys.enabled:
        middleware.append(AuthMiddleware(keys))
    middleware.append(AdmissionMiddleware(service.admission))  # after auth: a refused key takes no slot
    middleware.append(SessionMiddleware())  # read consistency: the ProximaDB-Session header
    app = falcon.App(middleware=middleware)
    # Bodies are read and parsed by proximadb.api.rest.media (size cap, strict JSON), never by Falcon.
    app.req_options.auto_parse_form_urlencoded = False
    for template, resource in ROUTES:
        app.add_route(template, resource(service))
    errors.install(app)
    return app
