"""The REST port against hostile or broken clients, on a real daemon over real sockets.

* Slow header senders (slowloris) cost no worker thread: with 300 of them
  connected, /health and a search still answer within 1 s.
* The whole request head has one deadline (``request_timeout``), not a
  per-read timeout: a head trickled a byte at a time is cut at the deadline,
  on a new connection and on a kept-alive one.
* Bytes that cannot become an HTTP request are refused at once: a TLS
  ClientHello on the plain port, a chunk size beyond 64 bits (400), a chunk
  larger than the body limit (413).
* Two daemons on one machine share no gunicorn control socket; stopping one
  leaves the other serving. The dependency ranges have upper bounds.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from _daemon import Daemon

import proximadb

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DIM = 4
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("resilience") / "data")  # default threads and request_timeout (30 s)
    with d:
        with proximadb.connect_rest(d.rest_url) as client:
            client.create_collection("c", dimension=DIM)
            client.insert_vectors("c", ids=["a", "b"], vectors=[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
        yield d


def answer(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes, or until ``deadline`` (seconds from now): then TimeoutError."""
    until = time.monotonic() + deadline
    got = b""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer and no close within {deadline}s (got {got[:80]!r})")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got
        except TimeoutError:
            continue
        if not chunk:
            return got
        got += chunk


def raw_exchange(d: Daemon, payload: bytes, deadline: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", d.rest_port), timeout=deadline) as sock:
        sock.sendall(payload)
        return answer(sock, deadline)


def timed_request(d: Daemon, method: str, path: str, body: dict | None = None, timeout: float = 1.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", d.rest_port, timeout=timeout)
    try:
        started = time.monotonic()
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert time.monotonic() - started < timeout
        return resp.status
    finally:
        conn.close()


class Trickler:
    """Sockets that each send a request head one byte at a time, every ``interval`` seconds, never finishing it."""

    HEAD = b"POST /collections/c/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 200

    def __init__(self, d: Daemon, count: int, interval: float) -> None:
        self.socks = [socket.create_connection(("127.0.0.1", d.rest_port), timeout=10) for _ in range(count)]
        self.interval = interval
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _send_next(self) -> None:
        byte = self.HEAD[self.sent : self.sent + 1]
        for sock in self.socks:
            try:
                sock.send(byte)
            except OSError:
                pass
        self.sent += 1

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self._send_next()

    def __enter__(self) -> Trickler:
        self._send_next()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for sock in self.socks:
            sock.close()


def test_300_slow_header_senders_leave_health_and_search_answering(daemon: Daemon) -> None:
    # 300 > the 72 worker threads (64 + 8); gunicorn's gthread worker read headers in a pool thread.
    with Trickler(daemon, 300, interval=1.0) as slow:
        while slow.sent < 3:  # every socket is in its head phase, bytes arriving
            time.sleep(0.05)
        for _ in range(4):
            assert timed_request(daemon, "GET", "/health") == 200
            assert timed_request(daemon, "POST", "/collections/c/search", {"vector": [1.0] * DIM, "k": 1}) == 200
            time.sleep(0.5)
        assert all(s.fileno() >= 0 for s in slow.socks)
    assert daemon.health() is not None


def _closed_or_answered(sock: socket.socket) -> bytes | None:
    """What the server sent before closing (b"" for a bare close), or None while it is still open."""
    if not select.select([sock], [], [], 0)[0]:
        return None
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return b""
    return data


def test_a_head_trickled_under_any_read_timeout_is_cut_at_the_deadline(tmp_path: Path) -> None:
    """request_timeout 2 s bounds the whole head; a byte every 0.25 s would never trip a per-read timeout."""
    with Daemon(tmp_path / "data", "--request-timeout", "2") as d:
        fresh = socket.create_connection(("127.0.0.1", d.rest_port), timeout=10)
        kept = socket.create_connection(("127.0.0.1", d.rest_port), timeout=10)
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'"status"' not in first:  # the whole first answer; the connection stays open (keep-alive)
            first += kept.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200
        started = time.monotonic()
        cut: dict[str, tuple[float, bytes]] = {}
        sent = 0
        while len(cut) < 2 and time.monotonic() - started < 10:
            for name, sock in (("fresh", fresh), ("kept", kept)):
                if name in cut:
                    continue
                got = _closed_or_answered(sock)
                if got is not None:
                    cut[name] = (time.monotonic() - started, got)
                    continue
                try:
                    sock.send(head[sent : sent + 1])
                except OSError:
                    cut[name] = (time.monotonic() - started, b"")
            sent += 1
            time.sleep(0.25)
        fresh.close()
        kept.close()
        assert set(cut) == {"fresh", "kept"}, f"still open after 10 s of trickling: {cut}"
        for name, (after, got) in cut.items():
            assert 1.5 <= after <= 5.0, (name, after)
            assert got == b"" or got.startswith(b"HTTP/1.1 408"), (name, got[:80])
        assert "stalled mid-request" in d.logs()
        assert d.health() is not None


def client_hello_without_line_feeds() -> bytes:
    """A well-formed TLS 1.2 ClientHello (one cipher suite, no extensions) with no CR or LF byte in it.

    A real client's hello usually holds an LF somewhere, which made gunicorn answer 400 ("bare LF"); this one
    does not, so only a check of the first bytes can tell it is not HTTP.
    """
    body = b"\x03\x03" + bytes(range(0x20, 0x40)) + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00" + b"\x00\x00"
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    hello = b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake
    assert b"\n" not in hello and b"\r" not in hello
    return hello


def test_a_tls_client_hello_on_the_plain_port_is_refused_at_once(daemon: Daemon) -> None:
    got = raw_exchange(daemon, client_hello_without_line_feeds())
    assert got.startswith(b"HTTP/1.1 400"), got[:80]
    assert b"TLS" in got
    assert daemon.health() is not None


def test_bytes_that_cannot_start_a_request_are_refused_at_once(daemon: Daemon) -> None:
    got = raw_exchange(daemon, b"\x00\x01\x02binary")
    assert got.startswith(b"HTTP/1.1 400"), got[:80]


CHUNKED_HEAD = (b"POST /collections/c/vectors HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


def test_a_chunk_size_beyond_64_bits_is_refused_at_once(daemon: Daemon) -> None:
    got = raw_exchange(daemon, CHUNKED_HEAD + b"fffffffffffffffff\r\nabc")
    assert got.startswith(b"HTTP/1.1 400"), got[:80]
    assert b"chunk size" in got
    with proximadb.connect_rest(daemon.rest_url) as client:
        assert client.count("c") == 2


def test_a_chunk_larger_than_the_body_limit_is_refused_at_once(daemon: Daemon) -> None:
    got = raw_exchange(daemon, CHUNKED_HEAD + b"ffffffff\r\nabc")  # 4 GiB > max_request_bytes (64 MiB)
    assert got.startswith(b"HTTP/1.1 413"), got[:80]
    assert b"max_request_bytes" in got


def test_a_truncated_chunked_body_is_a_client_error_not_a_traceback(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.rest_port), timeout=5) as sock:
        sock.sendall(CHUNKED_HEAD + b"10\r\nabc")
        sock.shutdown(socket.SHUT_WR)
        got = answer(sock, 3.0)
    assert got.startswith(b"HTTP/1.1 400"), got[:80]
    assert "unexpected error" not in daemon.logs()


def test_pipelined_requests_are_all_answered(daemon: Daemon) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    got = raw_exchange(daemon, one + one + last)
    assert got.count(b"HTTP/1.1 200") == 3, got[:300]


def test_two_daemons_share_no_gunicorn_control_socket(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}  # gunicorn's default: ~/.gunicorn/gunicorn.ctl
    first = Daemon(tmp_path / "one" / "data", env=env)
    second = Daemon(tmp_path / "two" / "data", env=env)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with first, second:
        assert not (home / ".gunicorn").exists()
        assert "Control socket" not in first.logs() + second.logs()
        assert first.stop() == 0
        assert second.health() is not None and second.proc is not None and second.proc.poll() is None
        with proximadb.connect(second.rest_url) as client:
            client.create_collection("still", dimension=DIM)
            client.insert_vectors("still", ids=["x"], vectors=[[1.0] * DIM])
            assert client.search("still", [1.0] * DIM, k=1)[0]["id"] == "x"
        assert second.stop() == 0
    assert not (home / ".gunicorn").exists()
    assert list(tmp_path.rglob("*.ctl")) == []


def test_server_dependencies_have_upper_bounds_that_the_installed_versions_meet() -> None:
    from packaging.requirements import Requirement

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = {r.name: r for r in map(Requirement, declared)}
    for name in ("gunicorn", "falcon", "grpcio", "grpcio-health-checking", "protobuf"):
        spec = requirements[name].specifier
        assert any(s.operator in ("<", "~=", "==") for s in spec), f"{name}{spec} has no upper bound"
        assert spec.contains(version(name)), f"installed {name} {version(name)} is outside {spec}"
