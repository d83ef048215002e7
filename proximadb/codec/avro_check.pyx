"""Bounds check of an Avro datum against its schema, before anything decodes it.

Every op but ``vector_insert`` (which has its own three-pass codec, avro_batch.pyx)
is decoded by fastavro. Garbage must never reach it: a declared string or array
length larger than the bytes left would make it allocate that much. So
:func:`check_datum` first walks the datum with the shared primitives of
``_avro.pxd`` (the same long/length/block/boolean readers and the same error
texts as the insert codec) and refuses any length, count, boolean, int range or
union index that is wrong, and trailing bytes. Every item of every schema takes
at least one byte, so a block count is refused when the bytes left could not
hold it, and memory stays bounded by the input.

The schema arrives as a *program*: a flat int64 array of nodes that
:func:`proximadb.codec.payload` compiles once per (op, version). A node is an
opcode followed by its operands; child nodes are referred to by their index in
the array, so named (even recursive) types cost one node each::

    NULL | BOOLEAN | INT | LONG | FLOAT | DOUBLE | STRING   (no operand)
    FIXED size
    FLOAT_ARRAY                      array<float>: blocks of 4-byte items
    ARRAY item                       item: node index
    MAP value                        items are a string key then the value
    UNION n b_0 .. b_{n-1}           enums are UNION n with NULL branches
    RECORD n f_0 .. f_{n-1}

The walk holds no GIL and recurses at most MAX_DEPTH nodes deep.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int64_t

cimport numpy as cnp

from proximadb.codec._cursor cimport Cursor, cur_init, cur_left, cur_read
from proximadb.codec._avro cimport (
    AvroError,
    avro_check_block_size,
    avro_fail,
    avro_fail_value,
    avro_read_block,
    avro_read_boolean,
    avro_read_long,
    avro_skip_string,
)

import numpy as np

from proximadb.errors import MalformedPayloadError

cnp.import_array()

# Opcodes, in the order of the table above (payload.py compiles schemas with these names).
OPCODES = {
    "null": 0, "boolean": 1, "int": 2, "long": 3, "float": 4, "double": 5, "string": 6,
    "fixed": 7, "float_array": 8, "array": 9, "map": 10, "union": 11, "record": 12,
}

cdef enum:
    OP_NULL = 0
    OP_BOOLEAN = 1
    OP_INT = 2
    OP_LONG = 3
    OP_FLOAT = 4
    OP_DOUBLE = 5
    OP_STRING = 6
    OP_FIXED = 7
    OP_FLOAT_ARRAY = 8
    OP_ARRAY = 9
    OP_MAP = 10
    OP_UNION = 11
    OP_RECORD = 12
    MAX_DEPTH = 64


cdef int _fixed(Cursor *c, Py_ssize_t size, const char *what, AvroError *e) noexcept nogil:
    if cur_read(c, size) == NULL:
        return avro_fail(e, c.pos, what, "truncated")
    return 0


cdef int _float_array(Cursor *c, AvroError *e) noexcept nogil:
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t start
    while True:
        start = c.pos
        if avro_read_block(c, 4, &count, &size, "a float array block", e) < 0:
            return -1
        if count == 0:
            return 0
        if size >= 0 and size != 4 * count:
            return avro_fail_value(e, start, "a float array block", "block byte size is not 4 bytes per float", size)
        c.pos += 4 * count


cdef int _walk(Cursor *c, const int64_t *prog, Py_ssize_t node, int depth, AvroError *e) noexcept nogil:
    cdef int64_t op = prog[node]
    cdef int64_t value
    cdef int flag
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t block_start
    cdef Py_ssize_t start = c.pos
    cdef Py_ssize_t k
    if depth > MAX_DEPTH:
        return avro_fail(e, c.pos, "a nested value", "schema nested too deeply")
    if op == OP_NULL:
        return 0
    if op == OP_BOOLEAN:
        return avro_read_boolean(c, &flag, "a boolean", e)
    if op == OP_INT:
        if avro_read_long(c, &value, "an int", e) < 0:
            return -1
        if value < -2147483648 or value > 2147483647:
            return avro_fail_value(e, start, "an int", "int out of the 32-bit range", value)
        return 0
    if op == OP_LONG:
        return avro_read_long(c, &value, "a long", e)
    if op == OP_FLOAT:
        return _fixed(c, 4, "a float", e)
    if op == OP_DOUBLE:
        return _fixed(c, 8, "a double", e)
    if op == OP_STRING:
        return avro_skip_string(c, "a string", e)
    if op == OP_FIXED:
        return _fixed(c, <Py_ssize_t>prog[node + 1], "a fixed", e)
    if op == OP_FLOAT_ARRAY:
        return _float_array(c, e)
    if op == OP_ARRAY or op == OP_MAP:
        while True:
            if avro_read_block(c, 1, &count, &size, "an array block" if op == OP_ARRAY else "a map block", e) < 0:
                return -1
            if count == 0:
                return 0
            block_start = c.pos
            for k in range(count):
                if op == OP_MAP and avro_skip_string(c, "a map key", e) < 0:
                    return -1
                if _walk(c, prog, <Py_ssize_t>prog[node + 1], depth + 1, e) < 0:
                    return -1
            if avro_check_block_size(size, block_start, c.pos,
                                     "an array block" if op == OP_ARRAY else "a map block", e) < 0:
                return -1
    if op == OP_UNION:
        if avro_read_long(c, &value, "a union index", e) < 0:
            return -1
        if value < 0 or value >= prog[node + 1]:
            return avro_fail_value(e, start, "a union index", "invalid union index", value)
        return _walk(c, prog, <Py_ssize_t>prog[node + 2 + value], depth + 1, e)
    if op == OP_RECORD:
        for k in range(<Py_ssize_t>prog[node + 1]):
            if _walk(c, prog, <Py_ssize_t>prog[node + 2 + k], depth + 1, e) < 0:
                return -1
        return 0
    return avro_fail_value(e, start, "the schema program", "unknown opcode", op)


def check_datum(datum, cnp.ndarray program, str record) -> None:
    """Walk ``datum`` (any contiguous bytes-like object) with ``program`` (node 0 is the root).

    Raises MalformedPayloadError ``malformed <record> datum at offset N: <problem> (<value>)
    while reading <what>`` -- the wording of the insert codec -- or for trailing bytes.
    """
    cdef Py_buffer view
    cdef Cursor c
    cdef AvroError e
    cdef int rc
    cdef cnp.ndarray prog = np.ascontiguousarray(program, dtype=np.int64)
    cdef const int64_t *p = <const int64_t *>cnp.PyArray_DATA(prog)
    PyObject_GetBuffer(datum, &view, PyBUF_SIMPLE)
    try:
        cur_init(&c, <const unsigned char *>view.buf, view.len)
        e.kind = 0
        with nogil:
            rc = _walk(&c, p, 0, 0, &e)
        if rc < 0:
            message = f"malformed {record} datum at offset {e.offset}: {(<bytes>e.problem).decode('ascii')}"
            if e.has_value:
                message += f" ({e.value})"
            raise MalformedPayloadError(message + f" while reading {(<bytes>e.what).decode('ascii')}")
        if cur_left(&c):
            raise MalformedPayloadError(
                f"malformed {record} datum at offset {c.pos}: {cur_left(&c)} trailing bytes after the {record} datum"
            )
    finally:
        PyBuffer_Release(&view)
