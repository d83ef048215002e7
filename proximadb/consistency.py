"""Read consistency per request: the levels, their parsing, and the session token.

A read (search, search_batch, get, count, scroll) may name its ``consistency``; on one node every level is
trivially met (a node reads its own engine), in cluster mode (:mod:`proximadb.cluster.backend`) the level
decides which log sequence each shard's replica must have applied before it answers:

* ``strong``: every write acknowledged (by any node) before the read began: each shard log's last
  sequence, read from JetStream at the start of the read;
* ``bounded`` (the default): at most ``bounded_staleness_ms`` stale (``serve --bounded-staleness-ms``),
  plus every write *this node* acknowledged;
* ``session``: the writes the caller was acknowledged, as its session token says (below);
* ``eventual``: no wait; any live replica.

**Session token.** Every write response carries one: REST response header ``ProximaDB-Session``, gRPC
trailing metadata ``proximadb-session``. A read with ``consistency="session"`` sends it back the same way
(request header / request metadata). The SDK keeps the latest per client, merged (the highest sequence per
log), and offers ``client.session_token()`` / ``client.add_session_token(token)`` to carry it on. Format
(ASCII, at most :data:`MAX_TOKEN_ENTRIES` entries)::

    v1:<log>=<seq>,<log>=<seq>,...      e.g.  v1:c3f2a0d4e5b6c7d8e-s0=42,c3f2a0d4e5b6c7d8e-s1=17

``<log>`` is a shard log's name (``c<16 hex digits>-s<shard>``, :func:`proximadb.cluster.names.log_name`:
one per shard of one incarnation of a collection), ``<seq>`` the highest sequence of that log the caller
was acknowledged; ``v1:`` alone is the empty token. Anything else is refused with ValidationError.

**Per request.** The protocol adapters open :func:`request` around each request (with the session token
the client sent); the service opens :func:`reading` around each read with the level the request names; the
cluster backend reads :func:`current` and records the sequences its writes were acknowledged with
:func:`acknowledged`, which the adapter returns as the response's token. The state lives in a ContextVar,
per thread, never leaking into the next request on the same thread (as :mod:`proximadb.deadline`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from proximadb.context_scope import VarScope
from proximadb.errors import ValidationError

SESSION_HEADER = "ProximaDB-Session"
SESSION_METADATA = "proximadb-session"
TOKEN_VERSION = "v1:"
MAX_TOKEN_ENTRIES = 256
DEFAULT_BOUNDED_STALENESS_MS = 5000
_ENTRY = re.compile(r"(c[0-9a-f]{16}-s[0-9]{1,3})=([0-9]{1,19})")


class Consistency(str, Enum):
    STRONG = "strong"
    BOUNDED = "bounded"
    SESSION = "session"
    EVENTUAL = "eventual"


LEVELS = tuple(level.value for level in Consistency)
DEFAULT = Consistency.BOUNDED


def parse_level(value: Any) -> Consistency | None:
    """None (the default, bounded) or one of :data:`LEVELS`; ValidationError naming them otherwise."""
    if value is None or isinstance(value, Consistency):
        return value
    if isinstance(value, str) and value in LEVELS:
        return Consistency(value)
    shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else repr(value[:40] + "...")
    raise ValidationError(f"consistency must be one of {', '.join(LEVELS)}, not {shown}")


def wants_session(level: Any) -> bool:
    """Whether a read at ``level`` sends the client's session token."""
    return bool(level == Consistency.SESSION.value)


