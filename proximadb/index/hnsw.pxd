# HNSWIndex, the HNSW graph over float32 vectors (hnsw.pyx); declared here so that _hnsw_grow.pyx
# can grow one (a compaction's merged segment) with its own insertion and repair.
cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t

from proximadb.index._hnsw_graph cimport HnswGraphIndex


cdef bint all_unit(const float *inv, int64_t n) noexcept nogil
cdef void set_inv_norms(const float *v, float *out, int64_t n, int dim) noexcept nogil


@cython.final
cdef class HNSWIndex(HnswGraphIndex):
    cdef bint _interleave  # _add_interleaved is running
    cdef public int64_t repaired  # rows repair_level0 linked back after adds (see _repair)
    cdef float *_own  # vectors the index owns (copied in by add), _own_cap rows of room; or NULL
    cdef int64_t _own_cap
    cdef object _kept  # the array graph.vectors points into when not _own (add copy=False, attach_vectors)
    cdef float *_inv  # cosine: 1 / |row| per row (rows.cap of room); else NULL
    cdef bint _unit  # cosine: every row is of unit length (all_unit), so graph.inv_norms is NULL
    cdef bint _keep  # add(copy=False) in progress
    cdef bint _external  # graph.vectors: rows of _kept, a caller's array holding each row before it is added
                         # (hnsw_shared.attach): an add copies nothing, it checks its rows are that array's next
    cdef bint _norms_stale  # cosine, loaded from a version-1 file: the norms come with attach_vectors
    cdef int _file_version  # of the file being loaded

    cdef void _check_unit(self, int64_t first) noexcept
    cdef int _own_room(self) except -1
    cdef int64_t _draw_levels(self, int64_t n0, int64_t m, const int32_t *which, int64_t upper) except -1
    cdef int _insert_parallel(self, cnp.ndarray todo, int nt) except -2
    cdef int _repair(self) except -2
