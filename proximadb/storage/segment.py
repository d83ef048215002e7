"""Segments: immutable, columnar files of one collection's flushed rows.

A segment is a directory ``segments/seg-<id:08d>/`` holding::

    vectors.f32   the float32 vector block, memory-mapped when read
    ids.bin       the row ids, ascending (rows are written in id order)
    meta.avro     metadata + timestamp (+ expires_at since v2) per row: Avro object
                  container file, codec lz4, schema proximadb.v<N>.SegmentRow where N
                  is the descriptor's ``schema_version`` (absent: 1, written before v2);
                  older versions are read through Avro schema resolution
    deletes-<g>.bitmap   generation g of the deletion bitmap (0 = none yet)
    segment.pxdb  the descriptor: a checksummed JSON document (see docfile.py)
                  with rows, dim and, per data file, its size and CRC32C
    PENDING       empty; present from the segment's creation until the manifest
                  naming it is durable (intents.py: proof of an interrupted flush)

Everything but the bitmap is written once, into ``seg-<id>.tmp/``, fsynced,
and renamed into place (intents.new_dir); the collection's manifest then
names the segment and its current bitmap generation. Deletions after a flush
live in the WAL until the next checkpoint writes a new bitmap generation.

A write that fails (ENOSPC above all) leaves nothing behind: :func:`write_segment`
removes its temporary directory (or, past the rename, the segment directory,
which no manifest names yet) and :func:`write_bitmap` its partial file, so the
space is free again at once and the caller can simply retry later.

``vectors.f32`` (little-endian)::

    offset size  field
    0      8     magic  b"PXDBVEC\\x01"
    8      2     format version (1)
    10     2     reserved (0)
    12     4     dim (u32)
    16     8     rows (u64)
    24     40    reserved (0), so the data starts 64-byte aligned
    64     rows*dim*4   float32 row-major

``ids.bin``::

    0      8     magic  b"PXDBIDS\\x01"
    8      2     format version (1);  10: 2 reserved;  12: 4 reserved
    16     8     rows (u64)
    24     8     blob length in bytes (u64)
    32     8*(rows+1)  u64 offsets of each id in the blob (last = blob length)
    ...    blob  the UTF-8 ids, concatenated

``deletes-<g>.bitmap``::

    0      8     magic  b"PXDBDEL\\x01"
    8      2     format version (1);  10: 2 reserved
    12     4     CRC32C of the bits
    16     8     rows (u64)
    24     8     reserved
    32     ceil(rows/8) bytes, bit r (little bit order) set = row r deleted
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fastavro
import numpy as np

from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, record_schema, resolving_reader_schema
from proximadb.errors import CorruptionError
from proximadb.storage import intents
from proximadb.storage.docfile import fsync_dir, read_doc, write_doc
from proximadb.storage.operations import NO_EXPIRY, Metadata, expiry_or_none
from proximadb.storage.payload_index import PayloadIndex
from proximadb.storage.wal_io import crc32c

VEC_MAGIC = b"PXDBVEC\x01"
IDS_MAGIC = b"PXDBIDS\x01"
DEL_MAGIC = b"PXDBDEL\x01"
FORMAT_VERSION = 1
VEC_HEADER = struct.Struct("<8sHHIQ40x")  # 64 bytes
IDS_HEADER = struct.Struct("<8sHHIQQ")  # 32 bytes
DEL_HEADER = struct.Struct("<8sHHIQ8x")  # 32 bytes
_CHUNK = 8 << 20


def segment_dir_name(segment_id: int) -> str:
    return f"seg-{segment_id:08d}"


def _write_file(path: Path, parts: list[bytes | memoryview]) -> dict[str, int]:
    """Write parts to a new file, fsync it; return its size and CRC32C."""
    crc = 0
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for part in parts:
            view = memoryview(part).cast("B")
            crc = crc32c(view, crc)
            size += len(view)
            while view:
                n = os.write(fd, view[:_CHUNK])
                view = view[n:]
        os.fsync(fd)
    except BaseException:
        try:
            os.close(fd)
        finally:
            _unlink_quietly(path)  # ours (O_EXCL): a partial file only holds space
        raise
    os.close(fd)
    return {"bytes": size, "crc32c": crc}


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _file_crc(path: Path) -> tuple[int, int]:
    crc = 0
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            crc = crc32c(view[:n], crc)
            size += n
    return size, crc


def _encode_ids(ids: list[str]) -> list[bytes | memoryview]:
    encoded = [i.encode("utf-8") for i in ids]
    offsets = np.zeros(len(encoded) + 1, dtype="<u8")
    if encoded:
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
    blob = b"".join(encoded)
    header = IDS_HEADER.pack(IDS_MAGIC, FORMAT_VERSION, 0, 0, len(ids), len(blob))
    return [header, offsets.tobytes(), blob]


def _decode_ids(path: Path) -> list[str]:
    data = path.read_bytes()
    if len(data) < IDS_HEADER.size:
        raise CorruptionError(f"{path}: {len(data)} bytes, shorter than the ids header")
    magic, version, _, _, rows, blob_len = IDS_HEADER.unpack_from(data)
    if magic != IDS_MAGIC or version != FORMAT_VERSION:
        raise CorruptionError(f"{path}: not an ids file of format {FORMAT_VERSION} (magic {magic!r}, v{version})")
    start = IDS_HEADER.size + 8 * (rows + 1)
    if start + blob_len != len(data):
        raise CorruptionError(f"{path}: size {len(data)} does not match {rows} rows and a {blob_len}-byte blob")
    offsets = np.frombuffer(data, dtype="<u8", count=rows + 1, offset=IDS_HEADER.size).tolist()
    blob = data[start:]
    return [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(rows)]


def _segment_row_schema(version: int = CURRENT_SCHEMA_VERSION) -> Any:
    return record_schema("SegmentRow", version)


@dataclass(slots=True)
class SegmentData:
    """What a flush hands to :func:`write_segment` (rows in ascending id order)."""

    ids: list[str]
    vectors: np.ndarray
    metadata: list[Metadata]
    timestamps: np.ndarray
    expires_at: np.ndarray | None = None  # int64, NO_EXPIRY = never; None: no row expires


def write_segment(segments_dir: Path, segment_id: int, data: SegmentData, extra: dict[str, Any],
                  *, schema_version: int = CURRENT_SCHEMA_VERSION) -> Path:
    """Write a complete segment directory durably (meta.avro in ``schema_version``) and return its path.

    On any error (ENOSPC: OSError with errno.ENOSPC) nothing is left behind and the error is raised.
    """
    final = segments_dir / segment_dir_name(segment_id)
    with intents.new_dir(final) as tmp:  # seg-<id>.tmp, then seg-<id> with its PENDING marker
        _write_segment_files(tmp, segment_id, data, extra, schema_version)
    return final


def _write_segment_files(tmp: Path, segment_id: int, data: SegmentData, extra: dict[str, Any],
                         schema_version: int) -> None:
    rows, dim = data.vectors.shape
    vectors = np.ascontiguousarray(data.vectors, dtype="<f4")
    files = {
        "vectors.f32": _write_file(
            tmp / "vectors.f32", [VEC_HEADER.pack(VEC_MAGIC, FORMAT_VERSION, 0, dim, rows), vectors.data]
        ),
        "ids.bin": _write_file(tmp / "ids.bin", _encode_ids(data.ids)),
    }
    if schema_version >= 2:
        expires = data.expires_at.tolist() if data.expires_at is not None else [NO_EXPIRY] * rows
        meta_rows: Any = (
            {"metadata": m, "timestamp": int(t), "expires_at": expiry_or_none(x)}
            for m, t, x in zip(data.metadata, data.timestamps, expires, strict=True)
        )
    else:
        if data.expires_at is not None and bool((data.expires_at != NO_EXPIRY).any()):
            raise ValueError("a segment with expires_at needs schema version 2 or later")
        meta_rows = ({"metadata": m, "timestamp": int(t)} for m, t in zip(data.metadata, data.timestamps, strict=True))
    with open(tmp / "meta.avro", "wb") as f:
        fastavro.writer(f, _segment_row_schema(schema_version), meta_rows, codec="lz4")
        f.flush()
        os.fsync(f.fileno())
    size, crc = _file_crc(tmp / "meta.avro")
    files["meta.avro"] = {"bytes": size, "crc32c": crc}
    descriptor = {"format": FORMAT_VERSION, "id": segment_id, "rows": rows, "dim": dim, "files": files, **extra,
                  "schema_version": schema_version}
    write_doc(tmp / "segment.pxdb", "segment", descriptor)


def write_bitmap(segment_path: Path, generation: int, deleted: np.ndarray) -> Path:
    bits = np.packbits(deleted.astype(bool), bitorder="little")
    path = segment_path / f"deletes-{generation}.bitmap"
    header = DEL_HEADER.pack(DEL_MAGIC, FORMAT_VERSION, 0, crc32c(bits.data), deleted.shape[0])
    if path.exists():
        path.unlink()
    _write_file(path, [header, bits.data])
    fsync_dir(segment_path)
    return path


def read_bitmap(path: Path, rows: int) -> np.ndarray:
    data = path.read_bytes()
    if len(data) < DEL_HEADER.size:
        raise CorruptionError(f"{path}: truncated deletion bitmap ({len(data)} bytes)")
    magic, version, _, crc, stored_rows = DEL_HEADER.unpack_from(data)
    bits = np.frombuffer(data, dtype=np.uint8, offset=DEL_HEADER.size)
    if magic != DEL_MAGIC or version != FORMAT_VERSION:
        raise CorruptionError(f"{path}: not a deletion bitmap of format {FORMAT_VERSION}")
    if stored_rows != rows or bits.shape[0] != (rows + 7) // 8:
        raise CorruptionError(f"{path}: bitmap for {stored_rows} rows, segment has {rows}")
    if crc32c(bits.data) != crc:
        raise CorruptionError(f"{path}: deletion bitmap checksum mismatch")
    return np.unpackbits(bits, count=rows, bitorder="little").astype(np.uint8)


class Segment:
    """A loaded segment: memory-mapped vectors plus ids, metadata, its payload index
    (payload_index.py, built here from the metadata: not a file) and deletions in memory."""

    def __init__(self, path: Path, *, deletes_generation: int = 0, verify: bool = True,
                 written: SegmentData | None = None) -> None:
        """``written``: the rows this process has just written to ``path`` (write_segment); they are taken
        as they are instead of decoding ids.bin and meta.avro again (a flush or compaction loading its
        output: the decode held the GIL for up to a second at a time)."""
        self.path = path
        desc = read_doc(path / "segment.pxdb", "segment")
        if desc.get("format") != FORMAT_VERSION:
            raise CorruptionError(f"{path}: segment format {desc.get('format')} is not supported")
        self.id: int = desc["id"]
        self.rows: int = desc["rows"]
        self.dim: int = desc["dim"]
        self.descriptor = desc
        self.schema_version: int = int(desc.get("schema_version", 1))  # absent: written before v2
        if verify:
            for name, want in desc["files"].items():
                size, crc = _file_crc(path / name)
                if size != want["bytes"] or crc != want["crc32c"]:
                    raise CorruptionError(
                        f"{path / name}: size/checksum {size}/{crc:08x} do not match the segment descriptor "
                        f"({want['bytes']}/{want['crc32c']:08x})"
                    )
        self.vectors = self._map_vectors(path / "vectors.f32")
        self.ids = list(written.ids) if written is not None else _decode_ids(path / "ids.bin")
        if len(self.ids) != self.rows:
            raise CorruptionError(f"{path}: {len(self.ids)} ids for {self.rows} rows")
        self.expires_at: np.ndarray | None = None  # int64, NO_EXPIRY = never; None: no row expires
        if written is not None:
            self.metadata: list[Metadata] = list(written.metadata)
            self.timestamps = np.asarray(written.timestamps, dtype=np.int64)
            x = written.expires_at
            if x is not None and bool((x != NO_EXPIRY).any()):
                self.expires_at = np.asarray(x, dtype=np.int64).copy()
        else:
            self._read_meta(path)
        self.deletes_generation = deletes_generation
        if deletes_generation:
            self.deleted = read_bitmap(path / f"deletes-{deletes_generation}.bitmap", self.rows)
        else:
            self.deleted = np.zeros(self.rows, dtype=np.uint8)
        self.dirty = False  # deletions changed since the bitmap on disk
        # The deletions the manifest's checkpoint knows of (deletes_generation's bitmap): the base
        # that WAL replay starts from. Compaction merges this state, never the newer in-memory one.
        self.persisted_deleted = self.deleted.copy()
        self._next_generation = deletes_generation + 1
        # Only live rows are reachable by id: a deleted row must never shadow a newer version.
        self.id_to_row = {self.ids[row]: int(row) for row in np.flatnonzero(self.deleted == 0)}
        self.index: Any = None  # HNSWIndex / IVFIndex over the rows, once built or loaded
        self.payload = PayloadIndex.build(self.metadata)  # filters: set operations, never per row
        self.index_algorithm = "flat"

    def _read_meta(self, path: Path) -> None:
        """metadata, timestamps and expires_at from meta.avro."""
        self.metadata = []
        timestamps = []
        expires: list[int | None] = []
        reader_schema = resolving_reader_schema("SegmentRow", self.schema_version) or _segment_row_schema()
        with open(path / "meta.avro", "rb") as f:
            for rec in fastavro.reader(f, reader_schema=reader_schema):
                row = cast("dict[str, Any]", rec)  # a SegmentRow record
                self.metadata.append(row["metadata"])
                timestamps.append(row["timestamp"])
                expires.append(row["expires_at"])
        if len(self.metadata) != self.rows:
            raise CorruptionError(f"{path}/meta.avro: {len(self.metadata)} rows, segment has {self.rows}")
        self.timestamps = np.asarray(timestamps, dtype=np.int64)
        if any(x is not None for x in expires):
            self.expires_at = np.array([NO_EXPIRY if x is None else x for x in expires], dtype=np.int64)

    def attach_index(self, index: Any, algorithm: str) -> None:
        """Swap in a ready index (one attribute store: searches see the old or the new one)."""
        self.index, self.index_algorithm = index, algorithm

    def _map_vectors(self, path: Path) -> np.ndarray:
        with open(path, "rb") as f:
            header = f.read(VEC_HEADER.size)
        if len(header) < VEC_HEADER.size:
            raise CorruptionError(f"{path}: truncated vector block header")
        magic, version, _, dim, rows = VEC_HEADER.unpack(header)
        if magic != VEC_MAGIC or version != FORMAT_VERSION:
            raise CorruptionError(f"{path}: not a vector block of format {FORMAT_VERSION} (magic {magic!r})")
        if dim != self.dim or rows != self.rows:
            raise CorruptionError(f"{path}: header says {rows}x{dim}, descriptor {self.rows}x{self.dim}")
        if rows == 0:
            return np.zeros((0, dim), dtype=np.float32)
        return np.memmap(path, dtype="<f4", mode="r", offset=VEC_HEADER.size, shape=(rows, dim))

    @property
    def live_count(self) -> int:
        return self.rows - int(np.count_nonzero(self.deleted))

    def delete_row(self, row: int) -> None:
        if not self.deleted[row]:
            self.deleted[row] = 1
            self.id_to_row.pop(self.ids[row], None)
            self.dirty = True

    def record(self, row: int) -> dict[str, Any]:
        rec = {
            "id": self.ids[row],
            "vector": np.array(self.vectors[row], dtype=np.float32),
            "metadata": self.metadata[row],
            "timestamp": int(self.timestamps[row]),
        }
        if self.expires_at is not None and self.expires_at[row] != NO_EXPIRY:
            rec["expires_at"] = int(self.expires_at[row])
        return rec

    def write_deletions(self, mask: np.ndarray | None = None) -> tuple[int, np.ndarray] | None:
        """Write ``mask`` (default: the in-memory deletions, if they changed) as a new bitmap
        generation; return (generation, mask) for :meth:`commit_deletions` once the manifest
        naming it is saved, or None when there is nothing new to write."""
        if mask is None:
            if not self.dirty:
                return None
            mask = self.deleted.copy()
        generation = self._next_generation
        self._next_generation += 1
        write_bitmap(self.path, generation, mask)
        return generation, mask

    def commit_deletions(self, written: tuple[int, np.ndarray] | None) -> None:
        if written is None:
            return
        self.deletes_generation, self.persisted_deleted = written
        self.dirty = bool((self.deleted != self.persisted_deleted).any())

    def remove_stale_bitmaps(self) -> None:
        keep = f"deletes-{self.deletes_generation}.bitmap"
        for p in self.path.glob("deletes-*.bitmap"):
            if p.name != keep:
                p.unlink(missing_ok=True)
