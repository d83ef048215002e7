"""Record lookups for a Collection's reads (get, get_many, count, scroll): memtable first, then segments.

Filtered reads (count, scroll, delete by filter) match rows with each part's payload index
(:meth:`ReadPath._live_matches`), never by walking metadata per row."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import numpy as np

from proximadb.filters import Filter
from proximadb.storage.collection_state import CollectionState
from proximadb.storage.memtable import Memtable
from proximadb.storage.segment import Segment


class ReadPath(CollectionState):
    """Find records by id and walk live rows; the public read methods are Collection's."""

    def _record(self, id_: str, include_vector: bool = True) -> dict[str, Any] | None:
        where = self._locate(id_)
        return None if where is None else self._record_at(*where, include_vector)

    @staticmethod
    def _record_at(source: Memtable | Segment, row: int, include_vector: bool) -> dict[str, Any]:
        rec = source.record(row)
        if not include_vector:
            rec.pop("vector")
        return rec


    def _live_matches(self, flt: Filter) -> Iterator[tuple[Memtable | Segment, list[str], np.ndarray]]:
        """Each part (segments, then the memtable) with its row ids and the bool mask of its live
        rows that match ``flt``, from the part's payload index. Call under the collection lock."""
        for seg in self.segments:
            yield seg, seg.ids, (seg.deleted == 0) & flt.index_mask(seg.payload, seg.rows)
        snap = self.memtable.snapshot()
        yield self.memtable, snap.ids, snap.alive.view(bool) & flt.index_mask(self.memtable.payload, snap.rows)


    @staticmethod
    def _segment_ids_after(seg: Segment, cursor: str | None) -> Iterator[str]:
        start = bisect.bisect_right(seg.ids, cursor) if cursor is not None else 0
        deleted = seg.deleted
        for row in range(start, seg.rows):
            if not deleted[row]:
                yield seg.ids[row]
