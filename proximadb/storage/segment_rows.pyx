# cython: language_level=3, boundscheck=False, wraparound=False
"""meta.avro's data blocks, encoded in compiled code from the maps meta.rows was given.

``meta.avro`` (segment.py) is an Avro object container file of ``proximadb.v<N>.SegmentRow`` records,
codec lz4. Its header (magic, the schema and codec, the 16-byte sync marker) is fastavro's, written
once by the segment writer; the blocks that follow are written here, the bytes fastavro's writer
makes for the same records (tests/storage/test_segment_stream.py compares the files):

    block    long count, long size, <size> bytes: lz4.block.compress(records) (its 4-byte
             uncompressed length first), then the file's sync marker
    records  one after another; a block is cut after the record that brings the uncompressed
             bytes to ``sync_interval`` (16,000, fastavro's default) or more, and after the last
    record   v1: metadata, timestamp
             v2: metadata, timestamp, expires_at
             v3, v4: metadata, timestamp, expires_at, sparse_vectors (v4 adds nothing to SegmentRow)
      metadata        the row's Avro map, as wal_io.encode_metadata_maps writes it (meta.rows' and
                      the memtable's encoding: the same bytes as SegmentRow's map)
      timestamp       long (zig-zag varint)
      expires_at      union: 0 (null: NO_EXPIRY) or 1 then a long
      sparse_vectors  map<SparseVector>: the row's bytes as given (encoded by fastavro, rows with
                      sparse vectors only), or 0 (the empty map)

A flush of 300,000 rows with five metadata fields spent 2.9 s handing fastavro a dict per row;
here a row is a copy of its map's bytes and two or three varints.
"""

from libc.stdint cimport int64_t, uint64_t

from proximadb.codec._avro cimport AvroWriter, aw_bytes, aw_free, aw_init, aw_long, aw_raw

DEFAULT_SYNC_INTERVAL = 16000  # fastavro's 1000 * SYNC_SIZE


cdef class RowBlocks:
    """The records of one meta.avro, a run of rows at a time; each call returns the blocks it completed,
    framed (count, size, compressed bytes, sync marker) and ready to append to the file."""

    cdef AvroWriter buf
    cdef Py_ssize_t count
    cdef int version
    cdef Py_ssize_t interval
    cdef int64_t no_expiry
    cdef bytes sync
    cdef object compress

    def __cinit__(self, int schema_version, bytes sync_marker not None, compress not None, int64_t no_expiry,
                  Py_ssize_t sync_interval=DEFAULT_SYNC_INTERVAL):
        if not 1 <= schema_version <= 4:  # v4's SegmentRow is v3's (named vectors live in their own files)
            raise ValueError(f"SegmentRow schema version {schema_version} is not 1, 2, 3 or 4")
        if len(sync_marker) != 16:
            raise ValueError(f"an Avro sync marker is 16 bytes, got {len(sync_marker)}")
        aw_init(&self.buf)
        self.count = 0
        self.version = schema_version
        self.interval = sync_interval
        self.no_expiry = no_expiry
        self.sync = sync_marker
        self.compress = compress

    def __dealloc__(self):
        aw_free(&self.buf)

    cdef bytes _dump(self):
        cdef AvroWriter head
        data = self.compress(aw_bytes(&self.buf))
        aw_init(&head)
        try:
            aw_long(&head, self.count)
            aw_long(&head, len(data))
            framed = aw_bytes(&head) + data + self.sync
        finally:
            aw_free(&head)
        self.buf.len = 0
        self.count = 0
        return framed

    def add(self, const unsigned char[::1] blob not None, const uint64_t[::1] offsets not None,
            const int64_t[::1] timestamps not None, const int64_t[::1] expires_at=None, list sparse=None):
        """Rows ``r``: metadata ``blob[offsets[r]:offsets[r + 1]]``, ``timestamps[r]``, ``expires_at[r]``
        (None: none expires) and ``sparse[r]`` (the encoded map, or None: empty; None: no row has one).
        Returns the completed blocks (a list of bytes)."""
        cdef Py_ssize_t rows = offsets.shape[0] - 1
        cdef Py_ssize_t r
        cdef uint64_t a, b
        cdef int64_t x
        cdef list blocks = []
        if rows < 0 or timestamps.shape[0] != rows or (expires_at is not None and expires_at.shape[0] != rows) \
                or (sparse is not None and len(sparse) != rows):
            raise ValueError(f"{rows} maps need as many timestamps, expiries and sparse maps")
        for r in range(rows):
            a = offsets[r]
            b = offsets[r + 1]
            if a >= b or b > <uint64_t>blob.shape[0]:
                raise ValueError(f"row {r}'s map at {a}:{b} is outside the {blob.shape[0]} bytes")
            aw_raw(&self.buf, &blob[0] + a, <Py_ssize_t>(b - a))
            aw_long(&self.buf, timestamps[r])
            if self.version >= 2:
                x = self.no_expiry if expires_at is None else expires_at[r]
                if x == self.no_expiry:
                    aw_long(&self.buf, 0)
                else:
                    aw_long(&self.buf, 1)
                    aw_long(&self.buf, x)
            if self.version >= 3:
                row_sparse = None if sparse is None else sparse[r]
                if row_sparse is None:
                    aw_long(&self.buf, 0)
                else:
                    encoded = <bytes?>row_sparse
                    aw_raw(&self.buf, <const char *>encoded, len(encoded))
            self.count += 1
            if self.buf.len >= self.interval:
                blocks.append(self._dump())
        return blocks

    def finish(self):
        """The last block (None when every record is in a block already)."""
        return self._dump() if self.count else None
