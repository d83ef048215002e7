"""The current request's deadline, checked at the points where a request can wait or run long.

A protocol adapter opens a :func:`scope` around each request (the server's
``request_timeout``, shortened by a gRPC client deadline or a REST
``X-Request-Timeout`` header). The engine calls :func:`check` between
segments of a search and :func:`locked` where a request waits for a
collection's lock (held by a flush, say); the first unit of work always
runs, so a request is never refused for time it did not have to wait. Past the deadline they raise
:class:`~proximadb.errors.RequestTimeoutError` (HTTP 504 / DEADLINE_EXCEEDED).

Timeouts are checked only *before* a request changes anything: a write that
has reached the write-ahead log is finished and acknowledged even if the
deadline passes while its fsync completes, so a timeout always means "not
done". Work with no scope (background flushes, compaction, index builds,
embedded use) has no deadline. The deadline lives in a ContextVar, so it is
per thread and never leaks into the next request on the same thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import ContextVar

from proximadb.context_scope import VarScope
from proximadb.errors import RequestTimeoutError

# (monotonic deadline, the budget in seconds it was given) or None.
_current: ContextVar[tuple[float, float] | None] = ContextVar("proximadb_deadline", default=None)


class scope(VarScope):  # noqa: N801 (a context manager used as a function, as contextlib's would be)
    """Run the block with a deadline ``seconds`` from now (None or <= 0: none); a class, as every request
    opens one (:mod:`proximadb.context_scope`)."""

    __slots__ = ("_seconds",)

    def __init__(self, seconds: float | None) -> None:
        super().__init__()
        self._seconds = seconds

    def __enter__(self) -> None:
        seconds = self._seconds
        if seconds is not None and seconds > 0:
            self._push(_current, (time.monotonic() + seconds, seconds))


def remaining() -> float | None:
    """Seconds left (may be negative), or None without a deadline."""
    current = _current.get()
    return None if current is None else current[0] - time.monotonic()


def wait_seconds(most: float) -> float:
    """How long a request may wait for something (a replica to apply its target, to start): ``most``, or
    less when the request's deadline is nearer."""
    left = remaining()
    return most if left is None else max(0.0, min(most, left))


def _expired(doing: str) -> RequestTimeoutError:
    current = _current.get()
    budget = current[1] if current is not None else 0.0
    return RequestTimeoutError(
        f"request timed out after {budget:g}s while {doing}; nothing was changed. Retry, ask for less "
        "(smaller k, batch or filter scope), or raise the client timeout / the server's request_timeout"
    )


def check(doing: str) -> None:
    left = remaining()
    if left is not None and left <= 0:
        raise _expired(doing)


class locked:  # noqa: N801 (a context manager used as a function, as contextlib's would be)
    """``with lock``, but give up with RequestTimeoutError when the deadline passes while waiting.

    A free lock is taken even past the deadline: the deadline bounds waiting, not the work itself.
    ``doing`` (what the request was doing, for the error) may be a function that words it, called only
    for the error. A class, not a generator: every search and write takes one.
    """

    __slots__ = ("_doing", "_lock")

    def __init__(self, lock: threading.RLock | threading.Lock, doing: str | Callable[[], str]) -> None:
        self._lock, self._doing = lock, doing

    def __enter__(self) -> None:
        lock = self._lock
        if lock.acquire(blocking=False):
            return
        left = remaining()
        if left is None:
            acquired = lock.acquire()
        else:
            acquired = left > 0 and lock.acquire(timeout=left)
        if not acquired:
            doing = self._doing
            raise _expired(doing if isinstance(doing, str) else doing())

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
