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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from proximadb.errors import RequestTimeoutError

# (monotonic deadline, the budget in seconds it was given) or None.
_current: ContextVar[tuple[float, float] | None] = ContextVar("proximadb_deadline", default=None)


@contextmanager
def scope(seconds: float | None) -> Iterator[None]:
    """Run the block with a deadline ``seconds`` from now (None or <= 0: none)."""
    if seconds is None or seconds <= 0:
        yield
        return
    token = _current.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _current.reset(token)


def remaining() -> float | None:
    """Seconds left (may be negative), or None without a deadline."""
    current = _current.get()
    return None if current is None else current[0] - time.monotonic()


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


@contextmanager
def locked(lock: threading.RLock | threading.Lock, doing: str) -> Iterator[None]:
    """``with lock``, but give up with RequestTimeoutError when the deadline passes while waiting.

    A free lock is taken even past the deadline: the deadline bounds waiting, not the work itself.
    """
    acquired = lock.acquire(blocking=False)
    if not acquired:
        left = remaining()
        if left is None:
            acquired = lock.acquire()
        else:
            acquired = left > 0 and lock.acquire(timeout=left)
    if not acquired:
        raise _expired(doing)
    try:
        yield
    finally:
        lock.release()
