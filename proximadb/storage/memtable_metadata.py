"""The memtable's metadata: each row's map Avro-encoded in chunks of bytes, decoded when a row is read.

A dict per row kept every fresh row's metadata on the Python heap, where the cyclic garbage
collector walked all of it again and again as the memtable grew: at 200,000 rows with five fields
that was a quarter of the insert time, and single pauses of 0.3 s and more in the middle of an
insert batch (every full collection visits every dict and list the memtable holds). Bytes objects
are not tracked by the collector, so here a batch's maps are one ``bytes`` chunk: an Avro
``map<union{null, boolean, long, double, string, array<string>}>`` per row, back to back, as the
insert's payload sent them (any valid encoding: blocks with byte sizes, padded varints) or as
:func:`proximadb.storage.wal_io.encode_metadata_maps` writes dicts (a row without metadata is the
empty map; a flush writes every map canonical, metadata_scan.gather_maps), and a read decodes the rows it needs
(:func:`~proximadb.storage.wal_io.decode_metadata_maps`): a new dict each time, never shared.

``_where[row]`` packs where the row's map is into one uint64: the chunk number in the high 28
bits, the map's offset in the chunk in the low 36. A row whose metadata is replaced
(:meth:`MemtableMetadata.set`) gets a chunk of its own and a new ``_where`` entry, one store: a
reader that runs beside it (searches take no lock) decodes the old map or the new one, never a mix.
Rows are only appended; ``replaced`` counts replacements, so a value derived from the rows (the
memtable's BM25 index, memtable_kept.py) is still good while the row count and ``replaced`` are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from proximadb.storage.metadata_scan import gather_maps
from proximadb.storage.metadata_store import HELD_OFFSET_BITS, EncodedRows, row_number
from proximadb.storage.operations import Metadata
from proximadb.storage.wal_io import decode_metadata_maps, encode_metadata_maps

_OFFSET_BITS = HELD_OFFSET_BITS
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
_MAX_CHUNKS = 1 << (64 - _OFFSET_BITS)


class MemtableMetadata(Sequence[Metadata]):
    """Rows ``[0, len)``'s metadata maps; appended a batch at a time, read per row or per run of rows."""

    __slots__ = ("_chunks", "_rows", "_where", "nbytes", "replaced")

    def __init__(self, initial_rows: int = 1024) -> None:
        self._chunks: list[bytes] = []
        self._where = np.empty(max(1, initial_rows), dtype=np.uint64)
        self._rows = 0
        self.nbytes = 0  # encoded bytes held, replaced maps included
        self.replaced = 0

    def __len__(self) -> int:
        return self._rows

    def _new_chunk(self, blob: bytes) -> int:
        chunk = len(self._chunks)
        if chunk >= _MAX_CHUNKS or len(blob) > _OFFSET_MASK:
            raise OverflowError(f"memtable metadata: chunk {chunk} of {len(blob)} bytes is past the packed limits")
        self._chunks.append(blob)
        self.nbytes += len(blob)
        return chunk

    def append(self, metadata: Sequence[Metadata | None]) -> None:
        """Add rows ``len, len + 1, ...`` (None: no metadata, stored as the empty map)."""
        n = len(metadata)
        if n == 0:
            return
        offsets = np.empty(n + 1, dtype=np.uint64)
        self._put(encode_metadata_maps(list(metadata), offsets), offsets[:-1])

    def append_encoded(self, blob: bytes | memoryview, offsets: np.ndarray) -> None:
        """Add rows from maps already encoded (an insert's, metadata_store.MetadataColumn's ``blob`` and
        ``offsets``): the blob is the chunk, kept as it is (bytes) or copied (a view)."""
        n = int(offsets.shape[0]) - 1
        if n <= 0:
            return
        if int(offsets[0]) != 0 or int(offsets[-1]) != len(blob):
            raise ValueError(f"offsets {int(offsets[0])}..{int(offsets[-1])} do not span the {len(blob)} bytes")
        self._put(bytes(blob), offsets[:-1].astype(np.uint64, copy=False))

    def _put(self, blob: bytes, starts: np.ndarray) -> None:
        n = starts.shape[0]
        chunk = self._new_chunk(blob)
        start = self._rows
        if start + n > self._where.shape[0]:
            grown = np.empty(max(start + n, 2 * self._where.shape[0]), dtype=np.uint64)
            grown[:start] = self._where[:start]
            self._where = grown
        self._where[start : start + n] = starts | np.uint64(chunk << _OFFSET_BITS)
        self._rows = start + n  # last: a row is readable once its place is written

    def set(self, row: int, metadata: Metadata | None) -> int:
        """Replace row ``row``'s metadata (the old map stays in its chunk until the memtable goes); returns
        the bytes this added (the memtable counts them toward its flush, so updates cannot grow it unseen)."""
        if not 0 <= row < self._rows:
            raise IndexError(f"row {row} of {self._rows}")
        blob = encode_metadata_maps([metadata])
        chunk = self._new_chunk(blob)
        self._where[row] = chunk << _OFFSET_BITS
        self.replaced += 1
        return len(blob)

    def _decode(self, where: int, count: int = 1) -> list[Metadata]:
        maps, _ = decode_metadata_maps(self._chunks[where >> _OFFSET_BITS], where & _OFFSET_MASK, count)
        return maps  # type: ignore[no-any-return]

    @overload
    def __getitem__(self, row: int) -> Metadata: ...

    @overload
    def __getitem__(self, row: slice) -> list[Metadata]: ...

    def __getitem__(self, row: Any) -> Any:
        if isinstance(row, slice):
            return self.take(np.arange(*row.indices(self._rows), dtype=np.int64))
        return self._decode(int(self._where[row_number(row, self._rows)]))[0]

    def encoded(self, rows: np.ndarray) -> tuple[bytes, np.ndarray]:
        """The maps of ``rows`` as they are held, back to back (``blob``, ``offsets``: n + 1), nothing
        decoded: what a flush writes (metadata_scan.gather_maps)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape[0] and (int(rows.min()) < 0 or int(rows.max()) >= self._rows):
            raise IndexError(f"rows outside [0, {self._rows})")
        return gather_maps(self._chunks, np.ascontiguousarray(self._where[rows]), _OFFSET_BITS)

    def take(self, rows: Sequence[int] | np.ndarray) -> list[Metadata]:
        """The maps of ``rows`` (each below ``len``), in order. Consecutive rows whose maps lie one after
        another in one chunk (a batch's rows, none replaced since) are decoded in one call."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape[0] == 0:
            return []
        if int(rows.min()) < 0 or int(rows.max()) >= self._rows:
            raise IndexError(f"rows outside [0, {self._rows})")
        where = self._where[rows]
        chunk = where >> np.uint64(_OFFSET_BITS)
        # a run continues while the row is the next one and its map is in the same chunk, further on
        # (a chunk holds one batch's rows in row order, or one replaced row's map)
        joined = (np.diff(rows) == 1) & (chunk[1:] == chunk[:-1]) & (where[1:] > where[:-1])
        starts = np.flatnonzero(np.concatenate(([True], ~joined)))
        ends = np.append(starts[1:], rows.shape[0])
        out: list[Metadata] = []
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            out.extend(self._decode(int(where[a]), b - a))
        return out


class MetadataRows(EncodedRows):
    """Some rows of a memtable's metadata, in a given order, decoded only when read: a flush's view.

    A slice is a view again; iterating decodes. A flush's segment writer decodes none of them: it takes
    their maps as they are held (:meth:`encoded`). Whoever must decode many (the writer's fallback for
    rows the compiled scan leaves to the Python rule) does it a chunk at a time: decoding all of a
    flush's rows up front once kept hundreds of thousands of dicts alive at once, and the collector's
    walks over them took four fifths of the flush and stalled the writers for up to a second."""

    __slots__ = ("_column", "_rows")

    def __init__(self, column: MemtableMetadata, rows: np.ndarray) -> None:
        self._column = column
        self._rows = rows

    def __len__(self) -> int:
        return int(self._rows.shape[0])

    @overload
    def __getitem__(self, i: int) -> Metadata: ...

    @overload
    def __getitem__(self, i: slice) -> MetadataRows: ...

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return MetadataRows(self._column, self._rows[i])  # still not decoded
        return self._column[int(self._rows[i])]

    def __iter__(self) -> Iterator[Metadata]:
        return iter(self._column.take(self._rows))  # decoded in runs, not row by row

    def encoded(self) -> tuple[bytes, np.ndarray]:
        """These rows' maps, not decoded (MemtableMetadata.encoded)."""
        return self._column.encoded(self._rows)

