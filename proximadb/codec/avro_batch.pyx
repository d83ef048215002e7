"""Avro binary codec for the ``VectorBatch`` datum (op ``vector_insert``), straight to numpy.

The datum (schemas/v<N>/vector_batch.avsc, vector_record.avsc) in Avro binary::

    VectorBatch  = upsert:boolean  records:array<VectorRecord>
    VectorRecord = id:string  vector:array<float>  metadata:map<Value>  timestamp:long
                   [v2: expires_at:union{null, long}]
    Value        = union { null, boolean, long, double, string, array<string> }

    long     zig-zag varint, 1..10 bytes
    boolean  one byte, 0 or 1 (anything else is malformed)
    float    4 bytes little-endian IEEE 754; double: 8 bytes
    string   long length, then that many UTF-8 bytes
    union    long branch index, then the branch's value
    array    blocks: long count, then count items; a count of 0 ends the array.
    map      A negative count -n means n items preceded by a long byte size of the block.
             Map items are a string key then the value.

Decoding runs in three passes over the bytes, so nothing is allocated before
the whole datum is known to be well formed, and no Python float is ever made:

1. scan (GIL released): check every length, count, boolean and union index,
   count the records and check that they all have the same dimension;
2. fill (GIL released): memcpy each float block into the (n, dim) float32
   matrix, store the timestamps, remember where each id and metadata map is;
3. objects (GIL held): decode the ids and metadata maps into str / dict.

The schema version comes from the payload frame (``schema_version=``; default 1,
the layout of unframed datums such as gRPC record lists). In v2 an absent
``expires_at`` is held as ``NO_EXPIRY`` (INT64_MIN) in the int64 array, and a
batch without any expiry has ``expires_at = None`` (no array at all).

The encoder writes each vector as a single block (count, then a memcpy of
the row) and the records array as one block.
"""

cimport numpy as cnp
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport INT64_MIN, int64_t, uint64_t
from libc.string cimport memcpy, memset

from proximadb.codec._cursor cimport Cursor, cur_init, cur_left, cur_read, cur_read_varlong
from proximadb.codec._avro cimport (
    AVRO_BAD_UTF8,
    AVRO_CALLER_KINDS,
    AvroError,
    AvroWriter,
    avro_check_block_size,
    avro_fail,
    avro_fail_value,
    avro_read_block,
    avro_read_boolean,
    avro_read_length,
    avro_read_long,
    avro_read_metadata,
    avro_skip_metadata,
    avro_write_metadata_value,
    aw_bytes,
    aw_floats,
    aw_free,
    aw_init,
    aw_long,
    aw_raw,
    aw_reserve,
    aw_str,
)
from proximadb.codec._endian cimport pxd_copy_f32le, pxd_load_u64le, pxd_store_u64le

from collections.abc import Mapping

import numpy as np

from proximadb.codec.metadata import plain_metadata_value
from proximadb.errors import DimensionMismatchError, MalformedPayloadError, ValidationError

cnp.import_array()

# Smallest encoding of one item, used to refuse counts the remaining bytes cannot hold.
cdef Py_ssize_t MIN_RECORD_BYTES = 4   # id "" + vector end + metadata end + timestamp 0
cdef Py_ssize_t FLOAT_BYTES = 4

NO_EXPIRY = INT64_MIN  # expires_at of a record that never expires (Avro null)

cdef enum:
    ERR_DIMENSION = AVRO_CALLER_KINDS


cdef struct DecodeError:
    AvroError a              # malformed bytes (offset in the datum), or kind ERR_DIMENSION
    Py_ssize_t record        # record index, -1 when outside a record
    Py_ssize_t id_off        # ERR_DIMENSION: where the record's id is
    Py_ssize_t id_len
    int64_t dim
    int64_t expected
    bint expected_from_caller


cdef struct Layout:
    int upsert
    Py_ssize_t n
    int64_t dim              # -1 until the first record fixes it
    bint dim_from_caller
    int version              # schema version of the datum (1, 2)
    bint any_expiry          # v2: some record has a non-null expires_at


