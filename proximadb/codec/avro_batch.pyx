"""Avro binary codec for the ``VectorBatch`` datum (op ``vector_insert``), straight to numpy.

The datum (schemas/v<N>/vector_batch.avsc, vector_record.avsc) in Avro binary::

    VectorBatch  = upsert:boolean  records:array<VectorRecord>
    VectorRecord = id:string  vector:array<float>  metadata:map<Value>  timestamp:long
                   [v2: expires_at:union{null, long}]  [v3: sparse_vectors:map<SparseVector>]
                   [v4: named_vectors:map<array<float>>]
    SparseVector = indices:array<int>  values:array<float>      (codec/_sparse.pxd: bytes and rules)
    named_vectors: name -> one dense vector                      (codec/_named.pxd: bytes and rules)
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
3. objects (GIL held): decode the ids into str, and the metadata maps into dicts, or with
   ``metadata_maps=True`` copy them as they are, back to back, into one ``bytes`` (the batch's
   ``metadata`` is then a storage.metadata_store.MetadataColumn over it: no dict per row; the
   insert path checks and indexes them in compiled code, storage/metadata_scan.pyx).

The schema version comes from the payload frame (``schema_version=``; default 1,
the layout of unframed datums such as gRPC record lists). In v2 an absent
``expires_at`` is held as ``NO_EXPIRY`` (INT64_MIN) in the int64 array, and a
batch without any expiry has ``expires_at = None`` (no array at all). In v3 the sparse vectors
are checked in the scan, copied into flat int32/float32 arrays in the fill, and grouped by name
into CSR columns (``sparse_vectors: dict[str, SparseColumn]``, storage/sparse_column.py) after it;
a batch without any has ``sparse_vectors = None``. In v4 the named dense vectors are checked in the scan
against the collection's declared names and dimensions (``named_dims=``; without it, record 0's names and
dimensions, which every record must then match) and copied in the fill into one float32 (n, dim) column
per name (``named_vectors: dict[str, ndarray]``, storage/named_columns.py); ``None`` when there are none.
A batch of an older version carries none, so it is refused when the collection declares some.

The encoder (``encode_vector_batch``, re-exported here) is avro_batch_encode.pyx.
"""

cimport numpy as cnp
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport INT64_MIN, int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset

from proximadb.codec._cursor cimport Cursor, cur_init, cur_left, cur_read, cur_read_varlong
from proximadb.codec._avro cimport (
    AVRO_BAD_UTF8,
    AVRO_CALLER_KINDS,
    AvroError,
    avro_check_block_size,
    avro_fail,
    avro_fail_value,
    avro_read_block,
    avro_read_boolean,
    avro_read_length,
    avro_read_long,
    avro_read_metadata,
    avro_skip_metadata,
)
from proximadb.codec._endian cimport pxd_copy_f32le, pxd_load_u64le, pxd_store_u64le
from proximadb.codec._named cimport NV_MAX, NamedError, NamedSpec, named_missing, named_ready, named_walk
from proximadb.codec._sparse cimport SparseError, SparseFill, sparse_walk

import numpy as np

from proximadb.codec.avro_batch_encode import NO_EXPIRY, check_codec_version, encode_vector_batch  # noqa: F401 (API)
from proximadb.errors import DimensionMismatchError, InvalidVectorError, MalformedPayloadError
from proximadb.limits import MAX_SPARSE_NNZ
from proximadb.storage import named_columns, sparse_column

cnp.import_array()

# Smallest encoding of one item, used to refuse counts the remaining bytes cannot hold.
cdef Py_ssize_t MIN_RECORD_BYTES = 4   # id "" + vector end + metadata end + timestamp 0
cdef Py_ssize_t FLOAT_BYTES = 4


cdef enum:
    ERR_DIMENSION = AVRO_CALLER_KINDS
    ERR_SPARSE = AVRO_CALLER_KINDS + 1
    ERR_NAMED = AVRO_CALLER_KINDS + 2


cdef struct DecodeError:
    AvroError a              # malformed bytes (offset in the datum), or kind ERR_DIMENSION
    Py_ssize_t record        # record index, -1 when outside a record
    Py_ssize_t id_off        # ERR_DIMENSION: where the record's id is
    Py_ssize_t id_len
    int64_t dim
    int64_t expected
    bint expected_from_caller
    SparseError sp           # kind ERR_SPARSE
    NamedError nv            # kind ERR_NAMED (with id_off, id_len)


