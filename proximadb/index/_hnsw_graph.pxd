# The HNSW graph, its GIL-free walk and checks, and HnswGraphIndex, the base both HNSW kinds share
# (hnsw.pyx: float32 vectors, hnsw_int8.pyx: int8 codes); see _hnsw_graph.pyx. Its construction
# (insertion, repair) is _hnsw_build.pyx.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from proximadb.index._ann cimport ann_prefetch, ann_prefetch_span, ann_scratch
from proximadb.index._base cimport METRIC_L2, IndexRows, VectorIndex
from proximadb.index._kernels cimport dot_kernel, l2sq_kernel

cdef enum:
    MAX_LEVEL = 64


# The graph; the rows' ids, deletion flags, dimension and metric are the base's IndexRows.
ctypedef struct HnswGraph:
    int M
    int M0                  # level-0 degree, 2 * M
    int ef_construction
    int dim                 # floats per vector (rows.dim)
    double level_mult       # level multiplier 1 / ln(M)
    uint64_t rng_state      # splitmix64 state of the level generator
    char *level0            # level 0, one record per row: [count, M0 links] i32
    int64_t record_size     # bytes per level-0 record, (M0 + 1) * 4
    const float *vectors    # float32 row r at vectors + r * dim (hnsw.pyx: attached or owned; NULL: none)
    const float *inv_norms  # cosine: 1 / |row r| (vectors need not be normalised); NULL: all of unit length
    uint8_t *levels         # top level of each row
    int64_t *upper_offset   # offset of a row's upper block in upper_links (-1: level 0 only)
    int32_t *upper_links    # every row's upper levels, [count, M ids] per level, in row order
    int64_t upper_len       # int32 words used in upper_links
    int64_t upper_cap
    int32_t entry_point     # row the searches start from (-1: empty)
    int max_level
    uint8_t *row_locks      # per-row spinlocks during a parallel add or while shared (hnsw_shared.pyx), else NULL
    uint8_t entry_lock      # guards entry_point / max_level during a parallel add


cdef inline const float *row_vector(const HnswGraph *graph, int32_t r) noexcept nogil:
    return graph.vectors + <int64_t>r * graph.dim


cdef inline int32_t *links_of(const HnswGraph *graph, int32_t r, int level) noexcept nogil:
    if level == 0:
        return <int32_t *>(graph.level0 + <int64_t>r * graph.record_size)
    return graph.upper_links + graph.upper_offset[r] + <int64_t>(level - 1) * (graph.M + 1)


cdef inline float vector_distance(const IndexRows *rows, const HnswGraph *graph, const float *q,
                                  int32_t r) noexcept nogil:
    """The distance from a prepared query (normalised under cosine) to row r's float32 vector."""
    cdef const float *v = graph.vectors + <int64_t>r * graph.dim
    if rows.metric == METRIC_L2:
        return l2sq_kernel(q, v, rows.dim)
    if graph.inv_norms != NULL:
        return rows.dot_offset - dot_kernel(q, v, rows.dim) * graph.inv_norms[r]
    return rows.dot_offset - dot_kernel(q, v, rows.dim)


cdef inline float pair_distance(const IndexRows *rows, const HnswGraph *graph, int32_t a, int32_t b) noexcept nogil:
    """The distance between rows a and b (under cosine, of their directions)."""
    cdef const float *va = graph.vectors + <int64_t>a * graph.dim
    cdef const float *vb = graph.vectors + <int64_t>b * graph.dim
    if rows.metric == METRIC_L2:
        return l2sq_kernel(va, vb, rows.dim)
    if graph.inv_norms != NULL:
        return rows.dot_offset - dot_kernel(va, vb, rows.dim) * (graph.inv_norms[a] * graph.inv_norms[b])
    return rows.dot_offset - dot_kernel(va, vb, rows.dim)


cdef inline void prefetch_vector(const IndexRows *rows, const HnswGraph *graph, int32_t r) noexcept nogil:
    """Prefetch every cache line of row r's vector (rows are not line-aligned), and its norm."""
    ann_prefetch_span(row_vector(graph, r), rows.dim * 4)
    if graph.inv_norms != NULL:
        ann_prefetch(graph.inv_norms + r)


# How a search measures a row other than by its float32 vector (the float32 index's own measure,
# RecordVectors): fn(ctx, q, row), and where the row's data lies for
# prefetching (base + row * stride, nbytes long). The int8 index (hnsw_int8.pyx) measures codes.
ctypedef float (*row_distance_fn)(const void *ctx, const float *q, int32_t row) noexcept nogil

ctypedef struct RowDistance:
    row_distance_fn fn
    const void *ctx
    const char *base
    int64_t stride
    int64_t nbytes

# The walk is compiled once per measure (a fused type): RecordVectors, the float32 vectors the graph
# points at (graph.vectors, graph.inv_norms; no state: the walk gets a NULL pointer of this type), or a RowDistance.
ctypedef struct RecordVectors:
    char unused

ctypedef fused RowMeasure:
    RecordVectors
    RowDistance


# The walk on the float32 vectors (RecordVectors), for the build (_hnsw_build.pyx): the greedy descent
# from top_level to stop_level + 1, and the best-first search of one level (results in s.top).
cdef int32_t descend_vectors(const IndexRows *rows, const HnswGraph *graph, const float *q, int32_t cur,
                             int top_level, int stop_level) noexcept nogil
cdef int search_layer_vectors(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const float *q,
                              int32_t ep, int level, int ef, const uint8_t *allowed, bint filtering) noexcept nogil
cdef int64_t search_graph(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const float *q, int k, int ef,
                          const uint8_t *allowed, int64_t *out_ids, float *out_d) noexcept nogil
cdef int walk_graph(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const RowDistance *dist,
                    const float *q, int ef, const uint8_t *allowed) noexcept nogil
# What a breadth-first walk of the level-0 links reaches (seen: rows.n bytes, queue: rows.n int32).
cdef int64_t mark_from(const IndexRows *rows, const HnswGraph *graph, uint8_t *seen, int32_t *queue,
                       int32_t start) noexcept nogil
cdef int64_t reach_level0(const IndexRows *rows, const HnswGraph *graph, uint8_t *seen,
                          int32_t *queue) noexcept nogil
cdef int check_header(object file_format, object path, int64_t dim, int64_t metric, int64_t M, int64_t M0,
                      int64_t n, int64_t n_deleted, int64_t entry_point, int64_t max_level) except -1


cdef class HnswGraphIndex(VectorIndex):
    cdef HnswGraph graph
    cdef int _ef
    cdef bint _locks_kept  # row_locks stay (rows.cap of them) while searches share the graph with adds

    cdef int _init_graph(self, int M, int ef_construction) except -1
    cdef int _reserve_upper(self, int64_t need) except -1
    cdef int _restore_graph(self, int64_t n, int64_t n_deleted, int64_t upper_len, int64_t entry_point,
                            int64_t max_level, int64_t ef) except -1
    cdef object _reach(self)