cdef struct Fill:
    float *vectors           # n * dim floats, NULL when n * dim == 0
    int64_t *timestamps
    int64_t *expires         # v2 with any_expiry: NO_EXPIRY for null; else NULL
    Py_ssize_t *id_off
    Py_ssize_t *id_len
    Py_ssize_t *meta_off
    Py_ssize_t cap           # records allocated by the scan pass


# ---------------------------------------------------------------- reading (nogil)

cdef int _walk_record(Cursor *c, Layout *lay, Fill *f, bint fill, Py_ssize_t i,
                      DecodeError *e) noexcept nogil:
    cdef Py_ssize_t id_len
    cdef Py_ssize_t id_off
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t got = 0
    cdef Py_ssize_t vector_start
    cdef const unsigned char *p
    cdef float *row = NULL
    cdef int64_t ts
    cdef int64_t branch
    cdef int64_t expires = INT64_MIN
    if avro_read_length(c, &id_len, "the record id", &e.a) < 0:
        return -1
    id_off = c.pos
    c.pos += id_len
    if fill:
        f.id_off[i] = id_off
        f.id_len[i] = id_len
        if f.vectors != NULL:
            row = f.vectors + i * lay.dim
    vector_start = c.pos
    while True:
        if avro_read_block(c, FLOAT_BYTES, &count, &size, "the vector block count", &e.a) < 0:
            return -1
        if count == 0:
            break
        if size >= 0 and size != count * FLOAT_BYTES:
            return avro_fail_value(&e.a, c.pos, "the vector block byte size", "must be 4 x the block count", size)
        p = cur_read(c, count * FLOAT_BYTES)
        if p == NULL:  # unreachable after _read_block's check; kept as the bounds guarantee
            return avro_fail(&e.a, c.pos, "the vector floats", "truncated")
        if fill:
            # The scan pass fixed the dimension; a buffer changed since then must not overflow the row.
            if got + count > lay.dim:
                return avro_fail(&e.a, c.pos, "the vector floats", "datum changed while it was being decoded")
            pxd_copy_f32le(row + got, p, count)
        got += count
    if lay.dim < 0:
        lay.dim = got
    elif got != lay.dim:
        e.a.kind = ERR_DIMENSION
        e.a.offset = vector_start
        e.record = i
        e.id_off = id_off
        e.id_len = id_len
        e.dim = got
        e.expected = lay.dim
        e.expected_from_caller = lay.dim_from_caller
        return -1
    if fill:
        f.meta_off[i] = c.pos
    if avro_skip_metadata(c, &e.a) < 0:
        return -1
    if avro_read_long(c, &ts, "the record timestamp", &e.a) < 0:
        return -1
    if fill:
        f.timestamps[i] = ts
    if lay.version >= 2:
        if avro_read_long(c, &branch, "the expires_at union index", &e.a) < 0:
            return -1
        if branch == 1:
            if avro_read_long(c, &expires, "the expires_at value", &e.a) < 0:
                return -1
            if expires == INT64_MIN:
                return avro_fail(&e.a, c.pos, "the expires_at value", "is the reserved minimum of a long")
            lay.any_expiry = True
        elif branch != 0:
            return avro_fail_value(&e.a, c.pos, "the expires_at union index", "must be 0 (null) or 1 (long)", branch)
        if fill and f.expires != NULL:
            f.expires[i] = expires
    return 0


