# Avro binary primitives shared by the Cython codecs (codec/avro_batch.pyx, storage/wal_io.pyx):
# a growable writer, bounds-checked read/skip of long, string, boolean and array/map block
# headers, and read/skip/write of the metadata value union. All functions are cdef inline, so
# this .pxd needs no module of its own.
#
# Byte format (Avro 1.x binary encoding):
#   long     zig-zag varint, 1..10 bytes
#   boolean  one byte, 0 or 1 (anything else is malformed)
#   double   8 bytes little-endian IEEE 754
#   string   long byte length, then that many UTF-8 bytes
#   union    long branch index, then the branch's value
#   array    blocks: long count, then count items; a count of 0 ends it. A negative count -n
#   / map    means n items preceded by a long byte size of the block. Map items: string key, value.
#   metadata map<Value>, Value = union {null, boolean, long, double, string, array<string>}
#            (branches 0..5, V_* below), as in schemas/v*/vector_record.avsc.
#
# Errors: read/skip functions never raise. They return -1 and fill an AvroError with where
# (offset), what was being read (the caller's words) and the problem (one fixed text per
# problem, below); the caller turns it into its own exception. The GIL readers (strings and
# metadata as Python objects) return None with e.kind set instead of raising, and report bad
# UTF-8 as AVRO_BAD_UTF8 (offset and length of the string bytes) so the caller can word it.
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport INT64_MIN, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from proximadb.codec._cursor cimport Cursor, cur_left, cur_read, cur_read_varlong
from proximadb.codec._endian cimport PXD_HOST_IS_LE, pxd_load_u64le, pxd_store_u32le, pxd_store_u64le

cdef enum:
    AVRO_OK = 0
    AVRO_MALFORMED = 1
    AVRO_BAD_UTF8 = 2       # offset: where the string's bytes start; value: their length
    AVRO_CALLER_KINDS = 16  # callers number their own kinds from here

# Union branches of a metadata value, in schema order.
cdef enum:
    V_NULL = 0
    V_BOOLEAN = 1
    V_LONG = 2
    V_DOUBLE = 3
    V_STRING = 4
    V_STRING_ARRAY = 5

# Smallest encodings, used to refuse block counts the remaining bytes cannot hold.
cdef enum:
    MIN_STRING_BYTES = 1     # length 0
    MIN_MAP_ENTRY_BYTES = 2  # key "" + union index of null


cdef struct AvroError:
    int kind
    Py_ssize_t offset        # where the bad item starts
    const char *what         # what was being read
    const char *problem      # what is wrong with it
    bint has_value
    int64_t value            # the offending number, when has_value


# ---------------------------------------------------------------- reading (nogil, never raise)

cdef inline int avro_fail(AvroError *e, Py_ssize_t offset, const char *what, const char *problem) noexcept nogil:
    e.kind = AVRO_MALFORMED
    e.offset = offset
    e.what = what
    e.problem = problem
    e.has_value = False
    return -1


cdef inline int avro_fail_value(AvroError *e, Py_ssize_t offset, const char *what, const char *problem,
                                int64_t value) noexcept nogil:
    avro_fail(e, offset, what, problem)
    e.has_value = True
    e.value = value
    return -1


cdef inline int avro_read_long(Cursor *c, int64_t *out, const char *what, AvroError *e) noexcept nogil:
    cdef Py_ssize_t start = c.pos
    if cur_read_varlong(c, out) == 0:
        return 0
    if c.pos - start >= 10:
        return avro_fail(e, start, what, "overlong varint (more than 10 bytes)")
    return avro_fail(e, start, what, "truncated varint")


cdef inline int avro_read_length(Cursor *c, Py_ssize_t *out, const char *what, AvroError *e) noexcept nogil:
    """A string length: 0 <= length <= bytes left."""
    cdef int64_t v
    cdef Py_ssize_t start = c.pos
    if avro_read_long(c, &v, what, e) < 0:
        return -1
    if v < 0:
        return avro_fail_value(e, start, what, "negative length", v)
    if v > cur_left(c):
        return avro_fail_value(e, start, what, "length runs past the end of the datum", v)
    out[0] = <Py_ssize_t>v
    return 0


