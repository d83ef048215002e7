"""What the SDK client needs from a protocol: the same calls over gRPC or REST.

The client (proximadb/sdk/client.py) builds the Avro payloads and decodes the
answers; a transport only moves them and maps failures to the typed errors of
:mod:`proximadb.errors` (rebuilt from the server's stable error code with
:func:`proximadb.errors.error_from_code`; a connection failure is
``UnavailableError``, a deadline ``RequestTimeoutError``).

:class:`AsyncTransport` is the same with coroutine methods (:mod:`proximadb.sdk.async_transports`,
for :class:`~proximadb.sdk.async_client.AsyncClient`).

Records returned by ``get_vectors`` and ``scroll`` are dicts
``{"id", "metadata", "timestamp", "vector"?, "expires_at"?, "sparse_vectors"?}`` with ``vector`` a float32
numpy array when asked for and ``sparse_vectors`` ``{name: {"indices": [int], "values": [float]}}`` on records
that have some.
"""

from __future__ import annotations

from typing import Any, Protocol

from proximadb.consistency import SessionTokens


class Transport(Protocol):
    protocol: str  # "grpc" or "rest"
    schema_version: int  # the payload version the client negotiated; records are asked for in it
    url: str
    session: SessionTokens  # write acknowledgements got, sent with consistency="session" reads

    def health(self) -> dict[str, Any]: ...

    def create_collection(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def get_collection(self, collection: str) -> dict[str, Any]: ...

    def list_collections(self) -> list[dict[str, Any]]: ...

    def update_collection(self, collection: str, changes: dict[str, Any]) -> dict[str, Any]: ...

    def delete_collection(self, collection: str) -> None: ...

    def compact(self, collection: str) -> dict[str, Any]:
        """Merge the collection's segments now; the compaction report."""
        ...

    def stats(self, collection: str) -> dict[str, Any]: ...

    def flush(self, collection: str) -> dict[str, Any]:
        """Seal the memtable into a segment now; the statistics after it."""
        ...

    def insert_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        """A ``vector_insert`` payload frame; returns ``{"count", "ids"}``."""
        ...

    def mutate_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        """A ``vector_delete`` / ``vector_update`` payload frame; returns ``{"deleted", "updated"}``."""
        ...

    def get_vectors(self, collection: str, ids: list[str], include_vectors: bool,
                    consistency: str | None = None) -> list[dict[str, Any]]: ...

    def count(self, collection: str, filter_json: str | None, consistency: str | None = None) -> int: ...

    def scroll(
        self, collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool,
        consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    def search_payload(self, collection: str, payload: bytes, extras: dict[str, Any] | None = None) -> bytes:
        """A ``vector_search`` payload frame in, a ``search_result`` payload frame out; ``extras``
        (score_threshold, oversampling) travel beside it (gRPC request fields, REST query parameters)."""
        ...

    def search_groups(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The REST body of ``search_groups`` in, groups ``{value, hits}`` out."""
        ...

    def recommend(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The REST body of ``recommend`` in, hits out."""
        ...

    def search_text(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The REST body of ``search_text`` in, hits ``{id, score, metadata?, expires_at?}`` out."""
        ...

    def hybrid_search(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The REST body of ``hybrid_search`` in, hits out."""
        ...

    def search_sparse(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The REST body of ``search/sparse`` in, hits ``{id, score, metadata?, expires_at?}`` out."""
        ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    """:class:`Transport` with coroutine methods: the same names, arguments and answers."""

    protocol: str
    schema_version: int
    url: str
    session: SessionTokens

    async def health(self) -> dict[str, Any]: ...

    async def create_collection(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def get_collection(self, collection: str) -> dict[str, Any]: ...

    async def list_collections(self) -> list[dict[str, Any]]: ...

    async def update_collection(self, collection: str, changes: dict[str, Any]) -> dict[str, Any]: ...

    async def delete_collection(self, collection: str) -> None: ...

    async def compact(self, collection: str) -> dict[str, Any]: ...

    async def stats(self, collection: str) -> dict[str, Any]: ...
    async def flush(self, collection: str) -> dict[str, Any]: ...

    async def insert_payload(self, collection: str, payload: bytes) -> dict[str, Any]: ...

    async def mutate_payload(self, collection: str, payload: bytes) -> dict[str, Any]: ...

    async def get_vectors(self, collection: str, ids: list[str], include_vectors: bool,
                          consistency: str | None = None) -> list[dict[str, Any]]: ...

    async def count(self, collection: str, filter_json: str | None, consistency: str | None = None) -> int: ...

    async def scroll(
        self, collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool,
        consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def search_payload(
        self, collection: str, payload: bytes, extras: dict[str, Any] | None = None
    ) -> bytes: ...

    async def search_groups(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def recommend(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def search_text(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def hybrid_search(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def search_sparse(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...
