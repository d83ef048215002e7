"""``/collections/{collection}/vectors...``: writes, point reads, bulk get/delete, scroll and count.

Ids are addressed in the path with Falcon's ``path`` converter, so an id may
contain ``/``; an id equal to one of the literal sub-routes (``batch``, ``get``,
``delete``, ``scroll``, ``count``) is reachable through ``POST .../vectors/get``
and ``.../vectors/delete``.
"""

from __future__ import annotations

import falcon

from proximadb.api.rest.media import body_or_payload, json_body, send
from proximadb.errors import VectorNotFoundError
from proximadb.service.requests import (
    Count,
    DeleteVectors,
    GetVectors,
    InsertRecords,
    PutVector,
    Scroll,
    UpdateMetadata,
)
from proximadb.service.unified import UnifiedAvroService


class _Resource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    @property
    def limit(self) -> int:
        return self.service.limits.max_request_bytes


class VectorsResource(_Resource):
    """``POST``: one record ``{id?, vector, metadata?}`` (or a ``vector_insert`` payload)."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        record, payload = body_or_payload(req, self.limit)
        if payload is not None:
            result = self.service.insert_payload(collection, payload)
        else:
            assert record is not None  # body_or_payload gives one or the other
            result = self.service.insert_records(collection, InsertRecords([record]))
        send(resp, {"id": result["ids"][0] if result["ids"] else None, **result}, status=201)


class VectorBatchResource(_Resource):
    """``POST``: ``{"vectors": [...], "upsert": bool}`` or a ``vector_insert`` payload; all or nothing."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        body, payload = body_or_payload(req, self.limit)
        if payload is not None:
            result = self.service.insert_payload(collection, payload)
        else:
            assert body is not None
            result = self.service.insert_records(collection, InsertRecords.from_json(body))
        send(resp, result, status=201)


class VectorResource(_Resource):
    """One record by id: ``GET`` (``?include_vector=&consistency=``), ``PUT`` (replace), ``PATCH`` (metadata),
    ``DELETE``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str, id: str) -> None:
        include_vector = req.get_param_as_bool("include_vector", default=True)
        send(resp, self.service.get_vector(collection, id, include_vector=include_vector,
                                           consistency_level=req.get_param("consistency")))

    def on_put(self, req: falcon.Request, resp: falcon.Response, collection: str, id: str) -> None:
        body = json_body(req, self.limit)
        send(resp, self.service.put_vector(collection, PutVector.from_json(id, body)))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, collection: str, id: str) -> None:
        body = json_body(req, self.limit)
        send(resp, self.service.update_metadata(collection, UpdateMetadata.from_json(id, body)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, collection: str, id: str) -> None:
        result = self.service.delete_vectors(collection, DeleteVectors(ids=[id]))
        if not result["deleted"]:
            raise VectorNotFoundError(f"no vector with id {id!r} in collection {collection!r}")
        send(resp, result)


class VectorsGetResource(_Resource):
    """``POST {ids, include_vectors?, consistency?}``: the records that exist, in the order asked."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        body = json_body(req, self.limit)
        send(resp, self.service.get_vectors(collection, GetVectors.from_json(body)))


class VectorsDeleteResource(_Resource):
    """``POST {ids}`` or ``{filter}``, or a ``vector_delete`` / ``vector_update`` payload."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        body, payload = body_or_payload(req, self.limit)
        if payload is not None:
            send(resp, self.service.mutate_payload(collection, payload))
            return
        assert body is not None
        send(resp, self.service.delete_vectors(collection, DeleteVectors.from_json(body)))


class VectorsScrollResource(_Resource):
    """``POST {limit?, cursor?, filter?, include_vectors?, consistency?}`` -> ``{records, next_cursor}``."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        body = json_body(req, self.limit, required=False)
        send(resp, self.service.scroll(collection, Scroll.from_json(body)))


class VectorsCountResource(_Resource):
    """``GET`` (``?filter=<JSON text>&consistency=``) or ``POST {filter?, consistency?}`` -> ``{"count": n}``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        send(resp, {"count": self.service.count(collection, Count(req.get_param("filter"),
                                                                  req.get_param("consistency")))})

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        body = json_body(req, self.limit, required=False)
        send(resp, {"count": self.service.count(collection, Count.from_json(body))})