cdef inline int avro_skip_string(Cursor *c, const char *what, AvroError *e) noexcept nogil:
    cdef Py_ssize_t n
    if avro_read_length(c, &n, what, e) < 0:
        return -1
    c.pos += n
    return 0


cdef inline int avro_read_block(Cursor *c, Py_ssize_t min_item, Py_ssize_t *count, Py_ssize_t *size,
                                const char *what, AvroError *e) noexcept nogil:
    """Header of an array/map block: count (0 ends the array) and byte size (-1 when absent)."""
    cdef int64_t n
    cdef int64_t nbytes
    cdef Py_ssize_t start = c.pos
    if avro_read_long(c, &n, what, e) < 0:
        return -1
    size[0] = -1
    if n < 0:
        if n == INT64_MIN:
            return avro_fail_value(e, start, what, "block count out of range", n)
        n = -n
        if avro_read_long(c, &nbytes, what, e) < 0:
            return -1
        if nbytes < 0:
            return avro_fail_value(e, start, what, "negative block byte size", nbytes)
        if nbytes > cur_left(c):
            return avro_fail_value(e, start, what, "block byte size runs past the end of the datum", nbytes)
        size[0] = <Py_ssize_t>nbytes
    if n > cur_left(c) // min_item:
        return avro_fail_value(e, start, what, "block count larger than the bytes left could hold", n)
    count[0] = <Py_ssize_t>n
    return 0


cdef inline int avro_check_block_size(Py_ssize_t size, Py_ssize_t block_start, Py_ssize_t pos,
                                      const char *what, AvroError *e) noexcept nogil:
    if size >= 0 and pos - block_start != size:
        return avro_fail_value(e, block_start, what, "block byte size does not match the bytes its items take", size)
    return 0


cdef inline int avro_read_boolean(Cursor *c, int *out, const char *what, AvroError *e) noexcept nogil:
    cdef const unsigned char *p = cur_read(c, 1)
    if p == NULL:
        return avro_fail(e, c.pos, what, "truncated")
    if p[0] > 1:
        return avro_fail_value(e, c.pos - 1, what, "invalid boolean byte (must be 0 or 1)", p[0])
    out[0] = p[0]
    return 0


cdef inline int avro_skip_metadata_value(Cursor *c, AvroError *e) noexcept nogil:
    """Check and skip one metadata union value."""
    cdef int64_t branch
    cdef int flag
    cdef int64_t ignored
    cdef Py_ssize_t start = c.pos
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t block_start
    cdef Py_ssize_t k
    if avro_read_long(c, &branch, "a metadata value's union index", e) < 0:
        return -1
    if branch == V_NULL:
        return 0
    if branch == V_BOOLEAN:
        return avro_read_boolean(c, &flag, "a metadata boolean", e)
    if branch == V_LONG:
        return avro_read_long(c, &ignored, "a metadata long", e)
    if branch == V_DOUBLE:
        if cur_read(c, 8) == NULL:
            return avro_fail(e, c.pos, "a metadata double", "truncated")
        return 0
    if branch == V_STRING:
        return avro_skip_string(c, "a metadata string", e)
    if branch == V_STRING_ARRAY:
        while True:
            if avro_read_block(c, MIN_STRING_BYTES, &count, &size, "a metadata string array block", e) < 0:
                return -1
            if count == 0:
                return 0
            block_start = c.pos
            for k in range(count):
                if avro_skip_string(c, "a metadata string array item", e) < 0:
                    return -1
            if avro_check_block_size(size, block_start, c.pos, "a metadata string array block", e) < 0:
                return -1
    return avro_fail_value(e, start, "a metadata value's union index", "invalid union index (must be 0..5)", branch)


