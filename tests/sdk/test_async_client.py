"""The asyncio SDK (``proximadb.connect_async``) against a real daemon, over gRPC and REST.

Every call gives the embedded engine's answers and typed errors (the one-API scenario of
tests/_api_scenario.py, run on the async client); health/stats/compact give the blocking
client's dicts; bad input is refused before it leaves; ``connect_async`` falls back to REST
when the advertised gRPC port refuses or never answers; a stopped daemon (SIGSTOP) turns a
call into ``RequestTimeoutError`` at the client's deadline; a cancelled in-flight search or
insert leaves the client usable and answering right; safe calls are retried across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from _api_scenario import scenario
from _daemon import Daemon

import proximadb
from proximadb import errors
from proximadb.sdk import AsyncClient, connect_async_grpc, connect_async_rest
from proximadb.sdk.async_client import Connecting

PROTOCOLS = ["grpc", "rest"]
DIM = 16


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("async-sdk") / "data") as d:
        yield d


@pytest.fixture(scope="module")
def parity_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon of its own: the scenario lists the collections, so no other test's may be there."""
    with Daemon(tmp_path_factory.mktemp("async-parity") / "data") as d:
        yield d


@pytest.fixture(scope="module")
def embedded_answers(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    with proximadb.connect_embedded(tmp_path_factory.mktemp("embedded") / "data", fsync="never") as db:
        return scenario(db)


def _connect(daemon: Daemon, protocol: str, **options: Any) -> Connecting:
    if protocol == "grpc":
        return connect_async_grpc(daemon.grpc_target, **options)
    return connect_async_rest(daemon.rest_url, **options)


def _vecs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@contextlib.contextmanager
def paused(daemon: Daemon) -> Iterator[None]:
    """The daemon (master and worker) stopped with SIGSTOP: connections open, nothing answered, until SIGCONT."""
    assert daemon.proc is not None
    os.killpg(daemon.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(daemon.proc.pid, signal.SIGCONT)


class EventLoopThread:
    """An event loop in a thread, so the blocking scenario can drive the async client one call at a time."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


class Blocking:
    """The async client's methods as blocking calls (each coroutine run to its end on the loop thread)."""

    def __init__(self, client: AsyncClient, loop: EventLoopThread) -> None:
        self._client = client
        self._loop = loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        return lambda *args, **kwargs: self._loop.run(method(*args, **kwargs))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_call_gives_the_answers_and_typed_errors_of_the_embedded_engine(
    protocol: str, parity_daemon: Daemon, embedded_answers: list[Any]
) -> None:
    loop = EventLoopThread()

    async def opened() -> AsyncClient:
        return await _connect(parity_daemon, protocol)

    try:
        client = loop.run(opened())
        assert isinstance(client, AsyncClient) and client.protocol == protocol
        try:
            answers = scenario(Blocking(client, loop))  # type: ignore[arg-type]
        finally:
            loop.run(client.close())
    finally:
        loop.close()
    for i, (remote, local) in enumerate(zip(answers, embedded_answers, strict=True)):
        assert remote == local, f"step {i} differs"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_stats_and_compaction_are_the_blocking_clients_dicts(protocol: str, daemon: Daemon) -> None:
    name = f"hsc-{protocol}"

    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with _connect(daemon, protocol) as client:
            health = await client.health()
            await client.create_collection(name, DIM, distance_metric="euclidean")
            await client.insert_vectors(name, ids=[f"c{i}" for i in range(50)], vectors=_vecs(50))
            assert await client.delete_vectors(name, [f"c{i}" for i in range(25)]) == 25
            return health, await client.stats(name), await client.compact(name)

    health, stats, report = asyncio.run(main())
    connect = proximadb.connect_grpc if protocol == "grpc" else proximadb.connect_rest
    with connect(daemon.grpc_target if protocol == "grpc" else daemon.rest_url) as blocking:
        assert health["status"] == "ok" and health["version"] == proximadb.__version__
        assert list(blocking.health()) == list(health)
        assert blocking.stats(name) == stats and stats["vectors"] == 25
        again = blocking.compact(name)
        assert list(again) == list(report) and report["collection"] == name
        assert report["segments_before"] == stats["segments"] == report["segments_after"]  # memtable only


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_input_is_a_typed_error_and_changes_nothing(protocol: str, daemon: Daemon) -> None:
    name = f"bad-{protocol}"

    async def main() -> None:
        client = await _connect(daemon, protocol)
        try:
            await client.create_collection(name, DIM, distance_metric="euclidean")  # vectors stored as given
            await client.insert_vectors(name, ids=["a", "b"], vectors=_vecs(2), metadatas=[{"g": 1}, {"g": 2}])
            with pytest.raises(errors.ValidationError, match=r"unknown search option.*bogus"):
                await client.search(name, _vecs(1)[0], k=1, bogus=True)
            with pytest.raises(errors.ValidationError, match="2-D matrix"):  # a 1-D vector is one vector
                await client.insert_vectors(name, ids=["x"], vectors=np.ones((1, 1, DIM)))
            with pytest.raises(errors.ValidationError, match="exactly one of ids or filter"):
                await client.delete_vectors(name)
            with pytest.raises(errors.DimensionMismatchError):
                await client.insert_vectors(name, ids=["y"], vectors=np.ones((1, DIM + 1)))
            with pytest.raises(errors.InvalidVectorError):
                await client.insert_vectors(name, ids=["z"], vectors=np.full((1, DIM), np.nan))
            with pytest.raises(errors.InvalidFilterError):
                await client.count(name, filter={"g": {"$nope": 1}})
            with pytest.raises(errors.ValidationError, match="limit"):
                await client.scroll(name, limit=0)
            with pytest.raises(errors.VectorNotFoundError):
                await client.update_vector(name, "absent", vector=_vecs(1)[0])
            with pytest.raises(errors.CollectionNotFoundError):
                await client.insert_vectors("no-such-collection", ids=["a"], vectors=_vecs(1))
            with pytest.raises(errors.CollectionExistsError):
                await client.create_collection(name, DIM)
            records, cursor = await client.scroll(name, include_vectors=True)
            assert [r["id"] for r in records] == ["a", "b"] and cursor is None
            assert [r["metadata"] for r in records] == [{"g": 1}, {"g": 2}]
            np.testing.assert_array_equal(np.stack([r["vector"] for r in records]), _vecs(2))
        finally:
            await client.close()

    asyncio.run(main())


def test_connect_async_prefers_grpc_and_a_closed_client_refuses_calls(daemon: Daemon) -> None:
    async def main() -> None:
        client = await proximadb.connect_async(daemon.rest_url, retries=0)
        assert client.protocol == "grpc" and client.url == f"grpc://{daemon.grpc_target}"
        assert (await client.health())["status"] == "ok"
        await client.close()
        with pytest.raises(errors.UnavailableError, match="closed"):
            await client.health()
        async with proximadb.connect_async(f"grpc://{daemon.grpc_target}") as grpc_client:
            assert grpc_client.protocol == "grpc"
        rest = await connect_async_rest(daemon.rest_url, retries=0)
        await rest.close()
        with pytest.raises(errors.UnavailableError, match="closed"):
            await rest.count("anything")
        with mock.patch("proximadb.sdk.calls.SUPPORTED_SCHEMA_VERSIONS", (99,)):  # no version in common
            for protocol in PROTOCOLS:
                with pytest.raises(errors.UnsupportedSchemaVersionError, match="upgrade the older side"):
                    await _connect(daemon, protocol)
        with pytest.raises(errors.UnavailableError):
            await connect_async_grpc("127.0.0.1:1", timeout=1, retries=0)
        with pytest.raises(errors.UnavailableError):
            await connect_async_rest("http://127.0.0.1:1", timeout=1, retries=0)

    asyncio.run(main())


class Relay:
    """Bytes relayed from ``host``:(a free port) to the daemon's REST port: its REST API at another address."""

    def __init__(self, host: str, port: int) -> None:
        self.port = port
        self.server = socket.create_server((host, 0))
        self.url = f"http://{host}:{self.server.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.port))
            except OSError:
                return
            self.sockets += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()
        for s in self.sockets:
            s.close()


@pytest.mark.parametrize("grpc_port", ["refused", "silent"])
@pytest.mark.parametrize("client", ["async", "blocking"])
def test_rest_is_the_fallback_when_the_advertised_grpc_port_does_not_answer(
    client: str, grpc_port: str, daemon: Daemon
) -> None:
    # The daemon listens on 127.0.0.1 only; reached through 127.0.0.2, its advertised gRPC port there is
    # closed (refused) or a listener that never accepts (silent: the probe's deadline decides).
    relay = Relay("127.0.0.2", daemon.rest_port)
    silent = socket.create_server(("127.0.0.2", daemon.grpc_port)) if grpc_port == "silent" else None
    try:
        if client == "async":
            async def main() -> tuple[str, int]:
                async with proximadb.connect_async(relay.url) as c:
                    return c.protocol, len(await c.list_collections())

            protocol, listed = asyncio.run(main())
        else:
            with proximadb.connect(relay.url) as c:
                protocol, listed = c.protocol, len(c.list_collections())
        assert protocol == "rest"
        with proximadb.connect_rest(daemon.rest_url) as direct:
            assert listed == len(direct.list_collections())
    finally:
        relay.close()
        if silent is not None:
            silent.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_call_past_the_deadline_is_a_timeout_and_the_client_carries_on(protocol: str, daemon: Daemon) -> None:
    name = f"deadline-{protocol}"

    async def main() -> None:
        async with _connect(daemon, protocol, timeout=1.0) as client:
            await client.create_collection(name, DIM)
            await client.insert_vectors(name, ids=["a"], vectors=_vecs(1))
            with paused(daemon):
                started = time.monotonic()
                with pytest.raises(errors.RequestTimeoutError):
                    await client.count(name)
                assert 0.9 <= time.monotonic() - started < 30
            assert await client.count(name) == 1
            assert [h["id"] for h in await client.search(name, _vecs(1)[0], k=1)] == ["a"]

    asyncio.run(main())


async def _is_blocked(task: asyncio.Task[Any]) -> bool:
    """True when ``task`` is still waiting half a second on (a paused daemon): its call is in flight."""
    done, _ = await asyncio.wait([task], timeout=0.5)
    return not done


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cancelling_an_in_flight_search_leaves_the_client_usable(protocol: str, daemon: Daemon) -> None:
    name = f"cancel-search-{protocol}"
    data = _vecs(2000, seed=1)

    async def main() -> None:
        async with _connect(daemon, protocol) as client:
            await client.create_collection(name, DIM, distance_metric="euclidean")
            await client.insert_vectors(name, ids=[f"v{i}" for i in range(len(data))], vectors=data)
            with paused(daemon):
                task = asyncio.create_task(client.search_batch(name, _vecs(1000, seed=2), k=100))
                assert await _is_blocked(task)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            # The next calls get their own answers (not the cancelled search's), on the same client.
            for i in (5, 17, 1999):
                hits = await client.search(name, data[i], k=1)
                assert hits[0]["id"] == f"v{i}"
            assert await client.count(name) == len(data)

    asyncio.run(main())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cancelling_an_in_flight_insert_applies_whole_batches_and_the_client_carries_on(
    protocol: str, daemon: Daemon
) -> None:
    name = f"cancel-insert-{protocol}"
    batch = 500

    async def main() -> None:
        async with _connect(daemon, protocol) as client:
            await client.create_collection(name, DIM)
            with paused(daemon):
                task = asyncio.create_task(client.insert_vectors(
                    name, ids=[f"v{i}" for i in range(10 * batch)], vectors=_vecs(10 * batch), batch_size=batch
                ))
                assert await _is_blocked(task)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            # The batch in flight may still land (the daemon had it); a batch is never applied in part,
            # and no later batch was sent.
            assert await client.count(name) in (0, batch)
            assert await client.insert_vector(name, _vecs(1, seed=9)[0], id="after") == "after"
            assert (await client.get_vector(name, "after", include_vector=False)) is not None

    asyncio.run(main())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reads_and_writes_are_retried_until_a_restarted_daemon_answers(protocol: str, tmp_path: Path) -> None:
    """Writes too: each carries a request id (proximadb/idempotency.py), so resending one is safe."""
    d = Daemon(tmp_path / "data").start()
    try:
        async def main() -> None:
            async with _connect(d, protocol, retries=9, backoff=0.25, timeout=5) as client:
                await client.create_collection("r", DIM)
                await client.insert_vectors("r", ids=["a", "b"], vectors=_vecs(2))
                await asyncio.to_thread(d.stop)
                inserting = asyncio.create_task(client.insert_vectors("r", ids=["c"], vectors=_vecs(1)))
                counting = asyncio.create_task(client.count("r"))
                assert await _is_blocked(inserting) and await _is_blocked(counting)  # retrying, not failed
                await asyncio.to_thread(d.start)
                assert (await inserting)["ids"] == ["c"]
                assert await counting in (2, 3)  # before or after the insert got through
                assert await client.count("r") == 3

        asyncio.run(main())
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