cdef int _walk_batch(Cursor *c, Layout *lay, Fill *f, bint fill, DecodeError *e) noexcept nogil:
    """One pass over the whole datum; with fill=False only checks and counts."""
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t block_start
    cdef Py_ssize_t k
    cdef Py_ssize_t i = 0
    if avro_read_boolean(c, &lay.upsert, "the upsert flag", &e.a) < 0:
        return -1
    while True:
        if avro_read_block(c, MIN_RECORD_BYTES, &count, &size, "the records block count", &e.a) < 0:
            return -1
        if count == 0:
            break
        block_start = c.pos
        for k in range(count):
            if fill and i >= f.cap:
                return avro_fail(&e.a, c.pos, "the records", "datum changed while it was being decoded")
            if _walk_record(c, lay, f, fill, i, e) < 0:
                if e.record < 0:
                    e.record = i
                return -1
            i += 1
        if avro_check_block_size(size, block_start, c.pos, "the records block", &e.a) < 0:
            return -1
    if cur_left(c) != 0:
        return avro_fail_value(&e.a, c.pos, "the end of the datum", "trailing bytes after the datum",
                           cur_left(c))
    if fill and i != f.cap:
        return avro_fail(&e.a, c.pos, "the records", "datum changed while it was being decoded")
    lay.n = i
    return 0


# ---------------------------------------------------------------- Python objects (GIL)

cdef object _error(const DecodeError *e, const unsigned char *buf):
    """The exception a filled DecodeError stands for."""
    cdef str what
    cdef str message
    cdef str record_id
    if e.a.kind == AVRO_BAD_UTF8:
        _utf8(buf, e.a.offset, <Py_ssize_t>e.a.value, (<bytes>e.a.what).decode("ascii"), e.record)
    if e.a.kind == ERR_DIMENSION:
        record_id = (<bytes>buf[e.id_off:e.id_off + e.id_len]).decode("utf-8", "backslashreplace")
        if e.expected_from_caller:
            source = "the expected dimension"
        else:
            source = "the dimension of record 0; all records of a batch must have the same dimension"
        return DimensionMismatchError(
            f"record {e.record} (id {record_id!r}) has dimension {e.dim}, expected {e.expected} ({source})"
        )
    what = (<bytes>e.a.what).decode("ascii")
    message = f"malformed VectorBatch datum at offset {e.a.offset}: {(<bytes>e.a.problem).decode('ascii')}"
    if e.a.has_value:
        message += f" ({e.a.value})"
    message += f" while reading {what}"
    if e.record >= 0:
        message += f" of record {e.record}"
    return MalformedPayloadError(message)


cdef str _utf8(const unsigned char *buf, Py_ssize_t off, Py_ssize_t n, str what, Py_ssize_t record):
    try:
        return PyUnicode_DecodeUTF8(<const char *>(buf + off), n, NULL)
    except UnicodeDecodeError as exc:
        where = f" of record {record}" if record >= 0 else ""
        raise MalformedPayloadError(
            f"malformed VectorBatch datum at offset {off + exc.start}: {what}{where} is not valid UTF-8 "
            f"({exc.reason})"
        ) from None


cdef class DecodedBatch:
    """A decoded ``VectorBatch``: ids, an (n, dim) float32 matrix, metadata dicts, int64 timestamps."""

    cdef readonly bint upsert
    cdef readonly list ids
    cdef readonly object vectors
    cdef readonly list metadata
    cdef readonly object timestamps
    cdef readonly object expires_at
    cdef readonly int schema_version

    def __init__(self, bint upsert, list ids, vectors, list metadata, timestamps, expires_at=None,
                 int schema_version=1):
        self.upsert = upsert
        self.ids = ids
        self.vectors = vectors
        self.metadata = metadata
        self.timestamps = timestamps
        self.expires_at = expires_at  # None, or (n,) int64 with NO_EXPIRY for "never"
        self.schema_version = schema_version

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __repr__(self) -> str:
        return f"DecodedBatch(n={len(self.ids)}, dim={self.vectors.shape[1]}, upsert={self.upsert})"

    def to_insert_op(self):
        """The engine's InsertOp for this batch (shares the arrays and lists, no copy)."""
        from proximadb.storage.operations import InsertOp

        return InsertOp(
            upsert=self.upsert,
            ids=self.ids,
            vectors=self.vectors,
            metadata=self.metadata,
            timestamps=self.timestamps,
            expires_at=self.expires_at,
        )

    def to_dict(self) -> dict:
        """The datum as fastavro's ``schemaless_reader`` returns it (Python floats, for tests and JSON)."""
        vectors = self.vectors.tolist()
        timestamps = self.timestamps.tolist()
        records = [
            {"id": i, "vector": v, "metadata": m, "timestamp": t}
            for i, v, m, t in zip(self.ids, vectors, self.metadata, timestamps)
        ]
        if self.schema_version >= 2:
            expires = self.expires_at.tolist() if self.expires_at is not None else [None] * len(records)
            for rec, x in zip(records, expires):
                rec["expires_at"] = None if x is None or x == NO_EXPIRY else x
        return {"upsert": self.upsert, "records": records}