cdef inline int avro_skip_metadata(Cursor *c, AvroError *e) noexcept nogil:
    """Check and skip one metadata map."""
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t block_start
    cdef Py_ssize_t k
    while True:
        if avro_read_block(c, MIN_MAP_ENTRY_BYTES, &count, &size, "the metadata map block", e) < 0:
            return -1
        if count == 0:
            return 0
        block_start = c.pos
        for k in range(count):
            if avro_skip_string(c, "a metadata key", e) < 0:
                return -1
            if avro_skip_metadata_value(c, e) < 0:
                return -1
        if avro_check_block_size(size, block_start, c.pos, "the metadata map block", e) < 0:
            return -1


# ---------------------------------------------------------------- reading Python objects (GIL)

cdef inline object avro_read_string(Cursor *c, const char *what, AvroError *e):
    """A string as str; None with e filled when malformed or not UTF-8."""
    cdef Py_ssize_t n
    cdef Py_ssize_t off
    if avro_read_length(c, &n, what, e) < 0:
        return None
    off = c.pos
    c.pos += n
    try:
        return PyUnicode_DecodeUTF8(<const char *>(c.buf + off), n, NULL)
    except UnicodeDecodeError:
        avro_fail_value(e, off, what, "not valid UTF-8", n)
        e.kind = AVRO_BAD_UTF8
        return None


cdef inline object avro_read_metadata_value(Cursor *c, AvroError *e):
    """One metadata union value as a Python object; check e.kind afterwards (None is a value too)."""
    cdef int64_t branch
    cdef int64_t v
    cdef int flag
    cdef uint64_t bits
    cdef double d
    cdef const unsigned char *p
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t k
    cdef list items
    cdef object item
    if avro_read_long(c, &branch, "a metadata value's union index", e) < 0:
        return None
    if branch == V_NULL:
        return None
    if branch == V_BOOLEAN:
        if avro_read_boolean(c, &flag, "a metadata boolean", e) < 0:
            return None
        return flag == 1
    if branch == V_LONG:
        if avro_read_long(c, &v, "a metadata long", e) < 0:
            return None
        return v
    if branch == V_DOUBLE:
        p = cur_read(c, 8)
        if p == NULL:
            avro_fail(e, c.pos, "a metadata double", "truncated")
            return None
        bits = pxd_load_u64le(p)
        memcpy(&d, &bits, 8)
        return d
    if branch == V_STRING:
        return avro_read_string(c, "a metadata string", e)
    if branch == V_STRING_ARRAY:
        items = []
        while True:
            if avro_read_block(c, MIN_STRING_BYTES, &count, &size, "a metadata string array block", e) < 0:
                return None
            if count == 0:
                return items
            for k in range(count):
                item = avro_read_string(c, "a metadata string array item", e)
                if item is None:
                    return None
                items.append(item)
    avro_fail_value(e, c.pos, "a metadata value's union index", "invalid union index (must be 0..5)", branch)
    return None


cdef inline dict avro_read_metadata(Cursor *c, AvroError *e):
    """One metadata map as a dict; None with e filled when malformed."""
    cdef dict out = {}
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t k
    cdef object key
    cdef object value
    while True:
        if avro_read_block(c, MIN_MAP_ENTRY_BYTES, &count, &size, "the metadata map block", e) < 0:
            return None
        if count == 0:
            return out
        for k in range(count):
            key = avro_read_string(c, "a metadata key", e)
            if key is None:
                return None
            value = avro_read_metadata_value(c, e)
            if e.kind != AVRO_OK:
                return None
            out[key] = value


# ---------------------------------------------------------------- writing (GIL)

cdef struct AvroWriter:
    unsigned char *buf
    Py_ssize_t len
    Py_ssize_t cap


cdef inline void aw_init(AvroWriter *w) noexcept nogil:
    w.buf = NULL
    w.len = 0
    w.cap = 0


cdef inline void aw_free(AvroWriter *w) noexcept:
    PyMem_Free(w.buf)
    w.buf = NULL
    w.len = 0
    w.cap = 0


