# Named sparse vectors of a v3 VectorRecord, read and written by the batch codec (codec/avro_batch.pyx).
# All functions are cdef inline, so this .pxd needs no module of its own.
#
# Byte format (schemas/v3/vector_record.avsc, sparse_vector.avsc), after the record's expires_at:
#   sparse_vectors  map<SparseVector>: blocks of (string name, SparseVector), a count of 0 ends it
#   SparseVector    indices: array<int> (zig-zag varints, each within int32)
#                   values:  array<float> (4 bytes little-endian each)
#
# Rules (refused with the offending record, name and position): a name is 1 to 64 bytes of
# [A-Za-z0-9_.-]; indices >= 0 and strictly increasing (a repeat is "duplicated", a step down
# "unsorted"); values finite; as many values as indices; at most max_nnz of them
# (proximadb.limits.MAX_SPARSE_NNZ). A name given twice in one record is refused by the caller
# (it sees the names; this walk does not compare them).
#
# Two passes like the rest of the codec: the scan (fill=False) checks and counts entries (one per
# record and name) and non-zeros; the fill pass copies indices (int32) and values (float32) into
# flat arrays and records each entry's record, name and count. Both without the GIL.
from libc.math cimport isfinite
from libc.stdint cimport INT32_MAX, int32_t, int64_t

from proximadb.codec._avro cimport (
    AvroError,
    AvroWriter,
    avro_check_block_size,
    avro_fail,
    avro_fail_value,
    avro_read_block,
    avro_read_length,
    avro_read_long,
    aw_floats,
    aw_long,
    aw_raw,
)
from proximadb.codec._cursor cimport Cursor, cur_read
from proximadb.codec._endian cimport pxd_copy_f32le

cdef enum:
    SP_NAME = 1          # bad name
    SP_NEGATIVE = 2      # index < 0
    SP_DUPLICATED = 3    # index == previous
    SP_UNSORTED = 4      # index < previous
    SP_NOT_FINITE = 5    # NaN or infinite value
    SP_LENGTHS = 6       # value count != index count
    SP_TOO_MANY = 7      # more than max_nnz non-zeros
    SP_MIN_ENTRY_BYTES = 3  # name "" + indices end + values end


cdef struct SparseError:
    int kind             # SP_*
    Py_ssize_t name_off  # the vector's name in the datum
    Py_ssize_t name_len
    Py_ssize_t position  # the component
    int64_t value        # the offending index, or the count of values (SP_LENGTHS)
    int64_t previous     # the index before it, or the count of indices (SP_LENGTHS)
    double fvalue        # SP_NOT_FINITE: the value


cdef struct SparseFill:
    Py_ssize_t max_nnz
    Py_ssize_t entries       # (record, name) entries seen so far
    Py_ssize_t nnz           # components seen so far
    # fill pass only (NULL in the scan):
    Py_ssize_t *entry_record
    Py_ssize_t *entry_name_off
    Py_ssize_t *entry_name_len
    Py_ssize_t *entry_nnz
    int32_t *indices
    float *values
    Py_ssize_t cap_entries
    Py_ssize_t cap_nnz


