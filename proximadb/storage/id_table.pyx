# cython: language_level=3, boundscheck=False, wraparound=False
"""A sealed segment's ids, read in place from ``ids.bin`` (its bytes are documented in segment.py).

The ids of a segment are stored sorted (UTF-8 byte order, which is code point order, so
Python's ``str`` order) as one blob with ``rows + 1`` offsets. :class:`IdTable` answers from
the memory-mapped file: ``table[row]`` decodes one id, ``find(ids)`` binary-searches a batch
with the GIL released, so no per-row ``str`` or ``dict`` entry lives on the Python heap.
Being a sorted sequence, it also serves ``bisect`` (scroll cursors).
"""

from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp

import numpy as np


cdef inline int _compare(const unsigned char *a, Py_ssize_t na, const unsigned char *b, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t n = na if na < nb else nb
    cdef int c = memcmp(a, b, n) if n else 0
    if c:
        return c
    return (na > nb) - (na < nb)


cdef class IdTable:
    """Row -> id and id -> row over ``offsets`` (u64, rows + 1, ascending) and the UTF-8 ``blob``."""

    cdef const uint64_t[::1] _offsets
    cdef const unsigned char[::1] _blob
    cdef readonly Py_ssize_t rows
    cdef object _keep  # what owns the buffers (the mapping)

    def __init__(self, offsets, blob, keep=None):
        self._offsets = offsets
        self._blob = blob
        self.rows = self._offsets.shape[0] - 1
        self._keep = keep
        if self.rows < 0:
            raise ValueError("an id table needs rows + 1 offsets")
        if self.rows and <Py_ssize_t>self._offsets[self.rows] != self._blob.shape[0]:
            raise ValueError(f"the last offset {self._offsets[self.rows]} is not the blob's length {self._blob.shape[0]}")

    def __len__(self):
        return self.rows

    def __getitem__(self, row):
        cdef Py_ssize_t r = row
        if r < 0:
            r += self.rows
        if not 0 <= r < self.rows:
            raise IndexError(f"row {row} of {self.rows}")
        cdef uint64_t start = self._offsets[r]
        cdef uint64_t end = self._offsets[r + 1]
        if end < start or end > <uint64_t>self._blob.shape[0]:
            raise ValueError(f"id {r}: offsets {start}..{end} are outside the blob")
        if end == start:
            return ""
        return PyUnicode_DecodeUTF8(<const char *>&self._blob[start], end - start, NULL)

    cdef Py_ssize_t _search(self, const unsigned char *key, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t lo = 0
        cdef Py_ssize_t hi = self.rows
        cdef Py_ssize_t mid
        cdef uint64_t start, end
        cdef const unsigned char *base
        cdef int c
        if self.rows == 0:
            return -1
        base = &self._blob[0] if self._blob.shape[0] else key
        while lo < hi:
            mid = (lo + hi) >> 1
            start = self._offsets[mid]
            end = self._offsets[mid + 1]
            c = _compare(base + start, <Py_ssize_t>(end - start), key, n)
            if c < 0:
                lo = mid + 1
            elif c > 0:
                hi = mid
            else:
                return mid
        return -1

    def find_one(self, str id_ not None):
        """The row of ``id_``, or -1."""
        cdef Py_ssize_t n
        cdef const char *key = PyUnicode_AsUTF8AndSize(id_, &n)
        return self._search(<const unsigned char *>key, n)

    def find(self, ids):
        """An int64 array: the row of each id of the sequence ``ids`` (str), -1 where absent."""
        cdef Py_ssize_t count = len(ids)
        cdef Py_ssize_t k
        cdef Py_ssize_t n
        out = np.full(count, -1, dtype=np.int64)
        if count == 0 or self.rows == 0:
            return out
        cdef int64_t[::1] rows = out
        keys = [id_ if type(id_) is str else str(id_) for id_ in ids]  # keeps the UTF-8 buffers alive
        cdef const char **ptrs = <const char **>malloc(count * sizeof(char *))
        cdef Py_ssize_t *lens = <Py_ssize_t *>malloc(count * sizeof(Py_ssize_t))
        if ptrs == NULL or lens == NULL:
            free(ptrs)
            free(lens)
            raise MemoryError()
        try:
            for k in range(count):
                ptrs[k] = PyUnicode_AsUTF8AndSize(keys[k], &n)
                lens[k] = n
            with nogil:
                for k in range(count):
                    rows[k] = self._search(<const unsigned char *>ptrs[k], lens[k])
        finally:
            free(ptrs)
            free(lens)
        return out
