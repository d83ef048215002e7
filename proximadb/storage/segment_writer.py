"""Writing a segment directory a chunk of rows at a time: memory bounded by the chunk, not the segment.

Flush, compaction and migration write their segments here (through segment_rewrite.py). The
rows come as a :class:`RowStream`: their count, dimension and whether any of them expires are
known up front, then chunks (:class:`~proximadb.storage.segment.SegmentData`, at most
``StorageOptions.rewrite_chunk_rows`` rows each from compaction and migration) in ascending id
order. Each chunk is written to every file before the next is asked for, so nothing per row
outlives its chunk but the payload index being built (roaring bitmaps and sorted number
columns: the size of ``payload.idx``, 16 bytes per number, twice that while a column is sorted).

The files and their bytes are unchanged: ``vectors.f32``, ``ids.bin``, ``meta.avro`` and
``segment.pxdb`` as documented in segment.py, ``meta.rows`` in metadata_store.py,
``payload.idx`` in payload_index_file.py, ``sparse.idx`` (v3) in sparse_index_file.py. A segment
written in chunks of any size is byte for byte the segment written whole
(tests/storage/test_segment_stream.py compares them with the writer this one replaced). How each file is streamed:

    vectors.f32  the header (rows and dim are known), then each chunk's rows; CRC as it goes
    ids.bin      each chunk's offsets and UTF-8 ids at their places (the blob starts after the
                 header and the rows + 1 offsets: both known); the header last, then the CRC
                 is read back (placed_file.py)
    meta.avro    fastavro's header, then the blocks of SegmentRow records segment_rows.pyx encodes
                 from the maps meta.rows got (the bytes fastavro's writer makes; one block, ~16 kB,
                 held before it is compressed and written)
    meta.rows    metadata_store.ColumnsWriter (same scheme as ids.bin): the maps as the memtable or the
                 merged segments hold them (metadata_store.EncodedRows), dicts encoded 256 at a time
    payload.idx  PayloadIndex.add_encoded per chunk (the maps meta.rows got, scanned in compiled
                 code: metadata_scan.pyx), sealed at the end (postings in their canonical
                 order), the bitmaps rebuilt in the container kinds a build of the whole
                 segment gives (whole_build_order)
    sparse.idx   v3: each chunk's sparse columns kept (the non-zeros: the size of the file), joined
                 per name and indexed at the end (SparseIndex.build)
    named/<name>.f32  v4, per declared named vector: as vectors.f32 (header with the name's dim, then
                 each chunk's rows, CRC as it goes); listed in the descriptor's ``files`` and
                 ``named_vectors`` ({name: dim}); ``named/`` fsynced

Everything is written into ``seg-<id>.tmp/`` (intents.new_dir), each file fsynced, the
directory renamed into place with its PENDING marker; on any error nothing is left behind.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import fastavro
import lz4.block
import numpy as np
from pyroaring import BitMap

from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, record_schema
from proximadb.storage import intents, metadata_store, payload_index_file, sparse_index_file
from proximadb.storage.docfile import fsync_dir, write_doc
from proximadb.storage.metadata_store import EncodedRows
from proximadb.storage.operations import NO_EXPIRY
from proximadb.storage.payload_index import PayloadIndex
from proximadb.storage.placed_file import PlacedFile, crc_of
from proximadb.storage.segment import (
    FORMAT_VERSION,
    IDS_HEADER,
    IDS_MAGIC,
    NAMED_DIR,
    VEC_HEADER,
    VEC_MAGIC,
    SegmentData,
    named_file,
    segment_dir_name,
)
from proximadb.storage.segment_rows import RowBlocks
from proximadb.storage.sparse_column import SparseColumn, row_dict
from proximadb.storage.sparse_index_file import SparseIndex
from proximadb.storage.wal_io import crc32c

DEFAULT_CHUNK_ROWS = 8192  # StorageOptions.rewrite_chunk_rows
# Rows whose metadata is decoded and written at a time when it comes as dicts (not EncodedRows): few
# enough that their dicts are gone before the cyclic collector runs.
METADATA_STEP = 256


@dataclass(slots=True)
class RowStream:
    """The rows of a new segment: known sizes, then chunks (ascending ids) produced on demand."""

    rows: int
    dim: int
    has_expiry: bool  # some row has an expires_at (not NO_EXPIRY): meta.rows gets the column
    chunks: Iterable[SegmentData]
    # v4: the named vectors every chunk carries, name -> dim
    named: dict[str, int] = dataclass_field(default_factory=dict)

    @classmethod
    def of(cls, data: SegmentData, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> RowStream:
        """The rows of ``data`` (all in memory already: a flush's), in chunks of ``chunk_rows``."""
        rows, dim = data.vectors.shape
        expires = data.expires_at
        has_expiry = expires is not None and bool((expires != NO_EXPIRY).any())

        def chunks() -> Iterator[SegmentData]:
            for a in range(0, rows, chunk_rows):
                b = min(rows, a + chunk_rows)
                sparse = None if not data.sparse_vectors else {
                    name: col.slice(a, b) for name, col in data.sparse_vectors.items()}
                named = None if not data.named_vectors else {
                    name: col[a:b] for name, col in data.named_vectors.items()}
                yield SegmentData(data.ids[a:b], data.vectors[a:b], data.metadata[a:b],
                                  data.timestamps[a:b], None if expires is None else expires[a:b], sparse, named)

        named_dims = {name: int(col.shape[1]) for name, col in (data.named_vectors or {}).items()}
        return cls(rows, dim, has_expiry, chunks(), named_dims)


def write_segment(segments_dir: Path, segment_id: int, data: SegmentData | RowStream, extra: dict[str, Any],
                  *, schema_version: int = CURRENT_SCHEMA_VERSION, sync_marker: bytes | None = None) -> Path:
    """Write a complete segment directory durably (meta.avro in ``schema_version``) and return its path.

    ``sync_marker``: meta.avro's 16-byte Avro sync marker (default: random, as Avro prescribes; a
    test pins it to compare files). On any error (ENOSPC: OSError with errno.ENOSPC) nothing is left
    behind and the error is raised.
    """
    stream = data if isinstance(data, RowStream) else RowStream.of(data)
    if schema_version < 2 and stream.has_expiry:
        raise ValueError("a segment with expires_at needs schema version 2 or later")
    if schema_version < 4 and stream.named:
        raise ValueError("a segment with named vectors needs schema version 4 or later")
    final = segments_dir / segment_dir_name(segment_id)
    with intents.new_dir(final) as tmp:  # seg-<id>.tmp, then seg-<id> with its PENDING marker
        _write_files(tmp, segment_id, stream, extra, schema_version, sync_marker)
    return final


class _Vectors:
    def __init__(self, path: Path, rows: int, dim: int) -> None:
        self.file = PlacedFile(path)
        header = VEC_HEADER.pack(VEC_MAGIC, FORMAT_VERSION, 0, dim, rows)
        self.file.write_at(0, header)
        self.size = len(header)
        self.crc = crc32c(header)

    def add(self, vectors: np.ndarray) -> None:
        block = np.ascontiguousarray(vectors, dtype="<f4")
        self.file.write_at(self.size, block.data)
        self.crc = crc32c(block.data.cast("B"), self.crc)
        self.size += block.nbytes

    def finish(self) -> dict[str, int]:
        self.file.close()
        return {"bytes": self.size, "crc32c": self.crc}


class _Ids:
    def __init__(self, path: Path, rows: int) -> None:
        self.file = PlacedFile(path)
        self.rows = rows
        self.done = 0
        self.blob_at = IDS_HEADER.size + 8 * (rows + 1)
        self.blob_len = 0
        self.file.write_at(IDS_HEADER.size, np.zeros(1, dtype="<u8").data)  # offsets[0]

    def add(self, ids: list[str]) -> None:
        encoded = [i.encode("utf-8") for i in ids]
        n = len(encoded)
        ends = np.cumsum([len(e) for e in encoded], dtype="<u8") + np.uint64(self.blob_len)
        self.file.write_at(IDS_HEADER.size + 8 * (self.done + 1), ends.data)  # offsets[done + 1 : done + n + 1]
        blob = b"".join(encoded)
        self.file.write_at(self.blob_at + self.blob_len, blob)
        self.blob_len += len(blob)
        self.done += n

    def finish(self) -> dict[str, int]:
        if self.done != self.rows:
            raise ValueError(f"ids.bin: {self.done} ids written, {self.rows} announced")
        self.file.write_at(0, IDS_HEADER.pack(IDS_MAGIC, FORMAT_VERSION, 0, 0, self.rows, self.blob_len))
        self.file.close()
        size, crc = crc_of(self.file.path)
        return {"bytes": size, "crc32c": crc}


def whole_build_order(index: PayloadIndex) -> None:
    """Make the bitmaps :meth:`PayloadIndex.build` of the whole part makes, whatever the batches were
    (the postings' order is the sealed index's, PayloadIndex.seal): each posting built at once from its
    rows (pyroaring's constructor picks each container's kind, run or not, once from the content; a
    bitmap grown batch by batch may keep another kind where both are the same size, which changes the
    serialized bytes though not the rows), and each field's ``exists`` remade as add_rows makes it, by
    one update (no run containers)."""
    for field in index.fields.values():
        exists = BitMap()
        exists.update(field.exists.to_array())
        field.exists = exists
        field.postings = {key: BitMap(bitmap.to_array()) for key, bitmap in field.postings.items()}


def _sparse_indexes(chunks: list[tuple[int, dict[str, SparseColumn] | None]]) -> dict[str, SparseIndex]:
    """Each name's column over the whole segment (chunks without the name: empty rows), indexed."""
    names = sorted({name for _, cols in chunks for name, col in (cols or {}).items() if col.nnz})
    return {name: SparseIndex.build(SparseColumn.concat([
        (cols or {}).get(name) or SparseColumn.empty(n) for n, cols in chunks])) for name in names}


class _ChunkMaps:
    """A chunk's encoded maps, gathered a step at a time from what meta.rows was given."""

    def __init__(self, rows: int) -> None:
        self.blobs: list[bytes] = []
        self.offsets = np.zeros(rows + 1, dtype=np.uint64)
        self.size = 0

    def add(self, at: int, blob: bytes, offsets: np.ndarray) -> None:
        n = offsets.shape[0] - 1
        self.offsets[at + 1 : at + n + 1] = offsets[1:] + np.uint64(self.size)
        self.blobs.append(blob)
        self.size += len(blob)

    def joined(self) -> tuple[bytes, np.ndarray]:
        return b"".join(self.blobs), self.offsets


def _sparse_maps(columns: dict[str, SparseColumn] | None, a: int, b: int, schema: Any) -> list[bytes | None] | None:
    """Rows ``a:b``'s ``sparse_vectors`` maps as SegmentRow encodes them (segment_rows.pyx), None for a row
    without any; None when no row has one. Encoded by fastavro: a record of empty metadata, timestamp 0
    and no expiry (three zero bytes) followed by the map."""
    if not columns or not any(col.nnz for col in columns.values()):
        return None
    out: list[bytes | None] = []
    for r in range(a, b):
        row = row_dict(columns, r)
        if not row:
            out.append(None)
            continue
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, {"metadata": {}, "timestamp": 0, "expires_at": None,
                                                 "sparse_vectors": row})
        out.append(buf.getvalue()[3:])
    return out