cdef struct Layout:
    int upsert
    Py_ssize_t n
    int64_t dim              # -1 until the first record fixes it
    bint dim_from_caller
    int version              # schema version of the datum (1, 2, 3, 4)
    bint any_expiry          # v2: some record has a non-null expires_at


cdef struct Fill:
    float *vectors           # n * dim floats, NULL when n * dim == 0
    int64_t *timestamps
    int64_t *expires         # v2 with any_expiry: NO_EXPIRY for null; else NULL
    Py_ssize_t *id_off
    Py_ssize_t *id_len
    Py_ssize_t *meta_off
    Py_ssize_t *meta_end
    Py_ssize_t cap           # records allocated by the scan pass
    SparseFill sp            # v3: counted in the scan, copied in the fill
    NamedSpec nv             # v4: names and dimensions (declared, or fixed by the scan); columns in the fill


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
    if fill:
        f.meta_end[i] = c.pos
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
    if lay.version >= 3:
        branch = sparse_walk(c, &f.sp, fill, i, &e.a, &e.sp)
        if branch == -2:
            e.a.kind = ERR_SPARSE
            e.record = i
        if branch < 0:
            return -1
    if lay.version >= 4:
        branch = named_walk(c, &f.nv, fill, i, &e.a, &e.nv)
    else:
        branch = named_missing(&f.nv, i, &e.nv)  # refused when the collection declares named vectors
    if branch == -2:
        e.a.kind = ERR_NAMED
        e.record = i
        e.id_off = id_off
        e.id_len = id_len
    return -1 if branch < 0 else 0


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
    if e.a.kind == ERR_SPARSE:
        return InvalidVectorError(_sparse_problem(&e.sp, buf, e.record))
    if e.a.kind == ERR_NAMED:
        return named_columns.problem(
            e.nv.kind, (<bytes>e.nv.name[:e.nv.name_len]).decode("utf-8", "backslashreplace"), e.record,
            (<bytes>buf[e.id_off:e.id_off + e.id_len]).decode("utf-8", "backslashreplace"), declared=e.nv.declared,
            position=e.nv.position, got=e.nv.got, expected=e.nv.expected, value=e.nv.fvalue)
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


cdef str _sparse_problem(const SparseError *s, const unsigned char *buf, Py_ssize_t record):
    name = (<bytes>buf[s.name_off:s.name_off + s.name_len]).decode("utf-8", "backslashreplace")
    where = f"record {record}, sparse vector {name!r}"
    if s.kind == 1:
        return (f"record {record}: sparse vector name {name!r} must be 1 to 64 characters of letters, digits, "
                "'_', '.' or '-'")
    if s.kind == 2:
        return f"{where}: index {s.value} at position {s.position} is negative (indices must be >= 0)"
    if s.kind == 3 or s.kind == 4:
        return (f"{where}: indices must be strictly increasing; index {s.value} at position {s.position} follows "
                f"{s.previous} ({'duplicated' if s.kind == 3 else 'unsorted'})")
    if s.kind == 5:
        return f"{where}: value {s.fvalue} at position {s.position} is not finite"
    if s.kind == 6:
        return f"{where}: {s.previous} indices but {s.value}{' or more' if s.position else ''} values (they must match)"
    return f"{where}: more than the limit of {s.value} non-zeros"


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
    cdef readonly object metadata
    cdef readonly object timestamps
    cdef readonly object expires_at
    cdef readonly int schema_version
    cdef readonly object sparse_vectors
    cdef readonly object named_vectors

    def __init__(self, bint upsert, list ids, vectors, metadata, timestamps, expires_at=None,
                 int schema_version=1, sparse_vectors=None, named_vectors=None):
        self.upsert = upsert
        self.ids = ids
        self.vectors = vectors
        self.metadata = metadata  # a list of dicts, or a MetadataColumn (metadata_maps=True)
        self.timestamps = timestamps
        self.expires_at = expires_at  # None, or (n,) int64 with NO_EXPIRY for "never"
        self.schema_version = schema_version
        self.sparse_vectors = sparse_vectors  # None, or dict[str, SparseColumn] (v3)
        self.named_vectors = named_vectors  # None, or dict[str, (n, dim) float32] (v4)

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
            sparse_vectors=self.sparse_vectors,
            named_vectors=self.named_vectors,
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
        if self.schema_version >= 3:
            for r, rec in enumerate(records):
                rec["sparse_vectors"] = sparse_column.row_dict(self.sparse_vectors, r)
        if self.schema_version >= 4:
            for r, rec in enumerate(records):
                rec["named_vectors"] = named_columns.row_dict(self.named_vectors, r)
        return {"upsert": self.upsert, "records": records}


