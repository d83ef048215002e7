"""RestTransport (the SDK's HTTP transport) against the real REST app on a real socket.

The app runs under ``wsgiref`` (stdlib, threaded) in two ways: as shipped
(HTTP/1.0, one request per connection) and with a small HTTP/1.1 keep-alive
handler (below) that, like gunicorn, drains a body the app did not read.
Dropped keep-alive connections and timeouts use a tiny raw-socket server that
misbehaves on purpose.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

import numpy as np
import pytest

from proximadb.api.rest import create_app
from proximadb.codec.payload import decode_payload, encode_insert, encode_payload
from proximadb.errors import (
    AlreadyExistsError,
    CollectionExistsError,
    CollectionNotFoundError,
    DimensionMismatchError,
    DiskFullError,
    InvalidFilterError,
    MalformedPayloadError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ProximaDBError,
    RequestTimeoutError,
    UnavailableError,
    UnknownOperationError,
    UnsupportedSchemaVersionError,
    ValidationError,
    VectorExistsError,
)
from proximadb.free_ports import free_port
from proximadb.sdk.rest_transport import RestTransport
from proximadb.sdk.transport import Transport
from proximadb.service.unified import Limits, UnifiedAvroService
from proximadb.storage.engine import Engine

LIMIT = 256 * 1024


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CountingReader:
    """wsgi.input limited to the request's Content-Length, remembering how much the app read."""

    def __init__(self, raw: Any, length: int) -> None:
        self.raw = raw
        self.left = length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.raw.read(size) if size else b""
        self.left -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(self.left if size < 0 else min(size, self.left)) if self.left else b""
        self.left -= len(data)
        return data

    def drain(self) -> None:
        while self.left and self.read(65536):
            pass


class _KeepAliveHandler(_QuietHandler):
    """wsgiref's handler, but HTTP/1.1 with keep-alive: several requests per connection."""

    protocol_version = "HTTP/1.1"

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or not self.parse_request():
                return
            body = _CountingReader(self.rfile, int(self.headers.get("Content-Length") or 0))
            handler = ServerHandler(body, self.wfile, self.get_stderr(), self.get_environ(), multithread=True)
            handler.http_version = "1.1"
            handler.request_handler = self  # type: ignore[attr-defined]
            handler.run(self.server.get_app())  # type: ignore[attr-defined]
            body.drain()