cdef inline bint sparse_name_ok(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef unsigned char ch
    if n < 1 or n > 64:
        return False
    for i in range(n):
        ch = p[i]
        if not ((ch >= 48 and ch <= 57) or (ch >= 65 and ch <= 90) or (ch >= 97 and ch <= 122)
                or ch == 95 or ch == 46 or ch == 45):
            return False
    return True


cdef inline int _sp_fail(SparseError *s, int kind, Py_ssize_t position, int64_t value, int64_t previous) noexcept nogil:
    s.kind = kind
    s.position = position
    s.value = value
    s.previous = previous
    return -2


cdef inline int sparse_walk(Cursor *c, SparseFill *f, bint fill, Py_ssize_t record, AvroError *a,
                            SparseError *s) noexcept nogil:
    """One record's sparse_vectors map. 0; -1: malformed bytes (``a``); -2: a rule broken (``s``)."""
    cdef Py_ssize_t count, size, block_start, k, name_len, name_off
    cdef Py_ssize_t bcount, bsize, bstart, j, n_idx, n_val, start
    cdef int64_t v, prev
    cdef const unsigned char *p
    cdef float x
    while True:
        if avro_read_block(c, SP_MIN_ENTRY_BYTES, &count, &size, "the sparse_vectors block count", a) < 0:
            return -1
        if count == 0:
            return 0
        block_start = c.pos
        for k in range(count):
            if avro_read_length(c, &name_len, "a sparse vector name", a) < 0:
                return -1
            name_off = c.pos
            c.pos += name_len
            s.name_off = name_off
            s.name_len = name_len
            if not sparse_name_ok(c.buf + name_off, name_len):
                return _sp_fail(s, SP_NAME, 0, 0, 0)
            start = f.nnz
            if fill and f.entries >= f.cap_entries:
                return avro_fail(a, c.pos, "the sparse vectors", "datum changed while it was being decoded")
            n_idx = 0
            prev = -1
            while True:
                if avro_read_block(c, 1, &bcount, &bsize, "the sparse vector indices block count", a) < 0:
                    return -1
                if bcount == 0:
                    break
                bstart = c.pos
                for j in range(bcount):
                    if avro_read_long(c, &v, "a sparse vector index", a) < 0:
                        return -1
                    if v > INT32_MAX or v < -INT32_MAX - 1:
                        return avro_fail_value(a, c.pos, "a sparse vector index", "is outside the range of an int", v)
                    if n_idx >= f.max_nnz:
                        return _sp_fail(s, SP_TOO_MANY, n_idx, f.max_nnz, 0)
                    if v < 0:
                        return _sp_fail(s, SP_NEGATIVE, n_idx, v, prev)
                    if v == prev:
                        return _sp_fail(s, SP_DUPLICATED, n_idx, v, prev)
                    if v < prev:
                        return _sp_fail(s, SP_UNSORTED, n_idx, v, prev)
                    if fill:
                        if start + n_idx >= f.cap_nnz:
                            return avro_fail(a, c.pos, "the sparse vectors", "datum changed while it was being decoded")
                        f.indices[start + n_idx] = <int32_t>v
                    prev = v
                    n_idx += 1
                if avro_check_block_size(bsize, bstart, c.pos, "the sparse vector indices block", a) < 0:
                    return -1
            n_val = 0
            while True:
                if avro_read_block(c, 4, &bcount, &bsize, "the sparse vector values block count", a) < 0:
                    return -1
                if bcount == 0:
                    break
                if bsize >= 0 and bsize != bcount * 4:
                    return avro_fail_value(a, c.pos, "the sparse vector values block byte size",
                                           "must be 4 x the block count", bsize)
                if n_val + bcount > n_idx:
                    return _sp_fail(s, SP_LENGTHS, 1, n_val + bcount, n_idx)  # position 1: "or more"
                p = cur_read(c, bcount * 4)
                if p == NULL:
                    return avro_fail(a, c.pos, "the sparse vector values", "truncated")
                for j in range(bcount):
                    pxd_copy_f32le(&x, p + 4 * j, 1)
                    if not isfinite(x):
                        s.fvalue = x
                        return _sp_fail(s, SP_NOT_FINITE, n_val + j, 0, 0)
                    if fill:
                        f.values[start + n_val + j] = x
                n_val += bcount
            if n_val != n_idx:
                return _sp_fail(s, SP_LENGTHS, 0, n_val, n_idx)
            if fill:
                f.entry_record[f.entries] = record
                f.entry_name_off[f.entries] = name_off
                f.entry_name_len[f.entries] = name_len
                f.entry_nnz[f.entries] = n_idx
            f.entries += 1
            f.nnz += n_idx
        if avro_check_block_size(size, block_start, c.pos, "the sparse_vectors block", a) < 0:
            return -1


cdef struct SparseSource:
    const int64_t *row_start
    const int32_t *indices
    const float *values


cdef inline int sparse_write_record(AvroWriter *w, const SparseSource *src, const char **names,
                                    const Py_ssize_t *name_lens, Py_ssize_t n_names, Py_ssize_t i) except -1:
    """Record i's sparse_vectors map: the names with at least one non-zero, then the end of the map."""
    cdef Py_ssize_t j, m, a, b, present = 0
    for j in range(n_names):
        if src[j].row_start[i + 1] > src[j].row_start[i]:
            present += 1
    if present:
        aw_long(w, present)
        for j in range(n_names):
            a = src[j].row_start[i]
            b = src[j].row_start[i + 1]
            if b <= a:
                continue
            aw_long(w, name_lens[j])
            aw_raw(w, names[j], name_lens[j])
            aw_long(w, b - a)
            for m in range(a, b):
                aw_long(w, src[j].indices[m])
            aw_long(w, 0)
            aw_long(w, b - a)
            aw_floats(w, src[j].values + a, b - a)
            aw_long(w, 0)
    return aw_long(w, 0)
