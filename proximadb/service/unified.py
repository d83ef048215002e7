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

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from proximadb import consistency, idempotency, progress
from proximadb._version import __version__
from proximadb.codec import avro_search
from proximadb.codec.avro_batch import encode_vector_batch
from proximadb.codec.framing import decode_frame, encode_frame
from proximadb.codec.payload import decode_payload, encode_insert
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS
from proximadb.errors import (
    NotFoundError,
    PayloadTooLargeError,
    ProximaDBError,
    UnknownOperationError,
    ValidationError,
    VectorNotFoundError,
)
from proximadb.limits import Limits
from proximadb.service.admission import DEFAULT_MAX_CONCURRENT, DEFAULT_REQUEST_TIMEOUT, Admission
from proximadb.service.metrics import Metrics
from proximadb.service.query_requests import Recommend, SearchGroups
from proximadb.service.requests import (
    CLUSTER_SETTINGS,
    Count,
    CreateCollection,
    DeleteVectors,
    GetVectors,
    HybridSearch,
    InsertRecords,
    PutVector,
    Scroll,
    SearchParams,
    SearchSparse,
    SearchText,
    UpdateCollection,
    UpdateMetadata,
)
from proximadb.storage.engine import Engine
from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.validation import check_timestamp

log = logging.getLogger("proximadb.service")

