# Named dense vectors of a v4 VectorRecord, read, checked and written by the batch codec (codec/avro_batch.pyx,
# avro_batch_encode.pyx). All functions are cdef inline, so this .pxd needs no module of its own.
#
# Byte format (schemas/v4/vector_record.avsc), the record's last field, after sparse_vectors:
#   named_vectors  map<array<float>>: blocks of (string name, array<float>), a count of 0 ends the map;
#                  a negative count -n is n entries preceded by the block's byte size
#   array<float>   blocks of (long count, count x 4 bytes little-endian float), a count of 0 ends it
#
# Rules (refused with the record, the vector's name and, for a value, its position): a name is 1 to 64 bytes
# of [A-Za-z0-9_-]; the names are the collection's declared ones (NamedSpec.from_caller) or, when the caller
# declares none, those of record 0, which every record of the batch must then match; each name once per
# record; every name in every record; each vector exactly its name's dimension (>= 1); values finite. The
# errors' texts are built by proximadb.storage.named_columns.problem from a NamedError.
#
# Two passes like the rest of the codec, both without the GIL: the scan (fill=False) checks everything
# and fixes the names and dimensions; the fill pass copies each vector into row ``record`` of its name's
# (n, dim) float32 column (NamedSpec.dst). Between the passes the caller allocates the columns and clears
# ``seen`` (named_ready).
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.string cimport memcmp

from proximadb.codec._avro cimport (
    AvroError,
    AvroWriter,
    avro_check_block_size,
    avro_fail,
    avro_fail_value,
    avro_read_block,
    avro_read_length,
    aw_floats,
    aw_long,
    aw_raw,
)
from proximadb.codec._cursor cimport Cursor, cur_read
from proximadb.codec._endian cimport pxd_copy_f32le

cdef enum:
    NV_MAX = 16          # names per collection (proximadb.limits.MAX_NAMED_VECTORS)
    NV_MIN_ENTRY_BYTES = 2  # name "" + array end

cdef enum:
    NV_NAME = 1          # bad name
    NV_UNKNOWN = 2       # not declared (not in record 0)
    NV_TWICE = 3         # a name twice in one record
    NV_MISSING = 4       # a declared name absent from a record
    NV_DIMENSION = 5     # wrong number of floats
    NV_NOT_FINITE = 6    # NaN or infinite value
    NV_TOO_MANY = 7      # record 0 gives more than NV_MAX names
    NV_EMPTY = 8         # record 0 gives a name with no floats


cdef struct NamedSpec:
    Py_ssize_t count                      # names known (declared, or learnt from record 0)
    bint from_caller                      # the collection's declared names (else record 0's)
    bint fixed                            # names known: declared, or record 0 already scanned
    const unsigned char *name[NV_MAX]     # the name's bytes (the caller's, or in the datum)
    Py_ssize_t name_len[NV_MAX]
    int64_t dim[NV_MAX]
    Py_ssize_t seen[NV_MAX]               # record + 1 of the last record that gave the name
    float *dst[NV_MAX]                    # fill pass: the name's (n, dim) column; NULL in the scan


cdef struct NamedError:
    int kind                              # NV_*
    bint declared                         # set by the caller: the names are the collection's
    const unsigned char *name             # the vector's name (in the datum, or NamedSpec's for NV_MISSING)
    Py_ssize_t name_len
    Py_ssize_t position                   # NV_NOT_FINITE: the component
    int64_t got                           # NV_DIMENSION
    int64_t expected
    double fvalue                         # NV_NOT_FINITE