cdef DecodedBatch _decode(const unsigned char *buf, Py_ssize_t nbytes, Py_ssize_t expected_dim, int version):
    cdef Cursor c
    cdef Layout lay
    cdef Fill f
    cdef DecodeError e
    cdef int rc
    cdef Py_ssize_t n
    cdef Py_ssize_t dim
    cdef Py_ssize_t i
    cdef Py_ssize_t *offsets = NULL
    cdef cnp.ndarray vectors
    cdef cnp.ndarray timestamps
    cdef object expires = None
    cdef list ids
    cdef list metadata
    memset(&e, 0, sizeof(e))
    memset(&f, 0, sizeof(f))
    e.record = -1
    lay.upsert = 0
    lay.n = 0
    lay.dim = expected_dim if expected_dim >= 0 else -1
    lay.dim_from_caller = expected_dim >= 0
    lay.version = version
    lay.any_expiry = False

    cur_init(&c, buf, nbytes)
    with nogil:
        rc = _walk_batch(&c, &lay, &f, False, &e)
    if rc < 0:
        raise _error(&e, buf)

    n = lay.n
    dim = lay.dim if lay.dim >= 0 else 0
    vectors = np.empty((n, dim), dtype=np.float32)
    timestamps = np.empty(n, dtype=np.int64)
    if lay.any_expiry:
        expires = np.empty(n, dtype=np.int64)
    offsets = <Py_ssize_t *>PyMem_Malloc(3 * (n if n > 0 else 1) * sizeof(Py_ssize_t))
    if offsets == NULL:
        raise MemoryError()
    try:
        f.vectors = <float *>cnp.PyArray_DATA(vectors) if n * dim > 0 else NULL
        f.timestamps = <int64_t *>cnp.PyArray_DATA(timestamps)
        f.expires = <int64_t *>cnp.PyArray_DATA(expires) if expires is not None else NULL
        f.id_off = offsets
        f.id_len = offsets + n
        f.meta_off = offsets + 2 * n
        f.cap = n
        cur_init(&c, buf, nbytes)
        with nogil:
            rc = _walk_batch(&c, &lay, &f, True, &e)
        if rc < 0:
            raise _error(&e, buf)

        ids = [None] * n
        metadata = [None] * n
        for i in range(n):
            ids[i] = _utf8(buf, f.id_off[i], f.id_len[i], "the id", i)
            cur_init(&c, buf, nbytes)
            c.pos = f.meta_off[i]
            e.record = i
            md = avro_read_metadata(&c, &e.a)
            if md is None:
                raise _error(&e, buf)
            metadata[i] = md
    finally:
        PyMem_Free(offsets)
    return DecodedBatch(lay.upsert == 1, ids, vectors, metadata, timestamps, expires, version)


cdef int _check_codec_version(int schema_version) except -1:
    if schema_version != 1 and schema_version != 2:
        from proximadb.errors import UnsupportedSchemaVersionError

        raise UnsupportedSchemaVersionError(
            f"schema version {schema_version} is not supported by the VectorBatch codec (supported: 1, 2)"
        )
    return 0


