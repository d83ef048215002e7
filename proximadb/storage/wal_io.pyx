"""Byte layer of the write-ahead log: segment-file header, frame write, frame scan.

On-disk format (version 1). Every integer is little-endian. Every checksum is
CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init/xorout 0xFFFFFFFF:
"123456789" -> 0xE3069283), computed by pxd/crc32c.h (SSE4.2 or a table).

A collection's WAL is a directory of segment files named
``wal-<first_seq:020d>.log``. Each file is one header and then frames, back to
back, no padding:

File header, 24 bytes::

    offset size  field
    0      8     magic        b"PXDBWAL\\x01"
    8      2     version      u16, 1 (a reader refuses any other)
    10     1     strategy     u8: 0 = avro, 1 = binary (how frame bodies are encoded)
    11     1     flags        u8, reserved, 0
    12     8     first_seq    u64: seq of the first frame this file holds (also in its name)
    20     4     header_crc   u32: CRC-32C of bytes 0..20

Frame, 24-byte header + body::

    offset size  field
    0      4     body_len     u32: bytes of body on disk (after compression)
    4      4     crc          u32: CRC-32C of bytes 8..24 of this header followed by the body
    8      8     seq          u64: sequence number, +1 per frame across the whole WAL
    16     1     op           u8: operation code (operations.OP_INSERT / OP_DELETE / OP_UPDATE)
    17     1     flags        u8: bit 0 = body is an LZ4 block (lz4.block, no size prefix);
                              bit 1 = avro body starts with a timestamp override
                              (see wal_codec); other bits must be 0
    18     2     schema_ver   u16: Avro schema version of the body's datum(s)
    20     4     raw_len      u32: body length before compression (== body_len when bit 0 is clear)
    24     body_len  body     encoded by the file's strategy (see wal_codec.py)

A frame is valid when its whole header and body are present and the CRC
matches. ``body_len`` is not covered by the CRC directly, but a wrong length
moves the CRC window, so it fails the check all the same (up to CRC strength).
:func:`scan_frames` reads frames from the header on and stops at the first
frame that is incomplete or fails its CRC; whether that is a torn tail or
damage in the middle is decided, with :func:`find_next_valid_frame`, by
``wal_reader.py``, the one reader of these files (recovery and ``proximadb wal``
both use it).

Writing: :func:`write_frame` builds the header, computes the CRC and hands the
header and body parts to ``writev`` in a loop (short writes and EINTR are
continued) with the GIL released. A frame is never split across files.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.errno cimport EINTR, EIO, errno
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memcmp, strerror
from posix.uio cimport iovec, writev

from proximadb.storage._crc32c cimport pxd_crc32c, pxd_crc32c_force_software, pxd_crc32c_setup
from proximadb.codec._avro cimport (
    AVRO_OK,
    AvroError,
    AvroWriter,
    avro_read_metadata,
    avro_write_metadata_value,
    aw_bytes,
    aw_free,
    aw_init,
    aw_long,
    aw_str,
)
from proximadb.codec._cursor cimport Cursor, cur_init
from proximadb.codec._endian cimport (
    PXD_HOST_IS_LE,
    pxd_load_u16le,
    pxd_load_u32le,
    pxd_load_u64le,
    pxd_store_u16le,
    pxd_store_u32le,
    pxd_store_u64le,
)

cdef extern from "crc32c.h":
    int pxd_crc32c_mode

pxd_crc32c_setup()
if not PXD_HOST_IS_LE:
    raise ImportError("proximadb.storage.wal_io supports little-endian hosts only")

MAGIC = b"PXDBWAL\x01"
FORMAT_VERSION = 1
FILE_HEADER_SIZE = 24
FRAME_HEADER_SIZE = 24
MAX_BODY_LEN = 0xFFFFFFFF

STRATEGY_AVRO = 0
STRATEGY_BINARY = 1

FLAG_LZ4 = 0x01
FLAG_TIMESTAMPS = 0x02
KNOWN_FLAGS = FLAG_LZ4 | FLAG_TIMESTAMPS

# scan_frames status
SCAN_CLEAN = 0      # stopped exactly at the end of the buffer
SCAN_TRUNCATED = 1  # a frame header or body runs past the end of the buffer
SCAN_BAD_CRC = 2    # a complete frame whose checksum does not match

cdef enum:
    _FILE_HDR = 24
    _FRAME_HDR = 24
    _MAX_PARTS = 16
    _SCAN_CLEAN = 0
    _SCAN_TRUNCATED = 1
    _SCAN_BAD_CRC = 2

cdef const char *_MAGIC = b"PXDBWAL\x01"


cdef struct FrameInfo:
    Py_ssize_t offset
    uint64_t seq
    uint8_t op
    uint8_t flags
    uint16_t schema_version
    uint32_t raw_len
    uint32_t body_len


# ---------------------------------------------------------------- Frame: a named tuple built in C
# scan_frames returns one per valid frame. A NamedTuple made in Python costs about as much per frame as
# decoding a small body (and recovery reads every frame twice); a struct sequence, the C type behind
# os.stat_result, gives the same named, tuple-compatible fields for the cost of a tuple.

cdef extern from "Python.h":
    ctypedef struct PyStructSequence_Field:
        const char *name
        const char *doc
    ctypedef struct PyStructSequence_Desc:
        const char *name
        const char *doc
        PyStructSequence_Field *fields
        int n_in_sequence
    PyTypeObject *PyStructSequence_NewType(PyStructSequence_Desc *desc) except NULL
    object PyStructSequence_New(PyTypeObject *type)
    void PyStructSequence_SetItem(object p, Py_ssize_t pos, PyObject *o)  # steals the reference to o
    void PyObject_GC_UnTrack(void *op)

cdef PyStructSequence_Field _FRAME_FIELDS[9]
_FRAME_FIELDS[0] = PyStructSequence_Field(b"offset", b"offset of the frame header in the buffer")
_FRAME_FIELDS[1] = PyStructSequence_Field(b"seq", b"sequence number")
_FRAME_FIELDS[2] = PyStructSequence_Field(b"op_code", b"operation code")
_FRAME_FIELDS[3] = PyStructSequence_Field(b"flags", b"frame flags (FLAG_LZ4, FLAG_TIMESTAMPS)")
_FRAME_FIELDS[4] = PyStructSequence_Field(b"schema_version", b"Avro schema version of the body")
_FRAME_FIELDS[5] = PyStructSequence_Field(b"raw_len", b"body bytes before compression")
_FRAME_FIELDS[6] = PyStructSequence_Field(b"body_offset", b"offset of the body in the buffer")
_FRAME_FIELDS[7] = PyStructSequence_Field(b"body_len", b"body bytes on disk")
_FRAME_FIELDS[8] = PyStructSequence_Field(NULL, NULL)
cdef PyStructSequence_Desc _FRAME_DESC
_FRAME_DESC.name = b"proximadb.storage.wal_io.Frame"
_FRAME_DESC.doc = b"A frame whose checksum matches, as scan_frames finds it: a tuple with named fields."
_FRAME_DESC.fields = &_FRAME_FIELDS[0]
_FRAME_DESC.n_in_sequence = 8
cdef PyTypeObject *_FRAME_TYPE = PyStructSequence_NewType(&_FRAME_DESC)
Frame = <object>_FRAME_TYPE


cdef inline void _put(object frame, Py_ssize_t i, object value):
    Py_INCREF(value)
    PyStructSequence_SetItem(frame, i, <PyObject *>value)


cdef object _frame(FrameInfo *info):
    cdef object frame = PyStructSequence_New(_FRAME_TYPE)
    _put(frame, 0, info.offset)
    _put(frame, 1, info.seq)
    _put(frame, 2, info.op)
    _put(frame, 3, info.flags)
    _put(frame, 4, info.schema_version)
    _put(frame, 5, info.raw_len)
    _put(frame, 6, info.offset + _FRAME_HDR)
    _put(frame, 7, info.body_len)
    PyObject_GC_UnTrack(<PyObject *>frame)  # only ints inside: no cycle, so the collector need not scan it
    return frame


# ---------------------------------------------------------------- checksum

def crc32c(data, unsigned int value=0):
    """CRC-32C of ``data`` (any contiguous buffer); pass a previous result as ``value`` to continue."""
    cdef Py_buffer view
    cdef uint32_t out
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        with nogil:
            out = pxd_crc32c(value, view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return out


def force_software_crc32c(bint on):
    """Use the table-driven CRC-32C even on SSE4.2 CPUs (tests compare both paths)."""
    pxd_crc32c_force_software(1 if on else 0)


def crc32c_implementation():
    """``"sse4.2"`` or ``"table"``: which CRC-32C path is in use."""
    return "sse4.2" if pxd_crc32c_mode == 1 else "table"


# ---------------------------------------------------------------- file header

def encode_file_header(unsigned int strategy, unsigned int flags, uint64_t first_seq):
    """The 24-byte header of a new segment file."""
    if strategy > 255 or flags > 255:
        raise ValueError("strategy and flags are one byte each")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _FILE_HDR)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    memcpy(p, _MAGIC, 8)
    pxd_store_u16le(p + 8, FORMAT_VERSION)
    p[10] = <unsigned char>strategy
    p[11] = <unsigned char>flags
    pxd_store_u64le(p + 12, first_seq)
    pxd_store_u32le(p + 20, pxd_crc32c(0, p, 20))
    return out


def decode_file_header(const unsigned char[::1] buf not None):
    """``(version, strategy, flags, first_seq)`` from the start of ``buf``.

    Raises ValueError (with the reason) when the buffer is short, the magic or the
    checksum is wrong, or the version is not one this code reads.
    """
    cdef const unsigned char *p
    if buf.shape[0] < _FILE_HDR:
        raise ValueError(f"file header truncated ({buf.shape[0]} of {_FILE_HDR} bytes)")
    p = &buf[0]
    if memcmp(p, _MAGIC, 8) != 0:
        raise ValueError("bad magic (not a ProximaDB WAL segment)")
    if pxd_crc32c(0, p, 20) != pxd_load_u32le(p + 20):
        raise ValueError("file header checksum mismatch")
    version = pxd_load_u16le(p + 8)
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported WAL format version {version} (this build reads {FORMAT_VERSION})")
    return version, p[10], p[11], pxd_load_u64le(p + 12)


# ---------------------------------------------------------------- frame write

cdef Py_ssize_t _writev_all(int fd, iovec *iov, int iovcnt, int *err) noexcept nogil:
    """Write every iovec, continuing after EINTR and short writes.

    Returns 0, or -1 with the errno in ``err`` (the file may then hold part of the data).
    Modifies ``iov`` in place.
    """
    cdef Py_ssize_t n
    while iovcnt > 0:
        n = writev(fd, iov, iovcnt)
        if n < 0:
            if errno == EINTR:
                continue
            err[0] = errno
            return -1
        if n == 0:
            err[0] = EIO
            return -1
        while iovcnt > 0 and <size_t>n >= iov[0].iov_len:
            n -= iov[0].iov_len
            iov += 1
            iovcnt -= 1
        if iovcnt > 0 and n > 0:
            iov[0].iov_base = (<char *>iov[0].iov_base) + n
            iov[0].iov_len -= n
    return 0


def write_frame(int fd, uint64_t seq, unsigned int op, unsigned int flags,
                unsigned int schema_version, Py_ssize_t raw_len, body):
    """Append one frame to ``fd``; returns the bytes written (header + body).

    ``body`` is a contiguous buffer or a list/tuple of up to 16 of them, written
    back to back (so a numpy block is not copied into a joined bytes object).
    Raises OSError when the write fails (the file may then end in a torn frame).
    """
    cdef Py_buffer bufs[_MAX_PARTS]
    cdef iovec iov[_MAX_PARTS + 1]
    cdef unsigned char header[_FRAME_HDR]
    cdef int nparts = 0
    cdef int i
    cdef int err = 0
    cdef Py_ssize_t rc
    cdef size_t total = 0
    cdef uint32_t crc
    if op > 255 or flags > 255 or schema_version > 0xFFFF:
        raise ValueError("op and flags are one byte, schema_version two bytes")
    if raw_len < 0 or raw_len > MAX_BODY_LEN:
        raise ValueError(f"raw length {raw_len} does not fit in u32")
    parts = body if isinstance(body, (list, tuple)) else (body,)
    if len(parts) > _MAX_PARTS:
        raise ValueError(f"at most {_MAX_PARTS} body parts")
    try:
        for part in parts:
            PyObject_GetBuffer(part, &bufs[nparts], PyBUF_SIMPLE)
            nparts += 1
            total += <size_t>bufs[nparts - 1].len
        if total > MAX_BODY_LEN:
            raise ValueError(f"frame body of {total} bytes does not fit in u32")
        with nogil:
            pxd_store_u32le(header, <uint32_t>total)
            pxd_store_u64le(header + 8, seq)
            header[16] = <unsigned char>op
            header[17] = <unsigned char>flags
            pxd_store_u16le(header + 18, <uint16_t>schema_version)
            pxd_store_u32le(header + 20, <uint32_t>raw_len)
            crc = pxd_crc32c(0, header + 8, _FRAME_HDR - 8)
            iov[0].iov_base = header
            iov[0].iov_len = _FRAME_HDR
            for i in range(nparts):
                crc = pxd_crc32c(crc, bufs[i].buf, <size_t>bufs[i].len)
                iov[i + 1].iov_base = bufs[i].buf
                iov[i + 1].iov_len = <size_t>bufs[i].len
            pxd_store_u32le(header + 4, crc)
            rc = _writev_all(fd, iov, nparts + 1, &err)
        if rc < 0:
            raise OSError(err, strerror(err).decode("utf-8", "replace"))
        return <Py_ssize_t>total + _FRAME_HDR
    finally:
        for i in range(nparts):
            PyBuffer_Release(&bufs[i])


# ---------------------------------------------------------------- frame scan

cdef inline int _frame_ok(const unsigned char *p, Py_ssize_t left) noexcept nogil:
    """1 when a complete frame with a matching CRC starts at p, 0 when it is cut short, -1 on CRC mismatch."""
    cdef uint32_t body_len
    if left < _FRAME_HDR:
        return 0
    body_len = pxd_load_u32le(p)
    if <uint64_t>body_len > <uint64_t>(left - _FRAME_HDR):
        return 0
    if pxd_crc32c(0, p + 8, _FRAME_HDR - 8 + <size_t>body_len) != pxd_load_u32le(p + 4):
        return -1
    return 1


def scan_frames(const unsigned char[::1] buf not None, Py_ssize_t start_offset):
    """Validate frames from ``start_offset`` to the end of ``buf``.

    Returns ``(frames, stop_offset, status)``: ``frames`` is a list of
    :data:`Frame` (tuples ``(offset, seq, op_code, flags, schema_version,
    raw_len, body_offset, body_len)`` with those field names) for every valid
    frame before the first bad one; ``stop_offset`` is where that
    bad frame (or the end) starts; ``status`` is SCAN_CLEAN, SCAN_TRUNCATED or
    SCAN_BAD_CRC. Lengths and checksums are checked with the GIL released.
    """
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t pos = start_offset
    cdef const unsigned char *base
    cdef const unsigned char *p
    cdef FrameInfo *infos = NULL
    cdef FrameInfo *grown
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t cap = 0
    cdef Py_ssize_t k
    cdef int ok = 1
    cdef int status = _SCAN_CLEAN
    cdef bint nomem = False
    if start_offset < 0 or start_offset > n:
        raise ValueError(f"start offset {start_offset} outside buffer of {n} bytes")
    if n == 0:
        return [], 0, _SCAN_CLEAN
    base = &buf[0]
    try:
        with nogil:
            while pos < n:
                p = base + pos
                ok = _frame_ok(p, n - pos)
                if ok != 1:
                    status = _SCAN_TRUNCATED if ok == 0 else _SCAN_BAD_CRC
                    break
                if count == cap:
                    cap = 64 if cap == 0 else cap * 2
                    grown = <FrameInfo *>realloc(infos, cap * sizeof(FrameInfo))
                    if grown == NULL:
                        nomem = True
                        break
                    infos = grown
                infos[count].offset = pos
                infos[count].body_len = pxd_load_u32le(p)
                infos[count].seq = pxd_load_u64le(p + 8)
                infos[count].op = p[16]
                infos[count].flags = p[17]
                infos[count].schema_version = pxd_load_u16le(p + 18)
                infos[count].raw_len = pxd_load_u32le(p + 20)
                count += 1
                pos += _FRAME_HDR + infos[count - 1].body_len
        if nomem:
            raise MemoryError()
        frames = []
        for k in range(count):
            frames.append(_frame(&infos[k]))
        return frames, pos, status
    finally:
        free(infos)


def find_next_valid_frame(const unsigned char[::1] buf not None, Py_ssize_t start_offset,
                          uint64_t min_seq):
    """Offset of the first valid frame with ``seq >= min_seq`` at or after ``start_offset``, or -1.

    Tries every byte offset (used only after a bad frame, to tell a torn tail,
    which has no valid frame after it, from damage in the middle of a file).
    """
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t pos
    cdef Py_ssize_t found = -1
    cdef const unsigned char *base
    if start_offset < 0:
        start_offset = 0
    if n < _FRAME_HDR or start_offset > n - _FRAME_HDR:
        return -1
    base = &buf[0]
    with nogil:
        pos = start_offset
        while pos <= n - _FRAME_HDR:
            if (<uint64_t>pxd_load_u32le(base + pos) <= <uint64_t>(n - pos - _FRAME_HDR)
                    and pxd_load_u64le(base + pos + 8) >= min_seq
                    and _frame_ok(base + pos, n - pos) == 1):
                found = pos
                break
            pos += 1
    return found


# ---------------------------------------------------------------- string lists

def pack_str_list(list items not None):
    """``u32 byte length + UTF-8`` per string, back to back (binary-strategy ids)."""
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t size
    cdef Py_ssize_t n = len(items)
    cdef Py_ssize_t k
    cdef const char *s
    cdef unsigned char *p
    for k in range(n):
        item = items[k]
        if not isinstance(item, str):
            raise TypeError(f"expected str, got {type(item).__name__}")
        PyUnicode_AsUTF8AndSize(item, &size)
        if size > 0xFFFFFFFF:
            raise ValueError("string longer than 4 GiB")
        total += 4 + size
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    p = <unsigned char *>PyBytes_AS_STRING(out)
    for k in range(n):
        s = PyUnicode_AsUTF8AndSize(items[k], &size)
        pxd_store_u32le(p, <uint32_t>size)
        memcpy(p + 4, s, size)
        p += 4 + size
    return out


def unpack_str_list(const unsigned char[::1] buf not None, Py_ssize_t offset, Py_ssize_t count):
    """Read ``count`` strings written by :func:`pack_str_list`; returns ``(strings, end_offset)``.

    Raises ValueError when the data runs past the end; UnicodeDecodeError on bad UTF-8.
    """
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t pos = offset
    cdef Py_ssize_t k
    cdef uint32_t size
    cdef const char *base
    if offset < 0 or offset > n or count < 0:
        raise ValueError("offset or count out of range")
    if count > (n - offset) // 4:
        raise ValueError(f"{count} strings cannot fit in {n - offset} bytes")
    out = [None] * count
    if count == 0:
        return out, pos
    base = <const char *>&buf[0]
    for k in range(count):
        if n - pos < 4:
            raise ValueError(f"string {k} length runs past the end at offset {pos}")
        size = pxd_load_u32le(base + pos)
        pos += 4
        if <uint64_t>size > <uint64_t>(n - pos):
            raise ValueError(f"string {k} of {size} bytes runs past the end at offset {pos}")
        out[k] = PyUnicode_DecodeUTF8(base + pos, size, NULL)
        pos += size
    return out, pos


# ---------------------------------------------------------------- metadata maps (Avro)
#
# Binary-strategy metadata: one Avro map per record, back to back, each exactly
# as Avro encodes VectorRecord.metadata, ``map<union{null, boolean, long,
# double, string, array<string>}>``: blocks of (zig-zag varint count, then count
# x (key string, varint branch index, value)), ended by a 0 count. Strings are a
# zig-zag varint byte length + UTF-8; double is 8 bytes little-endian. The
# encoder writes one block per non-empty map; the decoder also accepts negative
# block counts (followed by a byte size), as the Avro spec allows. Reading and
# writing are the shared Avro layer's (proximadb/codec/_avro.pxd).

cdef int _ob_value(AvroWriter *b, object value) except -1:
    """Exact plain values by the shared writer; other ints, floats, strs and sequences as before
    (OverflowError outside int64, TypeError for anything else: the server checked them already)."""
    if avro_write_metadata_value(b, value) == 0:
        return 0
    if isinstance(value, int):
        <int64_t>value  # OverflowError outside int64, as Avro long
        return avro_write_metadata_value(b, int(value))
    if isinstance(value, float):
        return avro_write_metadata_value(b, float(value))
    if isinstance(value, str):
        return avro_write_metadata_value(b, str(value))
    if isinstance(value, (list, tuple)):
        for item in value:
            if not isinstance(item, str):
                raise TypeError(f"metadata list items must be str, got {type(item).__name__}")
        return avro_write_metadata_value(b, [str(item) for item in value])
    raise TypeError(f"unsupported metadata value type {type(value).__name__}")


def encode_metadata_maps(list maps not None, uint64_t[::1] offsets=None):
    """Avro-encode each dict of ``maps`` (see above; None is the empty map), back to back.

    With ``offsets`` (``len(maps) + 1`` uint64), map k's bytes are ``offsets[k]:offsets[k + 1]``."""
    cdef AvroWriter b
    cdef Py_ssize_t k = 0
    if offsets is not None and offsets.shape[0] != len(maps) + 1:
        raise ValueError(f"offsets has {offsets.shape[0]} entries for {len(maps)} maps (needs one more)")
    aw_init(&b)
    try:
        for m in maps:
            if offsets is not None:
                offsets[k] = <uint64_t>b.len
                k += 1
            if m is None:  # no metadata: the empty map
                aw_long(&b, 0)
                continue
            if not isinstance(m, dict):
                raise TypeError(f"metadata must be a dict or None, got {type(m).__name__}")
            if len(<dict>m):
                aw_long(&b, len(<dict>m))
                for key, value in (<dict>m).items():
                    if not isinstance(key, str):
                        raise TypeError(f"metadata keys must be str, got {type(key).__name__}")
                    aw_str(&b, key)
                    _ob_value(&b, value)
            aw_long(&b, 0)
        if offsets is not None:
            offsets[k] = <uint64_t>b.len
        return aw_bytes(&b)
    finally:
        aw_free(&b)


cdef object _malformed(const AvroError *e):
    message = f"malformed metadata map at offset {e.offset}: {(<bytes>e.problem).decode('ascii')}"
    if e.has_value:
        message += f" ({e.value})"
    return ValueError(f"{message} while reading {(<bytes>e.what).decode('ascii')}")


def decode_metadata_maps(const unsigned char[::1] buf not None, Py_ssize_t offset, Py_ssize_t count):
    """Read ``count`` maps written by :func:`encode_metadata_maps`; returns ``(maps, end_offset)``.

    Raises ValueError (naming the offset) on truncated or malformed data.
    """
    cdef Cursor c
    cdef AvroError e
    cdef Py_ssize_t k
    cdef Py_ssize_t n = buf.shape[0]
    cdef dict m
    if offset < 0 or offset > n or count < 0 or count > n - offset:
        raise ValueError(f"{count} maps cannot start at offset {offset} of {n} bytes")
    out = [None] * count
    if count == 0:
        return out, offset
    cur_init(&c, &buf[0], n)
    c.pos = offset
    e.kind = AVRO_OK
    for k in range(count):
        m = avro_read_metadata(&c, &e)
        if m is None:
            raise _malformed(&e)
        out[k] = m
    return out, c.pos
