"""One client, several node addresses: ``connect_grpc([a, b, c])`` / ``connect_rest([...])`` / ``connect([...])``,
and the asyncio ``connect_async([...])`` / ``connect_async_grpc([...])`` / ``connect_async_rest([...])``.

:class:`FailoverTransport` (blocking) and :class:`AsyncFailoverTransport` (asyncio) follow one policy,
:class:`FailoverPolicy`. Each speaks to one address at a time, the first at the start. When a call there
fails with :class:`~proximadb.errors.UnavailableError` (connection refused, the node gone, gRPC
UNAVAILABLE, HTTP 503):

* a read (search, get, count, scroll, health, collection info, ...) is sent to the next address at once,
  and so on round the list; when no address answers, one UnavailableError names every address tried;
* any other call (insert, upsert, delete, collection changes) is not resent here: the client moves to
  the next address and raises, so :class:`~proximadb.sdk.client.ProximaDBClient`'s own retries
  (only for calls safe to repeat, :func:`proximadb.sdk.calls.retry_pause`) go to the next node.

The address that answered stays the current one. Transports are made on first use, one per address,
and kept until :meth:`close`. Every address shares one session (:class:`~proximadb.consistency.SessionTokens`):
a token one node returned is sent to the next.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from proximadb.consistency import SessionTokens
from proximadb.errors import UnavailableError, ValidationError

READS = frozenset({
    "health", "get_collection", "list_collections", "stats", "get_vectors", "count", "scroll",
    "search_payload", "search_groups", "recommend", "search_text", "hybrid_search", "search_sparse",
})


class FailoverPolicy:
    """The addresses, their transports (made on first use) and which one is current; see the module's
    documentation. Subclasses run the calls (blocking or asyncio)."""

    def __init__(self, addresses: Sequence[str], make: Callable[[str], Any]) -> None:
        if isinstance(addresses, str) or not addresses:
            raise ValidationError("give one address or a non-empty list of addresses")
        self.addresses = [str(a) for a in addresses]
        self._make = make
        self._transports: dict[int, Any] = {}
        self._current = 0
        self._lock = threading.Lock()
        self._schema_version = 1
        self.session = SessionTokens()  # one session for every address (proximadb.consistency)
        first = self._transport(0)
        self.protocol: str = first.protocol

    def _transport(self, index: int) -> Any:
        with self._lock:
            if index not in self._transports:
                transport = self._make(self.addresses[index])
                transport.schema_version = self._schema_version
                transport.session = self.session
                self._transports[index] = transport
            return self._transports[index]

    @property
    def url(self) -> str:
        return str(self._transport(self._current).url)

    @property
    def schema_version(self) -> int:
        return self._schema_version

    @schema_version.setter
    def schema_version(self, version: int) -> None:
        with self._lock:
            self._schema_version = version
            for transport in self._transports.values():
                transport.schema_version = version

    def _order(self, method: str) -> list[int]:
        """The addresses to try for ``method``, in turn: every one from the current for a read, else the current."""
        start = self._current
        tries = len(self.addresses) if method in READS else 1
        return [(start + step) % len(self.addresses) for step in range(tries)]

    def _failed(self, index: int, exc: UnavailableError, failures: list[str]) -> None:
        failures.append(f"{self.addresses[index]}: {exc}")
        self._current = (index + 1) % len(self.addresses)

    @staticmethod
    def _none_answered(failures: list[str]) -> UnavailableError:
        return UnavailableError(f"no ProximaDB node answered ({'; '.join(failures)})")

    def _take_transports(self) -> list[Any]:
        with self._lock:
            transports, self._transports = list(self._transports.values()), {}
        return transports

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, *args, **kwargs)

        return call

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class FailoverTransport(FailoverPolicy):
    """A blocking :class:`~proximadb.sdk.transport.Transport` over ``addresses``."""

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        order = self._order(method)
        failures: list[str] = []
        for index in order:
            try:
                answer = getattr(self._transport(index), method)(*args, **kwargs)
            except UnavailableError as exc:
                self._failed(index, exc, failures)
                if len(order) == 1:
                    raise
                continue
            self._current = index
            return answer
        raise self._none_answered(failures)

    def close(self) -> None:
        for transport in self._take_transports():
            transport.close()


class AsyncFailoverTransport(FailoverPolicy):
    """An asyncio transport (:mod:`proximadb.sdk.async_transports`) over ``addresses``."""

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        order = self._order(method)
        failures: list[str] = []
        for index in order:
            try:
                answer = await getattr(self._transport(index), method)(*args, **kwargs)
            except UnavailableError as exc:
                self._failed(index, exc, failures)
                if len(order) == 1:
                    raise
                continue
            self._current = index
            return answer
        raise self._none_answered(failures)

    async def close(self) -> None:
        for transport in self._take_transports():
            await transport.close()