RECORDS_WRITTEN = "proximadb_records_written_total"  # the dashboard's ingest rate (proximadb/dashboard/static)
QUERIES = "proximadb_search_queries_total"  # its query rate


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
        # answers of writes by request id (proximadb/idempotency.py): the cluster's shared one, or this process's
        self.ledger: idempotency.Ledger = getattr(engine, "request_ledger", None) or idempotency.MemoryLedger()
        self._acknowledge = getattr(engine, "acknowledge", consistency.acknowledged)  # a retry's log positions

    def _describe_metrics(self) -> None:
        m = self.metrics
        m.describe("proximadb_requests_total", "counter", "Requests by protocol, route and outcome code.")
        m.describe("proximadb_request_seconds", "histogram", "Request latency by protocol and route.")
        m.describe("proximadb_vectors", "gauge", "Live vectors per collection.")
        m.describe(RECORDS_WRITTEN, "counter", "Records inserted or upserted, per collection.")
        m.describe(QUERIES, "counter", "Search query vectors answered (a batch counts each), per collection.")
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
            m.gauge(metric, self._wal_stat_reader(key))

    def _wal_stat_reader(self, key: str) -> Callable[[], list[tuple[tuple[tuple[str, str], ...], float]]]:
        return lambda: self._per_collection(lambda c: c.wal_stats().get(key, 0))

    def _tasks(self, attr: str) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        return [((("task", t.kind), ("collection", t.collection)), float(getattr(t, attr)))
                for t in progress.running()]

    def _per_collection(self, read: Any) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        """One sample per collection; a collection that cannot be read now (in cluster mode: a shard with
        no reachable holder) is left out of this scrape and logged, so /metrics itself keeps answering."""
        out: list[tuple[tuple[tuple[str, str], ...], float]] = []
        for info in self.engine.list_collections():
            try:
                value = float(read(self.engine.collection(info["uuid"])))
            except ProximaDBError as exc:
                log.warning("metrics: collection %r left out of this scrape: %s", info["name"], exc)
                continue
            out.append(((("collection", info["name"]),), value))
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
    def create_collection(self, req: CreateCollection) -> dict[str, Any]:
        settings = dict(req.settings)
        if not getattr(self.engine, "clustered", False):  # one node: one shard, one copy
            for key in CLUSTER_SETTINGS:
                value = settings.pop(key, None)
                if value is not None and (isinstance(value, bool) or value != 1):
                    raise ValidationError(f"{key}={value!r} needs cluster mode (proximadb serve --cluster)")
        return _described(self.engine.create_collection(req.name, req.dimension, **settings))

    def list_collections(self) -> list[dict[str, Any]]:
        return [_described(info) for info in self.engine.list_collections()]

    def get_collection(self, name_or_uuid: str) -> dict[str, Any]:
        return _described(self.engine.get_collection(name_or_uuid))

    def update_collection(self, name_or_uuid: str, req: UpdateCollection) -> dict[str, Any]:
        return _described(self.engine.update_collection(name_or_uuid, **req.changes))

    def delete_collection(self, name_or_uuid: str) -> None:
        self.engine.delete_collection(name_or_uuid)

    def compact_collection(self, name_or_uuid: str) -> dict[str, Any]:
        """Merge the collection's segments now (the API's on-demand compaction); returns the report. In cluster
        mode every replica is compacted and ``replicas`` lists their reports (proximadb/cluster/maintenance.py);
        one node (and one replica, asked by a peer) answers ``replicas: []``."""
        report: dict[str, Any] = self.engine.collection(name_or_uuid).compact()
        return {**report, "replicas": report.get("replicas", [])}

    def flush_collection(self, name_or_uuid: str) -> dict[str, Any]:
        """Seal the memtable into a segment now (its index is built in the background); returns the stats
        after the flush, whose ``status`` says whether the collection is fully indexed yet."""
        collection = self.engine.collection(name_or_uuid)
        collection.flush()
        return collection.stats()

    def collection_stats(self, name_or_uuid: str) -> dict[str, Any]:
        return self.engine.collection(name_or_uuid).stats()

    def replica_snapshot(self, replica: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        """Cluster mode: a replica's snapshot for a peer (proximadb/cluster/snapshot.py)."""
        if not getattr(self.engine, "clustered", False):
            raise NotFoundError("replica snapshots exist only in cluster mode (proximadb serve --cluster)")
        return self.engine.replica_snapshot(replica)  # type: ignore[attr-defined,no-any-return]

    # ------------------------------------------------------------------ writes
    def _once(self, operation: str, collection: str, argument: Any, run: Callable[[], dict[str, Any]],
              **how: Any) -> dict[str, Any]:
        """``run()`` once per request id (proximadb/idempotency.py)."""
        return idempotency.once(self.ledger, operation, collection, argument, run, acknowledge=self._acknowledge,
                                **how)

    def _check_size(self, payload: bytes | bytearray | memoryview) -> None:
        if len(payload) > self.limits.max_request_bytes:
            raise PayloadTooLargeError(
                f"payload of {len(payload)} bytes exceeds the server's max_request_bytes limit of "
                f"{self.limits.max_request_bytes}"
            )

    def insert_payload(self, collection: str, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
        """A client's versioned ``vector_insert`` payload, logged as received (once per request id)."""
        self._check_size(payload)
        return self._once("insert", collection, payload,
                                lambda: self._insert_payload(collection, payload),
                                remember=lambda answer: {"count": answer["count"]},
                                recall=lambda _kept: self._inserted(payload))

    def _insert_payload(self, collection: str, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
        col = self.engine.collection(collection)
        ids = col.insert_payload(payload)
        self.metrics.inc(RECORDS_WRITTEN, (("collection", col.config.name),), len(ids))  # by name, as uuid too
        return {"count": len(ids), "ids": ids}

    @staticmethod
    def _inserted(payload: bytes | bytearray | memoryview) -> dict[str, Any]:
        """The answer an insert of ``payload`` gave: its ids (a retry of it is answered from them)."""
        _version, _op, batch = decode_payload(payload, metadata_maps=True)  # the ids only: no dicts
        ids = list(batch.to_insert_op().ids)  # type: ignore[union-attr]
        return {"count": len(ids), "ids": ids}

    def insert_records(self, collection: str, req: InsertRecords) -> dict[str, Any]:
        """JSON records -> the same versioned payload -> :meth:`insert_payload`. Missing ids are generated
        (from the request id when there is one: :func:`proximadb.idempotency.generated_id`)."""
        if len(req.records) > self.limits.max_batch:
            raise PayloadTooLargeError(
                f"batch of {len(req.records)} records exceeds the server's max_batch limit of {self.limits.max_batch}"
            )
        req.check_records()
        prepared = [{**rec, "id": rec.get("id") or idempotency.generated_id(i)} for i, rec in enumerate(req.records)]
        payload = encode_insert(prepared, upsert=req.upsert)
        return self.insert_payload(collection, payload)

    def put_vector(self, collection: str, req: PutVector) -> dict[str, Any]:
        """Replace a record (``vector`` given: upsert) or only its metadata."""
        def run() -> dict[str, Any]:
            if req.with_vector:
                self.insert_records(collection, InsertRecords([req.record()], upsert=True))
                return self.get_vector(collection, req.id, include_vector=False)
            return self.engine.collection(collection).update_metadata(req.id, req.metadata, replace=True)

        return self._once("put", collection, req, run)

    def update_metadata(self, collection: str, req: UpdateMetadata) -> dict[str, Any]:
        return self._once("update", collection, req, lambda: self.engine.collection(
            collection).update_metadata(req.id, req.metadata, replace=req.replace))

    def delete_vectors(self, collection: str, req: DeleteVectors) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            col = self.engine.collection(collection)
            if req.ids is not None:
                return {"deleted": col.delete(req.ids)}
            return {"deleted": col.delete_where(req.filter)}  # type: ignore[arg-type]

        return self._once("delete", collection, req, run)

    def mutate_payload(self, collection: str, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
        """A ``vector_delete`` or ``vector_update`` payload (once per request id)."""
        self._check_size(payload)
        return self._once("mutate", collection, payload,
                                lambda: self._mutate_payload(collection, payload))

    def _mutate_payload(self, collection: str, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
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
    def get_vector(self, collection: str, id_: str, *, include_vector: bool = True,
                   consistency_level: str | None = None) -> dict[str, Any]:
        with consistency.reading(consistency_level):
            rec = self.engine.collection(collection).get(id_, include_vector=include_vector)
        if rec is None:
            raise VectorNotFoundError(f"no vector with id {id_!r} in collection {collection!r}")
        return rec

    def get_vectors(self, collection: str, req: GetVectors) -> list[dict[str, Any]]:
        with consistency.reading(req.consistency):
            return self.engine.collection(collection).get_many(req.ids, include_vectors=req.include_vectors)

    def count(self, collection: str, req: Count) -> int:
        with consistency.reading(req.consistency):
            return self.engine.collection(collection).count(req.filter)

    def scroll(self, collection: str, req: Scroll) -> dict[str, Any]:
        with consistency.reading(req.consistency):
            records, next_cursor = self.engine.collection(collection).scroll(
                limit=req.limit, cursor=req.cursor, filter=req.filter, include_vectors=req.include_vectors
            )
        return {"records": records, "next_cursor": next_cursor}

    def search(self, collection: str, params: SearchParams) -> list[list[dict[str, Any]]]:
        col = self.engine.collection(collection)
        # ``using`` is passed only when given: a search of the default vector is the call it always was
        named = {} if params.using is None else {"using": params.using}
        with consistency.reading(params.consistency):
            results = col.search_batch(
                params.queries,
                params.k,
                filter=params.filter,
                include_vectors=params.include_vectors,
                include_metadata=params.include_metadata,
                exact=params.exact,
                ef=params.ef,
                nprobe=params.nprobe,
                score_threshold=params.score_threshold,
                oversampling=params.oversampling,
                **named,
            )
        self.metrics.inc(QUERIES, (("collection", col.config.name),), len(results))
        return results

    def search_groups(self, collection: str, req: SearchGroups) -> list[dict[str, Any]]:
        """Groups ``{value, hits}`` by ``group_by``'s value, ordered by their best hit."""
        col = self.engine.collection(collection)
        with consistency.reading(req.consistency):
            groups = col.search_groups(req.vector, req.group_by, **req.options())
        self.metrics.inc(QUERIES, (("collection", col.config.name),), 1)
        return groups

    def recommend(self, collection: str, req: Recommend) -> list[dict[str, Any]]:
        """Hits like the positive examples and unlike the negative ones, best first."""
        col = self.engine.collection(collection)
        with consistency.reading(req.consistency):
            hits = col.recommend(list(req.positive), list(req.negative), **req.options())
        self.metrics.inc(QUERIES, (("collection", col.config.name),), 1)
        return hits

    def search_text(self, collection: str, req: SearchText) -> list[dict[str, Any]]:
        """BM25 hits over the records' document text: {id, score, metadata?, expires_at?}, best first."""
        given = self._shard_stats(collection, req.corpus_stats)
        col = self.engine.collection(collection)
        with consistency.reading(req.consistency):
            hits = col.search_text(req.text, req.k, filter=req.filter, include_metadata=req.include_metadata,
                                   score_threshold=req.score_threshold, **given)
        self.metrics.inc(QUERIES, (("collection", col.config.name),), 1)
        return hits

    def text_stats(self, collection: str, req: SearchText) -> dict[str, Any]:
        """A cluster shard's BM25 statistics of ``req.text``'s terms (``corpus_stats: true`` on a shard
        address): ``{rows, total_terms, df}`` (proximadb/text/bm25.py's CorpusStats)."""
        self._shard_address_only(collection)
        stats: dict[str, Any] = self.engine.collection(collection).text_stats(req.text).to_json()
        return stats

    def _shard_stats(self, collection: str, stats: Any) -> dict[str, Any]:
        """The ``stats`` keyword of a search given ``corpus_stats`` (the cluster's fan-out to one shard:
        proximadb/cluster/queries.py): none without, refused but on a shard address."""
        if stats is None:
            return {}
        self._shard_address_only(collection)
        if stats is True:
            raise ValidationError("corpus_stats: true (a shard's statistics) is answered over REST only")
        return {"stats": stats}

    def sparse_stats(self, collection: str, req: SearchSparse) -> dict[str, Any]:
        """A cluster shard's statistics of a sparse query's indices (``corpus_stats: true`` on a shard
        address): ``{rows, total_terms, df}`` (storage/sparse_search.py's _sparse_corpus_stats)."""
        self._shard_address_only(collection)
        stats: dict[str, Any] = self.engine.collection(collection).sparse_stats(
            req.name, req.indices, req.values).to_json()
        return stats

    def _shard_address_only(self, collection: str) -> None:
        """``corpus_stats`` is for a cluster's replicas (``<name>.s<shard>@<seq>...``), never a collection."""
        is_shard_address = getattr(self.engine, "is_shard_address", None)  # cluster mode's ClusterEngine only
        if is_shard_address is None or not is_shard_address(collection):
            raise ValidationError(f"corpus_stats is taken only by a cluster's shard addresses, not by collection "
                                  f"{collection!r}")

    def search_sparse(self, collection: str, req: SearchSparse) -> list[dict[str, Any]]:
        """Dot-product hits over the named sparse vectors: {id, score, metadata?, expires_at?}, best first."""
        given = self._shard_stats(collection, req.corpus_stats)
        col = self.engine.collection(collection)
        with consistency.reading(req.consistency):
            hits = col.search_sparse(req.name, req.indices, req.values, req.k, filter=req.filter,
                                     include_metadata=req.include_metadata, score_threshold=req.score_threshold,
                                     **given)
        self.metrics.inc(QUERIES, (("collection", col.config.name),), 1)
        return hits

    def hybrid_search(self, collection: str, req: HybridSearch) -> list[dict[str, Any]]:
        """Up to three searches (vector, text, sparse) fused: {id, score, metadata?, expires_at?}, best first."""
        col = self.engine.collection(collection)
        with consistency.reading(req.consistency):
            hits = col.hybrid_search(
                req.vector, req.text, req.k, sparse=req.sparse, filter=req.filter, fusion=req.fusion,
                weights=req.weights, rrf_k=float(req.rrf_k), depth=req.depth, ef=req.ef,
                include_metadata=req.include_metadata, score_threshold=req.score_threshold,
                **({} if req.using is None else {"using": req.using}),
            )
        self.metrics.inc(QUERIES, (("collection", col.config.name),), 1)
        return hits

    def search_payload(self, collection: str, payload: bytes | bytearray | memoryview,
                       score_threshold: float | None = None, oversampling: float | None = None,
                       consistency: str | None = None) -> bytes:
        """A ``vector_search`` payload in, a ``search_result`` payload out. ``score_threshold``,
        ``oversampling`` and ``consistency`` travel beside the Avro datum (gRPC fields of the request, REST
        query parameters), so the v1/v2 SearchRequest schema is unchanged."""
        self._check_size(payload)
        version, op_type, datum = decode_frame(payload)
        # The fast path reads a plain request straight into a float32 matrix; anything else (and every
        # error) goes the general way, so its refusals are worded as for every payload.
        req = avro_search.decode_search_request(datum, version) if op_type == "vector_search" else None
        if req is None:
            version, op_type, decoded = decode_payload(payload)
            if op_type != "vector_search":
                raise UnknownOperationError(f"expected a vector_search payload, got {op_type!r}")
            assert isinstance(decoded, dict)
            req = decoded
        if len(req["queries"]) == 0:
            raise ValidationError("a search needs at least one query vector")
        # The filter stays JSON text: compile_filter parses it (filters.parse_filter_text), as for every API.
        params = SearchParams(
            queries=req["queries"], k=req["k"], filter=req.get("filter") or None,
            include_vectors=req["include_vectors"], include_metadata=req["include_metadata"],
            ef=req.get("ef"), nprobe=req.get("nprobe"), exact=req["exact"],
            score_threshold=score_threshold, oversampling=oversampling, consistency=consistency,
            using=req.get("using"),  # schema v4; older requests have none (the default vector)
        )
        return encode_search_result(self.search(collection, params), version)  # answer in the client's version


def _described(info: dict[str, Any]) -> dict[str, Any]:
    """A collection's description as every API gives it: ``vectors`` (its named dense vectors, ``{name:
    {"dimension", "distance_metric", ...}}``) always present, ``{}`` when it declares none."""
    info.setdefault("vectors", {})
    return info


def encode_search_result(results: list[list[dict[str, Any]]], schema_version: int = CURRENT_SCHEMA_VERSION) -> bytes:
    """Hits (as returned by search) -> a ``search_result`` payload of ``schema_version`` (v2 adds expires_at);
    the datum is written by :mod:`proximadb.codec.avro_search`."""
    return encode_frame("search_result", avro_search.encode_search_result(results, schema_version), schema_version)


def encode_records(records: list[dict[str, Any]], schema_version: int = 1) -> bytes:
    """Records (get/scroll results) as a VectorBatch datum of ``schema_version``, for binary transports (v3
    carries their sparse vectors, v4 their named vectors; an older version leaves them out, as it leaves out
    what it has no field for)."""
    ids = [r["id"] for r in records]
    if records and "vector" in records[0]:
        vectors = np.stack([r["vector"] for r in records]).astype(np.float32)
    else:
        vectors = np.zeros((len(records), 0), dtype=np.float32)
    expires_at = None
    if schema_version >= 2 and any("expires_at" in r for r in records):
        expires_at = np.array([r.get("expires_at", NO_EXPIRY) for r in records], dtype=np.int64)
    sparse = None
    if schema_version >= 3 and any("sparse_vectors" in r for r in records):
        sparse = [r.get("sparse_vectors") for r in records]
    named = None
    if schema_version >= 4 and any(r.get("named_vectors") for r in records):
        named = [r.get("named_vectors") for r in records]
    return encode_vector_batch(
        ids, vectors, [r["metadata"] for r in records], np.array([r["timestamp"] for r in records], dtype=np.int64),
        False, expires_at, schema_version, sparse_vectors=sparse, named_vectors=named,
    )
