"""The asyncio client: :class:`AsyncClient`, made by ``connect_async`` (or ``connect_async_grpc`` / ``_rest``).

The same methods as :class:`~proximadb.sdk.client.ProximaDBClient`, as coroutines::

    async with proximadb.connect_async("http://127.0.0.1:5678") as client:   # or: client = await ...
        await client.create_collection("docs", 3)
        await client.insert_vectors("docs", ids=["a"], vectors=[[1, 0, 0]])
        hits = await client.search("docs", [1, 0, 0], k=5)
    # or: await client.close()

Nothing about a request is decided here: every method runs the plan of
:mod:`proximadb.sdk.calls` that the blocking client runs (the same payloads, validation,
decoding, typed errors and retry policy), awaiting each transport call of
:mod:`proximadb.sdk.async_transports` (gRPC through ``grpc.aio``, REST through ``httpx``) and
sleeping with ``asyncio.sleep`` between retries. ``connect_async`` picks the protocol by the
rules of ``connect`` (:func:`proximadb.sdk.routing.route`): gRPC when it answers, REST otherwise.

Cancelling a task that awaits a call cancels that call; the client stays usable. A cancelled
insert of several batches has applied whole batches only (each batch is all or nothing).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar, cast

from proximadb import idempotency, indexing
from proximadb.embeddings import EmbeddingFunction
from proximadb.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ProximaDBError,
    ResourceExhaustedError,
    UnavailableError,
)
from proximadb.sdk import calls, create_calls, routing, search_calls
from proximadb.sdk.calls import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GRPC,
    DEFAULT_REST,
    PROBE_TIMEOUT,
    Compute,
    Plan,
)
from proximadb.sdk.collection import AsyncCollection
from proximadb.sdk.collection_calls import dimension_for
from proximadb.sdk.routing import AskRest, Probe
from proximadb.sdk.transport import AsyncTransport

T = TypeVar("T")


async def _compute(step: Compute) -> Any:
    """A :class:`~proximadb.sdk.calls.Compute` step off the event loop: awaited if asynchronous, else in a
    worker thread."""
    if inspect.iscoroutinefunction(step.fn):
        return await step.fn(*step.args)
    answer = await asyncio.to_thread(step.fn, *step.args)
    return await answer if inspect.isawaitable(answer) else answer


class AsyncClient:
    """A ProximaDB client for asyncio code; make it with :func:`connect_async` (it negotiates on the way)."""

    def __init__(
        self, transport: AsyncTransport, *, batch_size: int = DEFAULT_BATCH_SIZE, retries: int = 3,
        backoff: float = 0.1,
    ) -> None:
        self._transport = transport
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        self.schema_version = 1  # until _negotiate

    async def _negotiate(self) -> AsyncClient:
        self.schema_version = await self._run(calls.negotiate(self._transport.url))
        self._transport.schema_version = self.schema_version
        return self

    # ------------------------------------------------------------------ plumbing
    @property
    def protocol(self) -> str:
        """``"grpc"`` or ``"rest"``: the transport in use."""
        return self._transport.protocol

    @property
    def url(self) -> str:
        return self._transport.url

    async def _retry(self, call: Callable[[], Awaitable[T]], *, safe: bool) -> T:
        for attempt in itertools.count():
            try:
                return await call()
            except (UnavailableError, ResourceExhaustedError) as exc:
                pause = calls.retry_pause(exc, attempt, retries=self.retries, backoff=self.backoff, safe=safe)
                if pause is None:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, plan: Plan[T]) -> T:
        """Run a plan of :mod:`proximadb.sdk.calls`, awaiting each transport call it yields, with retries."""
        try:
            step = next(plan)
            while True:
                try:
                    if isinstance(step, Compute):
                        answer = await _compute(step)
                    else:
                        call = functools.partial(getattr(self._transport, step.method), *step.args)
                        with idempotency.sending(step.request_id):  # the same id on every retry
                            answer = await self._retry(call, safe=step.safe)
                except ProximaDBError as exc:
                    step = plan.throw(exc)
                else:
                    step = plan.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return calls.describe_client(type(self).__name__, self.protocol, self.url)

    # ------------------------------------------------------------------ server and collections
    async def health(self) -> dict[str, Any]:
        return await self._run(calls.single("health"))  # type: ignore[no-any-return]

    async def create_collection(
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
        return await self._run(create_calls.create_collection(
            name, dimension, distance_metric=distance_metric, indexing_algorithm=indexing_algorithm,
            index_params=index_params, filterable_metadata_fields=filterable_metadata_fields, description=description,
            default_ttl_seconds=default_ttl_seconds, quantization=quantization, exist_ok=exist_ok,
            shards=shards, replication_factor=replication_factor,
            text_analyzer=text_analyzer, sparse_vectors=sparse_vectors, vectors=vectors,
            schema_version=self.schema_version,
        ))

    async def get_or_create_collection(
        self, name: str, dimension: int | None = None, *, embedding_function: EmbeddingFunction | None = None,
        **options: Any,
    ) -> AsyncCollection:
        """As :meth:`proximadb.client_api.ProximaDBAPI.get_or_create_collection`: an :class:`AsyncCollection`."""
        described = await self.create_collection(name, dimension_for(dimension, embedding_function), exist_ok=True,
                                                 **options)
        return AsyncCollection(self, name, embedding_function=embedding_function, info=described)

    def collection(self, name: str, *, embedding_function: EmbeddingFunction | None = None) -> AsyncCollection:
        """A handle on the collection ``name``: ``await client.collection(name)`` reads its description
        (CollectionNotFoundError if it does not exist); without ``await``, nothing is asked until its first call."""
        return AsyncCollection(self, name, embedding_function=embedding_function)

    async def get_collection(self, name: str) -> dict[str, Any]:
        return await self._run(calls.single("get_collection", name))  # type: ignore[no-any-return]

    async def list_collections(self) -> list[dict[str, Any]]:
        return await self._run(calls.single("list_collections"))  # type: ignore[no-any-return]

    async def update_collection(self, name: str, **changes: Any) -> dict[str, Any]:
        return await self._run(calls.single("update_collection", name, changes, safe=False))  # type: ignore[no-any-return]

    async def delete_collection(self, name: str) -> None:
        await self._run(calls.single("delete_collection", name, safe=False))

    async def compact(self, collection: str) -> dict[str, Any]:
        """Merge the collection's segments now (online); returns segments/rows/bytes before and after. In
        cluster mode every replica is compacted: the figures are totals, ``replicas`` each replica's report."""
        return await self._run(calls.single("compact", collection, safe=False))  # type: ignore[no-any-return]

    async def stats(self, collection: str) -> dict[str, Any]:
        """Storage statistics: vectors, memtable, segments, WAL sequence, index builds, status green/yellow."""
        return await self._run(calls.single("stats", collection))  # type: ignore[no-any-return]

    async def flush(self, collection: str) -> dict[str, Any]:
        """Seal the memtable into a segment now (safe to repeat); the statistics after it."""
        return await self._run(calls.single("flush", collection))  # type: ignore[no-any-return]

    async def wait_for_indexing(
        self, collection: str, *, timeout: float = 300.0, flush: bool = True, poll: float = 0.05
    ) -> dict[str, Any]:
        """Flush (unless ``flush=False``), then poll :meth:`stats` until the status is green; returns those
        stats. IndexingTimeoutError (a RequestTimeoutError) after ``timeout`` seconds."""
        return await indexing.wait_async(self, collection, timeout=timeout, flush=flush, poll=poll)

    # ------------------------------------------------------------------ writes
    async def insert_vectors(
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
        """Insert records (dicts) or ``ids`` + a ``vectors`` matrix (+ ``metadatas``) in batches of ``batch_size``.

        Each batch is applied all or nothing. Returns ``{"count", "ids"}``.
        """
        return await self._run(calls.insert_vectors(
            self.schema_version, batch_size or self.batch_size, collection, records,
            ids=ids, vectors=vectors, metadatas=metadatas, upsert=upsert, sparse_vectors=sparse_vectors,
            named_vectors=named_vectors,
        ))

    async def upsert_vectors(
        self, collection: str, records: Sequence[dict[str, Any]] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Insert or replace (last write wins); safe to retry."""
        return await self.insert_vectors(collection, records, upsert=True, **kw)

    async def insert_vector(
        self, collection: str, vector: Any, *, id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> str:
        """Insert one record; returns its id (generated when not given)."""
        done = await self.insert_vectors(collection, [{"id": id, "vector": vector, "metadata": metadata}])
        return str(done["ids"][0])

    async def update_vector(
        self, collection: str, id: str, *, metadata: dict[str, Any] | None = None, vector: Any = None,
        replace: bool = False,
    ) -> None:
        """Change a record's metadata (merge; ``replace=True`` swaps it) and/or its vector."""
        await self._run(calls.update_vector(
            self.schema_version, self.batch_size, collection, id, metadata=metadata, vector=vector, replace=replace
        ))

    async def delete_vectors(
        self, collection: str, ids: Sequence[str] | None = None, *, filter: dict[str, Any] | str | None = None
    ) -> int:
        """Delete by ids or by a metadata filter; returns how many were deleted."""
        return await self._run(calls.delete_vectors(self.schema_version, collection, ids, filter=filter))

    async def delete_vector(self, collection: str, id: str) -> bool:
        return await self.delete_vectors(collection, ids=[id]) == 1

    # ------------------------------------------------------------------ reads
    async def get_vectors(
        self, collection: str, ids: Sequence[str], *, include_vectors: bool = True, consistency: str | None = None
    ) -> list[dict[str, Any]]:
        """The records that exist, in the order asked (missing ids are left out); ``consistency`` as the
        blocking client's."""
        return await self._run(calls.get_vectors(collection, ids, include_vectors=include_vectors,
                                                 consistency=consistency))

    async def get_vector(self, collection: str, id: str, *, include_vector: bool = True,
                         consistency: str | None = None) -> dict[str, Any] | None:
        found = await self.get_vectors(collection, [id], include_vectors=include_vector, consistency=consistency)
        return found[0] if found else None

    async def count(self, collection: str, filter: dict[str, Any] | str | None = None, *,
                    consistency: str | None = None) -> int:
        return await self._run(calls.count(collection, filter, consistency))

    def session_token(self) -> str:
        """The writes this client was acknowledged, as a session token (see the blocking client's)."""
        return self._transport.session.token()

    def add_session_token(self, token: str) -> None:
        """Merge another client's session token into this client's session."""
        self._transport.session.add(token)

    async def scroll(
        self, collection: str, *, limit: int = 100, cursor: str | None = None,
        filter: dict[str, Any] | str | None = None, include_vectors: bool = False, consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page in ascending id order; pass the returned cursor for the next (None at the end)."""
        return await self._run(calls.scroll(collection, limit=limit, cursor=cursor, filter=filter,
                                            include_vectors=include_vectors, consistency=consistency))

    async def search_batch(
        self, collection: str, vectors: Any, k: int = 10, **options: Any
    ) -> list[list[dict[str, Any]]]:
        """Top-k hits per query, best first (options: filter, include_vectors, include_metadata, ef, nprobe, exact)."""
        return await self._run(calls.search_batch(self.schema_version, collection, vectors, k, options))

    async def search_text(
        self, collection: str, text: str, k: int = 10, filter: dict[str, Any] | str | None = None,
        include_metadata: bool = True, score_threshold: float | None = None, consistency: str | None = None,
    ) -> list[dict[str, Any]]:
        """BM25 top-k over the records' document text, best first: hits with id, score, metadata?."""
        return await self._run(search_calls.search_text(collection, text, k, filter=filter,
                                                 include_metadata=include_metadata,
                                                 score_threshold=score_threshold, consistency=consistency))

    async def search_sparse(
        self, collection: str, name: str, indices: Any, values: Any, k: int = 10,
        filter: dict[str, Any] | str | None = None, include_metadata: bool = True,
        score_threshold: float | None = None, consistency: str | None = None,
    ) -> list[dict[str, Any]]:
        """Exact top-k by dot product over the sparse vectors ``name`` (query: ``indices``, ``values``), best
        first: hits with id, score, metadata?."""
        return await self._run(search_calls.search_sparse(
            collection, name, indices, values, k, filter=filter, include_metadata=include_metadata,
            score_threshold=score_threshold, consistency=consistency,
        ))

    async def hybrid_search(
        self, collection: str, vector: Any = None, text: str | None = None, k: int = 10,
        filter: dict[str, Any] | str | None = None, fusion: str = "rrf", weights: Sequence[float] | None = None,
        rrf_k: float = 60.0, depth: int | dict[str, int] | None = None, ef: int | None = None,
        include_metadata: bool = True, score_threshold: float | None = None, consistency: str | None = None,
        sparse: dict[str, Any] | None = None, using: str | None = None,
    ) -> list[dict[str, Any]]:
        """Up to three searches fused (rrf, dbsf, relative_score), best first: id, score, metadata?. Parts: a
        ``vector``, a ``text``, a ``sparse`` query ``{"name", "indices", "values"}`` (at least one); ``weights``
        one per part given in that order; ``depth`` an integer for each part or ``{part: n}``."""
        return await self._run(search_calls.hybrid_search(
            collection, vector, text, k, sparse=sparse, filter=filter, fusion=fusion, weights=weights, rrf_k=rrf_k,
            depth=depth, ef=ef, include_metadata=include_metadata, score_threshold=score_threshold,
            consistency=consistency, using=using, schema_version=self.schema_version,
        ))

    async def search_groups(self, collection: str, vector: Any, group_by: str, limit: int = 10, group_size: int = 1,
                      **options: Any) -> list[dict[str, Any]]:
        """Hits grouped by a metadata field's value: [{"value", "hits"}], groups ordered by their best hit.
        Options: filter, score_threshold, include_vectors, include_metadata, exact, ef, nprobe, oversampling,
        consistency, using (the named vector searched)."""
        return await self._run(calls.search_groups(collection, vector, group_by, limit, group_size, **options))

    async def recommend(self, collection: str, positive: Any, negative: Any = None, k: int = 10,
                  strategy: str = "average_vector", **options: Any) -> list[dict[str, Any]]:
        """Records like ``positive`` and unlike ``negative`` (ids or vectors; strategy average_vector or
        best_score), example ids left out, best first. Options: filter, score_threshold, include_vectors,
        include_metadata, exact, ef, nprobe, consistency, using (a named vector: searched, and the vector of
        the example ids)."""
        return await self._run(calls.recommend(collection, positive, negative, k, strategy, **options))

    async def search(self, collection: str, vector: Any, k: int = 10, **options: Any) -> list[dict[str, Any]]:
        """Top-k hits for one query, best first: dicts with id, score, distance, metadata?, vector?."""
        return (await self.search_batch(collection, [vector], k, **options))[0]


# ---------------------------------------------------------------------- connecting
class Connecting:
    """What ``connect_async`` returns: ``await`` it for the client, or ``async with`` it (closed at the end)."""

    def __init__(self, opening: Callable[[], Awaitable[AsyncClient]]) -> None:
        self._opening = opening
        self._client: AsyncClient | None = None

    def __await__(self) -> Generator[Any, None, AsyncClient]:
        return self._opening().__await__()

    async def __aenter__(self) -> AsyncClient:
        self._client = await self._opening()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()


async def _open(transport: AsyncTransport, client_options: dict[str, Any]) -> AsyncClient:
    """The client over ``transport`` (which it closes when the client cannot be made, e.g. no common schema)."""
    try:
        return await AsyncClient(transport, **client_options)._negotiate()
    except BaseException:
        await transport.close()
        raise


def _transport(where: str | Sequence[str], make: Callable[[str], Any]) -> AsyncTransport:
    """One address's transport, or for a list one that moves to the next node (:mod:`proximadb.sdk.failover`)."""
    if isinstance(where, str):
        return cast(AsyncTransport, make(where))
    from proximadb.sdk.failover import AsyncFailoverTransport

    return cast(AsyncTransport, AsyncFailoverTransport(where, make))


async def _open_grpc(target: str | Sequence[str], timeout: float, api_key: str | None, tls: bool,
                     ca_file: str | None, client_options: dict[str, Any]) -> AsyncClient:
    from proximadb.sdk.async_transports import AsyncGrpcTransport

    def make(one: str) -> AsyncGrpcTransport:
        return AsyncGrpcTransport(one, timeout=timeout, api_key=calls.api_key(api_key), tls=tls, ca_file=ca_file)

    return await _open(_transport(target, make), client_options)


async def _open_rest(url: str | Sequence[str], timeout: float, api_key: str | None, ca_file: str | None,
                     verify: bool, client_options: dict[str, Any]) -> AsyncClient:
    from proximadb.sdk.async_transports import AsyncRestTransport

    def make(one: str) -> AsyncRestTransport:
        return AsyncRestTransport(one, timeout=timeout, api_key=calls.api_key(api_key), ca_file=ca_file,
                                  verify=verify)

    return await _open(_transport(url, make), client_options)


def connect_async_grpc(target: str | Sequence[str] = DEFAULT_GRPC, *, timeout: float = 30.0, api_key: str | None = None,
                       tls: bool = False, ca_file: str | None = None, **client_options: Any) -> Connecting:
    """An asyncio client over gRPC (``host:port``, ``grpc://``, ``grpcs://``), as :func:`proximadb.sdk.connect_grpc`;
    a list of targets: one client that moves to the next node when one does not answer."""
    return Connecting(lambda: _open_grpc(target, timeout, api_key, tls, ca_file, client_options))


def connect_async_rest(url: str | Sequence[str] = DEFAULT_REST, *, timeout: float = 30.0, api_key: str | None = None,
                       ca_file: str | None = None, verify: bool = True, **client_options: Any) -> Connecting:
    """An asyncio client over REST, as :func:`proximadb.sdk.connect_rest`; a list of URLs: one client that moves
    to the next node when one does not answer."""
    return Connecting(lambda: _open_rest(url, timeout, api_key, ca_file, verify, client_options))


async def _grpc_answers(step: Probe, api_key: str | None) -> bool:
    """A quick health probe, so an absent gRPC server costs a short timeout, not the full one."""
    from proximadb.sdk.async_transports import AsyncGrpcTransport

    probe = AsyncGrpcTransport(step.target, timeout=PROBE_TIMEOUT, api_key=calls.api_key(api_key), tls=step.tls,
                               ca_file=step.ca_file)
    try:
        await probe.health()
        return True
    except (AuthenticationError, PermissionDeniedError):
        return True  # it answers; the client's calls will report the key problem
    except ProximaDBError:
        return False
    finally:
        await probe.close()


async def _connect(url: str | None, timeout: float, api_key: str | None, ca_file: str | None,
                   client_options: dict[str, Any]) -> AsyncClient:
    plan = routing.route(url, ca_file)
    rest: AsyncClient | None = None
    try:
        step = next(plan)
        while True:
            if isinstance(step, Probe):
                answer: Any = await _grpc_answers(step, api_key)
            else:
                assert isinstance(step, AskRest)
                rest = await _open_rest(step.url, timeout, api_key, ca_file, True, client_options)
                answer = (await rest.health()).get("grpc_port")
            step = plan.send(answer)
    except StopIteration as done:
        chosen = done.value
    except BaseException:
        if rest is not None:
            await rest.close()
        raise
    if chosen.protocol == "rest":
        return rest or await _open_rest(chosen.address, timeout, api_key, chosen.ca_file, True, client_options)
    if rest is not None:
        await rest.close()
    return await _open_grpc(chosen.address, timeout, api_key, chosen.tls, chosen.ca_file, client_options)


def connect_async(url: str | Sequence[str] | None = None, *, timeout: float = 30.0, api_key: str | None = None,
                  ca_file: str | None = None, **client_options: Any) -> Connecting:
    """An asyncio client: gRPC preferred, REST as the fallback, by the rules of :func:`proximadb.sdk.connect`.

    ``client = await connect_async(url)`` or ``async with connect_async(url) as client:``. A list of
    addresses: REST when every one is ``http(s)://``, gRPC otherwise, moving to the next node when one does
    not answer (:mod:`proximadb.sdk.failover`).
    """
    if url is not None and not isinstance(url, str):
        urls = list(url)
        if routing.all_rest(urls):
            return connect_async_rest(urls, timeout=timeout, api_key=api_key, ca_file=ca_file, **client_options)
        return connect_async_grpc(urls, timeout=timeout, api_key=api_key, ca_file=ca_file, **client_options)
    return Connecting(lambda: _connect(url, timeout, api_key, ca_file, client_options))


__all__ = ["AsyncClient", "Connecting", "connect_async", "connect_async_grpc", "connect_async_rest"]
