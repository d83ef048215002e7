"""Writes a client may send again: request ids, the answers a daemon remembers for them, and log message ids.

A client that did not hear the answer to a write (a timeout, a dropped connection, a node that died and a
failover to the next address) cannot know whether the write happened. The SDK gives every write call a
**request id** and sends it again, unchanged, with every retry of that call (REST request header
``ProximaDB-Request-Id``, gRPC request metadata ``proximadb-request-id``; 1 to 64 of ``A-Z a-z 0-9 _ -``, a
malformed one is refused with 400 / INVALID_ARGUMENT before anything runs). A request without one is
executed as before.

What the daemon does with it (:func:`once`, around the service's write methods):

* **The answer is remembered** in a :class:`Ledger` under the request id, for ``WINDOW_SECONDS``, with a
  digest of what was asked (operation, collection, payload bytes or request fields). A second request with
  that id and the same digest gets the remembered answer and changes nothing; with another digest it is
  refused (ValidationError: an id names one request). One node keeps its ledger in memory
  (:class:`MemoryLedger`: a retry after the daemon restarted is executed again; an insert then reports the
  ids as existing, an upsert or a delete is harmless to repeat). In cluster mode the ledger is a JetStream
  key-value bucket every node reads (:mod:`proximadb.cluster.request_ledger`), so a retry sent to another
  node after a failover is answered the same way.
* **Log appends are de-duplicated** (cluster mode): the n-th log append of a request carries the message
  id ``<request id>-<n>`` (:func:`message_id`), so JetStream applies an append a retry repeats once
  (its duplicate window is ``WINDOW_SECONDS``): a request that failed after some shards acknowledged is
  completed by its retry, never applied twice. Such a retry is marked in the ledger as started
  (:meth:`Ledger.begin`), and an insert that finds its ids present then does not refuse them: they are
  this request's own rows from the first attempt.
* Records a JSON insert sends without ids get ids derived from the request id (:func:`generated_id`),
  so a retry writes the same rows.

The scope is a ContextVar (as :mod:`proximadb.consistency`): the protocol adapters open it per request
with :func:`request`; nothing below the service is told about it explicitly.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from proximadb import consistency
from proximadb.context_scope import VarScope
from proximadb.errors import ProximaDBError, ValidationError, VectorExistsError

REQUEST_ID_HEADER = "ProximaDB-Request-Id"
REQUEST_ID_METADATA = "proximadb-request-id"
WINDOW_SECONDS = 120.0  # answers are remembered, and log appends de-duplicated, this long
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STARTED = "started"
_DONE = "done"
_REFUSED = "refused"  # the attempt failed with the request's own error (4xx): nothing written


def new_request_id() -> str:
    return uuid.uuid4().hex


def check_request_id(text: str) -> str:
    if not _ID.fullmatch(text):
        raise ValidationError(f"request id {text[:80]!r}: use 1 to 64 of A-Z, a-z, 0-9, '_' and '-' "
                              f"(the SDK makes one per write; {REQUEST_ID_HEADER} header / "
                              f"{REQUEST_ID_METADATA} metadata)")
    return text


@dataclass
class RequestState:
    request_id: str | None
    appends: int = 0  # log appends made so far (message ids are numbered by it)
    owner: bool = False  # an enclosing write method already answers for the request id
    retried: bool = False  # the ledger says an earlier attempt of this request started
    lock: threading.Lock = field(default_factory=threading.Lock)


_current: ContextVar[RequestState | None] = ContextVar("proximadb_request_id", default=None)


class request(VarScope):  # noqa: N801 (a context manager used as a function, as contextlib's would be)
    """The scope of one request (``request_id`` as the client sent it, None when it sent none):
    ``with request(request_id) as state``; a class, not a generator, as every request opens one."""

    __slots__ = ("_request_id",)

    def __init__(self, request_id: str | None) -> None:
        super().__init__()
        self._request_id = request_id

    def __enter__(self) -> RequestState:
        rid = self._request_id
        state = RequestState(None if rid is None else check_request_id(rid))
        self._push(_current, state)
        return state


_outgoing: ContextVar[str | None] = ContextVar("proximadb_outgoing_request_id", default=None)


class sending(VarScope):  # noqa: N801
    """Client side: the request id the SDK's transports send with the calls made inside (every retry of
    one write call is made inside the same one)."""

    __slots__ = ("_request_id",)

    def __init__(self, request_id: str | None) -> None:
        super().__init__()
        self._request_id = request_id

    def __enter__(self) -> None:
        self._push(_outgoing, self._request_id)  # a read's None inside none: nothing to set


def outgoing() -> str | None:
    """Client side: the request id to send with the call being made, or None."""
    return _outgoing.get()


def current() -> str | None:
    state = _current.get()
    return None if state is None else state.request_id


def message_id(fallback: Callable[[], str]) -> str:
    """The message id of the current request's next log append: ``<request id>-<n>``, or ``fallback()``
    for a request without an id (a new one per append)."""
    state = _current.get()
    if state is None or state.request_id is None:
        return fallback()
    with state.lock:
        state.appends += 1
        return f"{state.request_id}-{state.appends}"


def generated_id(index: int) -> str:
    """The id a JSON insert gives its ``index``-th record sent without one: from the request id when there
    is one (a retry makes the same ids), else random."""
    rid = current()
    if rid is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"proximadb-request:{rid}:{index}"))


def retried_insert() -> bool:
    """True inside a request whose earlier attempt started (:meth:`Ledger.begin`): ids it finds present
    may be its own rows."""
    state = _current.get()
    return state is not None and state.retried


def digest(operation: str, collection: str, argument: Any) -> str:
    """What a request asked, for telling a retry from another request that reuses its id: the operation and
    collection, and the payload's length and CRC-32 (a check against a mistake, not against an adversary;
    it reads a 10,000-row payload in about 2 ms) or the request's fields."""
    head = f"{operation}\0{collection}\0"
    if isinstance(argument, (bytes, bytearray, memoryview)):
        body = f"{len(argument)}:{zlib.crc32(argument):08x}"
    else:
        body = json.dumps(argument, sort_keys=True, default=_plain)
    return hashlib.blake2b((head + body).encode(), digest_size=16).hexdigest()


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


