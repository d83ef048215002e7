"""``/collections`` and ``/collections/{collection}``."""

from __future__ import annotations

from urllib.parse import quote

import falcon

from proximadb.api.rest.media import json_body, send
from proximadb.service.requests import CreateCollection, UpdateCollection
from proximadb.service.unified import UnifiedAvroService


class CollectionsResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, self.service.list_collections())

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, self.service.limits.max_request_bytes)
        info = self.service.create_collection(CreateCollection.from_json(body))
        resp.location = f"/collections/{quote(info['name'], safe='')}"
        send(resp, info, status=201, message=f"collection {info['name']!r} created")


class CollectionResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        send(resp, self.service.get_collection(collection))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        changes = json_body(req, self.service.limits.max_request_bytes)
        send(resp, self.service.update_collection(collection, UpdateCollection.from_json(changes)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        self.service.delete_collection(collection)
        send(resp, None, message=f"collection {collection!r} deleted")


class CollectionCompactResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        report = self.service.compact_collection(collection)
        send(resp, report, message=f"collection {collection!r}: {report['segments_before']} segment(s) -> "
                                   f"{report['segments_after']}")


class CollectionFlushResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        stats = self.service.flush_collection(collection)
        segments = f"{stats['segments']} segment(s), " if "segments" in stats else ""  # cluster mode: every replica
        send(resp, stats, message=f"collection {collection!r} flushed: {segments}status {stats['status']}")


class CollectionStatsResource:
    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        send(resp, self.service.collection_stats(collection))
