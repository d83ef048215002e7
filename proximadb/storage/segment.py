"""Segments: immutable, columnar files of one collection's flushed rows.

A segment is a directory ``segments/seg-<id:08d>/`` holding::

    vectors.f32   the float32 vector block, memory-mapped when read
    ids.bin       the row ids, ascending (rows are written in id order); memory-mapped
                  and searched in place (id_table.pyx)
    meta.avro     metadata + timestamp (+ expires_at since v2, + sparse_vectors since v3) per row: Avro object
                  container file, codec lz4, schema proximadb.v<N>.SegmentRow where N
                  is the descriptor's ``schema_version`` (absent: 1, written before v2);
                  older versions are read through Avro schema resolution. The canonical
                  record: what follows is derived from it. Its blocks' bytes: segment_rows.pyx
    meta.rows     derived: the metadata, timestamp and expiry columns, memory-mapped and
                  decoded per row on demand (metadata_store.py)
    payload.idx   derived: the payload index of the rows (payload_index_file.py)
    sparse.idx    derived, v3 segments: the rows' sparse vectors and their postings, memory-mapped
                  (sparse_index_file.py)
    named/<name>.f32   v4 segments of a collection that declares named dense vectors: per name its rows,
                  the layout of ``vectors.f32`` (its own dim), the row order of ``ids.bin``; listed with
                  size and CRC32C in the descriptor's ``files`` (checked at open like vectors.f32) and
                  named with its dimension in the descriptor's ``named_vectors`` ({name: dim}); memory-mapped
    deletes-<g>.bitmap   generation g of the deletion bitmap (0 = none yet)
    segment.pxdb  the descriptor: a checksummed JSON document (see docfile.py)
                  with rows, dim and, per data file, its size and CRC32C
    PENDING       empty; present from the segment's creation until the manifest
                  naming it is durable (intents.py: proof of an interrupted flush)

Everything but the bitmap is written once, into ``seg-<id>.tmp/``, fsynced,
and renamed into place (intents.new_dir); the collection's manifest then
names the segment and its current bitmap generation. Deletions after a flush
live in the WAL until the next checkpoint writes a new bitmap generation.

The files are written by segment_writer.py (a chunk of rows at a time: compaction and
migration stream); this module documents their bytes, reads them and writes the deletion
bitmaps. A write that fails (ENOSPC above all) leaves nothing behind: ``write_segment``
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

import logging
import mmap
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fastavro
import numpy as np

from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, record_schema, resolving_reader_schema
from proximadb.errors import CorruptionError
from proximadb.storage import metadata_store, named_columns, payload_index_file, sparse_index_file
from proximadb.storage.derived_file import StaleDerivedFile, save_derived
from proximadb.storage.docfile import fsync_dir, read_doc
from proximadb.storage.filter_cache import PlanCache
from proximadb.storage.id_table import IdTable
from proximadb.storage.operations import NO_EXPIRY, Metadata
from proximadb.storage.payload_index import PayloadIndex
from proximadb.storage.placed_file import crc_of
from proximadb.storage.sparse_column import SparseColumn, columns_from_records, row_dict
from proximadb.storage.sparse_index_file import SparseIndex
from proximadb.storage.wal_io import crc32c

VEC_MAGIC = b"PXDBVEC\x01"
IDS_MAGIC = b"PXDBIDS\x01"
DEL_MAGIC = b"PXDBDEL\x01"
FORMAT_VERSION = 1
VEC_HEADER = struct.Struct("<8sHHIQ40x")  # 64 bytes
IDS_HEADER = struct.Struct("<8sHHIQQ")  # 32 bytes
DEL_HEADER = struct.Struct("<8sHHIQ8x")  # 32 bytes
_CHUNK = 8 << 20
log = logging.getLogger("proximadb.storage")


def segment_dir_name(segment_id: int) -> str:
    return f"seg-{segment_id:08d}"


NAMED_DIR = "named"


def named_file(name: str) -> str:
    """A named vector's rows file, relative to the segment directory (the name: [A-Za-z0-9_-]{1,64})."""
    return f"{NAMED_DIR}/{name}.f32"


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


def _encode_ids(ids: list[str]) -> list[bytes | memoryview]:
    encoded = [i.encode("utf-8") for i in ids]
    offsets = np.zeros(len(encoded) + 1, dtype="<u8")
    if encoded:
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
    blob = b"".join(encoded)
    header = IDS_HEADER.pack(IDS_MAGIC, FORMAT_VERSION, 0, 0, len(ids), len(blob))
    return [header, offsets.tobytes(), blob]


