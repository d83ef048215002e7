"""Record lookups for a Collection's reads (get, get_many, count, scroll): memtable first, then segments.

Every lookup here is "alive now": a row deleted or expired at the request's time (``now``, read once
per request from expiry.now_us) is absent (expiry.py holds the rule).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import numpy as np

from proximadb.storage import expiry
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.memtable import Memtable, MemtableSnapshot
from proximadb.storage.operations import Metadata
from proximadb.storage.segment import Segment


class ReadPath(CollectionState):
    """Find records by id and walk live rows; the public read methods are Collection's."""

    def _locate_alive(self, id_: str, now: int) -> tuple[Memtable | Segment, int] | None:
        """Where ``id_`` lives, unless it expired at ``now`` (then it is absent, as if deleted)."""
        where = self._locate(id_)
        if where is None or not expiry.row_alive(where[0].expires_at, where[1], now):
            return None
        return where

    def _record(self, id_: str, include_vector: bool = True, now: int | None = None) -> dict[str, Any] | None:
        where = self._locate_alive(id_, expiry.now_us() if now is None else now)
        if where is None:
            return None
        source, row = where
        rec = source.record(row)
        if not include_vector:
            rec.pop("vector")
        return rec

    def _live_masks(self, now: int) -> Iterator[tuple[Segment | MemtableSnapshot, np.ndarray]]:
        """(source, uint8 mask of its rows alive at ``now``) for every segment, then the memtable's snapshot."""
        for seg in self.segments:
            yield seg, expiry.alive_mask((seg.deleted == 0).view(np.uint8), seg.expires_at, now)
        snap = self.memtable.snapshot()
        yield snap, expiry.alive_mask(snap.alive, snap.expires_at, now)

    def _live_count(self, now: int) -> int:
        return sum(int(np.count_nonzero(mask)) for _, mask in self._live_masks(now))

    def _iter_live_metadata(self, now: int) -> Iterator[tuple[str, Metadata]]:
        for source, mask in self._live_masks(now):
            for row in np.flatnonzero(mask):
                yield source.ids[row], source.metadata[row]


    @staticmethod
    def _segment_ids_after(seg: Segment, cursor: str | None) -> Iterator[str]:
        start = bisect.bisect_right(seg.ids, cursor) if cursor is not None else 0
        deleted = seg.deleted
        for row in range(start, seg.rows):
            if not deleted[row]:
                yield seg.ids[row]
