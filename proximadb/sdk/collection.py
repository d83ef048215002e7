"""Collection handles: ``docs = client.collection("docs")``, then ``docs.add(...)``, ``docs.query(...)``.

:class:`Collection` is the blocking handle (a daemon over gRPC or REST, or the embedded engine);
:class:`AsyncCollection` the asyncio one: ``docs = await aclient.collection("docs")`` (checks that the
collection exists and reads its dimension) or ``docs = aclient.collection("docs")`` without awaiting
(nothing is asked until the first call). Both methods run the plans of
:mod:`proximadb.sdk.collection_calls` on their client, so they take the same arguments and answer the same:

* ``add(ids=, vectors=, metadatas=, documents=)`` / ``upsert(...)``: vectors as a 2-D array-like (numpy,
  lists, a DataFrame of numbers, a pyarrow list column) or one 1-D vector; or ``documents`` embedded with
  the handle's embedding function (:mod:`proximadb.embeddings`) and stored under the metadata key
  ``"document"``; or ``add(table)``: a pyarrow Table / RecordBatch or pandas DataFrame with columns
  id / vector / metadata / document (:mod:`proximadb.sdk.columns`);
* ``query(vector, k)`` / ``search``: a 1-D vector or ``text="..."`` gives its hits; a 2-D array,
  ``vectors=`` or ``texts=[...]`` a list of hit lists; ``as_numpy=True`` gives columns instead
  (:mod:`proximadb.sdk.arrays`);
* ``search_sparse(name, indices, values, k)``: dot product over a named sparse vector (records carry them:
  ``add(..., sparse_vectors=[{name: {"indices", "values"}} | None, ...])``); ``hybrid_search(text, vector,
  sparse=...)`` fuses any of the three;
* named dense vectors (a collection created with ``vectors={name: {"dimension", "distance_metric"}}``):
  ``add(..., named_vectors={name: matrix})``, ``query(vector, using=name)``, ``get`` gives ``"named_vectors"``;
* ``get(ids)``, ``delete(ids | filter=)``, ``count(filter)``, ``scroll(...)`` (``as_numpy=True`` too),
  ``info()``, ``stats()``,
  ``flush()``.

Hits and records carry their stored text as ``"document"``.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from proximadb.embeddings import EmbeddingFunction
from proximadb.sdk import calls
from proximadb.sdk import collection_calls as plans
from proximadb.sdk.calls import FilterArg
from proximadb.sdk.collection_calls import Target

if TYPE_CHECKING:
    from proximadb.client_api import ProximaDBAPI
    from proximadb.sdk.async_client import AsyncClient

Metadatas = Sequence[dict[str, Any] | None] | None
NamedVectors = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None  # {name: (n, dim)} or {name: vector} per record


class _Handle:
    _kind = "Collection"

    def __init__(self, name: str, embedding_function: EmbeddingFunction | None,
                 info: dict[str, Any] | None) -> None:
        self._target = Target(name, embedding_function, info)

    @property
    def name(self) -> str:
        return self._target.name

    @property
    def embedding_function(self) -> EmbeddingFunction | None:
        return self._target.embedding_function

    @property
    def dimension(self) -> int | None:
        """The collection's dimension (None until an async handle has read it)."""
        return None if self._target.info is None else int(self._target.info["dimension"])

    @property
    def distance_metric(self) -> str | None:
        return None if self._target.info is None else str(self._target.info["distance_metric"])

    def __repr__(self) -> str:
        return self._target.describe(self._kind)