def decode_vector_batch(datum, Py_ssize_t expected_dim=-1, int schema_version=1) -> DecodedBatch:
    """Decode a ``VectorBatch`` Avro datum (any contiguous bytes-like object).

    ``schema_version`` is the version of the frame the datum came in (1: no
    expires_at; 2: expires_at after each timestamp).
    ``expected_dim >= 0`` requires every record to have that dimension. Raises
    MalformedPayloadError (with the offset and what was being read) or
    DimensionMismatchError; never reads outside ``datum``.
    """
    cdef Py_buffer view
    _check_codec_version(schema_version)
    PyObject_GetBuffer(datum, &view, PyBUF_SIMPLE)
    try:
        return _decode(<const unsigned char *>view.buf, view.len, expected_dim, schema_version)
    finally:
        PyBuffer_Release(&view)


# ---------------------------------------------------------------- encoding

cdef int _w_str(AvroWriter *w, str s, object key, Py_ssize_t i) except -1:
    """Record i's id (key None) or metadata key as length + UTF-8; key and i only name it in the error."""
    try:
        return aw_str(w, s)
    except UnicodeEncodeError as exc:
        where = f"ids[{i}]" if key is None else f"metadata key {key!r} of record {i}"
        raise ValidationError(f"{where} cannot be encoded as UTF-8: {exc.reason}") from None


cdef int _w_value(AvroWriter *w, str key, object value, Py_ssize_t i) except -1:
    """One metadata union value: exact plain types by the shared writer, the rest by the one rule."""
    try:
        if avro_write_metadata_value(w, value) == 0:
            return 0
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"metadata value of key {key!r} of record {i} cannot be encoded as UTF-8: {exc.reason}"
        ) from None
    # numpy scalars, subclasses, tuples, and every refusal: the one rule (codec/metadata.py)
    return _w_value(w, key, plain_metadata_value(value, key, f"record {i}"), i)


cdef int _w_metadata(AvroWriter *w, object md, Py_ssize_t i) except -1:
    if md is None:
        return aw_long(w, 0)
    if type(md) is not dict and not isinstance(md, Mapping):
        raise ValidationError(f"metadata of record {i} must be a dict or None, got {type(md).__name__}")
    if len(md) == 0:
        return aw_long(w, 0)
    aw_long(w, len(md))
    for key, value in md.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise ValidationError(
                    f"metadata key {key!r} of record {i} is a {type(key).__name__}; keys must be str"
                )
            key = str(key)
        _w_str(w, key, key, i)
        _w_value(w, key, value, i)
    return aw_long(w, 0)


cdef object _as_timestamps(object timestamps, Py_ssize_t n):
    try:
        ts = np.asarray(timestamps)
        if ts.dtype.kind == "O":  # Python ints beyond 64 bits (or a mix of types)
            if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in ts.flat):
                raise ValidationError("timestamps must be integers (microseconds since the epoch)")
            ts = np.asarray(ts.tolist(), dtype=np.int64)
        if ts.size and ts.dtype.kind not in "iu":
            raise ValidationError(
                f"timestamps must be integers (microseconds since the epoch), got dtype {ts.dtype}"
            )
        if ts.dtype.kind == "u" and ts.size and int(ts.max()) > 0x7FFFFFFFFFFFFFFF:
            raise ValidationError("timestamps must fit in a signed 64-bit integer")
        ts = np.ascontiguousarray(ts, dtype=np.int64)
    except (OverflowError, ValueError, TypeError) as exc:
        raise ValidationError(f"timestamps must fit in a signed 64-bit integer: {exc}") from None
    if ts.shape != (n,):
        raise ValidationError(f"timestamps must have shape ({n},), got {ts.shape}")
    return ts


