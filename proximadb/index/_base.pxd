# The core every vector index kind is built on (HNSWIndex, IVFIndex): see _base.pyx for what it owns
# and what a kind implements. Declared here so that the kinds' modules can subclass it and inline the
# helpers of their GIL-free search loops.
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

from proximadb.index._ann cimport *
from proximadb.index._kernels cimport dot_kernel, l2sq_kernel

cdef enum:
    MAX_POOL = 16       # scratch blocks kept per index (and threads per batch search)

cdef enum:
    METRIC_L2 = 0
    METRIC_COSINE = 1
    METRIC_DOT = 2


# What every kind keeps per row (the external id and the deletion flag) and how rows compare.
ctypedef struct IndexRows:
    int dim
    int metric
    float dot_offset        # cosine: 1 - dot, dot: 0 - dot
    int64_t n            # rows, deleted included
    int64_t cap          # rows the arrays below (and the kind's per-row arrays) have room for
    int64_t *ids
    uint8_t *deleted
    int64_t n_deleted
    int64_t admit_below     # a search returns rows below this only (INT64_MAX; a snapshot's bound, hnsw_shared.pyx)


cdef inline float distance(const IndexRows *rows, const float *a, const float *b) noexcept nogil:
    """The index's distance between two stored (or prepared) vectors; lower is better."""
    if rows.metric == METRIC_L2:
        return l2sq_kernel(a, b, rows.dim)
    return rows.dot_offset - dot_kernel(a, b, rows.dim)


cdef inline const float *prepare_query(const IndexRows *rows, ann_scratch *s, const float *q) noexcept nogil:
    """The query as searched: a normalised copy under cosine. NULL when out of memory."""
    if rows.metric != METRIC_COSINE:
        return q
    if ann_scratch_qbuf(s, rows.dim) < 0:
        return NULL
    memcpy(s.qbuf, q, rows.dim * sizeof(float))
    ann_normalize(s.qbuf, rows.dim)
    return s.qbuf


cdef inline void offer(ann_heap *top, int k, float d, int32_t row) noexcept nogil:
    """Keep row in the bounded max-heap top (capacity reserved above k) if it is among the k best."""
    if top.n < k:
        ann_maxheap_push(top, d, row)
    elif d < top.a[0].d:
        ann_maxheap_replace_top(top, d, row)


cdef inline int64_t write_results(const IndexRows *rows, ann_scratch *s, int k, int64_t *out_ids,
                                  float *out_d) noexcept nogil:
    """Move the k best rows of s.top to the outputs as external ids, best first; returns how many
    (-1 when out of memory)."""
    cdef int64_t i, r
    while s.top.n > k:
        ann_maxheap_pop(&s.top)
    r = s.top.n
    if ann_scratch_work(s, r) < 0:
        return -1
    ann_maxheap_drain_sorted(&s.top, s.work)
    for i in range(r):
        out_ids[i] = rows.ids[s.work[i].id]
        out_d[i] = s.work[i].d
    return r


cdef inline cnp.ndarray view_array(void *ptr, cnp.npy_intp count, int typenum):
    """A numpy array over index memory, for one save/load call (it does not own it)."""
    return cnp.PyArray_SimpleNewFromData(1, &count, typenum, ptr)


cdef inline cnp.ndarray copy_array(const void *ptr, cnp.npy_intp count, int typenum):
    """A new array holding a copy of count items of index memory, copied with the GIL held: numpy's
    own copy (view_array(...).copy()) releases the GIL for large arrays, letting an add in another
    thread reallocate (free) the memory it is reading."""
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, &count, typenum, 0)
    if count:
        memcpy(cnp.PyArray_DATA(out), ptr, count * cnp.PyArray_ITEMSIZE(out))
    return out


cdef class VectorIndex:
    cdef IndexRows rows
    cdef uint64_t _seed
    cdef ann_idmap _idmap
    cdef ann_scratch *_pool[MAX_POOL]
    cdef int _pool_n
    cdef int _readers
    cdef bint _writing
    cdef int _shared_readers  # of _readers: searches of a snapshot (hnsw_shared.search), which an add_shared lets in
    cdef bint _adding_shared  # an add that searches of a snapshot may run beside: nothing may grow (NoRoomError)
    cdef int64_t _last_measured  # rows the last single-query walk measured (a graph kind's diagnostic)

    # -- owned by the base --
    cdef int _init_rows(self, int dim, str metric, object seed) except -1
    cdef int _reserve(self, int64_t need) except -1
    cdef cnp.ndarray _as_matrix(self, object vectors, str what)
    cdef ann_scratch *_take_scratch(self) except NULL
    cdef void _give_scratch(self, ann_scratch *s) noexcept
    cdef int _enter_write(self, str call) except -1
    cdef int _enter_read(self) except -1
    cdef bint _few_rows(self, Py_ssize_t k, int effort, object exact)
    cdef tuple _prepare_filter(self, object filter_ids, object exact, int k, int effort, object allowed_count)
    cdef int _add(self, object ids, object vectors, int threads) except -1
    cdef tuple _search(self, object query, Py_ssize_t k, object effort, object filter_ids, object exact,
                       object allowed_count)
    cdef tuple _search_batch(self, object queries, Py_ssize_t k, object effort, object filter_ids,
                             object exact, object threads, object allowed_count)
    cdef int64_t _search_exact(self, ann_scratch *s, const float *q, int k, const int32_t *candidates,
                               int64_t n_candidates, int64_t *out_ids, float *out_d) noexcept nogil

    # -- implemented by each kind --
    cdef int _grow(self, int64_t old_cap, int64_t cap) except -1
    cdef int _check_searchable(self) except -1
    cdef int _search_effort(self, Py_ssize_t k, object effort) except -1
    cdef bint _prefer_exact(self, int64_t n_allowed, int k, int effort) except -1
    cdef cnp.ndarray _before_add(self, cnp.ndarray vectors)
    cdef int _add_rows(self, int64_t n0, cnp.ndarray vectors, int threads) except -2
    cdef int64_t _search_one(self, ann_scratch *s, const float *q, int k, int effort, const uint8_t *allowed,
                             int64_t *out_ids, float *out_d) noexcept nogil
    cdef void _row_distances(self, const float *q, const int32_t *rows, int64_t n, float *out) noexcept nogil
    cdef tuple _header_fields(self)
    cdef list _body_arrays(self)
