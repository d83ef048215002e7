"""The one API of ProximaDB, whether the database runs in this process or in a daemon.

:class:`ProximaDBAPI` is the vocabulary every client speaks; code written against it runs
unchanged on

* ``proximadb.connect_embedded(path)``: the engine in this process (:mod:`proximadb.embedded`);
* ``proximadb.connect(url)`` / ``connect_grpc`` / ``connect_rest``: a daemon over gRPC or REST
  (:mod:`proximadb.sdk`).

Both are :class:`proximadb.sdk.client.ProximaDBClient`: the embedded one carries the same Avro
payloads to the same :class:`~proximadb.service.unified.UnifiedAvroService` the daemon runs, only
without a socket, so answers and errors are the same whichever is used.

Names: ``insert_vectors(collection, records | ids=, vectors=, metadatas=)``,
``search(collection, vector, k=, filter=, using=)``, ``search_text(collection, text, k=)``,
``search_sparse(collection, name, indices, values, k=)``,
``hybrid_search(collection, vector, text, k=, sparse=, fusion=)``, ``search_groups(collection, vector, group_by,
limit=, group_size=)``, ``recommend(collection, positive, negative, k=, strategy=)``, ``update_vector``,
``delete_vectors(ids= | filter=)``,
``get_vectors``, ``scroll``, ``count``, ``create_collection(..., exist_ok=)`` ... (the engine's older
``metadata=`` / ``filter_spec=`` spellings are deprecated: :mod:`proximadb.renamed`).

Handles: ``client.collection(name)`` and ``client.get_or_create_collection(name, dimension)`` give a
:class:`~proximadb.sdk.collection.Collection` with the same calls minus the collection argument
(``add``, ``upsert``, ``query``/``search``, ``get``, ``delete``, ``count``, ``scroll``, ``info``), numpy
columns on request, and documents embedded by an embedding function (:mod:`proximadb.embeddings`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from proximadb import indexing

if TYPE_CHECKING:
    from proximadb.embeddings import EmbeddingFunction
    from proximadb.sdk.calls import Plan
    from proximadb.sdk.collection import Collection

Filter = dict[str, Any] | str | None
T = TypeVar("T")


class ProximaDBAPI(abc.ABC):
    """Every operation a client can ask; the convenience forms (one vector, one id, collection handles,
    get-or-create) are defined here."""

    schema_version: int  # the payload schema version agreed with the server
    batch_size: int  # records per insert payload unless a call says otherwise

    @abc.abstractmethod
    def _run(self, plan: Plan[T]) -> T:
        """Run a plan of :mod:`proximadb.sdk.calls` (how every call is made; collection handles use it)."""

    # ------------------------------------------------------------------ server and collections
    @abc.abstractmethod
    def health(self) -> dict[str, Any]: ...

    @abc.abstractmethod
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
        text_analyzer: dict[str, Any] | None = None,
        sparse_vectors: dict[str, Any] | None = None,
        vectors: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a collection; its description (``sparse_vectors``: the names of the sparse vectors its records
        may carry, ``{name: {}}`` or ``{name: {"modifier": "idf"}}``; ``vectors``: named dense vectors every
        record carries, ``{name: {"dimension", "distance_metric"}}``, searched with ``search(..., using=name)``).
        ``exist_ok=True``: a collection of that name with the same dimension and distance metric is returned as
        it is; another dimension or metric raises :class:`~proximadb.errors.CollectionConfigMismatchError` (a
        CollectionExistsError) naming the difference."""

    def get_or_create_collection(
        self, name: str, dimension: int | None = None, *, embedding_function: EmbeddingFunction | None = None,
        **options: Any,
    ) -> Collection:
        """A handle (:class:`~proximadb.sdk.collection.Collection`) on the collection ``name``, created with
        ``dimension`` and ``options`` (those of :meth:`create_collection`) unless it exists with that dimension
        and metric. ``dimension`` may be left out when ``embedding_function`` has a ``dimension`` attribute."""
        from proximadb.sdk.collection import Collection
        from proximadb.sdk.collection_calls import dimension_for

        described = self.create_collection(name, dimension_for(dimension, embedding_function), exist_ok=True,
                                           **options)
        return Collection(self, name, embedding_function=embedding_function, info=described)

    def collection(self, name: str, *, embedding_function: EmbeddingFunction | None = None) -> Collection:
        """A handle on the existing collection ``name`` (CollectionNotFoundError otherwise): ``docs.add(...)``,
        ``docs.query(...)``, ``docs.count()`` ... (:mod:`proximadb.sdk.collection`). An embedding function with
        a ``dimension`` attribute must match the collection's (DimensionMismatchError)."""
        from proximadb.sdk.collection import Collection

        return Collection(self, name, embedding_function=embedding_function)._open()

    @abc.abstractmethod
    def get_collection(self, name: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def list_collections(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def update_collection(self, name: str, **changes: Any) -> dict[str, Any]: ...

    @abc.abstractmethod
    def delete_collection(self, name: str) -> None: ...

    @abc.abstractmethod
    def compact(self, collection: str) -> dict[str, Any]:
        """Merge the collection's segments now (online); returns segments/rows/bytes before and after. In
        cluster mode every replica is compacted: the figures are totals, ``replicas`` each replica's report."""

    @abc.abstractmethod
    def stats(self, collection: str) -> dict[str, Any]:
        """Storage statistics: vectors, memtable, segments, WAL sequence, index builds; ``status`` is
        ``"green"`` once every live row is searched through an index, ``"yellow"`` before
        (``indexed_rows`` / ``unindexed_rows``)."""

    @abc.abstractmethod
    def flush(self, collection: str) -> dict[str, Any]:
        """Seal the memtable into a segment now (its index is built in the background); the stats after it."""

    def wait_for_indexing(
        self, collection: str, *, timeout: float = 300.0, flush: bool = True, poll: float = 0.05
    ) -> dict[str, Any]:
        """Flush (unless ``flush=False``), then poll :meth:`stats` until the status is green; returns those
        stats. Raises :class:`~proximadb.errors.IndexingTimeoutError` when ``timeout`` seconds pass first.

        Rows written meanwhile land in the memtable again, so under continuous writes this only returns
        once they pause (or flush anew).
        """
        return indexing.wait(self, collection, timeout=timeout, flush=flush, poll=poll)

    # ------------------------------------------------------------------ writes
    @abc.abstractmethod
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
        """Insert records (dicts) or ``ids`` + a ``vectors`` matrix (+ ``metadatas``, + ``sparse_vectors``: one
        ``{name: {"indices", "values"}}`` or None per record; a record dict has its own ``sparse_vectors`` key;
        + ``named_vectors``: ``{name: (n, dim) matrix}`` or one ``{name: vector}`` per record; a record dict has
        its own ``named_vectors`` key); ``{"count", "ids"}``."""

    @abc.abstractmethod
    def update_vector(
        self, collection: str, id: str, *, metadata: dict[str, Any] | None = None, vector: Any = None,
        replace: bool = False,
    ) -> None:
        """Change a record's metadata (merge; ``replace=True`` swaps it) and/or its vector."""

    @abc.abstractmethod
    def delete_vectors(self, collection: str, ids: Sequence[str] | None = None, *, filter: Filter = None) -> int:
        """Delete by ids or by a metadata filter; returns how many were deleted."""

    def insert_vector(
        self, collection: str, vector: Any, *, id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> str:
        """Insert one record; returns its id (generated when not given)."""
        return str(self.insert_vectors(collection, [{"id": id, "vector": vector, "metadata": metadata}])["ids"][0])

    def upsert_vectors(
        self, collection: str, records: Sequence[dict[str, Any]] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Insert or replace (last write wins); safe to retry."""
        return self.insert_vectors(collection, records, upsert=True, **kw)

    def delete_vector(self, collection: str, id: str) -> bool:
        return self.delete_vectors(collection, ids=[id]) == 1

    # ------------------------------------------------------------------ reads
    @abc.abstractmethod
    def get_vectors(
        self, collection: str, ids: Sequence[str], *, include_vectors: bool = True, consistency: str | None = None
    ) -> list[dict[str, Any]]:
        """The records that exist, in the order asked (missing ids are left out). ``consistency`` (cluster
        mode): strong, bounded (default), session or eventual (:mod:`proximadb.consistency`)."""

    @abc.abstractmethod
    def count(self, collection: str, filter: Filter = None, *, consistency: str | None = None) -> int: ...

    @abc.abstractmethod
    def scroll(
        self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: Filter = None,
        include_vectors: bool = False, consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page in ascending id order; pass the returned cursor for the next (None at the end)."""

    @abc.abstractmethod
    def search_batch(self, collection: str, vectors: Any, k: int = 10, **options: Any) -> list[list[dict[str, Any]]]:
        """Top-k hits per query, best first. Options: filter, include_vectors, include_metadata, ef, nprobe,
        exact, score_threshold, oversampling, consistency, using (the named vector searched; None: the default
        one)."""

    @abc.abstractmethod
    def session_token(self) -> str:
        """This client's session token: the writes it was acknowledged (cluster mode), for reads with
        ``consistency="session"`` by another client (:meth:`add_session_token`); see proximadb/consistency.py."""

    @abc.abstractmethod
    def add_session_token(self, token: str) -> None:
        """Merge another client's :meth:`session_token` into this one's (ValidationError when malformed)."""

    @abc.abstractmethod
    def search_text(
        self, collection: str, text: str, k: int = 10, filter: Filter = None, include_metadata: bool = True,
        score_threshold: float | None = None, consistency: str | None = None,
    ) -> list[dict[str, Any]]:
        """BM25 top-k over the records' ``document`` text, best first: hits with id, score, metadata?."""

    @abc.abstractmethod
    def search_sparse(
        self, collection: str, name: str, indices: Any, values: Any, k: int = 10, filter: Filter = None,
        include_metadata: bool = True, score_threshold: float | None = None, consistency: str | None = None,
    ) -> list[dict[str, Any]]:
        """Exact top-k by dot product over the records' sparse vector ``name``, best first: hits with id, score,
        metadata?. The query: ``indices`` (strictly increasing, >= 0) and ``values`` (finite), lists or arrays."""

    @abc.abstractmethod
    def hybrid_search(
        self, collection: str, vector: Any = None, text: str | None = None, k: int = 10, filter: Filter = None,
        fusion: str = "rrf", weights: Sequence[float] | None = None, rrf_k: float = 60.0,
        depth: int | dict[str, int] | None = None, ef: int | None = None, include_metadata: bool = True,
        score_threshold: float | None = None, consistency: str | None = None, sparse: dict[str, Any] | None = None,
        using: str | None = None,
    ) -> list[dict[str, Any]]:
        """Up to three searches fused (rrf, dbsf, relative_score): a ``vector``, a ``text`` and a ``sparse`` query
        ``{"name", "indices", "values"}``, at least one; weights one per part given, in that order; ``using``: the
        named vector the vector part searches (None: the default one)."""

    @abc.abstractmethod
    def search_groups(self, collection: str, vector: Any, group_by: str, limit: int = 10, group_size: int = 1,
                      **options: Any) -> list[dict[str, Any]]:
        """Hits grouped by a metadata field's value, ``[{"value", "hits"}]``, groups by their best hit."""

    @abc.abstractmethod
    def recommend(self, collection: str, positive: Any, negative: Any = None, k: int = 10,
                  strategy: str = "average_vector", **options: Any) -> list[dict[str, Any]]:
        """Records like the positive examples and unlike the negative ones (ids or vectors), best first."""

    def get_vector(self, collection: str, id: str, *, include_vector: bool = True,
                   consistency: str | None = None) -> dict[str, Any] | None:
        found = self.get_vectors(collection, [id], include_vectors=include_vector, consistency=consistency)
        return found[0] if found else None

    def search(self, collection: str, vector: Any, k: int = 10, **options: Any) -> list[dict[str, Any]]:
        """Top-k hits for one query, best first: dicts with id, score, distance, metadata?, vector?."""
        return self.search_batch(collection, [vector], k, **options)[0]

    # ------------------------------------------------------------------ lifecycle
    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> ProximaDBAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ProximaDBAPI"]