cdef DecodedBatch _decode(const unsigned char *buf, Py_ssize_t nbytes, Py_ssize_t expected_dim, int version,
                          bint metadata_maps, object named_dims):
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
    cdef object metadata
    memset(&e, 0, sizeof(e))
    memset(&f, 0, sizeof(f))
    e.record = -1
    lay.upsert = 0
    lay.n = 0
    lay.dim = expected_dim if expected_dim >= 0 else -1
    lay.dim_from_caller = expected_dim >= 0
    lay.version = version
    lay.any_expiry = False
    f.sp.max_nnz = MAX_SPARSE_NNZ
    declared = _named_declare(&f.nv, named_dims)  # keeps the declared names' bytes alive
    e.nv.declared = named_dims is not None

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
    entries = np.empty((4, f.sp.entries), dtype=np.intp)  # record, name offset, name length, nnz
    sp_indices = np.empty(f.sp.nnz, dtype=np.int32)
    sp_values = np.empty(f.sp.nnz, dtype=np.float32)
    _sparse_targets(&f.sp, entries, sp_indices, sp_values)
    named = _named_targets(&f.nv, n)
    offsets = <Py_ssize_t *>PyMem_Malloc(4 * (n if n > 0 else 1) * sizeof(Py_ssize_t))
    if offsets == NULL:
        raise MemoryError()
    try:
        f.vectors = <float *>cnp.PyArray_DATA(vectors) if n * dim > 0 else NULL
        f.timestamps = <int64_t *>cnp.PyArray_DATA(timestamps)
        f.expires = <int64_t *>cnp.PyArray_DATA(expires) if expires is not None else NULL
        f.id_off = offsets
        f.id_len = offsets + n
        f.meta_off = offsets + 2 * n
        f.meta_end = offsets + 3 * n
        f.cap = n
        cur_init(&c, buf, nbytes)
        with nogil:
            rc = _walk_batch(&c, &lay, &f, True, &e)
        if rc < 0:
            raise _error(&e, buf)

        ids = [None] * n
        sparse = _sparse_columns(buf, entries, sp_indices, sp_values, n) if f.sp.entries else None
        for i in range(n):
            ids[i] = _utf8(buf, f.id_off[i], f.id_len[i], "the id", i)
        if metadata_maps:
            metadata = _maps_as_they_are(buf, &f, n)
            return DecodedBatch(lay.upsert == 1, ids, vectors, metadata, timestamps, expires, version, sparse, named)
        metadata = [None] * n
        for i in range(n):
            cur_init(&c, buf, nbytes)
            c.pos = f.meta_off[i]
            e.record = i
            md = avro_read_metadata(&c, &e.a)
            if md is None:
                raise _error(&e, buf)
            metadata[i] = md
    finally:
        PyMem_Free(offsets)
    return DecodedBatch(lay.upsert == 1, ids, vectors, metadata, timestamps, expires, version, sparse, named)


cdef object _maps_as_they_are(const unsigned char *buf, const Fill *f, Py_ssize_t n):
    """The records' metadata maps copied back to back into one bytes, as a MetadataColumn."""
    from proximadb.storage.metadata_store import MetadataColumn

    cdef Py_ssize_t i
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t length
    for i in range(n):
        total += f.meta_end[i] - f.meta_off[i]
    offsets = np.empty(n + 1, dtype=np.uint64)
    cdef uint64_t[::1] at = offsets
    blob = PyBytes_FromStringAndSize(NULL, total)
    cdef char *dst = PyBytes_AS_STRING(blob)
    total = 0
    for i in range(n):
        at[i] = <uint64_t>total
        length = f.meta_end[i] - f.meta_off[i]
        memcpy(dst + total, buf + f.meta_off[i], length)
        total += length
    at[n] = <uint64_t>total
    return MetadataColumn(blob, offsets)


