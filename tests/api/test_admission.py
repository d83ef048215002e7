"""Concurrency limit, request timeouts and configured limits, on a real daemon and in-process.

* Over ``max_concurrent_requests`` in flight (both protocols together), a
  request is refused at once: HTTP 429 with Retry-After, gRPC RESOURCE_EXHAUSTED,
  the SDK's ResourceExhaustedError; probes still answer; the SDK's retry gets
  through once slots free up. Slots are held here by clients that stall while
  sending a body, which is deterministic (no race on timing).
* A client that stalls mid-body gets 408 after ``request_timeout``; one that
  stalls mid-headers is disconnected; the daemon stays healthy.
* A request that cannot get its collection within its deadline (the server's,
  or the gRPC client's, or X-Request-Timeout) gets 504 / DEADLINE_EXCEEDED and
  changes nothing, even once the collection is free again.
* Limits given as flags reach both protocols.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from _daemon import Daemon
from falcon import testing

import proximadb
from proximadb import deadline
from proximadb.api.grpc import ERROR_CODE_METADATA
from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc._generated import proximadb_pb2_grpc as pb_grpc
from proximadb.api.grpc.server import build_server
from proximadb.api.rest import create_app
from proximadb.codec.payload import encode_insert
from proximadb.errors import (
    PayloadTooLargeError,
    RequestTimeoutError,
    ResourceExhaustedError,
    ValidationError,
)
from proximadb.service.unified import UnifiedAvroService
from proximadb.storage.engine import Engine

DIM = 4
STALL_TIMEOUT = 3.0


def vecs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("admission")
    d = Daemon(root / "data", "--max-concurrent-requests", "2", "--request-timeout", str(STALL_TIMEOUT),
               "--max-batch", "5", "--max-k", "7", "--max-id-bytes", "16", "--max-metadata-bytes", "64",
               "--max-dimension", "8")
    with d:
        with proximadb.connect_rest(d.rest_url) as client:
            client.create_collection("c", dimension=DIM)
            client.insert_vectors("c", ids=["a", "b"], vectors=vecs(2))
        yield d


def metric(d: Daemon, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", d.rest_port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


class StalledBody:
    """A POST that announces a body and sends only its first bytes: it holds an admission slot."""

    def __init__(self, d: Daemon) -> None:
        self.sock = socket.create_connection(("127.0.0.1", d.rest_port), timeout=30)
        body = json.dumps({"vectors": [{"id": "stall", "vector": [0.0] * DIM}]}).encode()
        self.sock.sendall(
            b"POST /collections/c/vectors/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5]
        )

    def answer(self) -> bytes:
        chunks = []
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                break
        self.sock.close()
        return b"".join(chunks)


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_over_the_limit_is_refused_at_once_on_both_protocols_and_retried(daemon: Daemon) -> None:
    rejected_before = metric(daemon, "proximadb_requests_rejected_total")
    stalled = [StalledBody(daemon), StalledBody(daemon)]
    wait_for(lambda: metric(daemon, "proximadb_requests_in_flight") == 2)

    conn = http.client.HTTPConnection("127.0.0.1", daemon.rest_port, timeout=10)
    started = time.monotonic()
    conn.request("POST", "/collections/c/search", body=json.dumps({"vector": [0.0] * DIM, "k": 1}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 429 and resp.getheader("Retry-After") == "1"
    assert body["error"]["code"] == "resource_exhausted"
    assert "max_concurrent_requests" in body["error"]["message"]
    assert time.monotonic() - started < 2.0  # refused, not queued
    conn.close()

    with proximadb.connect_grpc(daemon.grpc_target) as g, proximadb.connect_rest(daemon.rest_url) as r:
        for client in (g, r):
            client.retries = 0
            with pytest.raises(ResourceExhaustedError, match="max_concurrent_requests"):
                client.count("c")
            with pytest.raises(ResourceExhaustedError):
                client.insert_vectors("c", ids=["refused"], vectors=vecs(1))
        assert daemon.health() is not None  # probes bypass admission
        assert metric(daemon, "proximadb_requests_rejected_total") >= rejected_before + 5

        # The SDK retries a refused call (even an insert: a refusal did nothing) until a slot frees up.
        g.retries, g.backoff = 8, 0.2
        got = g.insert_vectors("c", ids=["after-retry"], vectors=vecs(1))
        assert got["ids"] == ["after-retry"]

    for s in stalled:  # the stalled clients were answered 408 when their budget ran out
        assert s.answer().startswith(b"HTTP/1.1 408")
    wait_for(lambda: metric(daemon, "proximadb_requests_in_flight") == 0)
    with proximadb.connect_rest(daemon.rest_url) as r:
        assert {x["id"] for x in r.get_vectors("c", ["refused", "stall", "after-retry"])} == {"after-retry"}


def test_a_client_stalling_in_its_headers_is_disconnected(daemon: Daemon) -> None:
    sock = socket.create_connection(("127.0.0.1", daemon.rest_port), timeout=STALL_TIMEOUT * 4)
    sock.sendall(b"POST /collections/c/search HTTP/1.1\r\nHost: x\r\n")  # and nothing more
    started = time.monotonic()
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        data = b""
    waited = time.monotonic() - started
    sock.close()
    assert not data.startswith(b"HTTP/1.1 2")
    assert STALL_TIMEOUT * 0.8 <= waited < STALL_TIMEOUT * 3, waited
    assert daemon.health() is not None
    assert "stalled mid-request" in daemon.logs()
    assert "Traceback" not in daemon.logs()


def test_flag_limits_reach_both_protocols(daemon: Daemon) -> None:
    for connect, target in ((proximadb.connect_grpc, daemon.grpc_target), (proximadb.connect_rest, daemon.rest_url)):
        with connect(target) as client:
            before = client.count("c")
            with pytest.raises(PayloadTooLargeError, match="max_batch limit of 5"):
                client.insert_vectors("c", ids=[f"n{i}" for i in range(6)], vectors=vecs(6))
            with pytest.raises(ValidationError, match="max_k"):
                client.search("c", vecs(1)[0], k=8)
            assert len(client.search("c", vecs(1)[0], k=7)) >= 1
            with pytest.raises(ValidationError, match="max_id_bytes"):
                client.insert_vectors("c", ids=["x" * 17], vectors=vecs(1))
            with pytest.raises(ValidationError, match="max_metadata_bytes"):
                client.insert_vectors("c", ids=["m"], vectors=vecs(1), metadatas=[{"t": "y" * 64}])
            with pytest.raises(ValidationError, match="max_dimension"):
                client.create_collection("wide", dimension=9)
            assert client.count("c") == before


# ------------------------------------------------------------------ deadlines, in-process
@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine.open(tmp_path / "data", fsync="never")
    eng.create_collection("c", DIM)
    eng.collection("c").insert(ids=["a"], vectors=vecs(1))
    yield eng
    eng.close()


def holding(lock: threading.RLock, seconds: float) -> threading.Thread:
    """Hold ``lock`` from another thread for ``seconds`` (as a long flush would)."""
    taken = threading.Event()

    def run() -> None:
        with lock:
            taken.set()
            time.sleep(seconds)

    t = threading.Thread(target=run)
    t.start()
    taken.wait()
    return t


def test_grpc_client_deadline_is_the_servers_budget(engine: Engine) -> None:
    service = UnifiedAvroService(engine, request_timeout=30.0)
    server, port = build_server(service, "127.0.0.1", 0, max_message_bytes=1 << 20, max_workers=4)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.ProximaDBStub(channel)
        col = engine.collection("c")
        holder = holding(col._lock, 1.5)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.Insert(pb.PayloadRequest(collection="c", payload=encode_insert(ids=["late"], vectors=vecs(1))),
                        timeout=0.4)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.2
        holder.join()
        time.sleep(0.3)  # had the server kept going after the client gave up, the write would land now
        assert col.get("late") is None and col.count() == 1
        codes = dict(info.value.trailing_metadata() or ())
        assert codes.get(ERROR_CODE_METADATA) in (None, "timeout")  # whichever side noticed first
    finally:
        channel.close()
        server.stop(None).wait()


def test_rest_timeout_header_and_server_timeout(engine: Engine) -> None:
    service = UnifiedAvroService(engine, request_timeout=0.3)
    client = testing.TestClient(create_app(service))
    col = engine.collection("c")
    body = {"vectors": [{"id": "late", "vector": [1.0] * DIM}]}
    for headers, budget in (({}, 0.3), ({"X-Request-Timeout": "0.2"}, 0.2)):
        holder = holding(col._lock, 1.0)
        started = time.monotonic()
        resp = client.simulate_post("/collections/c/vectors/batch", json=body, headers=headers)
        elapsed = time.monotonic() - started
        holder.join()
        assert resp.status_code == 504, resp.text
        assert resp.json["error"]["code"] == "timeout"
        assert f"after {budget:g}s" in resp.json["error"]["message"]
        assert "nothing was changed" in resp.json["error"]["message"]
        assert budget * 0.8 <= elapsed < 0.9
    assert col.get("late") is None
    for bad in ("0", "-1", "nan", "soon", "1e9"):
        resp = client.simulate_get("/collections/c", headers={"X-Request-Timeout": bad})
        assert resp.status_code == 400 and "X-Request-Timeout" in resp.json["error"]["message"]
    assert client.simulate_get("/health", headers={"X-Request-Timeout": "bad"}).status_code == 200  # probe


def test_search_gives_up_between_segments_not_before_the_first(engine: Engine) -> None:
    col = engine.collection("c")
    for i in range(3):
        col.insert(ids=[f"s{i}-{j}" for j in range(20)], vectors=vecs(20, seed=i + 1))
        col.flush()
    assert len(col.segments) >= 3
    with deadline.scope(1e-9):
        with pytest.raises(RequestTimeoutError, match="searching collection 'c'"):
            col.search(vecs(1)[0], k=5)
        assert col.get("a") is not None  # the lock is free: taken even past the deadline
    assert len(col.search(vecs(1)[0], k=5)) == 5  # no scope, no deadline


def test_a_search_waiting_for_a_busy_collection_gives_up_at_its_deadline(engine: Engine) -> None:
    """The collection lock a request waits for (deadline.locked) words its timeout, naming the collection."""
    col = engine.collection("c")
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with col._lock:  # as a long flush would, until the test lets go
            taken.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(60)
        with deadline.scope(0.05), pytest.raises(
                RequestTimeoutError, match=r"after 0.05s while waiting for collection 'c' \(busy with a flush"):
            col.search(vecs(1)[0], k=5)
    finally:
        release.set()
        holder.join()
    with deadline.scope(30):
        assert len(col.search(vecs(1)[0], k=5)) == min(5, col.count())  # a free lock: no wait
