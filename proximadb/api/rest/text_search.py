"""``/collections/{collection}/search_text`` (BM25 over the records' text), ``/search/sparse`` (dot product
over a named sparse vector) and ``/hybrid_search`` (fused); ``/search_groups`` (hits grouped by a metadata
value) and ``/recommend`` (by example ids or vectors).

JSON in, JSON out: ``POST {text, k?, filter?, include_metadata?, score_threshold?, consistency?}``,
``POST {name, indices, values, k?, filter?, include_metadata?, score_threshold?, consistency?}`` and
``POST {vector?, text?, sparse?: {name, indices, values}, k?, filter?, fusion?, weights?, rrf_k?, depth?, ef?,
include_metadata?, score_threshold?, consistency?}`` (at least one part), each answering a list of hits
``{id, score, metadata?, expires_at?}`` best first (no ``distance``: a BM25, dot product or fused score only).
search_groups answers ``[{value, hits}]``, recommend a list of hits (bodies:
:mod:`proximadb.service.query_requests`). Every body takes ``consistency``, the read's level in cluster mode
(:mod:`proximadb.consistency`; with ``session`` the ``ProximaDB-Session`` header carries the token).
The shape checks are the typed requests' (:mod:`proximadb.service.requests`).
"""

from __future__ import annotations

import falcon

from proximadb.api.rest.media import body_or_payload, send
from proximadb.errors import ValidationError
from proximadb.service.query_requests import Recommend, SearchGroups
from proximadb.service.requests import HybridSearch, SearchSparse, SearchText
from proximadb.service.unified import UnifiedAvroService


def _json_body(req: falcon.Request, service: UnifiedAvroService, what: str) -> object:
    body, payload = body_or_payload(req, service.limits.max_request_bytes)
    if payload is not None:
        raise ValidationError(f"{what} takes a JSON body (application/json), not an Avro payload")
    return body


class SearchTextResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        request = SearchText.from_json(_json_body(req, self.service, "search_text"))
        if request.corpus_stats is True:  # the cluster's fan-out asks a shard's statistics (cluster/queries.py)
            send(resp, self.service.text_stats(collection, request))
        else:
            send(resp, self.service.search_text(collection, request))


class HybridSearchResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        request = HybridSearch.from_json(_json_body(req, self.service, "hybrid_search"))
        send(resp, self.service.hybrid_search(collection, request))


class SearchSparseResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        request = SearchSparse.from_json(_json_body(req, self.service, "search_sparse"))
        if request.corpus_stats is True:  # the cluster's fan-out asks a shard's statistics (cluster/queries.py)
            send(resp, self.service.sparse_stats(collection, request))
        else:
            send(resp, self.service.search_sparse(collection, request))


class SearchGroupsResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        request = SearchGroups.from_json(_json_body(req, self.service, "search_groups"))
        send(resp, self.service.search_groups(collection, request))


class RecommendResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        request = Recommend.from_json(_json_body(req, self.service, "recommend"))
        send(resp, self.service.recommend(collection, request))
