"""The master's signal queue never waits past its timeout, however signals interrupt the wait."""

from __future__ import annotations

import queue
import signal
import time

import pytest

from proximadb.server.signal_queue import SignalQueue


@pytest.fixture
def interval_signals():  # type: ignore[no-untyped-def]
    """SIGALRM every 49.9 ms with a handler that queues nothing: it lands at the end of 50 ms waits."""
    previous = signal.signal(signal.SIGALRM, lambda sig, frame: None)
    signal.setitimer(signal.ITIMER_REAL, 0.0499, 0.0499)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_timed_get_returns_by_its_deadline_under_interrupting_signals(interval_signals: None) -> None:
    # queue.SimpleQueue.get(timeout=0.05) under the same signals blocks for good on CPython 3.11.
    q = SignalQueue()
    worst = 0.0
    for _ in range(200):
        started = time.monotonic()
        with pytest.raises(queue.Empty):
            q.get(block=True, timeout=0.05)
        worst = max(worst, time.monotonic() - started)
    assert worst < 5.0  # a bound with room for a loaded machine; the failure it guards against is forever


def test_items_queued_by_a_signal_handler_wake_a_waiting_get() -> None:
    q = SignalQueue()
    previous = signal.signal(signal.SIGALRM, lambda sig, frame: q.put_nowait(sig))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        started = time.monotonic()
        assert q.get(block=True, timeout=30) == signal.SIGALRM
        assert time.monotonic() - started < 25
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_order_and_many_wakeups() -> None:
    q = SignalQueue()
    for i in range(100_000):  # more wake-up bytes than a pipe holds
        q.put_nowait(i % 7)
    assert [q.get_nowait() for _ in range(100_000)] == [i % 7 for i in range(100_000)]
    with pytest.raises(queue.Empty):
        q.get(block=False)
