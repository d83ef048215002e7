"""The SDK's REST transport: :class:`~proximadb.sdk.transport.Transport` over HTTP/1.1 with ``http.client``.

Writes and searches carry the client's versioned Avro payload frames
(``Content-Type: application/avro``); a search asks ``Accept: application/avro``
and returns the ``search_result`` frame as received. Everything else is JSON.

Connections: a small pool of keep-alive ``HTTPConnection`` objects, so threads
share the transport without serialising on one socket. An idle connection the
server has closed is noticed before it is reused; a request that still fails
on a reused connection is retried once on a fresh one, but only when it is
idempotent (a write may have been applied before the connection dropped).

Routes: each call's method, path and whether it may be resent come from the
operation table (:mod:`proximadb.api.operations`), the one the server routes by.

Failures: the server's error envelope becomes the typed exception of its code
(:func:`proximadb.errors.error_from_code`), an answer without a code the one
of its HTTP status (:data:`proximadb.errors.BY_HTTP_STATUS`); connection
refused/reset is ``UnavailableError`` naming the URL; a socket timeout is
``RequestTimeoutError``.

Each call's request and the reading of its answer are an :class:`HttpExchange` built by the
module functions below; the URL, headers, TLS context and failure messages are
:class:`RestEndpoint`'s. Both are shared with the asyncio transport
(:mod:`proximadb.sdk.async_transports`), which sends the same exchanges with ``httpx``.
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode, urlsplit

import numpy as np

from proximadb import idempotency
from proximadb.api import operations as ops
from proximadb.api.operations import Operation
from proximadb.consistency import SESSION_HEADER, SessionTokens, wants_session
from proximadb.errors import (
    BY_HTTP_STATUS,
    ERRORS_BY_CODE,
    ProximaDBError,
    RequestTimeoutError,
    UnavailableError,
    ValidationError,
    error_from_code,
)

JSON = "application/json"
AVRO = "application/avro"
MAX_IDLE_CONNECTIONS = 8

# Errors that mean "the connection is gone", as opposed to a deadline or a bad response.
_CONNECTION_ERRORS = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, BrokenPipeError)
T = TypeVar("T")


@dataclass(frozen=True)
class HttpExchange(Generic[T]):
    """One HTTP request (path relative to the endpoint's URL) and how to read its answer."""

    method: str
    path: str
    idempotent: bool  # may be resent on a fresh connection after a dropped keep-alive one
    decode: Callable[[int, str, bytes], T]  # (status, content type, body) -> result, or raise the typed error
    json_body: Any = None
    payload: bytes | None = None
    accept: str = JSON
    session: bool = False  # a read with consistency=session: send the client's session token

    def body(self) -> tuple[bytes | None, dict[str, str]]:
        """The request body and the headers that describe it."""
        headers = {"Accept": self.accept}
        if self.payload is not None:
            headers["Content-Type"] = AVRO
            return self.payload, headers
        if self.json_body is not None:
            headers["Content-Type"] = JSON
            return json.dumps(self.json_body, allow_nan=False).encode("utf-8"), headers
        return None, headers


def _op(op: Operation, method: str, collection: str | None = None, *, query: str = "", json_body: Any = None,
        payload: bytes | None = None, decode: Callable[[int, str, bytes], Any] | None = None,
        consistency: str | None = None) -> HttpExchange[Any]:
    """``op``'s route for ``method`` (proximadb/api/operations.py), resent if idempotent; a JSON envelope answer."""
    path = op.path(method, collection=collection) if collection is not None else op.path(method)
    return HttpExchange(method, path + query, op.idempotent, decode or _unwrap, json_body=json_body,
                        payload=None if payload is None else bytes(payload), session=wants_session(consistency))


# ------------------------------------------------------------------ the exchange of each Transport call
def health() -> HttpExchange[dict[str, Any]]:
    return _op(ops.HEALTH, "GET")


def create_collection(body: dict[str, Any]) -> HttpExchange[dict[str, Any]]:
    return _op(ops.CREATE_COLLECTION, "POST", json_body=body)


def get_collection(collection: str) -> HttpExchange[dict[str, Any]]:
    return _op(ops.GET_COLLECTION, "GET", collection)


def list_collections() -> HttpExchange[list[dict[str, Any]]]:
    return _op(ops.LIST_COLLECTIONS, "GET")


def update_collection(collection: str, changes: dict[str, Any]) -> HttpExchange[dict[str, Any]]:
    return _op(ops.UPDATE_COLLECTION, "PATCH", collection, json_body=changes)


def delete_collection(collection: str) -> HttpExchange[None]:
    def decode(*answer: Any) -> None:
        _unwrap(*answer)

    return _op(ops.DELETE_COLLECTION, "DELETE", collection, decode=decode)


def compact(collection: str) -> HttpExchange[dict[str, Any]]:
    return _op(ops.COMPACT, "POST", collection)


def stats(collection: str) -> HttpExchange[dict[str, Any]]:
    return _op(ops.STATS, "GET", collection)


def flush(collection: str) -> HttpExchange[dict[str, Any]]:
    return _op(ops.FLUSH, "POST", collection)


def insert_payload(collection: str, payload: bytes) -> HttpExchange[dict[str, Any]]:
    return _op(ops.INSERT, "POST", collection, payload=payload)


def mutate_payload(collection: str, payload: bytes) -> HttpExchange[dict[str, Any]]:
    return _op(ops.MUTATE, "POST", collection, payload=payload)


def _with_level(fields: dict[str, Any], consistency: str | None) -> dict[str, Any]:
    return fields if consistency is None else {**fields, "consistency": consistency}


def get_vectors(collection: str, ids: list[str], include_vectors: bool,
                consistency: str | None = None) -> HttpExchange[list[dict[str, Any]]]:
    body = _with_level({"ids": list(ids), "include_vectors": include_vectors}, consistency)
    return _op(ops.GET, "POST", collection, json_body=body,
               decode=lambda *answer: [_with_array(r) for r in _unwrap(*answer)], consistency=consistency)


def count(collection: str, filter_json: str | None, consistency: str | None = None) -> HttpExchange[int]:
    def decode(*answer: Any) -> int:
        return int(_unwrap(*answer)["count"])

    fields = _with_level({} if filter_json is None else {"filter": filter_json}, consistency)
    if not fields:
        return _op(ops.COUNT, "GET", collection, decode=decode)
    query = urlencode(fields)
    if len(query) > 4000:  # keep URLs short; the POST form takes any size
        return _op(ops.COUNT, "POST", collection, json_body=fields, decode=decode, consistency=consistency)
    return _op(ops.COUNT, "GET", collection, query=f"?{query}", decode=decode, consistency=consistency)


def scroll(
    collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool,
    consistency: str | None = None,
) -> HttpExchange[tuple[list[dict[str, Any]], str | None]]:
    body: dict[str, Any] = _with_level({"limit": limit, "include_vectors": include_vectors}, consistency)
    if cursor is not None:
        body["cursor"] = cursor
    if filter_json is not None:
        body["filter"] = filter_json

    def decode(*answer: Any) -> tuple[list[dict[str, Any]], str | None]:
        data = _unwrap(*answer)
        return [_with_array(r) for r in data["records"]], data["next_cursor"]

    return _op(ops.SCROLL, "POST", collection, json_body=body, decode=decode, consistency=consistency)


def search_text(collection: str, body: dict[str, Any]) -> HttpExchange[list[dict[str, Any]]]:
    return _op(ops.SEARCH_TEXT, "POST", collection, json_body=body, consistency=body.get("consistency"))


def hybrid_search(collection: str, body: dict[str, Any]) -> HttpExchange[list[dict[str, Any]]]:
    return _op(ops.HYBRID_SEARCH, "POST", collection, json_body=body, consistency=body.get("consistency"))


def search_sparse(collection: str, body: dict[str, Any]) -> HttpExchange[list[dict[str, Any]]]:
    return _op(ops.SEARCH_SPARSE, "POST", collection, json_body=body, consistency=body.get("consistency"))


def search_groups(collection: str, body: dict[str, Any]) -> HttpExchange[list[dict[str, Any]]]:
    return _op(ops.SEARCH_GROUPS, "POST", collection, json_body=body, consistency=body.get("consistency"))


def recommend(collection: str, body: dict[str, Any]) -> HttpExchange[list[dict[str, Any]]]:
    return _op(ops.RECOMMEND, "POST", collection, json_body=body, consistency=body.get("consistency"))


def search_payload(collection: str, payload: bytes, extras: dict[str, Any] | None = None) -> HttpExchange[bytes]:
    """extras (score_threshold, oversampling, consistency) go as query parameters beside the Avro body."""
    # Search and SearchBatch are the same call on the server; the payload says how many queries.
    op = ops.SEARCH_BATCH

    def decode(status: int, content_type: str, data: bytes) -> bytes:
        if status == 200 and content_type.split(";", 1)[0].strip().lower() == AVRO:
            return data
        _unwrap(status, content_type, data)  # raises the server's error
        raise ProximaDBError(f"expected an application/avro search result, got {content_type!r}")

    query = "?" + urlencode({name: v if name == "consistency" else repr(float(v))
                             for name, v in extras.items()}) if extras else ""
    return HttpExchange("POST", op.path("POST", collection=collection) + query, op.idempotent, decode,
                        payload=bytes(payload), accept=AVRO, session=wants_session((extras or {}).get("consistency")))


class RestEndpoint:
    """Where a REST transport connects, what every request carries, how failures read (blocking and asyncio)."""

    protocol = "rest"
    schema_version = 1  # set by the client to the negotiated payload version

    def __init__(self, url: str = "http://127.0.0.1:5678", timeout: float = 30.0, api_key: str | None = None,
                 ca_file: str | None = None, verify: bool = True) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https"):
            raise ValidationError(f"REST url must be http:// or https://, not {url!r}")
        if not parts.hostname:
            raise ValidationError(f"REST url has no host: {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if self._https:  # verified against the system CAs, or ca_file's, unless verify=False
            self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._headers = {"User-Agent": "proximadb-python"}
        if timeout and timeout > 0:  # the server stops working on a request once this client has given up
            self._headers["X-Request-Timeout"] = f"{timeout:g}"
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._closed = False
        self.session = SessionTokens()  # the write acknowledgements this client got (proximadb.consistency)

    def _closed_error(self) -> UnavailableError:
        return UnavailableError(f"the REST transport to {self.url} is closed")

    def _session_headers(self, exchange: HttpExchange[Any]) -> dict[str, str]:
        """The session token, for a read with consistency=session; a write's request id
        (:mod:`proximadb.idempotency`)."""
        headers = {SESSION_HEADER: self.session.token()} if exchange.session else {}
        request_id = idempotency.outgoing()
        if request_id is not None:
            headers[idempotency.REQUEST_ID_HEADER] = request_id
        return headers

    def _note_session(self, token: str | None) -> None:
        """Merge the session token a write's answer carries (header ``ProximaDB-Session``)."""
        if token:
            self.session.add(token)

    def _timed_out(self, exchange: HttpExchange[Any], exc: BaseException) -> RequestTimeoutError:
        return RequestTimeoutError(
            f"{exchange.method} {self.url}{exchange.path} timed out after {self.timeout:g}s: {exc}"
        )

    def _unreachable(self, exchange: HttpExchange[Any], exc: BaseException) -> UnavailableError:
        where = f"({exchange.method} {exchange.path})"
        if isinstance(exc, ssl.SSLError):
            hint = (" (the server's certificate is not trusted: pass ca_file= with the CA that signed it)"
                    if isinstance(exc, ssl.SSLCertVerificationError) else "")
            return UnavailableError(f"TLS with ProximaDB at {self.url} failed {where}: {exc}{hint}")
        return UnavailableError(f"cannot reach ProximaDB at {self.url} {where}: {exc}")

class RestTransport(RestEndpoint):
    """The blocking :class:`~proximadb.sdk.transport.Transport` over ``http.client`` keep-alive connections."""

    def __init__(self, url: str = "http://127.0.0.1:5678", timeout: float = 30.0, api_key: str | None = None,
                 ca_file: str | None = None, verify: bool = True) -> None:
        super().__init__(url, timeout, api_key, ca_file, verify)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connections
    def _new_connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was reused from the pool."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            while self._idle:
                conn = self._idle.pop()
                if not _is_stale(conn):
                    return conn, True
                conn.close()
        return self._new_connection(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> RestTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one request
    def _send(self, exchange: HttpExchange[T]) -> T:
        body, headers = exchange.body()
        headers = dict(self._headers, **headers, **self._session_headers(exchange))
        target = self._prefix + exchange.path
        for attempt in (1, 2):
            conn, reused = self._take()
            try:
                conn.request(exchange.method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError as exc:
                conn.close()
                raise self._timed_out(exchange, exc) from None
            except (*_CONNECTION_ERRORS, http.client.HTTPException, OSError) as exc:
                conn.close()
                if attempt == 1 and reused and exchange.idempotent and isinstance(exc, _CONNECTION_ERRORS):
                    continue  # a keep-alive connection the server dropped: once more on a fresh one
                raise self._unreachable(exchange, exc) from None
            if resp.will_close:
                conn.close()
            else:
                self._give_back(conn)
            self._note_session(resp.getheader(SESSION_HEADER))
            return exchange.decode(resp.status, resp.getheader("Content-Type", "") or "", data)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ Transport
    def health(self) -> dict[str, Any]:
        return self._send(health())

    def create_collection(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._send(create_collection(body))

    def get_collection(self, collection: str) -> dict[str, Any]:
        return self._send(get_collection(collection))

    def list_collections(self) -> list[dict[str, Any]]:
        return self._send(list_collections())

    def update_collection(self, collection: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._send(update_collection(collection, changes))

    def delete_collection(self, collection: str) -> None:
        self._send(delete_collection(collection))

    def compact(self, collection: str) -> dict[str, Any]:
        return self._send(compact(collection))

    def stats(self, collection: str) -> dict[str, Any]:
        return self._send(stats(collection))

    def flush(self, collection: str) -> dict[str, Any]:
        return self._send(flush(collection))

    def insert_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        return self._send(insert_payload(collection, payload))

    def mutate_payload(self, collection: str, payload: bytes) -> dict[str, Any]:
        return self._send(mutate_payload(collection, payload))

    def get_vectors(self, collection: str, ids: list[str], include_vectors: bool,
                    consistency: str | None = None) -> list[dict[str, Any]]:
        return self._send(get_vectors(collection, ids, include_vectors, consistency))

    def count(self, collection: str, filter_json: str | None, consistency: str | None = None) -> int:
        return self._send(count(collection, filter_json, consistency))

    def scroll(
        self, collection: str, limit: int, cursor: str | None, filter_json: str | None, include_vectors: bool,
        consistency: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        return self._send(scroll(collection, limit, cursor, filter_json, include_vectors, consistency))

    def search_payload(self, collection: str, payload: bytes, extras: dict[str, Any] | None = None) -> bytes:
        return self._send(search_payload(collection, payload, extras))

    def search_groups(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(search_groups(collection, body))

    def recommend(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(recommend(collection, body))

    def search_text(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(search_text(collection, body))

    def hybrid_search(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(hybrid_search(collection, body))

    def search_sparse(self, collection: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return self._send(search_sparse(collection, body))


def _is_stale(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed (or sent garbage): do not reuse it."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _unwrap(status: int, content_type: str, data: bytes) -> Any:
    """The ``data`` of a successful envelope; otherwise raise the typed error it reports."""
    envelope: Any = None
    if content_type.split(";", 1)[0].strip().lower() == JSON:
        try:
            envelope = json.loads(data)
        except ValueError:
            envelope = None
    if isinstance(envelope, dict) and "success" in envelope:
        if envelope["success"] and status < 400:
            return envelope.get("data")
        error = envelope.get("error") or {}
        code = str(error.get("code") or "")
        message = str(error.get("message") or envelope.get("message") or f"HTTP {status}")
        if code in ERRORS_BY_CODE:
            raise error_from_code(code, message)
        raise BY_HTTP_STATUS.get(status, ProximaDBError)(f"{message} (HTTP {status}, code {code!r})")
    snippet = data[:200].decode("utf-8", "replace")
    raise BY_HTTP_STATUS.get(status, ProximaDBError)(
        f"unexpected HTTP {status} response ({content_type or 'no content type'}): {snippet}"
    )


def _with_array(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON record as the other transports give it: its vector and named vectors float32 arrays."""
    vector = record.get("vector")
    if vector is not None:
        record["vector"] = np.asarray(vector, dtype=np.float32)
    named = record.get("named_vectors")
    if named:
        record["named_vectors"] = {name: np.asarray(vec, dtype=np.float32) for name, vec in named.items()}
    return record


__all__ = ["RestTransport"]
