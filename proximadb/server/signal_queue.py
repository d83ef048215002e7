"""The gunicorn master's signal queue, on a self-pipe instead of ``queue.SimpleQueue``.

gunicorn 27's master queues each signal from its handler and waits in
``SIG_QUEUE.get(block=True, timeout=1.0)``. On CPython 3.11 that wait can block
for good: when a signal interrupts the timed lock wait near its deadline and the
handler leaves the queue empty, ``SimpleQueue.get`` recomputes a negative timeout
and waits without one. A master stuck there never looks at a later SIGTERM or
SIGINT it has queued in time (seen once in 150 test starts as a daemon that did
not stop within 20 s; reproduced directly with an interval timer).

:class:`SignalQueue` has the three methods the master uses (``put_nowait``,
``get``, ``get_nowait``). A put appends to a deque and writes one byte to a
non-blocking pipe; a blocking get waits in ``select`` with the remaining time,
which Python retries after running signal handlers (PEP 475) and which can never
wait past its timeout.
"""

from __future__ import annotations

import collections
import os
import queue
import select
import time


class SignalQueue:
    def __init__(self) -> None:
        self._items: collections.deque[int] = collections.deque()
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def put_nowait(self, item: int) -> None:
        """Safe in a signal handler: an append and a non-blocking write."""
        self._items.append(item)
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass

    def get_nowait(self) -> int:
        try:
            return self._items.popleft()
        except IndexError:
            raise queue.Empty from None

    def get(self, block: bool = True, timeout: float | None = None) -> int:
        if not block:
            return self.get_nowait()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise queue.Empty
            readable, _, _ = select.select([self._read_fd], [], [], remaining)
            if readable:
                self._drain()
        return self._items.popleft()

    def _drain(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass
