"""The ProximaDB Python client: the same methods over gRPC, REST or in-process.

It implements :class:`proximadb.client_api.ProximaDBAPI` (the one vocabulary of the API) over a
:class:`~proximadb.sdk.transport.Transport`: gRPC or REST to a daemon, or
:mod:`proximadb.embedded` to an engine in this process.

What each method sends and how the answer is read is its plan in :mod:`proximadb.sdk.calls`
(shared with :class:`~proximadb.sdk.async_client.AsyncClient`): payloads are versioned Avro
built on the client, ids are generated and records stamped here, so the server can log the
payload untouched. This module only runs those plans with blocking transport calls.

Retries (:func:`proximadb.sdk.calls.retry_pause`): only calls that are safe to repeat (reads,
searches, counts, upserts, health) are retried, with exponential backoff, when the server is
unavailable. An insert is never retried: it may have been applied.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from proximadb import idempotency
from proximadb.client_api import ProximaDBAPI
from proximadb.errors import ProximaDBError, ResourceExhaustedError, UnavailableError
from proximadb.sdk import calls, create_calls, search_calls
from proximadb.sdk.calls import DEFAULT_BATCH_SIZE, Compute, Plan
from proximadb.sdk.transport import Transport

T = TypeVar("T")


def _compute(step: Compute) -> Any:
    answer = step.fn(*step.args)
    if inspect.isawaitable(answer):
        if inspect.iscoroutine(answer):
            answer.close()
        raise TypeError(f"{step.fn!r} is asynchronous: use it with the asyncio client (proximadb.connect_async)")
    return answer


class ProximaDBClient(ProximaDBAPI):
    def __init__(
        self, transport: Transport, *, batch_size: int = DEFAULT_BATCH_SIZE, retries: int = 3, backoff: float = 0.1
    ) -> None:
        self._transport = transport
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.schema_version = self._run(calls.negotiate(transport.url))
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
        """Run ``call``, retrying with backoff what may be retried (:func:`proximadb.sdk.calls.retry_pause`)."""
        for attempt in itertools.count():
            try:
                return call()
            except (UnavailableError, ResourceExhaustedError) as exc:
                pause = calls.retry_pause(exc, attempt, retries=self.retries, backoff=self.backoff, safe=safe)
                if pause is None:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, plan: Plan[T]) -> T:
        """Run a plan of :mod:`proximadb.sdk.calls`: each transport call it yields, blocking, with retries
        (a typed error is raised inside the plan, which may handle it); each :class:`~proximadb.sdk.calls.Compute`
        step is called here."""
        try:
            step = next(plan)
            while True:
                try:
                    if isinstance(step, Compute):
                        answer = _compute(step)
                    else:
                        call = functools.partial(getattr(self._transport, step.method), *step.args)
                        with idempotency.sending(step.request_id):  # the same id on every retry
                            answer = self._retry(call, safe=step.safe)
                except ProximaDBError as exc:
                    step = plan.throw(exc)
                else:
                    step = plan.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:
        return calls.describe_client(type(self).__name__, self.protocol, self.url)

    # ------------------------------------------------------------------ server and collections
    def health(self) -> dict[str, Any]:
        return self._run(calls.single("health"))  # type: ignore[no-any-return]

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
        quantization: dict[str, Any] | None = None,
        exist_ok: bool = False,
        shards: int | None = None,
        replication_factor: int | None = None,
        text_analyzer: dict[str, Any] | None = None,
        sparse_vectors: dict[str, Any] | None = None,
        vectors: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a collection; with ``exist_ok`` an existing one of the same dimension and metric is returned
        (CollectionConfigMismatchError when they differ). ``shards`` and ``replication_factor``: cluster mode
        (``serve --cluster``); one node accepts only 1. ``sparse_vectors``: the names of the sparse vectors its
        records may carry, ``{name: {}}`` or ``{name: {"modifier": "idf"}}`` (more can be added, and a modifier
        changed, with update_collection). ``vectors``: named dense vectors every record carries besides its
        default one, ``{name: {"dimension": int, "distance_metric": str}}`` (fixed at creation; search one with
        ``search(..., using=name)``), each optionally with its own ``"indexing_algorithm"``, ``"index_params"``
        and ``"quantization"`` (else the collection's; changeable with update_collection(vectors=...))."""
        return self._run(create_calls.create_collection(
            name, dimension, distance_metric=distance_metric, indexing_algorithm=indexing_algorithm,
            index_params=index_params, filterable_metadata_fields=filterable_metadata_fields, description=description,
            default_ttl_seconds=default_ttl_seconds, quantization=quantization, exist_ok=exist_ok,
            shards=shards, replication_factor=replication_factor,
            text_analyzer=text_analyzer, sparse_vectors=sparse_vectors, vectors=vectors,
            schema_version=self.schema_version,
        ))

    def get_collection(self, name: str) -> dict[str, Any]:
        return self._run(calls.single("get_collection", name))  # type: ignore[no-any-return]

    def list_collections(self) -> list[dict[str, Any]]:
        return self._run(calls.single("list_collections"))  # type: ignore[no-any-return]

    def update_collection(self, name: str, **changes: Any) -> dict[str, Any]:
        return self._run(calls.single("update_collection", name, changes, safe=False))  # type: ignore[no-any-return]

    def delete_collection(self, name: str) -> None:
        self._run(calls.single("delete_collection", name, safe=False))

    def compact(self, collection: str) -> dict[str, Any]:
        """Merge the collection's segments now (online); returns segments/rows/bytes before and after. In
        cluster mode every replica is compacted: the figures are totals, ``replicas`` each replica's report."""
        return self._run(calls.single("compact", collection, safe=False))  # type: ignore[no-any-return]

    def stats(self, collection: str) -> dict[str, Any]:
        """Storage statistics: vectors, memtable, segments, WAL sequence, index builds, status green/yellow."""
        return self._run(calls.single("stats", collection))  # type: ignore[no-any-return]

    def flush(self, collection: str) -> dict[str, Any]:
        """Seal the memtable into a segment now (safe to repeat); the statistics after it."""
        return self._run(calls.single("flush", collection))  # type: ignore[no-any-return]

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
        sparse_vectors: Sequence[dict[str, Any] | None] | None = None,
        named_vectors: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Insert records (dicts) or ``ids`` + a ``vectors`` matrix (+ ``metadatas``).

        Split into batches of ``batch_size``; each batch is applied all or nothing.
        Returns ``{"count", "ids"}``.
        """
        return self._run(calls.insert_vectors(
            self.schema_version, batch_size or self.batch_size, collection, records,
            ids=ids, vectors=vectors, metadatas=metadatas, upsert=upsert, sparse_vectors=sparse_vectors,
            named_vectors=named_vectors,
        ))

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
        self._run(calls.update_vector(
            self.schema_version, self.batch_size, collection, id, metadata=metadata, vector=vector, replace=replace
        ))

    def delete_vectors(
        self, collection: str, ids: Sequence[str] | None = None, *, filter: dict[str, Any] | str | None = None
    ) -> int:
        """Delete by ids or by a metadata filter; returns how many were deleted."""
        return self._run(calls.delete_vectors(self.schema_version, collection, ids, filter=filter))

    # ------------------------------------------------------------------ reads
    def get_vectors(
        self, collection: str, ids: Sequence[str], *, include_vectors: bool = True, consistency: str | None = None
    ) -> list[dict[str, Any]]:
        """The records that exist, in the order asked (missing ids are left out). ``consistency`` (cluster
        mode): strong, bounded (default), session or eventual (:mod:`proximadb.consistency`)."""
        return self._run(calls.get_vectors(collection, ids, include_vectors=include_vectors, consistency=consistency))

    def count(self, collection: str, filter: dict[str, Any] | str | None = None, *,
              consistency: str | None = None) -> int:
        return self._run(calls.count(collection, filter, consistency))

    def scroll(
        self,
        collection: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filter: dict[str, Any] | str | None = None,
        include_vectors: bool = False,
        consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page in ascending id order; pass the returned cursor for the next (None at the end)."""
        return self._run(calls.scroll(collection, limit=limit, cursor=cursor, filter=filter,
                                      include_vectors=include_vectors, consistency=consistency))

    def session_token(self) -> str:
        """The writes this client was acknowledged, as a session token (cluster mode; ``v1:`` when none):
        give it to another client's :meth:`add_session_token` so its ``consistency="session"`` reads see them."""
        return self._transport.session.token()

    def add_session_token(self, token: str) -> None:
        """Merge a session token (another client's :meth:`session_token`) into this client's session."""
        self._transport.session.add(token)

    def search_text(
        self, collection: str, text: str, k: int = 10, filter: dict[str, Any] | str | None = None,
        include_metadata: bool = True, score_threshold: float | None = None, consistency: str | None = None,
    ) -> list[dict[str, Any]]:
        """BM25 top-k over the records' document text, best first: hits with id, score, metadata?."""
        return self._run(search_calls.search_text(collection, text, k, filter=filter, include_metadata=include_metadata,
                                     score_threshold=score_threshold, consistency=consistency))

    def search_sparse(
        self, collection: str, name: str, indices: Any, values: Any, k: int = 10,
        filter: dict[str, Any] | str | None = None, include_metadata: bool = True,
        score_threshold: float | None = None, consistency: str | None = None,
    ) -> list[dict[str, Any]]:
        """Exact top-k by dot product over the sparse vectors ``name`` (query: ``indices``, ``values``), best
        first: hits with id, score, metadata?."""
        return self._run(search_calls.search_sparse(
            collection, name, indices, values, k, filter=filter, include_metadata=include_metadata,
            score_threshold=score_threshold, consistency=consistency,
        ))

    def hybrid_search(
        self, collection: str, vector: Any = None, text: str | None = None, k: int = 10,
        filter: dict[str, Any] | str | None = None, fusion: str = "rrf", weights: Sequence[float] | None = None,
        rrf_k: float = 60.0, depth: int | dict[str, int] | None = None, ef: int | None = None,
        include_metadata: bool = True, score_threshold: float | None = None, consistency: str | None = None,
        sparse: dict[str, Any] | None = None, using: str | None = None,
    ) -> list[dict[str, Any]]:
        """Up to three searches fused (rrf, dbsf, relative_score), best first: id, score, metadata?. Parts: a
        ``vector``, a ``text``, a ``sparse`` query ``{"name", "indices", "values"}`` (at least one); ``weights``
        one per part given in that order; ``depth`` an integer for each part or ``{part: n}``."""
        return self._run(search_calls.hybrid_search(
            collection, vector, text, k, sparse=sparse, filter=filter, fusion=fusion, weights=weights, rrf_k=rrf_k,
            depth=depth, ef=ef, include_metadata=include_metadata, score_threshold=score_threshold,
            consistency=consistency, using=using, schema_version=self.schema_version,
        ))

    def search_groups(self, collection: str, vector: Any, group_by: str, limit: int = 10, group_size: int = 1,
                      **options: Any) -> list[dict[str, Any]]:
        """Hits grouped by a metadata field's value: [{"value", "hits"}], groups ordered by their best hit.
        Options: filter, score_threshold, include_vectors, include_metadata, exact, ef, nprobe, oversampling,
        consistency, using (the named vector searched)."""
        return self._run(calls.search_groups(collection, vector, group_by, limit, group_size, **options))

    def recommend(self, collection: str, positive: Any, negative: Any = None, k: int = 10,
                  strategy: str = "average_vector", **options: Any) -> list[dict[str, Any]]:
        """Records like ``positive`` and unlike ``negative`` (ids or vectors; strategy average_vector or
        best_score), example ids left out, best first. Options: filter, score_threshold, include_vectors,
        include_metadata, exact, ef, nprobe, consistency, using (a named vector: searched, and the vector of
        the example ids)."""
        return self._run(calls.recommend(collection, positive, negative, k, strategy, **options))

    def search(self, collection: str, vector: Any, k: int = 10, **options: Any) -> list[dict[str, Any]]:
        """Top-k hits for one query, best first (ProximaDBAPI's, with a 1-D numpy vector sent as it is)."""
        one = vector if type(vector) is np.ndarray and vector.ndim == 1 else [vector]
        return self._run(calls.search_batch(self.schema_version, collection, one, k, options))[0]

    def search_batch(self, collection: str, vectors: Any, k: int = 10, **options: Any) -> list[list[dict[str, Any]]]:
        """Top-k hits per query, best first (options: filter, include_vectors, include_metadata, ef, nprobe, exact,
        score_threshold, oversampling, consistency, using: the named vector searched, None the default one)."""
        return self._run(calls.search_batch(self.schema_version, collection, vectors, k, options))
