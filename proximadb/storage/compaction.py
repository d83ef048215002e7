"""Compaction: merge segments into one, dropping deleted and superseded rows.

Correctness rests on one rule: what the manifest names must be the state *at
the WAL checkpoint*, because recovery replays the log from there. So the
merged segment is built from the rows that were live in the inputs'
*persisted* deletion bitmaps (the checkpoint state), never from the newer
in-memory deletions. At the swap, under the collection lock:

* rows deleted in an input's persisted bitmap *now* (a flush may have moved
  the checkpoint on during the merge) become generation 1 of the new
  segment's bitmap, written before the manifest;
* rows deleted only in memory since (deletes, upserts, metadata updates after
  the checkpoint) are marked in the new segment's in-memory bitmap, to be
  persisted by the next flush, exactly as for any other segment.

The manifest swap (write, fsync, rename, fsync dir) is the commit point: a
kill -9 before it leaves the old segments (the new directory, a ``.tmp`` or
still carrying its PENDING marker, is removed on open: integrity.py), after
it the new one; the input directories are deleted only after the swap, and
the new manifest lists them as ``retired`` so that an open finishes their
removal. The merge itself runs without the lock, so reads and writes go on;
only the swap holds it, briefly.

A failure before the swap (ENOSPC while writing the merged segment, its
bitmap or the manifest) leaves the inputs untouched and removes the partial
output at once, not only on the next open; ``Collection.compact`` raises
DiskFullError for ENOSPC. The background compaction after a flush is skipped
while the free space could not even hold the merged vectors, logs a failure
and is tried again after a later flush.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.segment import Segment, SegmentData

log = logging.getLogger("proximadb.compaction")

# Background policy: compact when a segment has this share of dead rows, or
# when this many segments are each smaller than a quarter of the flush size.
DEAD_ROW_SHARE = 0.2
SMALL_SEGMENTS = 4


@dataclass(slots=True)
class MergePlan:
    inputs: list[Segment]
    persisted: list[np.ndarray]  # each input's persisted deletion mask at planning time
    segment_id: int


@dataclass(slots=True)
class MergedRows:
    data: SegmentData
    source_segment: np.ndarray  # (rows,) index into plan.inputs
    source_row: np.ndarray  # (rows,) row in that input


@dataclass(slots=True)
class CompactionReport:
    collection: str
    segments_before: int = 0
    segments_after: int = 0
    rows_before: int = 0
    rows_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0
    merged: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


def needs_compaction(segments: list[Segment], flush_bytes: int) -> list[Segment]:
    """The segments the background policy would merge now (empty: nothing to do)."""
    dead = [s for s in segments if s.rows and 1 - s.live_count / s.rows >= DEAD_ROW_SHARE]
    small = [s for s in segments if s.rows * s.dim * 4 < flush_bytes // 4]
    if len(small) >= SMALL_SEGMENTS:
        return sorted({*dead, *small}, key=lambda s: s.id)
    if dead:
        return sorted({*dead, *small}, key=lambda s: s.id) if len(dead) + len(small) > 1 else dead
    return []


def merge_rows(plan: MergePlan, progress: Any = None) -> MergedRows:
    """The checkpoint-live rows of the inputs, in ascending id order."""
    ids: list[str] = []
    src_seg: list[np.ndarray] = []
    src_row: list[np.ndarray] = []
    total = sum(s.rows for s in plan.inputs)
    done = 0
    for i, (seg, persisted) in enumerate(zip(plan.inputs, plan.persisted, strict=True)):
        rows = np.flatnonzero(persisted == 0)
        ids.extend(seg.ids[r] for r in rows)
        src_seg.append(np.full(len(rows), i, dtype=np.int32))
        src_row.append(rows.astype(np.int64))
        done += seg.rows
        if progress is not None:
            progress(done, total)
    seg_of = np.concatenate(src_seg) if src_seg else np.zeros(0, np.int32)
    row_of = np.concatenate(src_row) if src_row else np.zeros(0, np.int64)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    seg_of, row_of = seg_of[order], row_of[order]
    dim = plan.inputs[0].dim
    vectors = np.empty((len(order), dim), dtype=np.float32)
    metadata = []
    timestamps = np.empty(len(order), dtype=np.int64)
    expiring = any(getattr(seg, "expires_at", None) is not None for seg in plan.inputs)
    expires = np.full(len(order), NO_EXPIRY, dtype=np.int64) if expiring else None
    for out, (s, r) in enumerate(zip(seg_of.tolist(), row_of.tolist(), strict=True)):
        seg = plan.inputs[s]
        vectors[out] = seg.vectors[r]
        metadata.append(seg.metadata[r])
        timestamps[out] = seg.timestamps[r]
        if expires is not None and seg.expires_at is not None:
            expires[out] = seg.expires_at[r]
    data = SegmentData([ids[j] for j in order], vectors, metadata, timestamps, expires)
    return MergedRows(data, seg_of, row_of)


def carry_deletions(plan: MergePlan, merged: MergedRows, new: Segment, dropped: list[int]) -> np.ndarray:
    """Mark on ``new`` what was deleted in the inputs since planning; return the persisted part (for gen 1).

    ``dropped``: inputs a flush removed meanwhile because no row was live; the
    manifest of that flush no longer names them, so all their rows count as
    persisted deletions.
    """
    persisted_now = np.zeros(new.rows, dtype=np.uint8)
    for i, seg in enumerate(plan.inputs):
        pick = merged.source_segment == i
        rows_new = np.flatnonzero(pick)
        rows_old = merged.source_row[pick]
        persisted_now[rows_new] = 1 if i in dropped else seg.persisted_deleted[rows_old]
        for r_new in rows_new[seg.deleted[rows_old] != 0]:
            new.delete_row(int(r_new))
    return persisted_now
