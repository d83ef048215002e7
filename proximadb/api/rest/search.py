"""``/collections/{collection}/search`` (one query) and ``/search/batch`` (several).

JSON in, JSON out by default. ``Content-Type: application/avro`` sends a
``vector_search`` payload that goes to the service untouched; an ``Accept``
that prefers ``application/avro`` gets the ``search_result`` payload back
(per query, hits best first) instead of the JSON envelope. ``score_threshold`` and
``oversampling`` are JSON body fields, or query parameters beside an Avro payload (the Avro
SearchRequest schema has no such fields: :meth:`UnifiedAvroService.search_payload`); so is
``consistency`` (:mod:`proximadb.consistency`).
"""

from __future__ import annotations

from typing import Any

import falcon

from proximadb.api.rest.media import body_or_payload, send, send_avro, wants_avro
from proximadb.codec.payload import decode_payload
from proximadb.errors import ValidationError
from proximadb.service.requests import SearchParams, optional_number
from proximadb.service.unified import UnifiedAvroService, encode_search_result


def _hits_from_result(payload: bytes) -> list[list[dict[str, Any]]]:
    """A ``search_result`` payload as JSON hits (the absent optional fields left out)."""
    _version, _op, datum = decode_payload(payload)
    assert isinstance(datum, dict)
    return [
        [{k: v for k, v in hit.items() if v is not None} for hit in hits]
        for hits in datum["results"]
    ]


def _number_param(req: falcon.Request, name: str) -> float | None:
    text = req.get_param(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValidationError(f"query parameter {name} must be a number, not {text!r}") from None
    return optional_number(value, name)


class _SearchBase:
    batch = False

    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        body, payload = body_or_payload(req, self.service.limits.max_request_bytes)
        avro_out = wants_avro(req)
        if payload is not None:
            extras = {name: _number_param(req, name) for name in ("score_threshold", "oversampling")}
            result = self.service.search_payload(collection, payload, consistency=req.get_param("consistency"),
                                                 **extras)
            if avro_out:
                send_avro(resp, result)
                return
            results = _hits_from_result(result)
        else:
            assert body is not None
            results = self.service.search(collection, SearchParams.from_json(body, batch=self.batch))
            if avro_out:
                send_avro(resp, encode_search_result(results))
                return
        if self.batch:
            send(resp, results)
            return
        if len(results) != 1:
            raise ValidationError(f"/search takes one query, got {len(results)}; use /search/batch")
        send(resp, results[0])


class SearchResource(_SearchBase):
    """``POST {vector, k, filter?, include_vectors?, include_metadata?, ef?, nprobe?, exact?}`` -> hits."""

    batch = False


class SearchBatchResource(_SearchBase):
    """``POST {queries: [[...], ...], k, ...}`` -> one list of hits per query."""

    batch = True