cdef inline int aw_reserve(AvroWriter *w, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = w.cap if w.cap > 0 else 256
    cdef void *p
    if w.len + extra <= w.cap:
        return 0
    while cap < w.len + extra:
        cap *= 2
    p = PyMem_Realloc(w.buf, cap)
    if p == NULL:
        raise MemoryError()
    w.buf = <unsigned char *>p
    w.cap = cap
    return 0


cdef inline bytes aw_bytes(const AvroWriter *w):
    return PyBytes_FromStringAndSize(<const char *>w.buf, w.len)


cdef inline int aw_long(AvroWriter *w, int64_t v) except -1:
    cdef uint64_t u = (<uint64_t>v << 1) ^ <uint64_t>(v >> 63)
    if w.cap - w.len < 10:
        aw_reserve(w, 10)
    while u >= 0x80:
        w.buf[w.len] = <unsigned char>((u & 0x7F) | 0x80)
        w.len += 1
        u >>= 7
    w.buf[w.len] = <unsigned char>u
    w.len += 1
    return 0


cdef inline int aw_raw(AvroWriter *w, const void *p, Py_ssize_t n) except -1:
    if w.cap - w.len < n:
        aw_reserve(w, n)
    memcpy(w.buf + w.len, p, n)
    w.len += n
    return 0


cdef inline int aw_boolean(AvroWriter *w, bint flag) except -1:
    if w.cap - w.len < 1:
        aw_reserve(w, 1)
    w.buf[w.len] = 1 if flag else 0
    w.len += 1
    return 0


cdef inline int aw_double(AvroWriter *w, double d) except -1:
    cdef uint64_t bits
    memcpy(&bits, &d, 8)
    if w.cap - w.len < 8:
        aw_reserve(w, 8)
    pxd_store_u64le(w.buf + w.len, bits)
    w.len += 8
    return 0


cdef inline int aw_float(AvroWriter *w, float f) except -1:
    cdef uint32_t bits
    memcpy(&bits, &f, 4)
    if w.cap - w.len < 4:
        aw_reserve(w, 4)
    pxd_store_u32le(w.buf + w.len, bits)
    w.len += 4
    return 0


cdef inline int aw_floats(AvroWriter *w, const float *p, Py_ssize_t n) except -1:
    """n float32 items little-endian (the items of an array block, not its count): one copy on a
    little-endian host."""
    cdef Py_ssize_t k
    cdef uint32_t bits
    if PXD_HOST_IS_LE:
        return aw_raw(w, p, n * 4)
    aw_reserve(w, n * 4)
    for k in range(n):
        memcpy(&bits, p + k, 4)
        pxd_store_u32le(w.buf + w.len, bits)
        w.len += 4
    return 0


cdef inline int aw_str(AvroWriter *w, str s) except -1:
    """Length + UTF-8 bytes; UnicodeEncodeError (lone surrogates) propagates to the caller."""
    cdef Py_ssize_t n
    cdef const char *p = PyUnicode_AsUTF8AndSize(s, &n)
    aw_long(w, n)
    return aw_raw(w, p, n)


cdef inline int avro_write_metadata_value(AvroWriter *w, object value) except -1:
    """One metadata value of an exact plain type: 0 when written; 1 (nothing written) when it is
    anything else (numpy scalars, subclasses, tuples, ints outside 64 bits, bad types), which the
    caller handles by its own rule."""
    cdef type t = type(value)
    cdef int64_t v
    if value is None:
        return aw_long(w, V_NULL)
    if t is str:
        aw_long(w, V_STRING)
        return aw_str(w, value)
    if t is bool:
        aw_long(w, V_BOOLEAN)
        return aw_boolean(w, value is True)
    if t is int:
        try:
            v = value
        except OverflowError:
            return 1
        aw_long(w, V_LONG)
        return aw_long(w, v)
    if t is float:
        aw_long(w, V_DOUBLE)
        return aw_double(w, value)
    if t is list:
        for item in <list>value:
            if type(item) is not str:
                return 1
        aw_long(w, V_STRING_ARRAY)
        if len(<list>value):
            aw_long(w, len(<list>value))
            for item in <list>value:
                aw_str(w, item)
        return aw_long(w, 0)
    return 1
