"""The ProximaDB Python client: the same methods over gRPC, REST or in-process.

It implements :class:`proximadb.client_api.ProximaDBAPI` (the one vocabulary of the API) over a
:class:`~proximadb.sdk.transport.Transport`: gRPC or REST to a daemon, or
:mod:`proximadb.embedded` to an engine in this process.

The client turns records (plain dicts, or ids + a numpy matrix) into
versioned Avro payloads itself; the transport only carries them, so the
bytes built here are the bytes the server's WAL stores. Ids missing from a
record are generated here (UUID4), and records are stamped with the client's
time, so the server can log the payload untouched.

Retries: only calls that are safe to repeat (reads, searches, counts,
upserts, health) are retried, with exponential backoff, when the server is
unavailable. An insert is never retried: it may have been applied.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from proximadb.client_api import ProximaDBAPI
from proximadb.codec.payload import decode_payload, encode_insert, encode_payload
from proximadb.codec.schemas import SUPPORTED_SCHEMA_VERSIONS
from proximadb.errors import (
    ResourceExhaustedError,
    UnavailableError,
    UnsupportedSchemaVersionError,
    ValidationError,
    VectorNotFoundError,
)
from proximadb.sdk.transport import Transport

T = TypeVar("T")
DEFAULT_BATCH_SIZE = 1000


def _now_us() -> int:
    return time.time_ns() // 1000


def _filter_json(filter: dict[str, Any] | str | None) -> str | None:
    if filter is None or isinstance(filter, str):
        return filter
    if not isinstance(filter, dict):
        raise ValidationError("filter must be a dict (or its JSON text)")
    return json.dumps(filter)


class ProximaDBClient(ProximaDBAPI):
    def __init__(
        self, transport: Transport, *, batch_size: int = DEFAULT_BATCH_SIZE, retries: int = 3, backoff: float = 0.1
    ) -> None:
        self._transport = transport
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.schema_version = self._negotiate()
        transport.schema_version = self.schema_version

    # ------------------------------------------------------------------ plumbing
    @property
    def protocol(self) -> str:
        """``"grpc"`` or ``"rest"``: the transport in use."""
        return self._transport.protocol

    @property
    def url(self) -> str:
        return self._transport.url

    def _retry(self, call: Callable[[], T], *, safe: bool = True) -> T:
        """Run ``call``, retrying with exponential backoff what may be retried.

        A busy server (ResourceExhaustedError: max_concurrent_requests in flight) did nothing with
        the request, so every call is retried then. An unreachable server (UnavailableError) may
        have done it before the connection broke, so only ``safe`` (idempotent) calls are retried.
        """
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (UnavailableError, ResourceExhaustedError) as exc:
                busy = type(exc) is ResourceExhaustedError  # not DiskFullError and the like
                if attempt == self.retries or not (busy or (safe and isinstance(exc, UnavailableError))):
                    raise
                time.sleep(delay * (1.0 + random.random()) if busy else delay)  # jitter spreads a busy herd
                delay *= 2
        raise AssertionError("unreachable")

    def _negotiate(self) -> int:
        """The highest payload schema version both sides speak."""
        health = self._retry(self._transport.health)
        server = set(health.get("schema_versions") or [1])
        common = server & set(SUPPORTED_SCHEMA_VERSIONS)
        if not common:
            raise UnsupportedSchemaVersionError(
                f"the server at {self.url} speaks payload schema versions {sorted(server)}, this client "
                f"{list(SUPPORTED_SCHEMA_VERSIONS)}; upgrade the older side"
            )
        return max(common)

    def close(self) -> None:
        self._transport.close()

    # ------------------------------------------------------------------ server and collections
    def health(self) -> dict[str, Any]:
        return self._retry(self._transport.health)

    def create_collection(
        self,
        name: str,
        dimension: int,
        *,
        distance_metric: str = "cosine",
        indexing_algorithm: str = "flat",
        index_params: dict[str, Any] | None = None,
        filterable_metadata_fields: Sequence[str] | None = None,
        description: str | None = None,
        default_ttl_seconds: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "dimension": dimension,
            "distance_metric": distance_metric,
            "indexing_algorithm": indexing_algorithm,
            "index_params": index_params or {},
            "filterable_metadata_fields": list(filterable_metadata_fields or []),
        }
        if description is not None:
            body["description"] = description
        if default_ttl_seconds is not None:  # rows written without expires_at expire this long after the write
            body["default_ttl_seconds"] = default_ttl_seconds
        return self._retry(lambda: self._transport.create_collection(body), safe=False)

    def get_collection(self, name: str) -> dict[str, Any]:
        return self._retry(lambda: self._transport.get_collection(name))

    def list_collections(self) -> list[dict[str, Any]]:
        return self._retry(self._transport.list_collections)

    def update_collection(self, name: str, **changes: Any) -> dict[str, Any]:
        return self._retry(lambda: self._transport.update_collection(name, changes), safe=False)

    def delete_collection(self, name: str) -> None:
        self._retry(lambda: self._transport.delete_collection(name), safe=False)

    def compact(self, collection: str) -> dict[str, Any]:
        """Merge the collection's segments now (online); returns segments/rows/bytes before and after."""
        return self._retry(lambda: self._transport.compact(collection), safe=False)

    def stats(self, collection: str) -> dict[str, Any]:
        """Storage statistics: vectors, memtable, segments, WAL sequence, index builds, status green/yellow."""
        return self._retry(lambda: self._transport.stats(collection))

    def flush(self, collection: str) -> dict[str, Any]:
        """Seal the memtable into a segment now (safe to repeat); the statistics after it."""
        return self._retry(lambda: self._transport.flush(collection))

    # ------------------------------------------------------------------ writes
    def insert_vectors(
        self,
        collection: str,
        records: Sequence[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str] | None = None,
        vectors: Any = None,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        upsert: bool = False,
        batch_size: int | None = None,
    ) -> dict[str, Any]:
        """Insert records (dicts) or ``ids`` + a ``vectors`` matrix (+ ``metadatas``).

        Split into batches of ``batch_size``; each batch is applied all or nothing.
        Returns ``{"count", "ids"}``.
        """
        size = batch_size or self.batch_size
        all_ids: list[str] = []
        stamp = _now_us()
        if records is not None:
            if ids is not None or vectors is not None or metadatas is not None:
                raise ValidationError("give either records, or ids + vectors (+ metadatas), not both")
            prepared = [
                {
                    "id": r.get("id") or str(uuid.uuid4()),
                    "vector": r["vector"],
                    "metadata": r.get("metadata") or {},
                    "timestamp": r.get("timestamp") or stamp,
                    **({"expires_at": r["expires_at"]} if r.get("expires_at") is not None else {}),
                }
                for r in records
            ]
            for start in range(0, len(prepared), size):
                chunk = prepared[start : start + size]
                payload = encode_insert(chunk, upsert=upsert, schema_version=self.schema_version)
                all_ids.extend(self._send_insert(collection, payload, upsert))
            return {"count": len(all_ids), "ids": all_ids}
        if vectors is None:
            raise ValidationError("give records, or vectors (with ids and optional metadatas)")
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2:
            raise ValidationError(f"vectors must be a 2-D matrix, got {matrix.ndim} dimension(s)")
        n = matrix.shape[0]
        id_list = list(ids) if ids is not None else [str(uuid.uuid4()) for _ in range(n)]
        if len(id_list) != n or (metadatas is not None and len(metadatas) != n):
            raise ValidationError(f"{n} vectors need as many ids and metadatas")
        stamps = np.full(n, stamp, dtype=np.int64)
        for start in range(0, n, size):
            end = min(start + size, n)
            payload = encode_insert(
                ids=id_list[start:end],
                vectors=matrix[start:end],
                metadata=list(metadatas[start:end]) if metadatas is not None else None,
                timestamps=stamps[start:end],
                upsert=upsert,
                schema_version=self.schema_version,
            )
            all_ids.extend(self._send_insert(collection, payload, upsert))
        return {"count": len(all_ids), "ids": all_ids}

    def _send_insert(self, collection: str, payload: bytes, upsert: bool) -> list[str]:
        send = lambda: self._transport.insert_payload(collection, payload)  # noqa: E731
        result = self._retry(send, safe=upsert)
        return list(result["ids"])

    def update_vector(
        self,
        collection: str,
        id: str,
        *,
        metadata: dict[str, Any] | None = None,
        vector: Any = None,
        replace: bool = False,
    ) -> None:
        """Change a record's metadata (merge; ``replace=True`` swaps it) and/or its vector."""
        if vector is not None:
            if metadata is None or not replace:
                current = self.get_vector(collection, id, include_vector=False)
                if current is None:
                    raise VectorNotFoundError(f"no vector with id {id!r} in collection {collection!r}")
                merged = dict(current["metadata"])
                for k, v in (metadata or {}).items():
                    if v is None:
                        merged.pop(k, None)
                    else:
                        merged[k] = v
                metadata = merged
            self.upsert_vectors(collection, [{"id": id, "vector": vector, "metadata": metadata}])
            return
        if metadata is None:
            raise ValidationError("update_vector needs metadata and/or vector")
        datum = {"updates": [{"id": id, "metadata": metadata, "replace": replace}], "timestamp": _now_us()}
        payload = encode_payload("vector_update", datum, self.schema_version)
        self._retry(lambda: self._transport.mutate_payload(collection, payload), safe=False)

    def delete_vectors(
        self, collection: str, ids: Sequence[str] | None = None, *, filter: dict[str, Any] | str | None = None
    ) -> int:
        """Delete by ids or by a metadata filter; returns how many were deleted."""
        if (ids is None) == (filter is None):
            raise ValidationError("delete_vectors needs exactly one of ids or filter")
        datum = {"ids": list(ids or []), "filter": _filter_json(filter)}
        payload = encode_payload("vector_delete", datum, self.schema_version)
        return int(self._retry(lambda: self._transport.mutate_payload(collection, payload), safe=False)["deleted"])

    # ------------------------------------------------------------------ reads
    def get_vectors(
        self, collection: str, ids: Sequence[str], *, include_vectors: bool = True
    ) -> list[dict[str, Any]]:
        """The records that exist, in the order asked (missing ids are left out)."""
        return self._retry(lambda: self._transport.get_vectors(collection, list(ids), include_vectors))

    def count(self, collection: str, filter: dict[str, Any] | str | None = None) -> int:
        return self._retry(lambda: self._transport.count(collection, _filter_json(filter)))

    def scroll(
        self,
        collection: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filter: dict[str, Any] | str | None = None,
        include_vectors: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page in ascending id order; pass the returned cursor for the next (None at the end)."""
        return self._retry(
            lambda: self._transport.scroll(collection, limit, cursor, _filter_json(filter), include_vectors)
        )

    def search_batch(self, collection: str, vectors: Any, k: int = 10, **options: Any) -> list[list[dict[str, Any]]]:
        """Top-k hits per query, best first (options: filter, include_vectors, include_metadata, ef, nprobe, exact)."""
        return self._search(collection, vectors, k, options)

    def _search(self, collection: str, queries: Any, k: int, options: dict[str, Any]) -> list[list[dict[str, Any]]]:
        allowed = {"filter", "include_vectors", "include_metadata", "ef", "nprobe", "exact"}
        unknown = set(options) - allowed
        if unknown:
            raise ValidationError(f"unknown search option(s): {', '.join(sorted(unknown))}")
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2:
            raise ValidationError("queries must be vectors of numbers")
        datum = {
            "queries": q.tolist(),
            "k": k,
            "filter": _filter_json(options.get("filter")),
            "include_vectors": bool(options.get("include_vectors", False)),
            "include_metadata": bool(options.get("include_metadata", True)),
            "ef": options.get("ef"),
            "nprobe": options.get("nprobe"),
            "exact": bool(options.get("exact", False)),
        }
        payload = encode_payload("vector_search", datum, self.schema_version)
        answer = self._retry(lambda: self._transport.search_payload(collection, payload))
        _version, op_type, result = decode_payload(answer)
        if op_type != "search_result" or not isinstance(result, dict):
            raise UnavailableError(f"the server answered a search with {op_type!r}")
        out = []
        for hits in result["results"]:
            rows = []
            for h in hits:
                hit: dict[str, Any] = {"id": h["id"], "score": h["score"], "distance": h["distance"]}
                if h.get("metadata") is not None:
                    hit["metadata"] = h["metadata"]
                if h.get("vector") is not None:
                    hit["vector"] = np.asarray(h["vector"], dtype=np.float32)
                if h.get("expires_at") is not None:
                    hit["expires_at"] = h["expires_at"]
                rows.append(hit)
            out.append(rows)
        return out
