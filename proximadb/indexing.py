"""Waiting until a collection is fully indexed (``wait_for_indexing`` of every client).

A collection's ``stats`` carry ``status``: ``"green"`` when every live row is searched through an
index (no memtable row outside the memtable's graph, no segment waiting for its index build),
``"yellow"`` otherwise, with ``indexed_rows`` / ``unindexed_rows`` (storage/collection.py,
``Collection.stats``). Rows reach an index through a flush (memtable -> segment) and the background
index build of that segment, or, in a memtable past ``memtable_index_rows`` rows, through the
memtable's own graph (storage/memtable_index.py; a memtable below that is never indexed), so
:func:`wait` flushes first (unless told not to) and then polls the stats, with a growing pause,
until they are green or the timeout passes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from proximadb.errors import IndexingTimeoutError

if TYPE_CHECKING:
    from proximadb.client_api import ProximaDBAPI

MAX_POLL_SECONDS = 1.0  # the pause between two looks at the stats grows up to this


def check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
    return float(timeout)


# A step of the waiting plan: ("flush" | "stats", 0.0) asks the client for that call's answer,
# ("sleep", seconds) for a pause.
Step = tuple[str, float]


def wait_plan(collection: str, *, timeout: float, flush: bool = True,
              poll: float = 0.05) -> Generator[Step, Any, dict[str, Any]]:
    """The waiting itself, without I/O: run by :func:`wait` (blocking) and :func:`wait_async`."""
    deadline = time.monotonic() + check_timeout(timeout)
    stats = yield ("flush" if flush else "stats", 0.0)
    pause = max(poll, 0.001)
    while stats["status"] != "green":
        left = deadline - time.monotonic()
        if left <= 0:
            raise IndexingTimeoutError(
                f"collection {collection!r} is not fully indexed after {timeout:g}s: {stats['unindexed_rows']} "
                f"row(s) unindexed ({stats['memtable_rows']} in the memtable, {stats['index_builds_pending']} "
                f"index build(s) pending{'' if flush else '; flush=False'})"
            )
        yield ("sleep", min(pause, left))
        pause = min(pause * 2, MAX_POLL_SECONDS)
        stats = yield ("stats", 0.0)
    return stats


def wait(db: ProximaDBAPI, collection: str, *, timeout: float, flush: bool = True,
         poll: float = 0.05) -> dict[str, Any]:
    """The stats of ``collection`` once green; IndexingTimeoutError after ``timeout`` seconds."""
    plan = wait_plan(collection, timeout=timeout, flush=flush, poll=poll)
    try:
        kind, seconds = next(plan)
        while True:
            if kind == "sleep":
                time.sleep(seconds)
                answer = None
            else:
                answer = getattr(db, kind)(collection)
            kind, seconds = plan.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def wait_async(db: Any, collection: str, *, timeout: float, flush: bool = True,
                     poll: float = 0.05) -> dict[str, Any]:
    """:func:`wait` for the asyncio client (``db.flush``/``db.stats`` are coroutines)."""
    plan = wait_plan(collection, timeout=timeout, flush=flush, poll=poll)
    try:
        kind, seconds = next(plan)
        while True:
            if kind == "sleep":
                await asyncio.sleep(seconds)
                answer = None
            else:
                answer = await getattr(db, kind)(collection)
            kind, seconds = plan.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
