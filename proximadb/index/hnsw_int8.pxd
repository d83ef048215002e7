# HNSWInt8Index, the base of the quantized HNSW kinds (int8 and binary: hnsw_int8.pyx; product
# quantization: hnsw_pq.pyx), and the table-lookup distance binary and PQ codes share.
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t

from proximadb.index._hnsw_graph cimport HnswGraphIndex, RowDistance


# The query as the code kernels take it: qt (int8 l2: q - lo; int8 dot/cosine: q * step; binary and
# PQ: a table of 256 floats per code byte) and bias (int8 dot/cosine: dot_offset - sum(q * lo); PQ
# dot/cosine: dot_offset; else 0), so that distance = bias - q8_dot(qt, code) (int8) or bias - the
# sum of the code bytes' table entries (table_distance); with the codes, the context of the graph
# walk's (_hnsw_graph.walk_graph) distance on these indexes.
ctypedef struct CodeQuery:
    const float *qt
    float bias
    const uint8_t *codes
    const float *step
    int dim
    int metric
    int nbytes              # table codes: code bytes looked up (binary ceil(dim / 8), PQ m)
    int64_t step_bytes      # table codes: bytes per row's code


cdef float table_distance(const void *ctx, const float *q, int32_t r) noexcept nogil


cdef class HNSWInt8Index(HnswGraphIndex):
    cdef double _oversampling
    cdef bint _rescore
    cdef int64_t _code_bytes    # bytes of one row's code
    cdef uint8_t *codes
    cdef float *lo
    cdef float *step
    cdef object _vectors        # float32 (n, dim), C-contiguous (the segment's memory map)
    cdef object _norms          # cosine: float32 (n,) norms of the rows of _vectors
    cdef const float *_vp
    cdef const float *_np

    cdef int64_t _query_floats(self) noexcept nogil
    cdef float _float_distance(self, const float *q, int32_t r) noexcept nogil
    cdef void _prepare_code_query(self, const float *q, float *qt, CodeQuery *cq, RowDistance *dist) noexcept nogil
    cdef int _encode(self, object vectors, int64_t m) except -1
    cdef cnp.ndarray _as_stored(self, object block)
    cdef int _set_vectors(self, object vectors) except -1
    cdef list _quantizer_arrays(self)
