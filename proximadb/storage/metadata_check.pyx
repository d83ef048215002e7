# cython: language_level=3, boundscheck=False, wraparound=False
"""The size check of a batch's metadata, in compiled code (the rule itself: validation.metadata_bytes).

An insert batch decoded from its Avro payload holds only plain values (None, bool, int, float,
str, list of str). :func:`metadata_sizes` measures each row as ``validation.metadata_bytes``
counts it (UTF-8 bytes of keys and strings, +1 per list item, 8 per number or boolean) without
a Python call per value. A row it cannot vouch for (a key that is not a str of 1 to
``max_key_bytes`` bytes, a non-finite float, an int beyond 64 bits, any other type) gets -1:
the caller checks that row with the Python rule, which says precisely what is wrong.
"""

from cpython.dict cimport PyDict_Next
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_READ, PyUnicode_DATA, PyUnicode_KIND
from libc.math cimport isfinite
from libc.stdint cimport int64_t

import numpy as np

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)


cdef inline Py_ssize_t _utf8_len(object text):
    """UTF-8 bytes of a str, surrogates counted as 3 (as ``encode("utf-8", "surrogatepass")``)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    if PyUnicode_IS_ASCII(text):
        return n
    cdef int kind = PyUnicode_KIND(text)
    cdef void *data = PyUnicode_DATA(text)
    cdef Py_ssize_t i, size = 0
    cdef Py_UCS4 c
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        size += 1 if c < 0x80 else 2 if c < 0x800 else 3 if c < 0x10000 else 4
    return size


cdef int64_t _row_size(dict row, Py_ssize_t max_key_bytes) except -2:
    cdef Py_ssize_t pos = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef int64_t size = 0
    cdef Py_ssize_t key_bytes, j, items
    cdef object key, value, item
    while PyDict_Next(row, &pos, &k, &v):
        key = <object>k
        value = <object>v
        if type(key) is not str:
            return -1
        key_bytes = _utf8_len(key)
        if key_bytes < 1 or key_bytes > max_key_bytes:
            return -1
        size += key_bytes
        if value is None:
            continue
        t = type(value)
        if t is str:
            size += _utf8_len(value)
        elif t is bool:
            size += 8
        elif t is int:
            if not -(2**63) <= value <= 2**63 - 1:
                return -1
            size += 8
        elif t is float:
            if not isfinite(<double>value):
                return -1
            size += 8
        elif t is list:
            items = PyList_GET_SIZE(value)
            for j in range(items):
                item = <object>PyList_GET_ITEM(value, j)
                if type(item) is not str:
                    return -1
                size += _utf8_len(item) + 1
        else:
            return -1
    return size


def metadata_sizes(list rows not None, Py_ssize_t max_key_bytes):
    """int64 per row: its metadata size, 0 for None or {}, -1 where the Python rule must decide."""
    cdef Py_ssize_t n = len(rows)
    cdef Py_ssize_t i
    out = np.zeros(n, dtype=np.int64)
    cdef int64_t[::1] sizes = out
    for i in range(n):
        row = rows[i]
        if row is None:
            continue
        if type(row) is not dict:
            sizes[i] = -1
            continue
        sizes[i] = _row_size(<dict>row, max_key_bytes)
    return out
