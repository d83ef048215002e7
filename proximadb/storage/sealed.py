"""Sealed memtables: the rows a flush is writing while reads and writes go on.

A flush (flush.py) does not hold the collection lock while it writes. Under the
lock it *seals* (:func:`seal`): the memtable joins ``Collection.sealed`` and a
new, empty memtable takes the writes from then on, and a :class:`FlushJob`
records what the new segment and the manifest must hold at the WAL position of
that moment (``seq``): the rows then live in every sealed memtable, and the
deletion mask of every segment whose deletions are not in a bitmap yet.
Whatever happens after ``seq`` is in the WAL, which recovery replays on top of
exactly that state; so a kill -9 at any moment before the manifest commit
loses nothing (the checkpoint has not moved), and after it the new segment
holds the sealed rows.

While the segment is written, each sealed memtable is one more part of the
collection for every read (get, count, scroll, search) and for the id checks
of writes, between the live memtable and the segments. A sealed memtable takes
deletions only: an upsert or a metadata update of one of its rows marks the
row dead and puts the new version in the live memtable, as for a segment row
(collection_writes.py). So the ids, vectors and metadata the flush reads
without the lock never change under it; only the ``alive`` flags do.

Install (:func:`carry_deletions`, then the manifest commit, under the lock):
rows that died in a sealed memtable since the seal are marked deleted in the
new segment's in-memory bitmap (persisted by the next flush, and replayed from
the WAL after a crash, like any deletion after a checkpoint); the manifest
naming the new segment with checkpoint ``seq`` is committed and the sealed
memtables leave the read path in the same locked step, so every row is in
exactly one place at every moment. A flush that fails leaves its sealed
memtables where they are: the next flush writes them together with what it
seals then (their ids are disjoint: an id lives in one place at most).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proximadb.storage.memtable import Memtable
from proximadb.storage.operations import NO_EXPIRY, Metadata
from proximadb.storage.segment import Segment, SegmentData
from proximadb.storage.sparse_column import scatter


@dataclass(slots=True)
class FlushJob:
    """What one flush writes, fixed at the seal (under the collection lock)."""

    seq: int  # the WAL position of the seal: the new manifest's checkpoint
    sealed: list[Memtable]  # oldest first; they take deletions only from now on
    rows: list[np.ndarray]  # per sealed memtable: its rows live at the seal
    bitmaps: list[tuple[Segment, np.ndarray]]  # segments with unpersisted deletions: their mask at the seal
    keep: list[Segment]  # segments the new manifest names (with the new one)
    dropped: list[Segment]  # segments with no live row at the seal: retired
    segment_id: int | None = None  # reserved when there are rows to write

    @property
    def row_count(self) -> int:
        return sum(len(r) for r in self.rows)


@dataclass(slots=True)
class Gathered:
    """The new segment's rows (ascending id order) and where each came from."""

    data: SegmentData
    part: np.ndarray  # int32 per row: index into FlushJob.sealed
    row: np.ndarray  # int64 per row: the row in that memtable


def seal(sealed: list[Memtable], segments: list[Segment], seq: int) -> FlushJob:
    """The job for a flush at WAL position ``seq`` of the memtables in ``sealed`` (the live one among
    them, already replaced) and ``segments``. Call under the collection lock."""
    rows = [m.alive_rows() for m in sealed]
    bitmaps = [(s, s.deleted.copy()) for s in segments if s.dirty]
    keep = [s for s in segments if s.live_count > 0]
    dropped = [s for s in segments if s.live_count == 0]
    return FlushJob(seq, list(sealed), rows, bitmaps, keep, dropped)


def gather(job: FlushJob, dim: int) -> Gathered:
    """Read the sealed rows into one SegmentData, sorted by id (runs without the collection lock)."""
    ids_all: list[str] = []
    for mt, rows in zip(job.sealed, job.rows, strict=True):
        ids_all.extend(mt.ids_of(rows))
    order = np.asarray(sorted(range(len(ids_all)), key=ids_all.__getitem__), dtype=np.int64)
    part = np.concatenate([np.full(len(r), i, dtype=np.int32) for i, r in enumerate(job.rows)] or
                          [np.zeros(0, np.int32)])[order]
    row = np.concatenate([r.astype(np.int64) for r in job.rows] or [np.zeros(0, np.int64)])[order]
    n = len(order)
    ids = [ids_all[j] for j in order.tolist()]
    if len(job.sealed) == 1:  # the usual case: one memtable, no scatter
        mt = job.sealed[0]
        _, vecs, metas, stamps = mt.columns(row)
        return Gathered(SegmentData(ids, vecs, metas, stamps, mt.expires_columns(row), mt.sparse_columns(row),
                                    mt.named_columns(row)), part, row)
    vectors = np.empty((n, dim), dtype=np.float32)
    timestamps = np.empty(n, dtype=np.int64)
    metadata: list[Metadata] = [{}] * n
    expires: np.ndarray | None = None
    sparse_parts = []
    named: dict[str, np.ndarray] | None = None  # every memtable holds the collection's named vectors
    for i, mt in enumerate(job.sealed):
        pos = np.flatnonzero(part == i)
        if not len(pos):
            continue
        _, vec_i, meta_i, ts_i = mt.columns(row[pos])
        vectors[pos] = vec_i
        timestamps[pos] = ts_i
        for p, m in zip(pos.tolist(), meta_i, strict=True):  # MetadataRows: decoded in runs
            metadata[p] = m
        sparse_parts.append((pos, mt.sparse_columns(row[pos])))
        for name, col in (mt.named_columns(row[pos]) or {}).items():
            if named is None:
                named = {}
            if name not in named:
                named[name] = np.empty((n, col.shape[1]), dtype=np.float32)
            named[name][pos] = col
        x = mt.expires_columns(row[pos])
        if x is not None:
            if expires is None:
                expires = np.full(n, NO_EXPIRY, dtype=np.int64)
            expires[pos] = x
    return Gathered(SegmentData(ids, vectors, metadata, timestamps, expires, scatter(sparse_parts, n), named),
                    part, row)


def carry_deletions(job: FlushJob, gathered: Gathered, new: Segment) -> int:
    """Mark on ``new`` (in memory) the rows that died in their sealed memtable since the seal; returns how
    many. Call under the collection lock, just before the commit."""
    carried = 0
    for i, mt in enumerate(job.sealed):
        pos = np.flatnonzero(gathered.part == i)
        for r in pos[~mt.is_alive(gathered.row[pos])].tolist():
            new.delete_row(r)
            carried += 1
    return carried
