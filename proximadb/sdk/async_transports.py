"""The asyncio transports of :class:`~proximadb.sdk.async_client.AsyncClient`: ``grpc.aio`` and ``httpx``.

They are the blocking transports' twins with coroutine methods (the same names, arguments and
answers as :class:`~proximadb.sdk.transport.Transport`). What each call sends and how its answer
is read is not here: it is the same :class:`~proximadb.sdk.grpc_transport.Exchange` /
:class:`~proximadb.sdk.rest_transport.HttpExchange` the blocking transports send, and the
target, TLS, headers and error mapping are the same :class:`GrpcEndpoint` / :class:`RestEndpoint`.
This module only does the I/O.

Deadlines: each call carries the transport's ``timeout`` (the gRPC deadline; httpx's connect,
read and write timeouts with the ``X-Request-Timeout`` header the server also honours), and
running out of it is ``RequestTimeoutError``. Cancelling the task awaiting a call cancels the
RPC (gRPC) or drops its connection (REST: httpx never reuses a connection whose answer was not
read), so a cancelled call never leaves an answer behind for the next one.
"""

from __future__ import annotations

import ssl
from typing import Any, TypeVar

import grpc
import grpc.aio
import httpx

from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.consistency import SESSION_HEADER
from proximadb.sdk import grpc_transport as grpc_calls
from proximadb.sdk import rest_transport as rest_calls
from proximadb.sdk.grpc_transport import DEFAULT_TARGET, Exchange, GrpcEndpoint
from proximadb.sdk.rest_transport import MAX_IDLE_CONNECTIONS, HttpExchange, RestEndpoint

T = TypeVar("T")