cdef object _as_expiry(object expires_at, Py_ssize_t n):
    """(n,) int64 with NO_EXPIRY for None entries, from a sequence of int | None or an int64 array."""
    if isinstance(expires_at, np.ndarray) and expires_at.dtype.kind in "iu":
        out = np.ascontiguousarray(expires_at, dtype=np.int64)
    else:
        items = list(expires_at)
        for x in items:
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, np.integer))):
                raise ValidationError(
                    f"expires_at must be integers (microseconds since the epoch) or None, got {type(x).__name__}"
                )
        try:
            out = np.array([NO_EXPIRY if x is None else int(x) for x in items], dtype=np.int64)
        except OverflowError:
            raise ValidationError("expires_at must fit in a signed 64-bit integer") from None
    if out.shape != (n,):
        raise ValidationError(f"expires_at must have shape ({n},), got {out.shape}")
    return out


def encode_vector_batch(ids, vectors, metadata=None, timestamps=None, bint upsert=False, expires_at=None,
                        int schema_version=1) -> bytes:
    """Encode a ``VectorBatch`` Avro datum (the datum only, no frame) in ``schema_version``'s layout.

    ``expires_at`` (v2 only; None, or per record an int or None / NO_EXPIRY) is refused at v1
    when any record has one, so a v1 peer never silently loses an expiry.
    """
    cdef cnp.ndarray mat
    cdef cnp.ndarray ts = None
    cdef cnp.ndarray ex = None
    cdef const int64_t *expiry = NULL
    cdef int64_t x
    cdef Py_ssize_t n
    cdef Py_ssize_t dim
    cdef Py_ssize_t i
    cdef const float *rows
    cdef const int64_t *stamps = NULL
    cdef AvroWriter w
    cdef unsigned char flag = 1 if upsert else 0
    cdef object record_id
    if isinstance(ids, (str, bytes)):
        raise ValidationError("ids must be a sequence of str, not a single string")
    ids = list(ids)
    try:
        mat = np.ascontiguousarray(vectors, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"vectors must be a 2-D array of numbers: {exc}") from None
    if mat.ndim != 2:
        raise ValidationError(f"vectors must be a 2-D array (n, dim), got {mat.ndim} dimension(s)")
    n = mat.shape[0]
    dim = mat.shape[1]
    if len(ids) != n:
        raise ValidationError(f"got {len(ids)} ids for {n} vectors")
    if metadata is not None:
        metadata = list(metadata)
        if len(metadata) != n:
            raise ValidationError(f"got {len(metadata)} metadata entries for {n} vectors")
    if timestamps is not None:
        ts = _as_timestamps(timestamps, n)
        stamps = <const int64_t *>cnp.PyArray_DATA(ts)
    _check_codec_version(schema_version)
    if expires_at is not None:
        ex = _as_expiry(expires_at, n)
        if schema_version < 2:
            if n and bool((ex != NO_EXPIRY).any()):
                raise ValidationError("expires_at needs schema version 2 or later")
        else:
            expiry = <const int64_t *>cnp.PyArray_DATA(ex)
    rows = <const float *>cnp.PyArray_DATA(mat)

    aw_init(&w)
    try:
        aw_reserve(&w, 16 + n * (dim * 4 + 32))
        aw_raw(&w, &flag, 1)
        if n:
            aw_long(&w, n)
        for i in range(n):
            record_id = ids[i]
            if not isinstance(record_id, str):
                raise ValidationError(f"ids[{i}] must be a str, got {type(record_id).__name__}")
            _w_str(&w, record_id, None, i)
            if dim:
                aw_long(&w, dim)
                aw_floats(&w, rows + i * dim, dim)
            aw_long(&w, 0)
            _w_metadata(&w, metadata[i] if metadata is not None else None, i)
            aw_long(&w, stamps[i] if stamps != NULL else 0)
            if schema_version >= 2:
                x = expiry[i] if expiry != NULL else INT64_MIN
                if x == INT64_MIN:
                    aw_long(&w, 0)
                else:
                    aw_long(&w, 1)
                    aw_long(&w, x)
        aw_long(&w, 0)
        return aw_bytes(&w)
    finally:
        aw_free(&w)
