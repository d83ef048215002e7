"""Row expiry: the one rule for "alive now" that every read path applies, and the collection default TTL.

A row's ``expires_at`` (µs since the epoch; ``NO_EXPIRY`` = never, operations.py) is the first
moment it is gone: from then on search, get, get_many, scroll, count, delete and update treat it as
absent, in the memtable and in segments alike, compared with the time the request reads once
(:func:`now_us`). Nothing is written when a row expires: compaction drops expired rows
(compaction.py) and the background policy counts them as dead. The write path's ``_apply`` and
WAL replay never look at the clock, so a replay rebuilds the same rows whatever the time.

A collection's ``default_ttl_seconds`` (catalog.py) gives rows written without ``expires_at``
the expiry ``now + ttl`` at the write (:func:`stamp_default_ttl`); the stamped batch is logged
as the engine encodes it, so a replay restores the same expiry.
"""

from __future__ import annotations

import time

import numpy as np

from proximadb.storage.operations import NO_EXPIRY, InsertOp


def now_us() -> int:
    """The clock every expiry check reads (µs since the epoch); tests replace it."""
    return time.time_ns() // 1000


def alive_mask(alive: np.ndarray, expires_at: np.ndarray | None, now: int) -> np.ndarray:
    """``alive`` (uint8, one per row) with the rows expired at ``now`` cleared; ``expires_at`` may be
    longer (a memtable's reserve) or None (no row expires: ``alive`` itself is returned)."""
    if expires_at is None:
        return alive
    x = expires_at[: alive.shape[0]]
    return alive & ((x == NO_EXPIRY) | (x > now)).view(np.uint8)


def alive_rows(rows: np.ndarray, alive: np.ndarray, expires_at: np.ndarray | None, now: int) -> np.ndarray:
    """The entries of ``rows`` (row numbers) alive at ``now`` under ``alive`` (uint8, one per row) and
    ``expires_at``: :func:`alive_mask` looked up at those rows only (the planner's small sets)."""
    keep = alive[rows].view(bool)
    if expires_at is not None:
        x = expires_at[rows]
        keep &= (x == NO_EXPIRY) | (x > now)
    return rows if keep.all() else rows[keep]


def row_alive(expires_at: np.ndarray | None, row: int, now: int) -> bool:
    """Whether one row is not expired at ``now`` (deletion is the caller's business)."""
    if expires_at is None:
        return True
    x = int(expires_at[row])
    return x == NO_EXPIRY or x > now


def stamp_default_ttl(op: InsertOp, ttl_seconds: int, now: int) -> bool:
    """Give the rows of ``op`` without an expiry ``now + ttl_seconds``; True when any row was stamped."""
    n = len(op.ids)
    if n == 0:
        return False
    stamp = now + ttl_seconds * 1_000_000
    if op.expires_at is None:
        op.expires_at = np.full(n, stamp, dtype=np.int64)
        return True
    missing = op.expires_at == NO_EXPIRY
    if not missing.any():
        return False
    op.expires_at = np.where(missing, stamp, op.expires_at).astype(np.int64)
    return True