# A failure after which an idempotent request is sent once more (a keep-alive connection the server
# dropped as it was reused); a refused connection is not one: the client's retry policy handles that.
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def _ssl_cause(exc: BaseException) -> BaseException:
    """The ssl error under an httpx error, when there is one (for RestEndpoint's TLS hint)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


class AsyncGrpcTransport(GrpcEndpoint):
    """The asyncio transport over a ``grpc.aio`` channel (create it inside the event loop that uses it)."""

    def __init__(self, target: str = DEFAULT_TARGET, timeout: float = 30.0, api_key: str | None = None,
                 max_message_bytes: int = 64 << 20, tls: bool = False, ca_file: str | None = None) -> None:
        super().__init__(target, timeout, api_key, max_message_bytes, tls, ca_file)
        if self._credentials is not None:
            self._channel = grpc.aio.secure_channel(self.target, self._credentials, options=self._options)
        else:
            self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
        self._stub = pb_grpc.ProximaDBStub(self._channel)

    async def _send(self, exchange: Exchange[T]) -> T:
        if self._closed:
            raise self._closed_error()
        method = getattr(self._stub, str(exchange.op.rpc))
        try:
            call = method(exchange.request, timeout=self.timeout, metadata=self._call_metadata(exchange))
            response = await call
            if exchange.op.write:
                self._note_session(await call.trailing_metadata())
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return exchange.decode(response)

    async def health(self) -> dict[str, Any]:
        return await self._send(grpc_calls.health())

    async def create_collection(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send(grpc_calls.create_collection(body))

    async def get_collection(self, collection: str) -> dict[str, Any]:
        return await self._send(grpc_calls.get_collection(collection))

    async def list_collections(self) -> list[dict[str, Any]]:
        return await self._send(grpc_calls.list_collections())

    async def update_collection(self, collection: str, changes: dict[str, Any]) -> dict[str, Any]:
        return await self._send(grpc_calls.update_collection(collection, changes))

    async def delete_collection(self, collection: str) -> None:
        await self._send(grpc_calls.delete_collection(collection))

    async def compact(self, collection: str) -> dict[str, Any]:
        return await self._send(grpc_calls.compact(collection))

    async def stats(self, collection: str) -> dict[str, Any]:
        return await self._send(grpc_calls.stats(collection))

    async def flush(self, collection: str) -> dict[str, Any]:
        return await self._send(grpc_calls.flush(collection))

    async def insert_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        return await self._send(grpc_calls.insert_payload(collection, payload))

    async def mutate_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        return await self._send(grpc_calls.mutate_payload(collection, payload))

    async def search_payload(self, collection: str, payload: bytes, extras: dict[str, Any] | None = None) -> bytes:
        return await self._send(grpc_calls.search_payload(collection, payload, extras))

    async def search_groups(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(grpc_calls.search_groups(collection, body))

    async def recommend(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(grpc_calls.recommend(collection, body))

    async def search_text(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(grpc_calls.search_text(collection, body))

    async def hybrid_search(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(grpc_calls.hybrid_search(collection, body))

    async def search_sparse(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(grpc_calls.search_sparse(collection, body))

    async def get_vectors(self, collection: str, ids: list[str], include_vectors: bool,
                          consistency: str | None = None) -> list[dict[str, Any]]:
        return await self._send(grpc_calls.get_vectors(collection, ids, include_vectors, self.schema_version,
                                                       consistency))

    async def count(self, collection: str, filter_json: str | None, consistency: str | None = None) -> int:
        return await self._send(grpc_calls.count(collection, filter_json, consistency))

    async def scroll(
        self, collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool,
        consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self._send(
            grpc_calls.scroll(collection, limit, cursor, filter_json, include_vectors, self.schema_version,
                              consistency)
        )

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._channel.close()


class AsyncRestTransport(RestEndpoint):
    """The asyncio transport over an ``httpx.AsyncClient`` (its own keep-alive pool; no proxies from the env)."""

    def __init__(self, url: str = "http://127.0.0.1:5678", timeout: float = 30.0, api_key: str | None = None,
                 ca_file: str | None = None, verify: bool = True) -> None:
        super().__init__(url, timeout, api_key, ca_file, verify)
        self._http = httpx.AsyncClient(
            headers=self._headers,
            timeout=httpx.Timeout(timeout if timeout and timeout > 0 else None),
            verify=self._ssl if self._ssl is not None else True,
            limits=httpx.Limits(max_keepalive_connections=MAX_IDLE_CONNECTIONS),
            trust_env=False,  # as the blocking transport: straight to the URL given
        )

    async def _send(self, exchange: HttpExchange[T]) -> T:
        body, headers = exchange.body()
        headers.update(self._session_headers(exchange))
        for attempt in (1, 2):
            if self._closed:
                raise self._closed_error()
            try:
                response = await self._http.request(
                    exchange.method, self.url + exchange.path, content=body, headers=headers
                )
            except httpx.TimeoutException as exc:
                raise self._timed_out(exchange, exc) from None
            except httpx.TransportError as exc:
                if attempt == 1 and exchange.idempotent and isinstance(exc, _DROPPED):
                    continue
                raise self._unreachable(exchange, _ssl_cause(exc)) from None
            self._note_session(response.headers.get(SESSION_HEADER))
            return exchange.decode(response.status_code, response.headers.get("Content-Type", ""), response.content)
        raise AssertionError("unreachable")  # pragma: no cover

    async def health(self) -> dict[str, Any]:
        return await self._send(rest_calls.health())

    async def create_collection(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._send(rest_calls.create_collection(body))

    async def get_collection(self, collection: str) -> dict[str, Any]:
        return await self._send(rest_calls.get_collection(collection))

    async def list_collections(self) -> list[dict[str, Any]]:
        return await self._send(rest_calls.list_collections())

    async def update_collection(self, collection: str, changes: dict[str, Any]) -> dict[str, Any]:
        return await self._send(rest_calls.update_collection(collection, changes))

    async def delete_collection(self, collection: str) -> None:
        await self._send(rest_calls.delete_collection(collection))

    async def compact(self, collection: str) -> dict[str, Any]:
        return await self._send(rest_calls.compact(collection))

    async def stats(self, collection: str) -> dict[str, Any]:
        return await self._send(rest_calls.stats(collection))

    async def flush(self, collection: str) -> dict[str, Any]:
        return await self._send(rest_calls.flush(collection))

    async def insert_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        return await self._send(rest_calls.insert_payload(collection, payload))

    async def mutate_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        return await self._send(rest_calls.mutate_payload(collection, payload))

    async def search_payload(self, collection: str, payload: bytes, extras: dict[str, Any] | None = None) -> bytes:
        return await self._send(rest_calls.search_payload(collection, payload, extras))

    async def search_groups(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(rest_calls.search_groups(collection, body))

    async def recommend(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(rest_calls.recommend(collection, body))

    async def search_text(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(rest_calls.search_text(collection, body))

    async def hybrid_search(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(rest_calls.hybrid_search(collection, body))

    async def search_sparse(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._send(rest_calls.search_sparse(collection, body))

    async def get_vectors(self, collection: str, ids: list[str], include_vectors: bool,
                          consistency: str | None = None) -> list[dict[str, Any]]:
        return await self._send(rest_calls.get_vectors(collection, ids, include_vectors, consistency))

    async def count(self, collection: str, filter_json: str | None, consistency: str | None = None) -> int:
        return await self._send(rest_calls.count(collection, filter_json, consistency))

    async def scroll(
        self, collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool,
        consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self._send(rest_calls.scroll(collection, limit, cursor, filter_json, include_vectors, consistency))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._http.aclose()


__all__ = ["AsyncGrpcTransport", "AsyncRestTransport"]
