"""UnifiedAvroService: every operation of the API, independent of HTTP and gRPC.

Both protocol adapters are thin: they turn their request into a call here and
the result (or a :class:`~proximadb.errors.ProximaDBError`) into their
response. Writes arrive as versioned Avro payloads (``*_payload`` methods:
gRPC and ``application/avro`` REST pass the client's bytes straight through to
the WAL) or as plain dicts from JSON, which are first converted into the same
payload (:meth:`insert_records`). Records and hits come back as dicts whose
``vector`` is a float32 numpy array; the adapters serialise them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from proximadb import progress
from proximadb._version import __version__
from proximadb.codec.avro_batch import encode_vector_batch
from proximadb.codec.payload import decode_payload, encode_insert, encode_payload
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS
from proximadb.errors import PayloadTooLargeError, UnknownOperationError, ValidationError, VectorNotFoundError
from proximadb.limits import Limits
from proximadb.service.admission import DEFAULT_MAX_CONCURRENT, DEFAULT_REQUEST_TIMEOUT, Admission
from proximadb.service.metrics import Metrics
from proximadb.storage.engine import Engine
from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.validation import check_ids, check_timestamp


@dataclass(slots=True)
class SearchParams:
    queries: Any
    k: int = 10
    filter: dict[str, Any] | str | None = None
    include_vectors: bool = False
    include_metadata: bool = True
    ef: int | None = None
    nprobe: int | None = None
    exact: bool = False


_SEARCH_KEYS = {"vector", "queries", "vectors", "k", "top_k", "filter", "include_vectors", "include_metadata",
                "ef", "nprobe", "exact"}


def search_params(body: dict[str, Any], *, batch: bool) -> SearchParams:
    """Search parameters from a JSON body (``vector`` for one query, ``queries`` for a batch)."""
    if not isinstance(body, dict):
        raise ValidationError("search body must be a JSON object")
    unknown = set(body) - _SEARCH_KEYS
    if unknown:
        raise ValidationError(f"unknown search field(s): {', '.join(sorted(unknown))}")
    if batch:
        queries = body.get("queries", body.get("vectors"))
        if not isinstance(queries, list) or not queries:
            raise ValidationError("batch search needs 'queries': a non-empty list of vectors")
    else:
        vector = body.get("vector")
        if not isinstance(vector, list) or not vector:
            raise ValidationError("search needs 'vector': a non-empty list of numbers")
        queries = [vector]
    for q in queries:
        if not isinstance(q, list) or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in q):
            raise ValidationError("each query vector must be a list of numbers")
    params = SearchParams(queries=queries, k=body.get("k", body.get("top_k", 10)), filter=body.get("filter"))
    for flag in ("include_vectors", "include_metadata", "exact"):
        if flag in body:
            if not isinstance(body[flag], bool):
                raise ValidationError(f"{flag} must be true or false")
            setattr(params, flag, body[flag])
    for opt in ("ef", "nprobe"):
        value = body.get(opt)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValidationError(f"{opt} must be a positive integer")
        setattr(params, opt, value)
    return params


class UnifiedAvroService:
    def __init__(
        self,
        engine: Engine,
        *,
        limits: Limits | None = None,
        advertised: dict[str, Any] | None = None,
        max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        """``limits`` default to the engine's (one set of limits for the daemon); the adapters run every
        request through ``self.admission`` (max_concurrent_requests, request_timeout in seconds)."""
        self.engine = engine
        self.limits = limits or engine.options.limits
        self.advertised = dict(advertised or {})
        self.started_at = time.time()
        self.metrics = Metrics()
        self._describe_metrics()
        self.admission = Admission(max_concurrent_requests, request_timeout, self.metrics)

    def _describe_metrics(self) -> None:
        m = self.metrics
        m.describe("proximadb_requests_total", "counter", "Requests by protocol, route and outcome code.")
        m.describe("proximadb_request_seconds", "histogram", "Request latency by protocol and route.")
        m.describe("proximadb_vectors", "gauge", "Live vectors per collection.")
        m.describe("proximadb_wal_bytes_total", "counter", "Bytes appended to the WAL, per collection.")
        m.describe("proximadb_wal_fsyncs_total", "counter", "WAL fsyncs, per collection.")
        m.describe("proximadb_wal_fsync_seconds_total", "counter", "Time spent in WAL fsync, per collection.")
        m.gauge("proximadb_vectors", lambda: self._per_collection(lambda c: c.count()))
        m.describe("proximadb_task_done", "gauge", "Long work in progress (replay, compaction, index_build): done.")
        m.describe("proximadb_task_total", "gauge", "Long work in progress: total (0 = not known).")
        m.describe("proximadb_task_seconds", "gauge", "Long work in progress: seconds since it started.")
        m.gauge("proximadb_task_done", lambda: self._tasks("done"))
        m.gauge("proximadb_task_total", lambda: self._tasks("total"))
        m.gauge("proximadb_task_seconds", lambda: self._tasks("elapsed"))
        for metric, key in (
            ("proximadb_wal_bytes_total", "bytes_written"),
            ("proximadb_wal_fsyncs_total", "fsync_count"),
            ("proximadb_wal_fsync_seconds_total", "fsync_seconds"),
        ):
            m.gauge(metric, lambda key=key: self._per_collection(lambda c: c.wal_stats().get(key, 0)))

    def _tasks(self, attr: str) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        return [((("task", t.kind), ("collection", t.collection)), float(getattr(t, attr)))
                for t in progress.running()]

    def _per_collection(self, read: Any) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        out = []
        for info in self.engine.list_collections():
            col = self.engine.collection(info["uuid"])
            out.append(((("collection", info["name"]),), float(read(col))))
        return out

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "schema_versions": list(SUPPORTED_SCHEMA_VERSIONS),
            "current_schema_version": CURRENT_SCHEMA_VERSION,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            **self.advertised,
        }

    def ready(self) -> bool:
        return self.engine.catalog is not None

    # ------------------------------------------------------------------ collections
    def create_collection(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValidationError("collection body must be a JSON object")
        allowed = {"name", "dimension", "distance_metric", "indexing_algorithm", "index_params",
                   "filterable_metadata_fields", "description"}
        unknown = set(body) - allowed
        if unknown:
            raise ValidationError(f"unknown collection field(s): {', '.join(sorted(unknown))}")
        if "name" not in body or "dimension" not in body:
            raise ValidationError("a collection needs 'name' and 'dimension'")
        settings = {k: v for k, v in body.items() if k not in ("name", "dimension")}
        return self.engine.create_collection(body["name"], body["dimension"], **settings)

    def list_collections(self) -> list[dict[str, Any]]:
        return self.engine.list_collections()

    def get_collection(self, name_or_uuid: str) -> dict[str, Any]:
        return self.engine.get_collection(name_or_uuid)

    def update_collection(self, name_or_uuid: str, changes: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise ValidationError("collection update must be a JSON object")
        return self.engine.update_collection(name_or_uuid, **changes)

    def delete_collection(self, name_or_uuid: str) -> None:
        self.engine.delete_collection(name_or_uuid)

    def compact_collection(self, name_or_uuid: str) -> dict[str, Any]:
        """Merge the collection's segments now (the API's on-demand compaction); returns the report."""
        return self.engine.collection(name_or_uuid).compact()

    def collection_stats(self, name_or_uuid: str) -> dict[str, Any]:
        return self.engine.collection(name_or_uuid).stats()

    # ------------------------------------------------------------------ writes
    def _check_size(self, payload: bytes | bytearray | memoryview) -> None:
        if len(payload) > self.limits.max_request_bytes:
            raise PayloadTooLargeError(
                f"payload of {len(payload)} bytes exceeds the server's max_request_bytes limit of "
                f"{self.limits.max_request_bytes}"
            )

    def insert_payload(self, collection: str, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
        """A client's versioned ``vector_insert`` payload, logged as received."""
        self._check_size(payload)
        ids = self.engine.collection(collection).insert_payload(payload)
        return {"count": len(ids), "ids": ids}

    def insert_records(self, collection: str, records: Sequence[dict[str, Any]], *, upsert: bool) -> dict[str, Any]:
        """JSON records -> the same versioned payload -> :meth:`insert_payload`. Missing ids are generated."""
        if not isinstance(records, list):
            raise ValidationError("'vectors' must be a list of records")
        if len(records) > self.limits.max_batch:
            raise PayloadTooLargeError(
                f"batch of {len(records)} records exceeds the server's max_batch limit of {self.limits.max_batch}"
            )
        prepared = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise ValidationError(f"record {i} must be an object")
            unknown = set(rec) - {"id", "vector", "metadata", "timestamp", "expires_at"}
            if unknown:
                raise ValidationError(f"record {i}: unknown field(s) {', '.join(sorted(unknown))}")
            vector = rec.get("vector")
            if not isinstance(vector, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in vector
            ):
                raise ValidationError(f"record {i}: 'vector' must be a list of numbers")
            prepared.append({**rec, "id": rec.get("id") or str(uuid.uuid4())})
        payload = encode_insert(prepared, upsert=upsert)
        return self.insert_payload(collection, payload)

    def put_vector(self, collection: str, id_: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace a record (``vector`` given: upsert) or only its metadata."""
        if not isinstance(body, dict):
            raise ValidationError("body must be a JSON object")
        if "vector" in body:
            self.insert_records(collection, [{"id": id_, **body}], upsert=True)
            return self.get_vector(collection, id_, include_vector=False)
        if "metadata" not in body:
            raise ValidationError("give 'vector' (replace the record) and/or 'metadata'")
        return self.engine.collection(collection).update_metadata(id_, body["metadata"], replace=True)

    def update_metadata(
        self, collection: str, id_: str, metadata: dict[str, Any], *, replace: bool = False
    ) -> dict[str, Any]:
        return self.engine.collection(collection).update_metadata(id_, metadata, replace=replace)

    def delete_vectors(
        self, collection: str, *, ids: Sequence[str] | None = None, filter: dict[str, Any] | str | None = None
    ) -> dict[str, Any]:
        col = self.engine.collection(collection)
        if (ids is None) == (filter is None):
            raise ValidationError("delete needs exactly one of 'ids' or 'filter'")
        if ids is not None:
            if not isinstance(ids, list):
                raise ValidationError("'ids' must be a list of strings")
            return {"deleted": col.delete(ids)}
        return {"deleted": col.delete_where(filter)}  # type: ignore[arg-type]

    def mutate_payload(self, collection: str, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
        """A ``vector_delete`` or ``vector_update`` payload."""
        self._check_size(payload)
        _version, op_type, datum = decode_payload(payload)
        col = self.engine.collection(collection)
        if op_type == "vector_delete":
            assert isinstance(datum, dict)
            if datum.get("filter"):
                return {"deleted": col.delete_where(datum["filter"]), "updated": 0}
            return {"deleted": col.delete(datum["ids"]), "updated": 0}
        if op_type == "vector_update":
            assert isinstance(datum, dict)
            check_timestamp(datum["timestamp"], "vector_update", "timestamp")
            updated = 0
            for patch in datum["updates"]:
                col.update_metadata(patch["id"], patch["metadata"], replace=patch["replace"])
                updated += 1
            return {"deleted": 0, "updated": updated}
        raise UnknownOperationError(f"expected vector_delete or vector_update, got {op_type!r}")

    # ------------------------------------------------------------------ reads
    def get_vector(self, collection: str, id_: str, *, include_vector: bool = True) -> dict[str, Any]:
        rec = self.engine.collection(collection).get(id_, include_vector=include_vector)
        if rec is None:
            raise VectorNotFoundError(f"no vector with id {id_!r} in collection {collection!r}")
        return rec

    def get_vectors(self, collection: str, ids: Sequence[str], *, include_vectors: bool = True) -> list[dict[str, Any]]:
        if not isinstance(ids, list):
            raise ValidationError("'ids' must be a list of strings")
        check_ids(ids, allow_duplicates=True)
        return self.engine.collection(collection).get_many(ids, include_vectors=include_vectors)

    def count(self, collection: str, filter: dict[str, Any] | str | None = None) -> int:
        return self.engine.collection(collection).count(filter)

    def scroll(
        self,
        collection: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filter: dict[str, Any] | str | None = None,
        include_vectors: bool = False,
    ) -> dict[str, Any]:
        if cursor is not None and not isinstance(cursor, str):
            raise ValidationError("cursor must be a string")
        records, next_cursor = self.engine.collection(collection).scroll(
            limit=limit, cursor=cursor, filter_spec=filter, include_vectors=include_vectors
        )
        return {"records": records, "next_cursor": next_cursor}

    def search(self, collection: str, params: SearchParams) -> list[list[dict[str, Any]]]:
        return self.engine.collection(collection).search_batch(
            params.queries,
            params.k,
            filter_spec=params.filter,
            include_vectors=params.include_vectors,
            include_metadata=params.include_metadata,
            exact=params.exact,
            ef=params.ef,
            nprobe=params.nprobe,
        )

    def search_payload(self, collection: str, payload: bytes | bytearray | memoryview) -> bytes:
        """A ``vector_search`` payload in, a ``search_result`` payload out."""
        self._check_size(payload)
        version, op_type, req = decode_payload(payload)
        if op_type != "vector_search":
            raise UnknownOperationError(f"expected a vector_search payload, got {op_type!r}")
        assert isinstance(req, dict)
        if not req["queries"]:
            raise ValidationError("a search needs at least one query vector")
        # The filter stays JSON text: compile_filter parses it (filters.parse_filter_text), as for every API.
        params = SearchParams(
            queries=req["queries"], k=req["k"], filter=req.get("filter") or None,
            include_vectors=req["include_vectors"], include_metadata=req["include_metadata"],
            ef=req.get("ef"), nprobe=req.get("nprobe"), exact=req["exact"],
        )
        return encode_search_result(self.search(collection, params), version)  # answer in the client's version


def encode_search_result(results: list[list[dict[str, Any]]], schema_version: int = CURRENT_SCHEMA_VERSION) -> bytes:
    """Hits (as returned by search) -> a ``search_result`` payload of ``schema_version`` (v2 adds expires_at)."""
    datum = {
        "results": [
            [
                {
                    "id": h["id"],
                    "score": h["score"],
                    "distance": h["distance"],
                    "metadata": h.get("metadata"),
                    "vector": h["vector"].tolist() if "vector" in h else None,
                    **({"expires_at": h.get("expires_at")} if schema_version >= 2 else {}),
                }
                for h in hits
            ]
            for hits in results
        ]
    }
    return encode_payload("search_result", datum, schema_version, trusted=True)


def encode_records(records: list[dict[str, Any]], schema_version: int = 1) -> bytes:
    """Records (get/scroll results) as a VectorBatch datum of ``schema_version``, for binary transports."""
    ids = [r["id"] for r in records]
    if records and "vector" in records[0]:
        vectors = np.stack([r["vector"] for r in records]).astype(np.float32)
    else:
        vectors = np.zeros((len(records), 0), dtype=np.float32)
    expires_at = None
    if schema_version >= 2 and any("expires_at" in r for r in records):
        expires_at = np.array([r.get("expires_at", NO_EXPIRY) for r in records], dtype=np.int64)
    return encode_vector_batch(
        ids, vectors, [r["metadata"] for r in records], np.array([r["timestamp"] for r in records], dtype=np.int64),
        False, expires_at, schema_version,
    )