class _Recorder:
    """WSGI wrapper remembering what the server saw (Authorization, client ports)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.authorization: list[str | None] = []
        self.client_ports: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.authorization.append(environ.get("HTTP_AUTHORIZATION"))
        self.client_ports.add(str(environ.get("REMOTE_PORT")))
        return self.app(environ, start_response)


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[UnifiedAvroService]:
    engine = Engine.open(tmp_path / "data", fsync="never")
    yield UnifiedAvroService(engine, limits=Limits(max_request_bytes=LIMIT))
    engine.close()


@pytest.fixture()
def recorder(service: UnifiedAvroService) -> _Recorder:
    return _Recorder(create_app(service))


def _serve(app: Any, handler: type[WSGIRequestHandler]) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(params=["http1.0", "keep-alive"])
def url(request: pytest.FixtureRequest, recorder: _Recorder) -> Iterator[str]:
    yield from _serve(recorder, _QuietHandler if request.param == "http1.0" else _KeepAliveHandler)


@pytest.fixture()
def transport(url: str) -> Iterator[RestTransport]:
    with RestTransport(url, timeout=10.0) as t:
        yield t


def _hits(result_frame: bytes) -> list[list[str]]:
    _version, op, datum = decode_payload(result_frame)
    assert op == "search_result"
    return [[h["id"] for h in hits] for hits in datum["results"]]


# ---------------------------------------------------------------------------- every Transport method


def test_is_a_transport(transport: RestTransport) -> None:
    t: Transport = transport
    assert t.protocol == "rest" and t.url.startswith("http://127.0.0.1:")


def test_every_method(transport: RestTransport) -> None:
    health = transport.health()
    assert health["status"] == "ok" and 1 in health["schema_versions"]

    created = transport.create_collection({"name": "docs", "dimension": 4, "distance_metric": "euclidean"})
    assert created["name"] == "docs" and created["dimension"] == 4
    assert transport.get_collection("docs")["uuid"] == created["uuid"]
    assert transport.get_collection(created["uuid"])["name"] == "docs"
    assert [c["name"] for c in transport.list_collections()] == ["docs"]
    assert transport.update_collection("docs", {"description": "hello"})["description"] == "hello"

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((50, 4)).astype(np.float32)
    ids = [f"v{i:02d}" for i in range(50)]
    metadata = [{"even": i % 2 == 0, "i": i} for i in range(50)]
    result = transport.insert_payload("docs", encode_insert(ids=ids, vectors=vectors, metadata=metadata))
    assert result == {"count": 50, "ids": ids}

    records = transport.get_vectors("docs", ["v03", "missing", "v01"], True)
    assert [r["id"] for r in records] == ["v03", "v01"]
    assert records[0]["vector"].dtype == np.float32 and np.array_equal(records[0]["vector"], vectors[3])
    assert records[0]["metadata"] == {"even": False, "i": 3} and isinstance(records[0]["timestamp"], int)
    assert "vector" not in transport.get_vectors("docs", ["v03"], False)[0]

    assert transport.count("docs", None) == 50
    assert transport.count("docs", json.dumps({"even": True})) == 25
    assert transport.count("docs", json.dumps({"i": {"$in": list(range(2000))}})) == 50  # long filter: POST form

    page, cursor = transport.scroll("docs", 20, None, None, False)
    assert [r["id"] for r in page] == ids[:20] and cursor == "v19" and "vector" not in page[0]
    seen = [r["id"] for r in page]
    while cursor is not None:
        page, cursor = transport.scroll("docs", 20, cursor, None, True)
        assert all(r["vector"].dtype == np.float32 for r in page)
        seen += [r["id"] for r in page]
    assert seen == ids
    page, cursor = transport.scroll("docs", 100, None, json.dumps({"i": {"$lt": 3}}), True)
    assert [r["id"] for r in page] == ["v00", "v01", "v02"] and cursor is None
    assert np.array_equal(page[2]["vector"], vectors[2])

    query = encode_payload("vector_search", {"queries": [vectors[5].tolist(), vectors[9].tolist()], "k": 3,
                                             "filter": None, "include_vectors": True})
    frame = transport.search_payload("docs", query)
    assert isinstance(frame, bytes)
    hits = _hits(frame)
    assert [h[0] for h in hits] == ["v05", "v09"] and all(len(h) == 3 for h in hits)
    filtered = encode_payload("vector_search", {"queries": [vectors[5].tolist()], "k": 2,
                                                "filter": json.dumps({"even": True})})
    assert all(int(i[1:]) % 2 == 0 for i in _hits(transport.search_payload("docs", filtered))[0])

    update = encode_payload("vector_update", {"updates": [{"id": "v01", "metadata": {"tag": "x"}, "replace": True}],
                                              "timestamp": 0})
    assert transport.mutate_payload("docs", update) == {"deleted": 0, "updated": 1}
    assert transport.get_vectors("docs", ["v01"], False)[0]["metadata"] == {"tag": "x"}
    delete = encode_payload("vector_delete", {"ids": ["v00", "v01", "nope"]})
    assert transport.mutate_payload("docs", delete) == {"deleted": 2, "updated": 0}
    by_filter = encode_payload("vector_delete", {"ids": [], "filter": json.dumps({"even": True})})
    assert transport.mutate_payload("docs", by_filter)["deleted"] == 24
    assert transport.count("docs", None) == 24

    transport.delete_collection("docs")
    assert transport.list_collections() == []


# ---------------------------------------------------------------------------- error mapping


def test_errors_are_typed(transport: RestTransport, service: UnifiedAvroService) -> None:
    transport.create_collection({"name": "docs", "dimension": 3})
    one = encode_insert([{"id": "a", "vector": [1.0, 2.0, 3.0]}])
    transport.insert_payload("docs", one)
    search = encode_payload("vector_search", {"queries": [[1.0, 0.0, 0.0]], "k": 1})
    cases: list[tuple[type[Exception], Callable[[], Any]]] = [
        (CollectionNotFoundError, lambda: transport.get_collection("nope")),
        (NotFoundError, lambda: transport.get_collection("../../etc/passwd")),  # '/' in a name: no such route
        (CollectionNotFoundError, lambda: transport.delete_collection("%2e%2e")),
        (CollectionNotFoundError, lambda: transport.count("nope", None)),
        (CollectionNotFoundError, lambda: transport.search_payload("nope", search)),
        (CollectionExistsError, lambda: transport.create_collection({"name": "docs", "dimension": 3})),
        (ValidationError, lambda: transport.create_collection({"name": "../x", "dimension": 3})),
        (ValidationError, lambda: transport.update_collection("docs", {"dimension": 9})),
        (VectorExistsError, lambda: transport.insert_payload("docs", one)),
        (DimensionMismatchError, lambda: transport.insert_payload("docs", encode_insert(
            [{"id": "b", "vector": [1.0, 2.0]}]))),
        (MalformedPayloadError, lambda: transport.insert_payload("docs", one[:-4])),
        (MalformedPayloadError, lambda: transport.search_payload("docs", b"\x01\x00\x00\x00garbage")),
        (UnsupportedSchemaVersionError, lambda: transport.insert_payload("docs", b"\x09\x00\x00\x00" + one[4:])),
        (UnknownOperationError, lambda: transport.mutate_payload("docs", one)),
        (InvalidFilterError, lambda: transport.count("docs", "{not json")),
        (ValidationError, lambda: transport.scroll("docs", 0, None, None, False)),
        (PayloadTooLargeError, lambda: transport.insert_payload("docs", b"\x00" * (LIMIT + 1))),
    ]
    for expected, call in cases:
        with pytest.raises(expected) as info:
            call()
        assert info.value.message, expected
    assert transport.count("docs", None) == 1
    assert [c["name"] for c in transport.list_collections()] == ["docs"]


def test_connection_refused_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with RestTransport(url, timeout=2.0) as t:
        for call in (t.health, t.list_collections, lambda: t.insert_payload("x", b"")):
            with pytest.raises(UnavailableError) as info:
                call()
            assert url in info.value.message


def test_closed_transport_is_unavailable(url: str) -> None:
    t = RestTransport(url)
    t.health()
    t.close()
    t.close()
    with pytest.raises(UnavailableError, match="closed"):
        t.health()


def test_api_key_is_sent_as_bearer(url: str, recorder: _Recorder) -> None:
    with RestTransport(url, api_key="s3cret") as t:
        t.health()
    with RestTransport(url.removeprefix("http://")) as t:  # scheme optional
        t.list_collections()
    assert recorder.authorization == ["Bearer s3cret", None]


def test_bad_urls() -> None:
    with pytest.raises(ValidationError):
        RestTransport("ftp://127.0.0.1:1")
    with pytest.raises(ValidationError):
        RestTransport("http://")


def test_threads_share_one_transport(transport: RestTransport) -> None:
    transport.create_collection({"name": "docs", "dimension": 2, "distance_metric": "euclidean"})
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for j in range(5):
                rid = f"t{n}-{j}"
                transport.insert_payload("docs", encode_insert([{"id": rid, "vector": [float(n), float(j)]}]))
                assert transport.get_vectors("docs", [rid], True)[0]["id"] == rid
                q = encode_payload("vector_search", {"queries": [[float(n), float(j)]], "k": 1})
                assert _hits(transport.search_payload("docs", q)) == [[rid]]
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors, errors
    assert transport.count("docs", None) == 30


# ---------------------------------------------------------------------------- keep-alive


def test_keep_alive_reuses_one_connection(recorder: _Recorder) -> None:
    for url in _serve(recorder, _KeepAliveHandler):
        with RestTransport(url) as t:
            t.create_collection({"name": "docs", "dimension": 2})
            for i in range(10):
                t.insert_payload("docs", encode_insert([{"id": f"k{i}", "vector": [1.0, float(i)]}]))
                assert t.count("docs", None) == i + 1
            with pytest.raises(CollectionNotFoundError):
                t.get_collection("nope")
            with pytest.raises(PayloadTooLargeError):  # refused unread; the server drains it, the socket lives on
                t.insert_payload("docs", b"\x00" * (LIMIT + 1))
            assert t.health()["status"] == "ok"
        assert len(recorder.client_ports) == 1  # 24 requests over one socket


class _DroppingServer:
    """Answers the first request of each connection (keep-alive), then drops the connection on the
    second request without answering: a keep-alive connection the server closed at the wrong moment."""

    BODY = json.dumps({"success": True, "data": {"status": "ok"}, "error": None, "message": None}).encode()

    def __init__(self, *, answer: bool = True) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self.connections = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, f: Any) -> str | None:
        line = f.readline()
        if not line:
            return None
        length = 0
        while True:
            header = f.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        f.read(length)
        return line.decode().strip()

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            first = self._read_request(f)
            if first is None:
                return
            self.requests.append(first)
            if not self.answer:
                self._wait_for_stop()
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(self.BODY)}\r\n\r\n".encode() + self.BODY)
            second = self._read_request(f)
            if second is not None:
                self.requests.append(second)
            # close without answering the second request

    def _wait_for_stop(self) -> None:
        while not self._stop:
            threading.Event().wait(0.05)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self.thread.join(5)


def test_dropped_keep_alive_is_retried_once_for_idempotent_requests_only() -> None:
    server = _DroppingServer()
    try:
        with RestTransport(f"http://127.0.0.1:{server.port}", timeout=5.0) as t:
            assert t.health() == {"status": "ok"}
            assert t.health() == {"status": "ok"}  # reused connection dropped -> retried on a fresh one
            assert server.connections == 2
            assert server.requests == ["GET /health HTTP/1.1"] * 3
            # A write on a connection that drops is not retried: it may have been applied.
            with pytest.raises(UnavailableError):
                t.insert_payload("docs", b"frame")
            assert server.requests[-1] == "POST /collections/docs/vectors/batch HTTP/1.1"
            assert server.connections == 2
    finally:
        server.close()


def test_socket_timeout_is_request_timeout() -> None:
    server = _DroppingServer(answer=False)
    try:
        with RestTransport(f"http://127.0.0.1:{server.port}", timeout=0.3) as t, \
                pytest.raises(RequestTimeoutError, match="timed out"):
            t.health()
    finally:
        server.close()


def test_status_without_a_known_code_maps_by_the_error_table() -> None:
    """An answer whose code the SDK does not know (a proxy, a newer server) gets the class errors.py gives its
    HTTP status: the most specific one that every error with that status is."""
    answers = {
        "/collections": ("409 Conflict", "application/json",
                         json.dumps({"success": False, "error": {"code": "newer_code", "message": "taken"}})),
        "/collections/x": ("403 Forbidden", "text/html", "<h1>proxy says no</h1>"),
        "/collections/x/stats": ("507 Insufficient Storage", "text/plain", "full"),
        "/collections/x/compact": ("502 Bad Gateway", "text/plain", "upstream"),
    }

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        status, content_type, body = answers[environ["PATH_INFO"]]
        start_response(status, [("Content-Type", content_type)])
        return [body.encode()]

    for url in _serve(app, _QuietHandler):
        with RestTransport(url, timeout=10.0) as t:
            with pytest.raises(AlreadyExistsError, match=r"taken \(HTTP 409, code 'newer_code'\)"):
                t.list_collections()
            with pytest.raises(PermissionDeniedError, match="unexpected HTTP 403"):
                t.get_collection("x")
            with pytest.raises(DiskFullError, match="HTTP 507"):
                t.stats("x")
            with pytest.raises(ProximaDBError, match="HTTP 502") as info:
                t.compact("x")
            assert type(info.value) is ProximaDBError