cdef void _sparse_targets(SparseFill *sp, cnp.ndarray entries, cnp.ndarray indices, cnp.ndarray values):
    """Point the fill pass at the arrays the scan sized (and restart its counts)."""
    cdef Py_ssize_t m = sp.entries
    cdef Py_ssize_t *e = <Py_ssize_t *>cnp.PyArray_DATA(entries)
    sp.cap_entries = m
    sp.cap_nnz = sp.nnz
    sp.entry_record = e
    sp.entry_name_off = e + m
    sp.entry_name_len = e + 2 * m
    sp.entry_nnz = e + 3 * m
    sp.indices = <int32_t *>cnp.PyArray_DATA(indices)
    sp.values = <float *>cnp.PyArray_DATA(values)
    sp.entries = 0
    sp.nnz = 0


cdef list _named_declare(NamedSpec *s, object declared):
    """The collection's declared names and dimensions into the spec (None: record 0 will fix them)."""
    cdef list keep = []
    s.count = 0
    s.from_caller = declared is not None
    s.fixed = s.from_caller
    if declared is None:
        return keep
    checked = named_columns.check_declared(declared)
    if len(checked) > NV_MAX:
        raise ValueError(f"the batch codec holds at most {NV_MAX} named vectors")
    for name, dim in checked.items():
        keep.append(name.encode("ascii"))
        s.name[s.count] = <const unsigned char *>PyBytes_AS_STRING(keep[s.count])
        s.name_len[s.count] = len(keep[s.count])
        s.dim[s.count] = dim
        s.seen[s.count] = 0
        s.dst[s.count] = NULL
        s.count += 1
    return keep


cdef object _named_targets(NamedSpec *s, Py_ssize_t n):
    """After the scan: one (n, dim) float32 column per name, for the fill pass to copy into (None: no names)."""
    cdef Py_ssize_t j
    cdef cnp.ndarray col
    cdef dict out = {}
    named_ready(s)
    for j in range(s.count):
        col = np.empty((n, s.dim[j]), dtype=np.float32)
        s.dst[j] = <float *>cnp.PyArray_DATA(col)
        out[(<bytes>s.name[j][:s.name_len[j]]).decode("ascii")] = col
    return out or None


cdef object _sparse_columns(const unsigned char *buf, entries, indices, values, Py_ssize_t n):
    """The filled entries grouped by name into CSR columns; a name twice in one record is refused."""
    cdef Py_ssize_t j
    cdef Py_ssize_t m = entries.shape[1]
    cdef dict code_of = {}
    cdef list names = []
    codes = np.empty(m, dtype=np.int64)
    last_record: list = []
    for j in range(m):
        raw = <bytes>buf[entries[1, j]:entries[1, j] + entries[2, j]]
        code = code_of.get(raw)
        if code is None:
            code = code_of[raw] = len(names)
            names.append(raw.decode("ascii"))
            last_record.append(-1)
        elif last_record[code] == entries[0, j]:
            raise InvalidVectorError(f"record {entries[0, j]}: sparse vector {names[code]!r} is given twice")
        last_record[code] = entries[0, j]
        codes[j] = code
    return sparse_column.columns_from_entries(names, codes, entries[0], entries[3], indices, values, n)


def decode_vector_batch(datum, Py_ssize_t expected_dim=-1, int schema_version=1,
                        bint metadata_maps=False, named_dims=None) -> DecodedBatch:
    """Decode a ``VectorBatch`` Avro datum (any contiguous bytes-like object).

    ``schema_version`` is the version of the frame the datum came in (1: no
    expires_at; 2: expires_at after each timestamp).
    ``expected_dim >= 0`` requires every record to have that dimension. Raises
    MalformedPayloadError (with the offset and what was being read) or
    DimensionMismatchError; never reads outside ``datum``. ``metadata_maps``: the metadata stays
    encoded (see the module's documentation; its strings are not checked to be UTF-8 here).
    ``named_dims``: the collection's named vectors, name -> dimension (every record must carry exactly
    these; ``{}`` refuses any); None lets record 0's named vectors fix them for the batch. A broken rule
    raises InvalidVectorError or DimensionMismatchError naming the vector and the record.
    """
    cdef Py_buffer view
    check_codec_version(schema_version)
    PyObject_GetBuffer(datum, &view, PyBUF_SIMPLE)
    try:
        return _decode(<const unsigned char *>view.buf, view.len, expected_dim, schema_version, metadata_maps,
                       named_dims)
    finally:
        PyBuffer_Release(&view)
