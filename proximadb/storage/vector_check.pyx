# cython: language_level=3, boundscheck=False, wraparound=False
"""The value check of vectors, in compiled code (the rule itself: ``validation.check_vectors``).

:func:`first_bad_row` reads a float32 matrix once, without the GIL, and reports the first row that
breaks the rule: a component that is not finite, an all-zero row under the cosine metric, or a
squared L2 norm (summed in double precision) above ``max_squared_norm`` otherwise. The caller
words the error; a clean batch costs one pass over its bytes and no temporary arrays (the numpy
form of the same rule made five, which cost more than the search itself for one query).
"""

from libc.math cimport isfinite

cdef enum:
    _OK = 0
    _NOT_FINITE = 1
    _ALL_ZERO = 2
    _NORM_OVER = 3

OK = _OK
NOT_FINITE = _NOT_FINITE
ALL_ZERO = _ALL_ZERO
NORM_OVER = _NORM_OVER


def first_bad_row(const float[:, ::1] vectors, bint cosine, double max_squared_norm):
    """(row, column, kind) of the first row breaking the rule, kind one of NOT_FINITE (column: the
    first bad component), ALL_ZERO (cosine only), NORM_OVER (not cosine); (-1, -1, OK) when every row
    passes. Rows are checked in order and, within a row, finiteness first."""
    cdef Py_ssize_t n = vectors.shape[0], d = vectors.shape[1], i, j
    cdef double acc, x
    cdef bint nonzero
    cdef Py_ssize_t row = -1, col = -1
    cdef int kind = _OK
    with nogil:
        for i in range(n):
            acc = 0.0
            nonzero = False
            for j in range(d):
                x = vectors[i, j]
                if not isfinite(x):
                    row, col, kind = i, j, _NOT_FINITE
                    break
                acc = acc + x * x
                if x != 0.0:
                    nonzero = True
            if kind != _OK:
                break
            if cosine:
                if not nonzero:
                    row, kind = i, _ALL_ZERO
                    break
            elif acc > max_squared_norm:
                row, kind = i, _NORM_OVER
                break
    return row, col, kind
