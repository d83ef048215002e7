"""Admission: how many requests the daemon works on at once, and for how long.

One :class:`Admission` is shared by the REST and gRPC adapters, so
``max_concurrent_requests`` bounds the daemon as a whole. A request that finds
every slot taken is refused at once with
:class:`~proximadb.errors.ResourceExhaustedError` (HTTP 429 with
``Retry-After``, gRPC RESOURCE_EXHAUSTED): it did nothing, so any client may
retry it, and the SDK does, with backoff. Requests are never queued behind
the limit, so an overloaded daemon answers quickly instead of hanging.

Each admitted request runs under a deadline (:mod:`proximadb.deadline`): the
server's ``request_timeout``, or the client's own deadline when that is
shorter. Probes (``/health``, ``/ready``, ``/metrics``, the gRPC health
service) bypass admission, so an operator can still look at a daemon that is
at its limit.
"""

from __future__ import annotations

import threading

from proximadb import deadline
from proximadb.errors import ResourceExhaustedError
from proximadb.service.metrics import Metrics

IN_FLIGHT = "proximadb_requests_in_flight"
REJECTED = "proximadb_requests_rejected_total"
RETRY_AFTER_SECONDS = 1
DEFAULT_MAX_CONCURRENT = 64
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds


class Admission:
    def __init__(self, max_concurrent: int, request_timeout: float | None, metrics: Metrics) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be positive, not {max_concurrent}")
        self.max_concurrent = max_concurrent
        self.request_timeout = request_timeout if request_timeout and request_timeout > 0 else None
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.metrics = metrics
        metrics.describe(IN_FLIGHT, "gauge", "Requests being worked on now (both protocols).")
        metrics.describe(REJECTED, "counter", "Requests refused because max_concurrent_requests were in flight.")
        metrics.gauge(IN_FLIGHT, lambda: [((), float(self._in_flight))])

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def timeout_for(self, client_timeout: float | None) -> float | None:
        """The budget of one request: the server's timeout, or the client's when shorter."""
        server = self.request_timeout  # None or > 0 (__init__)
        if client_timeout is None or client_timeout <= 0:
            return server
        return client_timeout if server is None or client_timeout < server else server

    def request(self, protocol: str, client_timeout: float | None = None) -> AdmittedRequest:
        """Hold a slot and a deadline for the block (which gets the budget in seconds, None = none);
        raise ResourceExhaustedError (on entering) when no slot is free."""
        return AdmittedRequest(self, protocol, client_timeout)

    def _admit(self, protocol: str) -> None:
        if not self._slots.acquire(blocking=False):
            self.metrics.inc(REJECTED, (("protocol", protocol),))
            raise ResourceExhaustedError(
                f"server busy: {self.max_concurrent} requests are already in flight (max_concurrent_requests); "
                f"nothing was done, retry in about {RETRY_AFTER_SECONDS}s"
            )
        with self._lock:
            self._in_flight += 1

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
        self._slots.release()


class AdmittedRequest:
    """The context manager of :meth:`Admission.request` (a class: every request opens one, and this costs a
    fraction of a ``@contextmanager``'s set-up)."""

    __slots__ = ("_admission", "_client_timeout", "_deadline", "_protocol")

    def __init__(self, admission: Admission, protocol: str, client_timeout: float | None) -> None:
        self._admission, self._protocol, self._client_timeout = admission, protocol, client_timeout
        self._deadline: deadline.scope | None = None

    def __enter__(self) -> float | None:
        admission = self._admission
        admission._admit(self._protocol)
        try:
            budget = admission.timeout_for(self._client_timeout)
            self._deadline = deadline.scope(budget)
            self._deadline.__enter__()
        except BaseException:
            admission._release()
            raise
        return budget

    def __exit__(self, *exc: object) -> None:
        try:
            if self._deadline is not None:
                self._deadline.__exit__(*exc)
        finally:
            self._admission._release()