class Ledger(Protocol):
    """Where a daemon remembers, per request id, ``{"digest", "state", "answer"}`` for ``WINDOW_SECONDS``.
    ``claim`` writes ``entry`` when the id has none and returns None, else returns the one it has (one step:
    two attempts at once cannot both find it free)."""

    def read(self, request_id: str) -> dict[str, Any] | None: ...
    def write(self, request_id: str, entry: dict[str, Any]) -> None: ...
    def claim(self, request_id: str, entry: dict[str, Any]) -> dict[str, Any] | None: ...


class MemoryLedger:
    """One daemon's ledger: in memory, at most ``capacity`` entries, each for ``WINDOW_SECONDS``."""

    def __init__(self, capacity: int = 100_000, window: float = WINDOW_SECONDS) -> None:
        self.capacity = capacity
        self.window = window
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.RLock()

    def read(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._entries.get(request_id)
            if found is None or found[0] < time.monotonic():
                return None
            return found[1]

    def claim(self, request_id: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            found = self.read(request_id)
            if found is None:
                self.write(request_id, entry)
            return found

    def write(self, request_id: str, entry: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            self._entries.pop(request_id, None)
            self._entries[request_id] = (now + self.window, entry)
            while self._entries and (len(self._entries) > self.capacity
                                     or next(iter(self._entries.values()))[0] < now):
                self._entries.popitem(last=False)


RETRY_WAIT_SECONDS = 2.0  # an insert that meets its own rows waits this long for its first attempt's answer


def once(ledger: Ledger, operation: str, collection: str, argument: Any, run: Callable[[], dict[str, Any]], *,
         remember: Callable[[dict[str, Any]], dict[str, Any]] = dict,
         recall: Callable[[dict[str, Any]], dict[str, Any]] = dict,
         acknowledge: Callable[[str, int], None] = consistency.acknowledged) -> dict[str, Any]:
    """``run()`` once per request id (see the module's documentation); without a request id, or inside a
    write method that already answers for it, just ``run()``. ``remember`` makes what the ledger keeps of an
    answer (an insert keeps its count, not its ids) and ``recall`` the answer again from that. The log
    positions the first attempt was acknowledged (cluster mode) are kept too, and an answer from the ledger
    passes each to ``acknowledge(log, seq)``: the node that answers a retry reads the write it answers for
    (bounded reads), and the response's session token names it."""
    state = _current.get()
    if state is None or state.request_id is None or state.owner:
        return run()
    rid = state.request_id
    asked = digest(operation, collection, argument)
    entry = ledger.claim(rid, {"digest": asked, "state": _STARTED})
    if entry is not None and entry.get("digest") != asked:
        raise ValidationError(f"request id {rid!r} was used for another request in the last "
                              f"{WINDOW_SECONDS:g}s; give each write its own id")
    if entry is not None and entry.get("state") == _DONE:
        return _recalled(entry, recall, acknowledge)
    # an attempt started and did not answer (it may be running still): its appends may be in
    state.retried = entry is not None and entry.get("state") == _STARTED
    if entry is not None and not state.retried:  # an earlier attempt was refused: this one starts afresh
        ledger.write(rid, {"digest": asked, "state": _STARTED})
    state.owner = True
    try:
        answer = run()
    except VectorExistsError:
        done = _wait_done(ledger, rid, asked)  # a first attempt still running may answer for these rows
        if done is None:
            _refused(ledger, rid, asked)
            raise
        return _recalled(done, recall, acknowledge)
    except ProximaDBError as exc:
        if exc.http_status < 500:  # refused (bad input, not found, ...): nothing was written
            _refused(ledger, rid, asked)
        raise  # else it may have written some: a retry completes it
    finally:
        state.owner = False
    ledger.write(rid, {"digest": asked, "state": _DONE, "answer": remember(answer),
                       "acked": dict(consistency.current().acked)})
    return answer


def _refused(ledger: Ledger, rid: str, asked: str) -> None:
    ledger.write(rid, {"digest": asked, "state": _REFUSED})


def _recalled(entry: dict[str, Any], recall: Callable[[dict[str, Any]], dict[str, Any]],
              acknowledge: Callable[[str, int], None]) -> dict[str, Any]:
    for log, seq in (entry.get("acked") or {}).items():
        acknowledge(str(log), int(seq))
    return recall(dict(entry["answer"]))


def _wait_done(ledger: Ledger, rid: str, asked: str) -> dict[str, Any] | None:
    give_up = time.monotonic() + RETRY_WAIT_SECONDS
    while time.monotonic() < give_up:
        entry = ledger.read(rid)
        if entry is not None and entry.get("digest") == asked and entry.get("state") == _DONE:
            return entry
        time.sleep(0.05)
    return None


__all__ = [
    "REQUEST_ID_HEADER", "REQUEST_ID_METADATA", "WINDOW_SECONDS", "Ledger", "MemoryLedger", "RequestState",
    "check_request_id", "current", "digest", "generated_id", "message_id", "new_request_id", "once", "outgoing",
    "request", "retried_insert", "sending",
]