def _map_ids(path: Path) -> IdTable:
    """The ids of ``ids.bin``, memory-mapped and read in place (id_table.pyx)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < IDS_HEADER.size:
            raise CorruptionError(f"{path}: {size} bytes, shorter than the ids header")
        data = memoryview(mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ))
    magic, version, _, _, rows, blob_len = IDS_HEADER.unpack_from(data)
    if magic != IDS_MAGIC or version != FORMAT_VERSION:
        raise CorruptionError(f"{path}: not an ids file of format {FORMAT_VERSION} (magic {magic!r}, v{version})")
    start = IDS_HEADER.size + 8 * (rows + 1)
    if start + blob_len != size:
        raise CorruptionError(f"{path}: size {size} does not match {rows} rows and a {blob_len}-byte blob")
    offsets = np.frombuffer(data, dtype="<u8", count=rows + 1, offset=IDS_HEADER.size)
    if rows and (int(offsets[0]) != 0 or bool((np.diff(offsets.astype(np.int64)) < 0).any())):
        raise CorruptionError(f"{path}: id offsets are not ascending from 0")
    try:
        return IdTable(offsets, data[start:], data)
    except ValueError as exc:
        raise CorruptionError(f"{path}: {exc}") from None


def _segment_row_schema(version: int = CURRENT_SCHEMA_VERSION) -> Any:
    return record_schema("SegmentRow", version)


@dataclass(slots=True)
class SegmentData:
    """Rows for segment_writer.write_segment, whole (a flush's) or one chunk (rows in ascending id order)."""

    ids: list[str]
    vectors: np.ndarray
    metadata: Sequence[Metadata]  # a list, or a flush's memtable rows decoded as read (MetadataRows)
    timestamps: np.ndarray
    expires_at: np.ndarray | None = None  # int64, NO_EXPIRY = never; None: no row expires
    sparse_vectors: dict[str, SparseColumn] | None = None  # per name over these rows; None: no row has any
    named_vectors: dict[str, np.ndarray] | None = None  # v4: per named vector (rows, dim) float32; None: none


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
    """A loaded segment: memory-mapped vectors and metadata columns (``metadata[row]`` decodes one
    row), ids, its payload index (mapped from ``payload.idx``) and deletions in memory."""

    def __init__(self, path: Path, *, deletes_generation: int = 0, verify: bool = True) -> None:
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
                size, crc = crc_of(path / name)
                if size != want["bytes"] or crc != want["crc32c"]:
                    raise CorruptionError(
                        f"{path / name}: size/checksum {size}/{crc:08x} do not match the segment descriptor "
                        f"({want['bytes']}/{want['crc32c']:08x})"
                    )
        self.vectors = self._map_vectors(path / "vectors.f32", self.dim)
        # v4: the named dense vectors, name -> (rows, dim) mapped from named/<name>.f32
        self.named: dict[str, np.ndarray] = {
            name: self._map_vectors(path / named_file(name), int(dim))
            for name, dim in desc.get("named_vectors", {}).items()}
        self.named_index: dict[str, Any] = {}  # per named vector its index over the rows, once built or loaded
        self.ids = _map_ids(path / "ids.bin")
        if len(self.ids) != self.rows:
            raise CorruptionError(f"{path}: {len(self.ids)} ids for {self.rows} rows")
        self._load_columns(path, verify)
        self.plan_cache = PlanCache()  # filter plans over the (immutable) payload index: filter_cache.py
        # v3: per sparse vector name, the rows' CSR and postings, mapped from sparse.idx
        self.sparse: dict[str, SparseIndex] = self._load_sparse(path) if self.schema_version >= 3 else {}
        self.deletes_generation = deletes_generation
        if deletes_generation:
            self.deleted = read_bitmap(path / f"deletes-{deletes_generation}.bitmap", self.rows)
        else:
            self.deleted = np.zeros(self.rows, dtype=np.uint8)
        self.dirty = False  # deletions changed since the bitmap on disk
        # alive(): the complement of ``deleted`` and whether it is all ones, cached together (one
        # attribute: a reader sees both of one state); made and dropped under _alive_lock, so a
        # delete_row during a search's alive() never leaves a mask that misses the deletion
        self._alive: tuple[np.ndarray, bool] | None = None
        self._alive_lock = threading.Lock()
        # The deletions the manifest's checkpoint knows of (deletes_generation's bitmap): the base
        # that WAL replay starts from. Compaction merges this state, never the newer in-memory one.
        self.persisted_deleted = self.deleted.copy()
        self._next_generation = deletes_generation + 1
        self.index: Any = None  # HNSWIndex / IVFIndex over the rows, once built or loaded
        self.index_algorithm = "flat"

    def _load_columns(self, path: Path, verify: bool) -> None:
        """metadata/timestamps/expires_at from ``meta.rows`` and the payload index from ``payload.idx``;
        whichever is missing or refused is rebuilt from ``meta.avro`` and saved (derived_file.py)."""
        source_crc = int(self.descriptor["files"]["meta.avro"]["crc32c"])
        decoded: list[Metadata] | None = None
        try:
            columns = metadata_store.map_columns(path / metadata_store.FILE_NAME, source_crc, self.rows)
        except StaleDerivedFile as why:
            log.info("segment %s: rebuilding %s from meta.avro (%s)", path, metadata_store.FILE_NAME, why)
            decoded, timestamps, expires = self._decode_meta_avro(path)
            parts = metadata_store.encode_columns(decoded, timestamps, expires)
            columns = metadata_store.MetadataColumns(b"".join(parts), self.rows)
            save_derived(path, lambda: metadata_store.write_columns(
                path / metadata_store.FILE_NAME, source_crc, parts))
        self.metadata: Sequence[Metadata] = columns.metadata
        self.timestamps = columns.timestamps
        self.expires_at: np.ndarray | None = columns.expires_at  # int64, NO_EXPIRY = never; None: none expires
        try:
            self.payload = payload_index_file.load_index(path / payload_index_file.FILE_NAME, source_crc)
        except StaleDerivedFile as why:
            log.info("segment %s: rebuilding %s (%s)", path, payload_index_file.FILE_NAME, why)
            self.payload = PayloadIndex.build(decoded if decoded is not None else columns.metadata)
            payload = self.payload
            save_derived(path, lambda: payload_index_file.write_index(
                path / payload_index_file.FILE_NAME, source_crc, payload))

    def _load_sparse(self, path: Path) -> dict[str, SparseIndex]:
        """sparse.idx mapped; missing or refused: rebuilt from meta.avro's sparse vectors and saved."""
        source_crc = int(self.descriptor["files"]["meta.avro"]["crc32c"])
        target = path / sparse_index_file.FILE_NAME
        try:
            return sparse_index_file.load_index(target, source_crc, self.rows)
        except StaleDerivedFile as why:
            log.info("segment %s: rebuilding %s from meta.avro (%s)", path, sparse_index_file.FILE_NAME, why)
        with open(path / "meta.avro", "rb") as f:
            rows = [cast("dict[str, Any]", rec)["sparse_vectors"] or None for rec in fastavro.reader(f)]
        if len(rows) != self.rows:
            raise CorruptionError(f"{path}/meta.avro: {len(rows)} rows, segment has {self.rows}")
        built = {name: SparseIndex.build(col) for name, col in columns_from_records(rows, self.rows).items()}
        save_derived(path, lambda: sparse_index_file.write_index(target, source_crc, built))
        return built

    def named_columns(self, rows: np.ndarray) -> dict[str, np.ndarray] | None:
        """The named vectors of the given rows (a compaction's chunk, a row moved to the memtable), or None."""
        return {name: np.array(m[rows], dtype=np.float32) for name, m in self.named.items()} if self.named else None

    def sparse_columns(self, rows: np.ndarray) -> dict[str, SparseColumn] | None:
        """The sparse vectors of the given rows (a compaction's chunk, a row moved to the memtable), or None."""
        out = {name: sp.column.take(rows) for name, sp in self.sparse.items()}
        out = {name: col for name, col in out.items() if col.nnz}
        return out or None

    def _decode_meta_avro(self, path: Path) -> tuple[list[Metadata], np.ndarray, np.ndarray | None]:
        """The canonical record, row by row (fastavro): the slow path, taken once per segment."""
        metadata: list[Metadata] = []
        timestamps = []
        expires: list[int | None] = []
        reader_schema = resolving_reader_schema("SegmentRow", self.schema_version) or _segment_row_schema()
        with open(path / "meta.avro", "rb") as f:
            for rec in fastavro.reader(f, reader_schema=reader_schema):
                row = cast("dict[str, Any]", rec)  # a SegmentRow record
                metadata.append(row["metadata"])
                timestamps.append(row["timestamp"])
                expires.append(row["expires_at"])
        if len(metadata) != self.rows:
            raise CorruptionError(f"{path}/meta.avro: {len(metadata)} rows, segment has {self.rows}")
        expires_at = None
        if any(x is not None for x in expires):
            expires_at = np.array([NO_EXPIRY if x is None else x for x in expires], dtype=np.int64)
        return metadata, np.asarray(timestamps, dtype=np.int64), expires_at

    def release(self) -> None:
        """Drop every mapping of the segment's files (vectors, columns, payload index) so that their
        space is free as soon as the files are removed; the segment is unusable afterwards. Its index
        goes too: an HNSW index reads the vectors' mapping (it keeps no copy of its own)."""
        self.index = None
        self.vectors = np.zeros((0, self.dim), dtype=np.float32)
        self.ids = IdTable(np.zeros(1, dtype=np.uint64), b"")
        self.metadata = []
        self.timestamps = np.zeros(0, dtype=np.int64)
        self.expires_at = None
        self.payload = PayloadIndex()
        self.plan_cache.clear()
        self.sparse = {}
        self.named = {name: np.zeros((0, m.shape[1]), dtype=np.float32) for name, m in self.named.items()}
        self.named_index = {}

    def attach_index(self, index: Any, algorithm: str) -> None:
        """Swap in a ready index (one attribute store: searches see the old or the new one)."""
        self.index, self.index_algorithm = index, algorithm

    def _map_vectors(self, path: Path, want_dim: int) -> np.ndarray:
        with open(path, "rb") as f:
            header = f.read(VEC_HEADER.size)
        if len(header) < VEC_HEADER.size:
            raise CorruptionError(f"{path}: truncated vector block header")
        magic, version, _, dim, rows = VEC_HEADER.unpack(header)
        if magic != VEC_MAGIC or version != FORMAT_VERSION:
            raise CorruptionError(f"{path}: not a vector block of format {FORMAT_VERSION} (magic {magic!r})")
        if dim != want_dim or rows != self.rows:
            raise CorruptionError(f"{path}: header says {rows}x{dim}, descriptor {self.rows}x{want_dim}")
        if rows == 0:
            return np.zeros((0, dim), dtype=np.float32)
        return np.memmap(path, dtype="<f4", mode="r", offset=VEC_HEADER.size, shape=(rows, dim))

    @property
    def live_count(self) -> int:
        return self.rows - int(np.count_nonzero(self.deleted))

    def row_of(self, id_: str) -> int | None:
        """The live row of ``id_``. Only live rows are reachable by id: a deleted row must never
        shadow a newer version."""
        row = self.ids.find_one(id_)
        return None if row < 0 or self.deleted[row] else row

    def live_rows(self, ids: Sequence[str]) -> np.ndarray:
        """The live row of each of ``ids`` (int64), -1 where it has none here."""
        rows = self.ids.find(ids)
        found = rows >= 0
        rows[found] = np.where(self.deleted[rows[found]] == 0, rows[found], -1)
        return rows

    def alive(self) -> np.ndarray:
        """uint8, 1 for every row not deleted: computed once per change of the deletions (read-only)."""
        return self._alive_state()[0]

    def all_alive(self) -> bool:
        """No row is deleted (expiry aside)."""
        return self._alive_state()[1]

    def _alive_state(self) -> tuple[np.ndarray, bool]:
        state = self._alive
        if state is None:
            with self._alive_lock:
                state = self._alive
                if state is None:
                    mask = (self.deleted == 0).view(np.uint8)
                    mask.flags.writeable = False
                    state = self._alive = (mask, bool(mask.all()))
        return state

    def delete_row(self, row: int) -> None:
        if not self.deleted[row]:
            with self._alive_lock:
                self.deleted[row] = 1
                self._alive = None
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
        if self.sparse:
            sparse = row_dict({name: sp.column for name, sp in self.sparse.items()}, row)
            if sparse:
                rec["sparse_vectors"] = sparse
        if self.named:
            rec["named_vectors"] = named_columns.row_vectors(self.named, row)
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
