"""The versioned payload frame that carries every operation.

Byte layout (all integers little-endian, no padding)::

    offset  size            field
    0       4               schema_version  u32   version of the Avro schemas in schemas/v<N>/
    4       4               op_type_len     u32   1..64
    8       op_type_len     op_type         UTF-8 names the datum's Avro record (schemas.OP_RECORDS)
    8+len   rest of frame   datum           Avro binary of that record, schemaless

There is no magic and no checksum here: the frame travels inside a gRPC
message or an HTTP body (each with their own integrity checks) and is stored
inside a checksummed WAL frame. The version is checked before anything after
it is read, so a later version may change the rest of the layout.

``decode_frame`` never copies the datum: it returns a memoryview into the
caller's buffer.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint32_t
from libc.string cimport memcpy

from proximadb.codec._cursor cimport Cursor, cur_init, cur_left, cur_read
from proximadb.codec._endian cimport pxd_load_u32le, pxd_store_u32le

from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION, OP_RECORDS, SUPPORTED_SCHEMA_VERSIONS
from proximadb.errors import (
    MalformedPayloadError,
    UnknownOperationError,
    UnsupportedSchemaVersionError,
    ValidationError,
)

HEADER_SIZE = 8
MAX_OP_TYPE_LEN = 64

cdef Py_ssize_t _HEADER_SIZE = 8
cdef uint32_t _MAX_OP_TYPE_LEN = 64


def _unsupported(version: int) -> UnsupportedSchemaVersionError:
    supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
    return UnsupportedSchemaVersionError(
        f"payload schema version {version} is not supported (supported versions: {supported})"
    )


def _unknown(op_type: str) -> UnknownOperationError:
    known = ", ".join(sorted(OP_RECORDS))
    return UnknownOperationError(f"unknown op type {op_type!r} (known: {known})")


def encode_frame(str op_type, datum, schema_version: int = CURRENT_SCHEMA_VERSION) -> bytes:
    """Frame an Avro datum (any contiguous bytes-like object) as ``op_type`` at ``schema_version``."""
    cdef Py_buffer view
    cdef bytes op_bytes
    cdef bytes out
    cdef char *p
    cdef Py_ssize_t op_len
    if schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise _unsupported(schema_version)
    if op_type not in OP_RECORDS:
        raise _unknown(op_type)
    try:
        op_bytes = op_type.encode("utf-8")
    except UnicodeEncodeError as exc:  # only a lone surrogate gets here
        raise ValidationError(f"op type {op_type!r} cannot be encoded as UTF-8: {exc.reason}") from None
    op_len = len(op_bytes)
    if op_len == 0 or op_len > _MAX_OP_TYPE_LEN:
        raise ValidationError(f"op type must be 1..{MAX_OP_TYPE_LEN} UTF-8 bytes, got {op_len}")
    PyObject_GetBuffer(datum, &view, PyBUF_SIMPLE)
    try:
        out = PyBytes_FromStringAndSize(NULL, _HEADER_SIZE + op_len + view.len)
        p = PyBytes_AS_STRING(out)
        pxd_store_u32le(p, <uint32_t>schema_version)
        pxd_store_u32le(p + 4, <uint32_t>op_len)
        memcpy(p + _HEADER_SIZE, PyBytes_AS_STRING(op_bytes), op_len)
        if view.len:
            memcpy(p + _HEADER_SIZE + op_len, view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return out


def decode_frame(buf) -> tuple:
    """Split a frame into ``(schema_version, op_type, datum)``; the datum is a zero-copy memoryview.

    Raises MalformedPayloadError (bad structure), UnsupportedSchemaVersionError
    and UnknownOperationError; never reads outside ``buf``.
    """
    cdef Py_buffer view
    cdef Cursor c
    cdef const unsigned char *p
    cdef uint32_t version
    cdef uint32_t op_len
    cdef Py_ssize_t datum_offset
    cdef str op_type
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        cur_init(&c, <const unsigned char *>view.buf, view.len)
        p = cur_read(&c, _HEADER_SIZE)
        if p == NULL:
            raise MalformedPayloadError(
                f"payload frame is {view.len} bytes, shorter than its 8-byte header "
                "(u32 schema_version, u32 op_type_len) at offset 0"
            )
        version = pxd_load_u32le(p)
        op_len = pxd_load_u32le(p + 4)
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise _unsupported(version)
        if op_len == 0 or op_len > _MAX_OP_TYPE_LEN:
            raise MalformedPayloadError(
                f"payload frame op_type_len {op_len} at offset 4 is out of range (1..{MAX_OP_TYPE_LEN})"
            )
        p = cur_read(&c, op_len)
        if p == NULL:
            raise MalformedPayloadError(
                f"payload frame op type of {op_len} bytes at offset 8 runs past the end of the frame "
                f"({cur_left(&c)} bytes left)"
            )
        try:
            op_type = PyUnicode_DecodeUTF8(<const char *>p, op_len, NULL)
        except UnicodeDecodeError as exc:
            raise MalformedPayloadError(
                f"payload frame op type at offset {8 + exc.start} is not valid UTF-8 ({exc.reason})"
            ) from None
        if op_type not in OP_RECORDS:
            raise _unknown(op_type)
        datum_offset = c.pos
    finally:
        PyBuffer_Release(&view)
    mv = memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return version, op_type, mv[datum_offset:]
