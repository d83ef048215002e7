"""Waiting until a collection is fully indexed (``wait_for_indexing`` of every client).

A collection's ``stats`` carry ``status``: ``"green"`` when every live row is searched through an
index (no memtable rows, no segment waiting for its index build), ``"yellow"`` otherwise, with
``indexed_rows`` / ``unindexed_rows`` (storage/collection.py, ``Collection.stats``). Rows reach an
index only through a flush (memtable -> segment) and the background index build of that segment,
so :func:`wait` flushes first (unless told not to) and then polls the stats, with a growing pause,
until they are green or the timeout passes.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from proximadb.errors import IndexingTimeoutError

if TYPE_CHECKING:
    from proximadb.client_api import ProximaDBAPI

MAX_POLL_SECONDS = 1.0  # the pause between two looks at the stats grows up to this


def check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
    return float(timeout)


def wait(
    db: ProximaDBAPI, collection: str, *, timeout: float, flush: bool = True, poll: float = 0.05
) -> dict[str, Any]:
    """The stats of ``collection`` once green; IndexingTimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + check_timeout(timeout)
    stats = db.flush(collection) if flush else db.stats(collection)
    pause = max(poll, 0.001)
    while stats["status"] != "green":
        left = deadline - time.monotonic()
        if left <= 0:
            raise IndexingTimeoutError(
                f"collection {collection!r} is not fully indexed after {timeout:g}s: {stats['unindexed_rows']} "
                f"row(s) unindexed ({stats['memtable_rows']} in the memtable, {stats['index_builds_pending']} "
                f"index build(s) pending{'' if flush else '; flush=False'})"
            )
        time.sleep(min(pause, left))
        pause = min(pause * 2, MAX_POLL_SECONDS)
        stats = db.stats(collection)
    return stats
