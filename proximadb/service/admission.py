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
from collections.abc import Iterator
from contextlib import contextmanager

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
        budgets = [t for t in (self.request_timeout, client_timeout) if t is not None and t > 0]
        return min(budgets) if budgets else None

    @contextmanager
    def request(self, protocol: str, client_timeout: float | None = None) -> Iterator[float | None]:
        """Hold a slot and a deadline for the block (which gets the budget in seconds, None = none);
        raise ResourceExhaustedError when no slot is free."""
        if not self._slots.acquire(blocking=False):
            self.metrics.inc(REJECTED, (("protocol", protocol),))
            raise ResourceExhaustedError(
                f"server busy: {self.max_concurrent} requests are already in flight (max_concurrent_requests); "
                f"nothing was done, retry in about {RETRY_AFTER_SECONDS}s"
            )
        with self._lock:
            self._in_flight += 1
        budget = self.timeout_for(client_timeout)
        try:
            with deadline.scope(budget):
                yield budget
        finally:
            with self._lock:
                self._in_flight -= 1
            self._slots.release()