class Collection(_Handle):
    """One collection of a blocking client (see the module docstring)."""

    def __init__(self, client: ProximaDBAPI, name: str, *, embedding_function: EmbeddingFunction | None = None,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(name, embedding_function, info)
        self.client = client

    def _open(self) -> Collection:
        """Read the description (CollectionNotFoundError, or DimensionMismatchError for an embedding function
        that says another dimension); the handle."""
        self.client._run(plans.open_handle(self._target))
        return self

    def info(self) -> dict[str, Any]:
        """The collection's description (dimension, metric, index, ``vector_count`` ...), read now."""
        return self.client._run(plans.info(self._target))

    def add(self, ids: Any = None, vectors: Any = None, metadatas: Metadatas = None, documents: Any = None, *,
            batch_size: int | None = None, sparse_vectors: Metadatas = None,
            named_vectors: NamedVectors = None) -> dict[str, Any]:
        """Insert records (an id that exists is an error); ``{"count", "ids"}`` (ids generated when not given)."""
        return self.client._run(plans.write(self._target, self.client.schema_version,
                                            batch_size or self.client.batch_size, ids=ids, vectors=vectors,
                                            metadatas=metadatas, documents=documents, upsert=False,
                                            sparse_vectors=sparse_vectors, named_vectors=named_vectors))

    def upsert(self, ids: Any = None, vectors: Any = None, metadatas: Metadatas = None, documents: Any = None, *,
               batch_size: int | None = None, sparse_vectors: Metadatas = None,
               named_vectors: NamedVectors = None) -> dict[str, Any]:
        """Insert or replace (last write wins); safe to retry."""
        return self.client._run(plans.write(self._target, self.client.schema_version,
                                            batch_size or self.client.batch_size, ids=ids, vectors=vectors,
                                            metadatas=metadatas, documents=documents, upsert=True,
                                            sparse_vectors=sparse_vectors, named_vectors=named_vectors))

    def query(self, vector: Any = None, k: int = 10, *, text: str | None = None, texts: Any = None,
              vectors: Any = None, filter: FilterArg = None, as_numpy: bool = False, **options: Any) -> Any:
        """Top-k hits, best first: for one query (a 1-D ``vector`` or ``text``) its hits, for several
        (a 2-D ``vector``, ``vectors`` or ``texts``) a list of hit lists. Options: include_vectors,
        include_metadata, ef, nprobe, exact."""
        return self.client._run(plans.query(self._target, self.client.schema_version, vector, k, text=text,
                                            texts_=texts, vectors=vectors, options={"filter": filter, **options},
                                            as_numpy=as_numpy))

    search = query

    def search_text(self, text: str, k: int = 10, *, filter: FilterArg = None,
                    include_metadata: bool = True, consistency: str | None = None) -> list[dict[str, Any]]:
        """BM25 top-k over the stored documents, best first (hits carry ``"document"``)."""
        return self.client._run(plans.search_text(self._target, text, k, {
            "filter": filter, "include_metadata": include_metadata, "consistency": consistency}))

    def search_sparse(self, name: str, indices: Any, values: Any, k: int = 10, *, filter: FilterArg = None,
                      **options: Any) -> list[dict[str, Any]]:
        """Exact top-k by dot product over the sparse vectors ``name``, best first (hits carry ``"document"``).
        Options: include_metadata, score_threshold, consistency."""
        return self.client._run(plans.search_sparse(self._target, name, indices, values, k,
                                                    {"filter": filter, **options}))

    def hybrid_search(self, text: str | None = None, vector: Any = None, k: int = 10, *, filter: FilterArg = None,
                      **options: Any) -> list[dict[str, Any]]:
        """``text``, ``vector`` (default: ``text`` embedded with the handle's function) and ``sparse=`` ({name,
        indices, values}) searched and fused. Options: sparse, fusion, weights, rrf_k, depth, ef, include_metadata,
        consistency."""
        return self.client._run(plans.hybrid_search(self._target, self.client.schema_version, text, vector, k,
                                                    {"filter": filter, **options}))

    def search_groups(self, vector: Any, group_by: str, limit: int = 10, group_size: int = 1,
                      **options: Any) -> list[dict[str, Any]]:
        """Hits grouped by a metadata field's value, ``[{"value", "hits"}]`` (``vector`` may be a text to embed)."""
        return self.client._run(plans.search_groups(self._target, vector, group_by, limit, group_size, options))

    def recommend(self, positive: Any, negative: Any = None, k: int = 10, **options: Any) -> list[dict[str, Any]]:
        """Records like ``positive`` and unlike ``negative`` (ids or vectors). Options: strategy, filter, ..."""
        return self.client._run(plans.recommend(self._target, positive, negative, k, options))

    def get(self, ids: Any, *, include_vectors: bool = True, as_numpy: bool = False,
            consistency: str | None = None) -> Any:
        """The records that exist, in the order asked (a str is one id). ``consistency`` here, on count and
        scroll, and as a query option: strong, bounded (default), session or eventual (cluster mode)."""
        return self.client._run(plans.get(self._target, ids, include_vectors=include_vectors, as_numpy=as_numpy,
                                          consistency=consistency))

    def delete(self, ids: Any = None, *, filter: FilterArg = None) -> int:
        """Delete by ids or by a metadata filter; how many were deleted."""
        return self.client._run(plans.delete(self._target, self.client.schema_version, ids, filter))

    def count(self, filter: FilterArg = None, *, consistency: str | None = None) -> int:
        return self.client._run(calls.count(self.name, filter, consistency))

    def scroll(self, *, limit: int = 100, cursor: str | None = None, filter: FilterArg = None,
               include_vectors: bool = False, as_numpy: bool = False,
               consistency: str | None = None) -> tuple[Any, str | None]:
        """One page in ascending id order; pass the returned cursor for the next (None at the end).
        ``as_numpy=True``: the page as columns (ids, vectors, metadatas, documents, timestamps)."""
        return self.client._run(plans.scroll(self._target, limit=limit, cursor=cursor, filter=filter,
                                             include_vectors=include_vectors, as_numpy=as_numpy,
                                             consistency=consistency))

    def stats(self) -> dict[str, Any]:
        return self.client.stats(self.name)

    def flush(self) -> dict[str, Any]:
        return self.client.flush(self.name)


class AsyncCollection(_Handle):
    """One collection of an asyncio client: the methods of :class:`Collection`, as coroutines.

    ``await`` the handle itself to read the collection's description (it returns the handle)."""

    _kind = "AsyncCollection"

    def __init__(self, client: AsyncClient, name: str, *, embedding_function: EmbeddingFunction | None = None,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(name, embedding_function, info)
        self.client = client

    def __await__(self) -> Generator[Any, None, AsyncCollection]:
        return self._loaded().__await__()

    async def _loaded(self) -> AsyncCollection:
        await self.client._run(plans.open_handle(self._target))
        return self

    async def info(self) -> dict[str, Any]:
        """The collection's description (dimension, metric, index, ``vector_count`` ...), read now."""
        return await self.client._run(plans.info(self._target))

    async def add(self, ids: Any = None, vectors: Any = None, metadatas: Metadatas = None, documents: Any = None,
                  *, batch_size: int | None = None, sparse_vectors: Metadatas = None,
                  named_vectors: NamedVectors = None) -> dict[str, Any]:
        """Insert records (an id that exists is an error); ``{"count", "ids"}`` (ids generated when not given)."""
        return await self.client._run(plans.write(self._target, self.client.schema_version,
                                                  batch_size or self.client.batch_size, ids=ids, vectors=vectors,
                                                  metadatas=metadatas, documents=documents, upsert=False,
                                                  sparse_vectors=sparse_vectors, named_vectors=named_vectors))

    async def upsert(self, ids: Any = None, vectors: Any = None, metadatas: Metadatas = None,
                     documents: Any = None, *, batch_size: int | None = None,
                     sparse_vectors: Metadatas = None, named_vectors: NamedVectors = None) -> dict[str, Any]:
        """Insert or replace (last write wins); safe to retry."""
        return await self.client._run(plans.write(self._target, self.client.schema_version,
                                                  batch_size or self.client.batch_size, ids=ids, vectors=vectors,
                                                  metadatas=metadatas, documents=documents, upsert=True,
                                                  sparse_vectors=sparse_vectors, named_vectors=named_vectors))

    async def query(self, vector: Any = None, k: int = 10, *, text: str | None = None, texts: Any = None,
                    vectors: Any = None, filter: FilterArg = None, as_numpy: bool = False, **options: Any) -> Any:
        """As :meth:`Collection.query`; the embedding function runs in a worker thread (or is awaited)."""
        return await self.client._run(plans.query(self._target, self.client.schema_version, vector, k, text=text,
                                                  texts_=texts, vectors=vectors,
                                                  options={"filter": filter, **options}, as_numpy=as_numpy))

    search = query

    async def search_text(self, text: str, k: int = 10, *, filter: FilterArg = None,
                          include_metadata: bool = True, consistency: str | None = None) -> list[dict[str, Any]]:
        """BM25 top-k over the stored documents, best first (hits carry ``"document"``)."""
        return await self.client._run(plans.search_text(self._target, text, k, {
            "filter": filter, "include_metadata": include_metadata, "consistency": consistency}))

    async def search_sparse(self, name: str, indices: Any, values: Any, k: int = 10, *, filter: FilterArg = None,
                            **options: Any) -> list[dict[str, Any]]:
        """As :meth:`Collection.search_sparse`."""
        return await self.client._run(plans.search_sparse(self._target, name, indices, values, k,
                                                          {"filter": filter, **options}))

    async def hybrid_search(self, text: str | None = None, vector: Any = None, k: int = 10, *,
                            filter: FilterArg = None, **options: Any) -> list[dict[str, Any]]:
        """As :meth:`Collection.hybrid_search` (``text``, ``vector``, ``sparse=`` searched and fused)."""
        return await self.client._run(plans.hybrid_search(self._target, self.client.schema_version, text, vector, k,
                                                          {"filter": filter, **options}))

    async def search_groups(self, vector: Any, group_by: str, limit: int = 10, group_size: int = 1,
                            **options: Any) -> list[dict[str, Any]]:
        """Hits grouped by a metadata field's value, ``[{"value", "hits"}]`` (``vector`` may be a text to embed)."""
        return await self.client._run(plans.search_groups(self._target, vector, group_by, limit, group_size, options))

    async def recommend(self, positive: Any, negative: Any = None, k: int = 10,
                        **options: Any) -> list[dict[str, Any]]:
        """Records like ``positive`` and unlike ``negative`` (ids or vectors). Options: strategy, filter, ..."""
        return await self.client._run(plans.recommend(self._target, positive, negative, k, options))

    async def get(self, ids: Any, *, include_vectors: bool = True, as_numpy: bool = False,
                  consistency: str | None = None) -> Any:
        return await self.client._run(plans.get(self._target, ids, include_vectors=include_vectors,
                                                as_numpy=as_numpy, consistency=consistency))

    async def delete(self, ids: Any = None, *, filter: FilterArg = None) -> int:
        return await self.client._run(plans.delete(self._target, self.client.schema_version, ids, filter))

    async def count(self, filter: FilterArg = None, *, consistency: str | None = None) -> int:
        return await self.client._run(calls.count(self.name, filter, consistency))

    async def scroll(self, *, limit: int = 100, cursor: str | None = None, filter: FilterArg = None,
                     include_vectors: bool = False, as_numpy: bool = False,
                     consistency: str | None = None) -> tuple[Any, str | None]:
        return await self.client._run(plans.scroll(self._target, limit=limit, cursor=cursor, filter=filter,
                                                   include_vectors=include_vectors, as_numpy=as_numpy,
                                                   consistency=consistency))

    async def stats(self) -> dict[str, Any]:
        return await self.client.stats(self.name)

    async def flush(self) -> dict[str, Any]:
        return await self.client.flush(self.name)


__all__ = ["AsyncCollection", "Collection"]