cdef inline bint named_name_ok(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef unsigned char ch
    if n < 1 or n > 64:
        return False
    for i in range(n):
        ch = p[i]
        if not ((ch >= 48 and ch <= 57) or (ch >= 65 and ch <= 90) or (ch >= 97 and ch <= 122)
                or ch == 95 or ch == 45):
            return False
    return True


cdef inline Py_ssize_t _nv_find(const NamedSpec *s, const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(s.count):
        if s.name_len[j] == n and memcmp(s.name[j], p, n) == 0:
            return j
    return -1


cdef inline int _nv_fail(NamedError *e, int kind) noexcept nogil:
    e.kind = kind
    return -2


cdef inline int named_missing(NamedSpec *s, Py_ssize_t record, NamedError *e) noexcept nogil:
    """After a record: -2 (NV_MISSING) when it lacked a known name, else 0. Also for layouts before v4."""
    cdef Py_ssize_t j
    for j in range(s.count):
        if s.seen[j] != record + 1:
            e.name = s.name[j]
            e.name_len = s.name_len[j]
            return _nv_fail(e, NV_MISSING)
    return 0


cdef inline int named_walk(Cursor *c, NamedSpec *s, bint fill, Py_ssize_t record, AvroError *a,
                           NamedError *e) noexcept nogil:
    """One record's named_vectors map. 0; -1: malformed bytes (``a``); -2: a rule broken (``e``)."""
    cdef Py_ssize_t count, size, block_start, k, name_len, name_off, j, got, bcount, bsize, m
    cdef bint learning = not s.fixed and record == 0
    cdef const unsigned char *p
    cdef float *row
    cdef float x
    while True:
        if avro_read_block(c, NV_MIN_ENTRY_BYTES, &count, &size, "the named_vectors block count", a) < 0:
            return -1
        if count == 0:
            break
        block_start = c.pos
        for k in range(count):
            if avro_read_length(c, &name_len, "a named vector name", a) < 0:
                return -1
            name_off = c.pos
            c.pos += name_len
            e.name = c.buf + name_off
            e.name_len = name_len
            if not named_name_ok(c.buf + name_off, name_len):
                return _nv_fail(e, NV_NAME)
            j = _nv_find(s, c.buf + name_off, name_len)
            if j < 0:
                if not learning:
                    return _nv_fail(e, NV_UNKNOWN)
                if s.count >= NV_MAX:
                    return _nv_fail(e, NV_TOO_MANY)
                j = s.count
                s.count += 1
                s.name[j] = c.buf + name_off
                s.name_len[j] = name_len
                s.dim[j] = -1
                s.seen[j] = 0
                s.dst[j] = NULL
            if s.seen[j] == record + 1:
                return _nv_fail(e, NV_TWICE)
            s.seen[j] = record + 1
            row = s.dst[j] + record * s.dim[j] if fill and s.dst[j] != NULL else NULL
            got = 0
            while True:
                if avro_read_block(c, 4, &bcount, &bsize, "the named vector block count", a) < 0:
                    return -1
                if bcount == 0:
                    break
                if bsize >= 0 and bsize != bcount * 4:
                    return avro_fail_value(a, c.pos, "the named vector block byte size",
                                           "must be 4 x the block count", bsize)
                p = cur_read(c, bcount * 4)
                if p == NULL:
                    return avro_fail(a, c.pos, "the named vector floats", "truncated")
                if row != NULL:
                    # The scan fixed the dimension; a buffer changed since then must not overflow the row.
                    if got + bcount > s.dim[j]:
                        return avro_fail(a, c.pos, "the named vector floats", "datum changed while it was being decoded")
                    pxd_copy_f32le(row + got, p, bcount)
                elif not fill:
                    for m in range(bcount):
                        pxd_copy_f32le(&x, p + 4 * m, 1)
                        if not isfinite(x):
                            e.position = got + m
                            e.fvalue = x
                            return _nv_fail(e, NV_NOT_FINITE)
                got += bcount
            if s.dim[j] < 0:
                if got == 0:
                    return _nv_fail(e, NV_EMPTY)
                s.dim[j] = got
            elif got != s.dim[j]:
                e.got = got
                e.expected = s.dim[j]
                return _nv_fail(e, NV_DIMENSION)
        if avro_check_block_size(size, block_start, c.pos, "the named_vectors block", a) < 0:
            return -1
    return named_missing(s, record, e)


cdef inline void named_ready(NamedSpec *s) noexcept nogil:
    """Between the passes: the names are fixed; ``seen`` starts again (the caller sets ``dst``)."""
    cdef Py_ssize_t j
    s.fixed = True
    for j in range(s.count):
        s.seen[j] = 0


cdef inline int named_write_record(AvroWriter *w, const char **names, const Py_ssize_t *name_lens,
                                   const float **columns, const Py_ssize_t *dims, Py_ssize_t n_names,
                                   Py_ssize_t i) except -1:
    """Record i's named_vectors map: every name (one block: its dimension, then row i of its column), then
    the end of the map."""
    cdef Py_ssize_t j
    if n_names:
        aw_long(w, n_names)
        for j in range(n_names):
            aw_long(w, name_lens[j])
            aw_raw(w, names[j], name_lens[j])
            aw_long(w, dims[j])
            aw_floats(w, columns[j] + i * dims[j], dims[j])
            aw_long(w, 0)
    return aw_long(w, 0)
