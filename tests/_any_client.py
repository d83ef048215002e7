"""One test scenario for every client: embedded, blocking over gRPC / REST, asyncio over gRPC / REST.

A scenario is an ``async def`` that wraps each client call in ``await maybe(...)``: a blocking client's
answer is used as is, an asyncio client's coroutine is awaited. :func:`opened` gives the client of a kind.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _daemon import Daemon

import proximadb
from proximadb import errors
from proximadb.sdk import connect_async_grpc, connect_async_rest

KINDS = ["embedded", "grpc", "rest", "async-grpc", "async-rest"]
REMOTE_KINDS = KINDS[1:]


async def maybe(value: Any) -> Any:
    """The value, awaited when the client is asynchronous."""
    return await value if inspect.isawaitable(value) else value


async def raises(kind: type[errors.ProximaDBError], call: Callable[[], Any]) -> str:
    """``call()`` (awaited if need be) raises ``kind``; its message."""
    with pytest.raises(kind) as caught:
        await maybe(call())
    return str(caught.value)


@contextlib.asynccontextmanager
async def opened(kind: str, daemon: Daemon | None, data_dir: Path) -> AsyncIterator[Any]:
    """A client of ``kind``: the embedded engine on ``data_dir``, or ``daemon`` over one protocol."""
    if kind == "embedded":
        with proximadb.connect_embedded(data_dir, fsync="never") as db:
            yield db
        return
    assert daemon is not None
    if kind in ("grpc", "rest"):
        connect = proximadb.connect_grpc if kind == "grpc" else proximadb.connect_rest
        with connect(daemon.grpc_target if kind == "grpc" else daemon.rest_url) as client:
            yield client
        return
    opening = connect_async_grpc(daemon.grpc_target) if kind == "async-grpc" else connect_async_rest(daemon.rest_url)
    async with opening as aclient:
        yield aclient


def daemons_per_remote_kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    """For a module fixture: one daemon per remote kind (each scenario owns its daemon's collection list)."""
    started: dict[str, Daemon] = {}
    try:
        for kind in REMOTE_KINDS:
            started[kind] = Daemon(tmp_path_factory.mktemp(kind) / "data").start()
        yield started
    finally:
        for d in started.values():
            d.stop()
