"""Record lookups for a Collection's reads (get, get_many, count, scroll): memtable first, then the
sealed memtables a flush is writing (sealed.py), then segments.

Every lookup here is "alive now": a row deleted or expired at the request's time (``now``, read once
per request from expiry.now_us) is absent (expiry.py holds the rule). Filtered reads (count, scroll,
delete by filter) match rows with each part's payload index (:meth:`ReadPath._live_matches`), never
by walking metadata per row.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from proximadb.filters import Filter
from proximadb.storage import expiry
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.memtable import Memtable
from proximadb.storage.payload_index import PayloadIndex
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
        return None if where is None else self._record_at(*where, include_vector)

    @staticmethod
    def _record_at(source: Memtable | Segment, row: int, include_vector: bool) -> dict[str, Any]:
        rec = source.record(row)
        if not include_vector:
            rec.pop("vector")
            rec.pop("named_vectors", None)  # named vectors come with the vector
        return rec

    def _live_parts(self, now: int) -> Iterator[tuple[Memtable | Segment, Sequence[str], PayloadIndex, np.ndarray]]:
        """(part, its row ids, its payload index, uint8 mask of its rows alive at ``now``) for every
        segment, then the sealed memtables a flush is writing, then the memtable (each read through one
        snapshot). Call under the collection lock."""
        for seg in self.segments:
            yield seg, seg.ids, seg.payload, expiry.alive_mask(seg.alive(), seg.expires_at, now)
        for mt in [*self.sealed, self.memtable]:
            snap = mt.snapshot()
            yield mt, snap.ids, mt.payload, expiry.alive_mask(snap.alive, snap.expires_at, now)

    def _live_count(self, now: int) -> int:
        return sum(int(np.count_nonzero(mask)) for *_, mask in self._live_parts(now))

    def _live_matches(self, flt: Filter, now: int) -> Iterator[tuple[Memtable | Segment, Sequence[str], np.ndarray]]:
        """Each part with its row ids and the bool mask of its rows alive at ``now`` that match ``flt``,
        from the part's payload index. Call under the collection lock."""
        for part, ids, payload, mask in self._live_parts(now):
            yield part, ids, mask.view(bool) & flt.index_mask(payload, mask.shape[0])


    @staticmethod
    def _segment_ids_after(seg: Segment, cursor: str | None) -> Iterator[str]:
        start = bisect.bisect_right(seg.ids, cursor) if cursor is not None else 0
        deleted = seg.deleted
        for row in range(start, seg.rows):
            if not deleted[row]:
                yield seg.ids[row]
