"""A segment's metadata, timestamps and expiry as columns on disk (``meta.rows``), read per row on demand.

``meta.avro`` (segment.py) stays the canonical record; decoding it is one Python dict per
row, which made a reopen slow and kept every row's metadata on the Python heap. ``meta.rows``
is derived from it (derived_file.py: header, CRC, source CRC) and memory-mapped: a hit, a
``get`` or a scroll page decodes just its rows, in compiled code
(:func:`proximadb.storage.wal_io.decode_metadata_maps`); the timestamps and expiry columns
are numpy views of the mapping.

Body of ``meta.rows`` (format 1, little-endian; offsets are from the start of the body,
which starts 8-aligned in the file)::

    offset            size          field
    0                 8             rows (u64)
    8                 1             has_expiry (1: the expiry column follows)
    9                 7             reserved (0)
    16                8*(rows+1)    u64 offset of each row's map in the blob (the last = blob length)
    ...               8*rows        timestamps, i64 microseconds since the epoch
    ...               8*rows        expires_at, i64 (NO_EXPIRY = never); only when has_expiry
    ...               blob          the metadata maps back to back, each as the WAL encodes
                                    metadata (wal_io.encode_metadata_maps: Avro map blocks)

A segment writer (segment_writer.py) writes the file a chunk of rows at a time with
:class:`ColumnsWriter`: the row count and whether any row expires are known up front, so every
column's place is too; the offsets, timestamps, expiry and maps of a chunk go straight to their
places, the head and the derived-file header last.
The bytes are those of :func:`encode_columns` + :func:`write_columns` for the same rows.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from proximadb.errors import CorruptionError
from proximadb.storage.derived_file import HEADER, StaleDerivedFile, derived_header, map_derived, write_derived
from proximadb.storage.operations import NO_EXPIRY, Metadata
from proximadb.storage.placed_file import PlacedFile, crc_of
from proximadb.storage.wal_io import decode_metadata_maps, encode_metadata_maps

MAGIC = b"PXDBMDR\x01"
VERSION = 1
FILE_NAME = "meta.rows"
_HEAD = struct.Struct("<QB7x")  # 16 bytes


def encode_columns(metadata: Sequence[Metadata | None], timestamps: np.ndarray,
                   expires_at: np.ndarray | None) -> list[bytes | memoryview]:
    """The body of ``meta.rows`` for these rows, as parts to write."""
    rows = len(metadata)
    offsets = np.empty(rows + 1, dtype=np.uint64)
    blob = encode_metadata_maps([m or {} for m in metadata], offsets)
    has_expiry = expires_at is not None and bool((expires_at != NO_EXPIRY).any())
    parts: list[bytes | memoryview] = [
        _HEAD.pack(rows, 1 if has_expiry else 0),
        offsets.astype("<u8", copy=False).data,
        np.ascontiguousarray(timestamps, dtype="<i8").data,
    ]
    if has_expiry:
        parts.append(np.ascontiguousarray(expires_at, dtype="<i8").data)
    parts.append(blob)
    return parts


def write_columns(path: Path, source_crc: int, parts: list[bytes | memoryview]) -> None:
    write_derived(path, MAGIC, VERSION, source_crc, parts)


class ColumnsWriter:
    """``meta.rows`` for ``rows`` rows, written in chunks (in row order); :meth:`finish` completes it."""

    def __init__(self, path: Path, rows: int, has_expiry: bool) -> None:
        self._rows = rows
        self._has_expiry = has_expiry
        self._done = 0
        self._blob_len = 0
        self._offsets_at = HEADER.size + _HEAD.size
        self._timestamps_at = self._offsets_at + 8 * (rows + 1)
        self._blob_at = self._timestamps_at + 8 * rows * (2 if has_expiry else 1)
        self._file = PlacedFile(path)
        self._file.write_at(self._offsets_at, np.zeros(1, dtype="<u8").data)  # offsets[0]

    def add(self, metadata: Sequence[Metadata | None], timestamps: np.ndarray,
            expires_at: np.ndarray | None) -> tuple[bytes, np.ndarray]:
        """Append rows; returns their maps as written (``blob``, ``offsets``: n + 1 from 0), which the
        segment writer's payload index reads in compiled code (PayloadIndex.add_encoded)."""
        offsets = np.empty(len(metadata) + 1, dtype=np.uint64)
        blob = encode_metadata_maps([m or {} for m in metadata], offsets)
        self.add_encoded(blob, offsets, timestamps, expires_at)
        return blob, offsets

    def add_encoded(self, blob: bytes, offsets: np.ndarray, timestamps: np.ndarray,
                    expires_at: np.ndarray | None) -> None:
        """Append rows whose maps are encoded already (``offsets``: n + 1, from 0)."""
        n = offsets.shape[0] - 1
        if self._done + n > self._rows:
            raise ValueError(f"{FILE_NAME}: more than the {self._rows} rows announced")
        at = self._done
        ends = (offsets[1:] + np.uint64(self._blob_len)).astype("<u8", copy=False)
        self._file.write_at(self._offsets_at + 8 * (at + 1), ends.data)  # offsets[at + 1 : at + n + 1]
        self._file.write_at(self._blob_at + self._blob_len, blob)
        self._blob_len += len(blob)
        self._file.write_at(self._timestamps_at + 8 * at, np.ascontiguousarray(timestamps, dtype="<i8").data)
        if self._has_expiry:
            expires = np.full(n, NO_EXPIRY, dtype="<i8") if expires_at is None else \
                np.ascontiguousarray(expires_at, dtype="<i8")
            self._file.write_at(self._timestamps_at + 8 * (self._rows + at), expires.data)
        self._done += n

    def finish(self, source_crc: int) -> None:
        """Write the head, the offsets and the derived-file header; fsync and close."""
        if self._done != self._rows:
            raise ValueError(f"{FILE_NAME}: {self._done} rows written, {self._rows} announced")
        self._file.write_at(HEADER.size, _HEAD.pack(self._rows, 1 if self._has_expiry else 0))
        self._file.close(fsync=False)  # the body's CRC is read back, then the header completes it
        length, body_crc = crc_of(self._file.path, HEADER.size)
        with open(self._file.path, "r+b", buffering=0) as f:
            f.write(derived_header(MAGIC, VERSION, body_crc, source_crc, length))
            os.fsync(f.fileno())

    def abort(self) -> None:
        self._file.abort()


