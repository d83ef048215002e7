"""Progress of long work (WAL replay, compaction, index builds), for logs and ``/metrics``.

A task registers itself, updates ``done`` (and ``total`` when it is known),
and logs a line at most every few seconds with percent, rate and ETA. The
daemon's ``/metrics`` renders every running task as
``proximadb_task_done{task,collection}``, ``proximadb_task_total`` (0 = not
known yet) and ``proximadb_task_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

LOG_EVERY_SECONDS = 5.0

_lock = threading.Lock()
_running: dict[int, Task] = {}


@dataclass(slots=True)
class Task:
    kind: str  # "replay" | "compaction" | "index_build" | "migration"
    collection: str
    unit: str = "rows"
    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _last_log: float = 0.0
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("proximadb.progress"))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            self.logger.info("%s", self.describe())

    def describe(self) -> str:
        elapsed = self.elapsed
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.kind} of {self.collection}: {self.done:,} {self.unit}"
        if self.total:
            eta = (self.total - self.done) / rate if rate else float("inf")
            text += f" of {self.total:,} ({100 * self.done / self.total:.0f}%), ETA {eta:.0f}s"
        return text + f", {rate:,.0f} {self.unit}/s"


@contextmanager
def track(kind: str, collection: str, total: int = 0, unit: str = "rows") -> Iterator[Task]:
    task = Task(kind, collection, unit, total)
    task._last_log = task.started  # first line after LOG_EVERY_SECONDS: short work stays quiet
    with _lock:
        _running[id(task)] = task
    try:
        yield task
    finally:
        with _lock:
            _running.pop(id(task), None)


def running() -> list[Task]:
    with _lock:
        return list(_running.values())
