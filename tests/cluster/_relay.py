"""A TCP relay between one daemon and one NATS server, for the partition test: real sockets on 127.0.0.1,
no root. Every connection the daemon opens to the relay's port is relayed to the server, bytes pumped both
ways by two threads. :meth:`NatsRelay.cut` closes every relayed connection and refuses new ones (accepted
and closed at once) until :meth:`NatsRelay.heal`: to the daemon, the servers are unreachable.

NATS servers advertise the client addresses of their cluster peers (``connect_urls`` in their ``INFO``
lines), and a client adds those to the servers it reconnects to: a cut daemon would go round the relay.
So the relay reads the server-to-client stream as NATS protocol (lines; ``MSG``/``HMSG`` followed by their
payload of the size the line names) and drops ``connect_urls`` from every ``INFO``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable


class InfoFilter:
    """Server-to-client NATS protocol in, the same with ``connect_urls`` dropped from INFO lines out."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                break
            line = self.buffer[:end]
            op = line.split(b" ", 1)[0].upper()
            if op in (b"MSG", b"HMSG"):
                total = end + 2 + int(line.rsplit(b" ", 1)[1]) + 2  # the line, its payload and the payload's CRLF
                if len(self.buffer) < total:
                    break
                out.append(self.buffer[:total])
                self.buffer = self.buffer[total:]
                continue
            if op == b"INFO":
                info = json.loads(line[5:])
                info.pop("connect_urls", None)
                info.pop("ws_connect_urls", None)
                line = b"INFO " + json.dumps(info).encode()
            out.append(line + b"\r\n")
            self.buffer = self.buffer[end + 2:]
        return b"".join(out)


class NatsRelay:
    """Listens on a free port of 127.0.0.1 and relays to ``nats://127.0.0.1:<upstream>``."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.relayed = 0  # connections relayed so far
        self.refused = 0  # connections refused while cut
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                upstream.settimeout(None)
            except OSError:  # the server is down: so is the relayed connection
                _close(client)
                continue
            with self._lock:
                refuse = self._cut or self._closed
                if refuse:
                    self.refused += 1
                else:
                    self.relayed += 1
                    self._sockets |= {client, upstream}
            if refuse:
                _close(client)
                _close(upstream)
                continue
            for src, dst, transform in ((client, upstream, None), (upstream, client, InfoFilter().feed)):
                threading.Thread(target=self._pump, args=(src, dst, transform), daemon=True,
                                 name=f"relay-{self.port}-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket, transform: Callable[[bytes], bytes] | None) -> None:
        try:
            while data := src.recv(65536):
                out = transform(data) if transform else data
                if out:
                    dst.sendall(out)
        except (OSError, ValueError):  # closed by cut() or by the other side; ValueError: not NATS protocol
            pass
        finally:
            with self._lock:
                self._sockets -= {src, dst}
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