def map_columns(path: Path, source_crc: int, rows: int) -> MetadataColumns:
    """The columns of a ``meta.rows`` made from this source; StaleDerivedFile when it cannot be used."""
    body = map_derived(path, MAGIC, VERSION, source_crc)
    try:
        return MetadataColumns(body, rows)
    except CorruptionError as exc:
        raise StaleDerivedFile(str(exc)) from None


class MetadataColumns:
    """The parsed body: ``metadata`` (a sequence decoding per row), ``timestamps`` and ``expires_at``."""

    def __init__(self, body: memoryview | bytes, rows: int) -> None:
        view = memoryview(body).cast("B")
        if len(view) < _HEAD.size:
            raise CorruptionError(f"{FILE_NAME}: {len(view)} bytes, shorter than its head")
        stored, has_expiry = _HEAD.unpack_from(view)
        if stored != rows:
            raise CorruptionError(f"{FILE_NAME}: {stored} rows, the segment has {rows}")
        columns = 2 + (1 if has_expiry else 0)
        blob_at = _HEAD.size + 8 * (rows + 1) + 8 * rows * (columns - 1)
        if blob_at > len(view):
            raise CorruptionError(f"{FILE_NAME}: {len(view)} bytes cannot hold {rows} rows")
        offsets = np.frombuffer(view, dtype="<u8", count=rows + 1, offset=_HEAD.size)
        if rows and (int(offsets[-1]) != len(view) - blob_at or bool((np.diff(offsets.astype(np.int64)) < 1).any())):
            raise CorruptionError(f"{FILE_NAME}: row offsets do not fit its blob")
        at = _HEAD.size + 8 * (rows + 1)
        self.timestamps: np.ndarray = np.frombuffer(view, dtype="<i8", count=rows, offset=at)
        self.expires_at: np.ndarray | None = None
        if has_expiry:
            self.expires_at = np.frombuffer(view, dtype="<i8", count=rows, offset=at + 8 * rows)
        self.metadata = MetadataColumn(view[blob_at:], offsets)


def row_number(row: Any, rows: int) -> int:
    """``row`` (an int, negative from the end) as an index into ``rows`` rows; IndexError outside."""
    r = int(row)
    if r < 0:
        r += rows
    if not 0 <= r < rows:
        raise IndexError(f"row {row} of {rows}")
    return r


# Where a held map is, packed in one uint64 (metadata_scan.gather_maps): its chunk's number in the high
# 28 bits, its offset in the chunk in the low 36.
HELD_OFFSET_BITS = 36


class EncodedRows(Sequence[Metadata]):
    """Rows' metadata, decoded when read, whose maps :meth:`encoded` copies out as they are held, back
    to back and not decoded: what a segment writer takes from a flush (memtable_metadata.MetadataRows)
    or a merge (merge.py)."""

    __slots__ = ()

    def encoded(self) -> tuple[bytes, np.ndarray]:
        """``(blob, offsets)``: row r's map at ``blob[offsets[r]:offsets[r + 1]]``."""
        raise NotImplementedError


class MetadataColumn(Sequence[Metadata]):
    """Row r's metadata dict, decoded from the blob when asked for (a new dict each time).

    The blob is a segment's mapped ``meta.rows`` or an insert batch's maps as its payload carried them
    (codec/avro_batch.pyx, ``metadata_maps=True``); ``offsets`` has one entry more than there are rows."""

    __slots__ = ("_blob", "_offsets")

    def __init__(self, blob: memoryview | bytes, offsets: np.ndarray) -> None:
        self._blob = blob
        self._offsets = offsets

    @property
    def blob(self) -> memoryview | bytes:
        """The maps, back to back (wal_io.encode_metadata_maps's encoding)."""
        return self._blob

    @property
    def offsets(self) -> np.ndarray:
        """uint64: row r's map is ``blob[offsets[r]:offsets[r + 1]]``."""
        return self._offsets

    def __len__(self) -> int:
        return int(self._offsets.shape[0]) - 1

    @overload
    def __getitem__(self, row: int) -> Metadata: ...

    @overload
    def __getitem__(self, row: slice) -> list[Metadata]: ...

    def __getitem__(self, row: Any) -> Any:
        if isinstance(row, slice):
            start, stop, step = row.indices(len(self))
            if step == 1 and stop > start:  # the maps lie back to back: one call decodes the run
                return decode_metadata_maps(self._blob, int(self._offsets[start]), stop - start)[0]
            return [self[r] for r in range(start, stop, step)]
        r = row_number(row, len(self))
        maps, _ = decode_metadata_maps(self._blob, int(self._offsets[r]), 1)
        return maps[0]

    def take(self, rows: Sequence[int] | np.ndarray) -> list[Metadata]:
        """The metadata of these rows, in order (a contiguous run is decoded in one call)."""
        return [self[int(r)] for r in rows]
