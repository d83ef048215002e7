"""The streaming merge of segments (compaction and migration): their kept rows, in id order, in chunks.

A merge reads its inputs where they lie (memory-mapped vectors, ``ids.bin`` searched in place,
metadata maps copied out of ``meta.rows`` as they are, not decoded: :class:`MergedMaps`) and never
holds the merged segment: memory is bounded by ``StorageOptions.rewrite_chunk_rows`` (``chunk_rows``),
not by the inputs' size.

1. :func:`merge_rows` fixes the output order. Each input's kept rows (checkpoint-live and not
   expired at ``plan.now``: :func:`kept_rows`) are already in ascending id order (``ids.bin`` is
   sorted), so a k-way merge yields the output in id order: a window of at most
   ``chunk_rows // k`` ids per input is decoded; every id up to the smallest last id of the
   inputs that still have more can be placed (no later id of any input sorts before it); those
   are sorted (stably: on an equal id the earlier input first, as the old whole-segment sort
   did) and appended. What is kept is the row mapping the deletion carry needs
   (compaction.carry_deletions): per output row its input (int32) and its row there (int64),
   12 bytes a row, as numpy.
2. :meth:`MergedRows.stream` gathers the output a chunk of ``chunk_rows`` rows at a time
   (vectors by fancy indexing of each input's mapping, metadata as :class:`MergedMaps`, ids
   decoded again) for segment_writer.py, which appends each chunk to every file of the new segment.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from proximadb.storage import expiry, named_columns
from proximadb.storage.metadata_scan import gather_maps
from proximadb.storage.metadata_store import HELD_OFFSET_BITS, EncodedRows, MetadataColumn
from proximadb.storage.operations import NO_EXPIRY, Metadata
from proximadb.storage.segment import Segment, SegmentData
from proximadb.storage.segment_writer import DEFAULT_CHUNK_ROWS, RowStream
from proximadb.storage.sparse_column import scatter

Progress = Callable[[int, int], object]


@dataclass(slots=True)
class MergePlan:
    inputs: list[Segment]
    persisted: list[np.ndarray]  # each input's persisted deletion mask at planning time
    segment_id: int
    now: int = NO_EXPIRY  # rows expired at this time (expiry.now_us at planning) are dropped; NO_EXPIRY: none


def kept_rows(seg: Segment, deleted: np.ndarray, now: int) -> np.ndarray:
    """uint8 mask of the rows of ``seg`` that are neither in ``deleted`` nor expired at ``now``."""
    return expiry.alive_mask((deleted == 0).view(np.uint8), seg.expires_at, now)


@dataclass(slots=True)
class MergedRows:
    """The merge's output order; :meth:`stream` produces its rows."""

    plan: MergePlan
    source_segment: np.ndarray  # (rows,) int32: index into plan.inputs
    source_row: np.ndarray  # (rows,) int64: row in that input
    has_expiry: bool  # some kept row has an expiry
    chunk_rows: int
    progress: Progress | None = None

    @property
    def rows(self) -> int:
        return int(self.source_segment.shape[0])

    def stream(self) -> RowStream:
        first = self.plan.inputs[0]
        named = {name: int(m.shape[1]) for name, m in first.named.items()}
        for seg in self.plan.inputs[1:]:  # the same in every input (Collection.open checks them against the config)
            named_columns.check_stored(seg.path, seg.named, named, f"{first.path} has")
        return RowStream(self.rows, self.plan.inputs[0].dim, self.has_expiry, self._chunks(), named)

    def _chunks(self) -> Iterator[SegmentData]:
        inputs = self.plan.inputs
        expiring = any(seg.expires_at is not None for seg in inputs)
        total_in = sum(seg.rows for seg in inputs)
        for a in range(0, self.rows, self.chunk_rows):
            b = min(self.rows, a + self.chunk_rows)
            seg_of = self.source_segment[a:b]
            row_of = self.source_row[a:b]
            n = b - a
            vectors = np.empty((n, inputs[0].dim), dtype=np.float32)
            timestamps = np.empty(n, dtype=np.int64)
            expires = np.full(n, NO_EXPIRY, dtype=np.int64) if expiring else None
            sparse_parts = []
            named = {name: np.empty((n, m.shape[1]), dtype=np.float32) for name, m in inputs[0].named.items()}
            for i in np.unique(seg_of).tolist():
                seg = inputs[i]
                at = np.flatnonzero(seg_of == i)
                rows = row_of[at]
                vectors[at] = seg.vectors[rows]
                timestamps[at] = seg.timestamps[rows]
                if expires is not None and seg.expires_at is not None:
                    expires[at] = seg.expires_at[rows]
                if seg.sparse:
                    sparse_parts.append((at, seg.sparse_columns(rows)))
                for name, column in named.items():  # a row's named vectors go wherever its vector goes
                    column[at] = seg.named[name][rows]
            pairs = list(zip(seg_of.tolist(), row_of.tolist(), strict=True))
            ids = [inputs[s].ids[r] for s, r in pairs]
            metadata = _merged_metadata(inputs, seg_of, row_of)
            yield SegmentData(ids, vectors, metadata, timestamps, expires, scatter(sparse_parts, n), named or None)
            if self.progress is not None:
                self.progress(total_in * b // self.rows, total_in)


class MergedMaps(EncodedRows):
    """A chunk's metadata: row k is row ``row_of[k]`` of ``columns[seg_of[k]]`` (the inputs' mapped
    ``meta.rows``), decoded when read; :meth:`encoded` copies the maps out without decoding them."""

    __slots__ = ("_columns", "_row_of", "_seg_of")

    def __init__(self, columns: list[MetadataColumn], seg_of: np.ndarray, row_of: np.ndarray) -> None:
        self._columns = columns
        self._seg_of = seg_of
        self._row_of = row_of

    def __len__(self) -> int:
        return int(self._seg_of.shape[0])

    @overload
    def __getitem__(self, k: int) -> Metadata: ...

    @overload
    def __getitem__(self, k: slice) -> MergedMaps: ...

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return MergedMaps(self._columns, self._seg_of[k], self._row_of[k])
        return self._columns[int(self._seg_of[k])][int(self._row_of[k])]

    def encoded(self) -> tuple[bytes, np.ndarray]:
        where = np.empty(len(self), dtype=np.uint64)
        for i, column in enumerate(self._columns):
            at = np.flatnonzero(self._seg_of == i)
            if at.shape[0]:
                where[at] = column.offsets[self._row_of[at]] | np.uint64(i << HELD_OFFSET_BITS)
        return gather_maps([column.blob for column in self._columns], where, HELD_OFFSET_BITS)


def _merged_metadata(inputs: list[Segment], seg_of: np.ndarray, row_of: np.ndarray) -> Sequence[Metadata]:
    """The chunk's metadata as held by the inputs (MergedMaps), or decoded where an input holds it
    otherwise."""
    columns = [seg.metadata for seg in inputs]
    if all(isinstance(c, MetadataColumn) for c in columns):
        return MergedMaps(columns, seg_of, row_of.astype(np.int64, copy=False))  # type: ignore[arg-type]
    return [columns[s][r] for s, r in zip(seg_of.tolist(), row_of.tolist(), strict=True)]


def merge_rows(plan: MergePlan, progress: Progress | None = None,
               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> MergedRows:
    """The checkpoint-live rows of the inputs that are not expired at ``plan.now``, in ascending id order.

    Dropping an expired row is safe for WAL replay: it was invisible already, and an operation logged
    after the checkpoint that names it (delete, metadata update) finds nothing, as for a deleted row.
    ``progress(done, total)`` (input rows) is called as :meth:`MergedRows.stream` writes."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, not {chunk_rows}")
    inputs = plan.inputs
    kept = [np.flatnonzero(kept_rows(seg, persisted, plan.now))
            for seg, persisted in zip(inputs, plan.persisted, strict=True)]
    has_expiry = any(seg.expires_at is not None and bool((seg.expires_at[rows] != NO_EXPIRY).any())
                     for seg, rows in zip(inputs, kept, strict=True))
    total = sum(int(k.shape[0]) for k in kept)
    seg_of = np.empty(total, dtype=np.int32)
    row_of = np.empty(total, dtype=np.int64)
    window = max(1, chunk_rows // max(1, len(inputs)))
    pending: list[list[str]] = [[] for _ in inputs]  # decoded ids not placed yet, per input
    first = [0] * len(inputs)  # index in kept[i] of pending[i][0]
    out = 0
    while out < total:
        for i, seg in enumerate(inputs):
            fetched = first[i] + len(pending[i])
            want = min(window - len(pending[i]), int(kept[i].shape[0]) - fetched)
            if want > 0:
                pending[i].extend(seg.ids[r] for r in kept[i][fetched : fetched + want].tolist())
        more = [pending[i][-1] for i in range(len(inputs)) if first[i] + len(pending[i]) < kept[i].shape[0]]
        bound = min(more) if more else None
        names: list[str] = []
        segs: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        for i in range(len(inputs)):
            n = len(pending[i]) if bound is None else bisect_right(pending[i], bound)
            if n:
                names.extend(pending[i][:n])
                del pending[i][:n]
                segs.append(np.full(n, i, dtype=np.int32))
                rows.append(kept[i][first[i] : first[i] + n])
                first[i] += n
        order = np.array(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64)
        m = len(names)
        seg_of[out : out + m] = np.concatenate(segs)[order]
        row_of[out : out + m] = np.concatenate(rows)[order]
        out += m
    return MergedRows(plan, seg_of, row_of, has_expiry, chunk_rows, progress)
