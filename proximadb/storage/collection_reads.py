"""Record lookups for a Collection's reads (get, get_many, count, scroll): memtable first, then segments."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import numpy as np

from proximadb.storage.collection_state import CollectionState
from proximadb.storage.operations import Metadata
from proximadb.storage.segment import Segment


class ReadPath(CollectionState):
    """Find records by id and walk live rows; the public read methods are Collection's."""

    def _record(self, id_: str, include_vector: bool = True) -> dict[str, Any] | None:
        where = self._locate(id_)
        if where is None:
            return None
        source, row = where
        rec = source.record(row)
        if not include_vector:
            rec.pop("vector")
        return rec


    def _iter_live_metadata(self) -> Iterator[tuple[str, Metadata]]:
        for seg in self.segments:
            for row in np.flatnonzero(seg.deleted == 0):
                yield seg.ids[row], seg.metadata[row]
        snap = self.memtable.snapshot()
        for row in np.flatnonzero(snap.alive):
            yield snap.ids[row], snap.metadata[row]


    @staticmethod
    def _segment_ids_after(seg: Segment, cursor: str | None) -> Iterator[str]:
        start = bisect.bisect_right(seg.ids, cursor) if cursor is not None else 0
        deleted = seg.deleted
        for row in range(start, seg.rows):
            if not deleted[row]:
                yield seg.ids[row]
