# A bounds-checked read cursor over a byte buffer, shared by every decoder
# (payload frame, Avro datum, WAL frame, segment blocks). Functions never
# raise: they return NULL / -1 on overrun or bad encoding and leave the
# message to the caller, who knows what it was reading.
from libc.stdint cimport int64_t, uint64_t

cdef struct Cursor:
    const unsigned char *buf
    Py_ssize_t pos
    Py_ssize_t end

cdef inline void cur_init(Cursor *c, const unsigned char *buf, Py_ssize_t n) noexcept nogil:
    c.buf = buf
    c.pos = 0
    c.end = n

cdef inline Py_ssize_t cur_left(const Cursor *c) noexcept nogil:
    return c.end - c.pos

cdef inline const unsigned char *cur_read(Cursor *c, Py_ssize_t n) noexcept nogil:
    """Advance by n bytes; NULL (cursor unchanged) when fewer are left."""
    cdef const unsigned char *p
    if n < 0 or c.end - c.pos < n:
        return NULL
    p = c.buf + c.pos
    c.pos += n
    return p

cdef inline int cur_read_varlong(Cursor *c, int64_t *out) noexcept nogil:
    """Avro long: zig-zag varint, at most 10 bytes. 0 on success, -1 on overrun/overlong."""
    cdef uint64_t acc = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if c.pos >= c.end or shift > 63:
            return -1
        b = c.buf[c.pos]
        c.pos += 1
        acc |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            break
        shift += 7
    out[0] = <int64_t>((acc >> 1) ^ (-(<int64_t>(acc & 1))))
    return 0
