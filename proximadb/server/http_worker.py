"""The daemon's gunicorn worker and arbiter: gthread, with the request head read before a thread is spent on it.

**Head first.** gunicorn's ``gthread`` worker hands every new connection to
its thread pool, which then reads the request head with blocking reads. A
client that sends its head one byte a second (slowloris) holds a pool thread
for as long as it likes (a per-read timeout never trips), and a few hundred
such clients take every thread, ``/health`` included. :class:`HeadFirstWorker`
reads the head in the worker's main loop instead, with non-blocking reads
(for TLS, the handshake too), and submits the connection to the pool only
once the head is complete. Each connection has one deadline for its whole
head, counted from its accept (a kept-alive one: from the first byte of its
next request): ``request_timeout`` (:data:`HEAD_TIMEOUT_WITHOUT_REQUEST_TIMEOUT`
when that is 0). A client that misses it gets 408 and the connection is closed.

"Complete" (:func:`head_ready`) means gunicorn's parser can decide on the
head without another read: the blank line that ends it has arrived, or a bare
LF or an over-long request line that the parser refuses (400 / 414). Refused
here at once, instead of waiting for a line end that may never come: bytes
that cannot begin an HTTP/1 request (a method is a token), with 400 (a TLS
ClientHello with a message that says so), and a head over gunicorn's limits
that is still not finished, with 431.

**Bodies.** A chunked body's chunk size is checked when its line arrives: one
beyond 64 bits is a 400, one over ``max_request_bytes`` a 413, before any of
the chunk is read. Malformed or truncated chunked bodies become
:class:`~proximadb.errors.MalformedPayloadError` (400), not a 500.

**Signals.** gunicorn's handler for SIGQUIT (which the master sends on
SIGINT) shut the thread pool down from inside the signal handler; when the
signal landed while the main thread was in ``ThreadPoolExecutor.submit``,
which holds the same lock, the worker deadlocked, and the daemon stopped only
when the master killed it after ``graceful_timeout``. Here the handler only
sets flags and wakes the main loop, which stops. And a signal sent to a
worker between its fork and the installation of its handlers went to the
master's inherited handler and was lost: :class:`Arbiter` blocks the stop
signals around the fork and the worker unblocks them once its own handlers
are in place, so such a signal is delivered then. (While the worker still
boots, SIGQUIT keeps gunicorn's behaviour, an immediate exit: nothing has
been submitted to the pool yet.)
"""

from __future__ import annotations

import errno
import functools
import logging
import selectors
import signal
import ssl
import sys
import time
from collections import OrderedDict
from typing import Any

from gunicorn import sock as gsock
from gunicorn.arbiter import Arbiter as GunicornArbiter
from gunicorn.http.body import Body, ChunkedReader
from gunicorn.http.errors import NoMoreData, ParseException
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import TConn, ThreadWorker

from proximadb.api.rest.media import dumps, envelope
from proximadb.cli.entry import release_stop_signals
from proximadb.errors import MalformedPayloadError, PayloadTooLargeError, ProximaDBError
from proximadb.server.signal_queue import SignalQueue

log = logging.getLogger("proximadb.http")

HEARTBEAT_SECONDS = 1.0  # the worker's heartbeats to the master, at most this often (HeadFirstWorker.notify)
HEAD_TIMEOUT_WITHOUT_REQUEST_TIMEOUT = 60.0  # a head always has a deadline, even with request_timeout 0
READ_BYTES = 65536
MAX_CHUNK_SIZE = 2**64 - 1
# RFC 9110 section 5.6.2: tchar, the bytes a method (a token) is made of.
TOKEN_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
TLS_HANDSHAKE_RECORD = 0x16
STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
WORKER_SIGNALS = frozenset(Worker.SIGNALS)  # those the worker installs handlers for
_mask_before_fork: set[int | signal.Signals] | None = None  # the signal mask of the master before it forked this worker