def parse_token(text: Any) -> dict[str, int]:
    """A session token (see the module's documentation) as {log: seq}; ValidationError when malformed."""
    if not isinstance(text, str) or not text.startswith(TOKEN_VERSION):
        raise ValidationError(f"malformed session token: it must start with {TOKEN_VERSION!r} "
                              f"(a {SESSION_HEADER} value a write response carried)")
    body = text[len(TOKEN_VERSION):]
    if not body:
        return {}
    parts = body.split(",")
    if len(parts) > MAX_TOKEN_ENTRIES:
        raise ValidationError(f"session token has {len(parts)} entries; at most {MAX_TOKEN_ENTRIES}")
    out: dict[str, int] = {}
    for part in parts:
        found = _ENTRY.fullmatch(part)
        if found is None:
            raise ValidationError(f"malformed session token entry {part[:60]!r}: expected <log>=<sequence>, "
                                  "<log> as c<16 hex digits>-s<shard>")
        out[found[1]] = max(out.get(found[1], 0), int(found[2]))
    return out


def format_token(entries: Mapping[str, int]) -> str:
    return TOKEN_VERSION + ",".join(f"{log}={seq}" for log, seq in sorted(entries.items()))


def merge(into: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """``into`` with each log's highest sequence of both (``into`` is changed and returned)."""
    for log, seq in more.items():
        if seq > into.get(log, 0):
            into[log] = seq
    return into


class SessionTokens:
    """A client's session: the merged tokens of every write response it got (thread-safe)."""

    def __init__(self) -> None:
        self._entries: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, token: str) -> None:
        """Merge ``token`` in (ValidationError when it is malformed)."""
        entries = parse_token(token)
        with self._lock:
            merge(self._entries, entries)

    def token(self) -> str:
        with self._lock:
            return format_token(self._entries)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._entries)


# ---------------------------------------------------------------- the current request

@dataclass
class RequestState:
    level: Consistency | None = None  # None: the default (bounded)
    session: dict[str, int] = field(default_factory=dict)  # what the client's token said
    acked: dict[str, int] = field(default_factory=dict)  # what this request's writes were acknowledged

    @property
    def effective(self) -> Consistency:
        return self.level or DEFAULT


_current: ContextVar[RequestState | None] = ContextVar("proximadb_consistency", default=None)


class request(VarScope):  # noqa: N801 (a context manager used as a function, as contextlib's would be)
    """One request's scope: the client's session token (None: none sent; ValidationError when malformed).
    ``with request(token) as state`` (:mod:`proximadb.context_scope`)."""

    __slots__ = ("_token",)

    def __init__(self, session_token: str | None = None) -> None:
        super().__init__()
        self._token = session_token

    def __enter__(self) -> RequestState:
        token = self._token
        state = RequestState(session=parse_token(token) if token is not None else {})
        self._push(_current, state)
        return state


class reading(VarScope):  # noqa: N801
    """A read at ``level`` (validated; None: the default) within the current request (or a fresh one):
    ``with reading(level) as state``. A read at the default level inside a request already at it changes
    nothing (the request's own state is the read's)."""

    __slots__ = ("_level",)

    def __init__(self, level: Any) -> None:
        super().__init__()
        self._level = level

    def __enter__(self) -> RequestState:
        parsed = parse_level(self._level)
        outer = _current.get()
        if outer is not None and outer.level is parsed:
            return outer
        state = replace(outer, level=parsed) if outer is not None else RequestState(level=parsed)
        self._push(_current, state)
        return state


def current() -> RequestState:
    """The current request's state; a default (bounded, no session) one outside any request."""
    state = _current.get()
    return state if state is not None else RequestState()


def acknowledged(log: str, seq: int) -> None:
    """Record that a write of this request was acknowledged at ``seq`` of ``log`` (for the response's token)."""
    state = _current.get()
    if state is not None and seq > state.acked.get(log, 0):
        state.acked[log] = seq


def response_token(state: RequestState) -> str | None:
    """The token a response carries: the client's merged with what this request wrote; None if it wrote nothing."""
    if not state.acked:
        return None
    return format_token(merge(dict(state.session), state.acked))


__all__ = [
    "DEFAULT", "DEFAULT_BOUNDED_STALENESS_MS", "LEVELS", "SESSION_HEADER", "SESSION_METADATA", "Consistency",
    "RequestState", "SessionTokens", "acknowledged", "current", "format_token", "merge", "parse_level",
    "parse_token", "reading", "request", "response_token", "wants_session",
]