def _write_files(tmp: Path, segment_id: int, stream: RowStream, extra: dict[str, Any], schema_version: int,
                 sync_marker: bytes | None) -> None:
    rows, dim = stream.rows, stream.dim
    vectors = _Vectors(tmp / "vectors.f32", rows, dim)
    ids = _Ids(tmp / "ids.bin", rows)
    columns = metadata_store.ColumnsWriter(tmp / metadata_store.FILE_NAME, rows, stream.has_expiry)
    named: dict[str, _Vectors] = {}
    if stream.named:
        (tmp / NAMED_DIR).mkdir()
        named = {name: _Vectors(tmp / named_file(name), rows, d) for name, d in stream.named.items()}
    index = PayloadIndex()
    written = 0
    sparse_chunks: list[tuple[int, dict[str, SparseColumn] | None]] = []  # (rows, columns) per chunk
    schema = record_schema("SegmentRow", schema_version)
    sync = os.urandom(16) if sync_marker is None else sync_marker
    try:
        records = RowBlocks(schema_version, sync, lz4.block.compress, NO_EXPIRY)  # as fastavro's lz4 codec
        with open(tmp / "meta.avro", "wb") as meta:
            fastavro.writer(meta, schema, [], codec="lz4", sync_marker=sync)  # the header alone
            for chunk in stream.chunks:
                n = len(chunk.ids)
                if chunk.vectors.shape != (n, dim) or len(chunk.metadata) != n or chunk.timestamps.shape[0] != n:
                    raise ValueError(f"a chunk of {n} ids has {chunk.vectors.shape} vectors, "
                                     f"{len(chunk.metadata)} metadata and {chunk.timestamps.shape[0]} timestamps")
                if written + n > rows:
                    raise ValueError(f"more rows than the {rows} announced")
                vectors.add(chunk.vectors)
                chunk_named = chunk.named_vectors or {}
                if chunk_named.keys() != named.keys():
                    raise ValueError(f"a chunk with named vectors {sorted(chunk_named)}, announced {sorted(named)}")
                for name, out in named.items():
                    if chunk_named[name].shape != (n, stream.named[name]):
                        raise ValueError(f"named vector {name!r}: a chunk of {n} ids has {chunk_named[name].shape}")
                    out.add(chunk_named[name])
                ids.add(chunk.ids)
                if chunk.sparse_vectors and any(col.nnz for col in chunk.sparse_vectors.values()):
                    if schema_version < 3:
                        raise ValueError("a segment with sparse vectors needs schema version 3 or later")
                sparse_chunks.append((n, chunk.sparse_vectors))
                stamps = np.ascontiguousarray(chunk.timestamps, dtype=np.int64)
                expires = None if chunk.expires_at is None else np.ascontiguousarray(chunk.expires_at, dtype=np.int64)
                maps = _ChunkMaps(n)
                # a flush's or a merge's rows: their maps as they are held, not decoded
                held = chunk.metadata if isinstance(chunk.metadata, EncodedRows) else None
                step = max(n, 1) if held is not None else METADATA_STEP
                for a in range(0, n, step):
                    b = min(n, a + step)
                    step_expires = None if expires is None else expires[a:b]
                    if held is not None:
                        blob, offsets = held.encoded()
                        columns.add_encoded(blob, offsets, stamps[a:b], step_expires)
                    else:  # decoded here, a step at a time
                        blob, offsets = columns.add(list(chunk.metadata[a:b]), stamps[a:b], step_expires)
                    maps.add(a, blob, offsets)
                    sparse = None if schema_version < 3 else _sparse_maps(chunk.sparse_vectors, a, b, schema)
                    for block in records.add(blob, offsets, stamps[a:b], step_expires, sparse):
                        meta.write(block)
                # the chunk's maps indexed at once: a bitmap update per distinct value
                index.add_encoded(written, *maps.joined(), functools.partial(list, chunk.metadata))
                written += n
            last = records.finish()
            if last is not None:
                meta.write(last)
            meta.flush()
            os.fsync(meta.fileno())
        if written != rows:
            raise ValueError(f"{written} rows written, {rows} announced")
        files = {"vectors.f32": vectors.finish(), "ids.bin": ids.finish()}
        for name, out in named.items():
            files[named_file(name)] = out.finish()
        if named:
            fsync_dir(tmp / NAMED_DIR)
        size, crc = crc_of(tmp / "meta.avro")
        files["meta.avro"] = {"bytes": size, "crc32c": crc}
        # What a reopen reads instead of decoding meta.avro (derived files: not in the descriptor's list).
        columns.finish(crc)
    except BaseException:
        for partial in (vectors.file, ids.file, columns):
            partial.abort()
        for out in named.values():
            out.file.abort()
        raise
    index.seal()
    whole_build_order(index)
    payload_index_file.write_index(tmp / payload_index_file.FILE_NAME, crc, index)
    if schema_version >= 3:
        sparse_index_file.write_index(tmp / sparse_index_file.FILE_NAME, crc, _sparse_indexes(sparse_chunks))
    descriptor = {"format": FORMAT_VERSION, "id": segment_id, "rows": rows, "dim": dim, "files": files, **extra,
                  "schema_version": schema_version}
    if stream.named:
        descriptor["named_vectors"] = dict(stream.named)
    write_doc(tmp / "segment.pxdb", "segment", descriptor)