class HeadRefused(Exception):
    """The head cannot become a request this server takes: answer ``status`` at once and close."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def head_ready(head: bytes | bytearray, line_limit: int, head_limit: int, seen: int = 0) -> bool:
    """True when gunicorn's (Python) HTTP/1 parser can decide on ``head`` without reading more; False: wait.

    ``seen``: how many bytes of ``head`` an earlier call already looked at (and answered False for), so that a
    head arriving a byte at a time costs linear time. Raises :class:`HeadRefused` for bytes that cannot begin
    a request, and for a head over ``head_limit``.
    """
    if head[:1] == b"\r" and len(head) < 2:
        return False
    start = 2 if head[:2] == b"\r\n" else 0  # RFC 9112 section 2.2: one empty line may come first
    new = max(seen, start)
    method_end = head.find(b" ", start, start + line_limit + 3)
    for byte in head[new : method_end if method_end >= 0 else start + line_limit + 3]:
        if byte not in TOKEN_BYTES:
            if head[start] == TLS_HANDSHAKE_RECORD:
                raise HeadRefused(400, "validation_error", "this port speaks plain HTTP, but a TLS handshake "
                                  "arrived: use http://, or start the daemon with --tls-cert and --tls-key")
            raise HeadRefused(400, "validation_error", "the request does not begin with an HTTP method")
    lf = head.find(b"\n", new)
    while lf >= 0:
        if lf == 0 or head[lf - 1] != 0x0D:
            return True  # a bare LF: the parser refuses it (400)
        lf = head.find(b"\n", lf + 1)
    if head.find(b"\r\n\r\n", max(start, new - 3)) >= 0:
        return True
    if len(head) - start > line_limit + 2 and head.find(b"\r\n", start, start + line_limit + 4) < 0:
        return True  # the request line is too long already: the parser refuses it (414)
    if len(head) > head_limit:
        raise HeadRefused(431, "request_header_fields_too_large",
                          f"the request head is over {head_limit} bytes and not finished")
    return False


def http_error(status: int, code: str, message: str) -> bytes:
    """A complete ``Connection: close`` response with the API's JSON error envelope."""
    body = dumps(envelope(error={"code": code, "message": message}, message=message)).encode()
    return (f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class HeadConn(TConn):  # type: ignore[misc]
    """A gthread connection with the state of its head phase."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.head = bytearray()
        self.head_seen = 0  # bytes of head already looked at by head_ready()
        self.head_deadline = 0.0
        self.head_ready = False
        self.handshaken = False
        self.watching = 0  # the selector events it is registered for while its head arrives


class CappedChunkedReader(ChunkedReader):  # type: ignore[misc]
    """gunicorn's chunked reader; refuses a chunk size over ``limit`` on sight, and reports errors as 400s."""

    def __init__(self, req: Any, unreader: Any, limit: int) -> None:
        self.limit = limit
        super().__init__(req, unreader)

    def parse_chunk_size(self, unreader: Any, data: bytes | None = None) -> tuple[int, Any]:
        size, rest = super().parse_chunk_size(unreader, data)
        if size > MAX_CHUNK_SIZE:
            raise MalformedPayloadError(f"chunk size {size:x} does not fit in 64 bits")
        if size > self.limit:
            raise PayloadTooLargeError(
                f"a chunk of {size} bytes exceeds the request body limit of {self.limit} bytes (max_request_bytes)"
            )
        return size, rest

    def read(self, size: int) -> bytes:
        try:
            return super().read(size)  # type: ignore[no-any-return]
        except (ParseException, NoMoreData) as exc:
            raise MalformedPayloadError(f"malformed chunked request body: {exc}") from None


class CappedRequest(Request):  # type: ignore[misc]
    body: Any  # gunicorn's Body, set by Request.set_body_reader

    def __init__(self, cfg: Any, unreader: Any, peer_addr: Any, req_number: int = 1, *, max_body: int) -> None:
        self.max_body = max_body
        super().__init__(cfg, unreader, peer_addr, req_number)

    def set_body_reader(self) -> None:
        super().set_body_reader()
        if isinstance(self.body.reader, ChunkedReader):
            self.body = Body(CappedChunkedReader(self, self.unreader, self.max_body))


class CappedRequestParser(RequestParser):  # type: ignore[misc]
    def __init__(self, cfg: Any, source: Any, source_addr: Any, max_body: int) -> None:
        super().__init__(cfg, source, source_addr)
        self.mesg_class = functools.partial(CappedRequest, max_body=max_body)


class HeadFirstWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker; a connection reaches the thread pool only with its whole request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.app.config  # the daemon's ServerConfig (proximadb.server.daemon.DaemonApplication)
        self.head_timeout = float(config.request_timeout or HEAD_TIMEOUT_WITHOUT_REQUEST_TIMEOUT)
        self.max_body = int(config.max_request_bytes)
        self.heads: OrderedDict[HeadConn, float] = OrderedDict()  # waiting for their head; earliest deadline first
        self.stop_deadline = float("inf")
        self.next_heartbeat = 0.0
        self.quitting = False
        line_limit = self.cfg.limit_request_line if self.cfg.limit_request_line > 0 else 8190
        fields, field_size = max(self.cfg.limit_request_fields, 1), max(self.cfg.limit_request_field_size, 1)
        self.line_limit = line_limit
        self.head_limit = line_limit + 4 + fields * (field_size + 2) + 4

    # ---------------------------------------------------------------- signals
    def init_signals(self) -> None:
        super().init_signals()
        if _mask_before_fork is not None:  # Arbiter.spawn_worker blocked the signals; they are handled now
            signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT/SIGINT: stop now. Flags only: the main thread may hold any lock at this moment."""
        if not self.booted:
            super().handle_quit(sig, frame)  # still booting: nothing submitted yet, gunicorn's exit is safe
            return
        self.quitting = True
        self.alive = False
        self.method_queue.defer(lambda: None)  # wakes the main loop (SimpleQueue.put is reentrant)

    def notify(self) -> None:
        """The heartbeat to the master (a syscall on the worker's temporary file), which gthread sends on every
        turn of its loop, so once or twice per request: here at most every :data:`HEARTBEAT_SECONDS` (the
        loop turns at least every second; the master waits ``timeout``, 120 s, before it replaces a worker)."""
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + HEARTBEAT_SECONDS
            super().notify()

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self.quitting:  # the main loop, after a quit signal: leave without the graceful wait
            self.tpool.shutdown(wait=False, cancel_futures=True)
            sys.exit(0)
        super().wait_for_and_dispatch_events(timeout)

    # ---------------------------------------------------------------- the head phase, in the main thread
    def accept(self, listener: Any) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = HeadConn(self.cfg, client, address, listener.getsockname())  # non-blocking from here
        if self.cfg.is_ssl:
            try:
                conn.sock = gsock.ssl_context(self.cfg).wrap_socket(
                    conn.sock, server_side=True, do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                )
            except (OSError, ValueError):
                self._close(conn)
                return
        self.enqueue_req(conn)

    def enqueue_req(self, conn: HeadConn) -> None:
        """Every way into the thread pool: new, kept-alive and pipelined connections alike."""
        if conn.head_ready:
            conn.head_ready = False
            super().enqueue_req(conn)
            return
        if conn.parser is not None:  # a kept-alive connection: bytes read ahead belong to the next head
            conn.head[:0] = conn.parser.unreader.take_buffered()
        conn.head_deadline = min(time.monotonic() + self.head_timeout, self.stop_deadline)
        self.heads[conn] = conn.head_deadline
        self._advance(conn)

    def _advance(self, conn: HeadConn, _fileobj: Any = None) -> None:
        """Read what has arrived; submit the connection once its head is complete."""
        try:
            if self.cfg.is_ssl and not conn.handshaken:
                conn.sock.do_handshake()
                conn.handshaken = True
            while not head_ready(conn.head, self.line_limit, self.head_limit, conn.head_seen):
                conn.head_seen = len(conn.head)
                data = conn.sock.recv(READ_BYTES)
                if not data:
                    self._drop(conn)  # closed by the client before its head was complete
                    return
                conn.head += data
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            self._watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        except HeadRefused as exc:
            log.info("refused a request from %s: %s", conn.client[0] if conn.client else "?", exc.message)
            self._refuse(conn, exc.status, exc.code, exc.message)
            return
        except OSError as exc:  # ssl.SSLError too: a failed handshake (plain HTTP to the TLS port, ...)
            log.debug("dropped a connection during its request head: %s", exc)
            self._drop(conn)
            return
        self._forget(conn)
        if conn.parser is None:
            conn.parser = CappedRequestParser(self.cfg, conn.sock, conn.client, self.max_body)
            conn.initialized = True  # TConn.init would create gunicorn's parser and wrap TLS again
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head.clear()
        conn.head_seen = 0
        conn.data_ready = True  # gthread's handle() would otherwise wait for data first
        conn.head_ready = True
        self.enqueue_req(conn)

    def _watch(self, conn: HeadConn, events: int) -> None:
        if conn.watching == events:
            return
        callback = functools.partial(self._advance, conn)
        if conn.watching:
            self.poller.modify(conn.sock, events, callback)
        else:
            self.poller.register(conn.sock, events, callback)
        conn.watching = events

    def _forget(self, conn: HeadConn) -> None:
        if conn.watching:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            conn.watching = 0
        self.heads.pop(conn, None)

    def _close(self, conn: HeadConn) -> None:
        self.nr_conns -= 1
        try:
            for _ in range(4):  # what is left unread makes the close a reset, which can lose the answer
                if not conn.sock.recv(READ_BYTES):
                    break
        except (OSError, ValueError):
            pass
        conn.close()

    def _drop(self, conn: HeadConn) -> None:
        self._forget(conn)
        self._close(conn)

    def _refuse(self, conn: HeadConn, status: int, code: str, message: str) -> None:
        self._forget(conn)
        try:
            conn.sock.send(http_error(status, code, message))  # small: fits the empty send buffer at once
        except (OSError, ValueError):
            pass
        self._close(conn)

    def murder_pending(self) -> None:
        """Also close the connections whose head missed its deadline (called by the main loop every turn)."""
        super().murder_pending()
        now = time.monotonic()
        while self.heads:
            conn, deadline = next(iter(self.heads.items()))
            if deadline > now:
                break
            if conn.head and deadline < self.stop_deadline:
                log.info("closed a connection whose client stalled mid-request: no complete request head "
                         "within %gs (request_timeout)", self.head_timeout)
                self._refuse(conn, 408, "request_timeout",
                             f"the request head did not arrive within {self.head_timeout:g}s")
            else:
                self._drop(conn)  # connected and never sent a byte, or the worker is stopping

    def _cap_keepalive(self, deadline: float) -> None:
        """Stopping: a head still arriving gets what kept-alive connections get, a short linger."""
        super()._cap_keepalive(deadline)
        self.stop_deadline = deadline
        for conn, current in list(self.heads.items()):
            self.heads[conn] = min(current, deadline)

    def finish_request(self, conn: HeadConn, fs: Any) -> None:
        super().finish_request(conn, fs)
        if self.keepalived_conns and self.keepalived_conns[-1] is conn and getattr(conn.sock, "pending", None):
            if conn.sock.pending():  # TLS bytes already decrypted: the selector will not report them
                self.on_client_socket_readable(conn, conn.sock)

    def _keepalive_after(self, conn: HeadConn, keepalive: bool) -> bool:
        try:
            return bool(super()._keepalive_after(conn, keepalive))
        except (ProximaDBError, ParseException, OSError):
            return False  # an unread body turned out malformed: close rather than guess where the next request starts


class Arbiter(GunicornArbiter):  # type: ignore[misc]
    """gunicorn's master; a worker is forked with its signals blocked until it has its own handlers.

    The stop signals held since the program started (:mod:`proximadb.cli.entry`) are released once
    the master's own handlers are installed.

    Its signal queue is :class:`~proximadb.server.signal_queue.SignalQueue`, whose wait cannot hang.
    """

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.SIG_QUEUE = SignalQueue()

    def init_signals(self) -> None:
        super().init_signals()
        release_stop_signals()  # held since the program started (cli/entry.py): a pending one is handled now

    def spawn_worker(self) -> Any:
        global _mask_before_fork
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        _mask_before_fork = mask
        try:
            return super().spawn_worker()  # in the worker this runs the worker and never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
