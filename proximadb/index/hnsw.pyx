"""HNSW approximate nearest-neighbour index (Malkov & Yashunin), GIL-free build and search.

Rows are numbered in insertion order (``reorder()`` renumbers them breadth-
first for memory locality). Per row the index keeps one level-0 record, its
link list ``[count, M0 ids]`` followed by its float32 vector (normalised for
``cosine``), so that expanding a node finds its links next to the vector just
read; plus its int64 external id, its top level and a deletion flag. Rows
above level 0 own a block of ``level * (M + 1)`` int32 in one pool
(``[count, M ids]`` per level), in row order in the file. Levels
come from a splitmix64 generator seeded by ``seed``, so a build is identical
for a given seed, data and insertion order. Neighbours are chosen with the
paper's heuristic (hnswlib's ``getNeighborsByHeuristic2``), so recall matches
hnswlib at the same ``M`` / ``ef_construction`` / ``ef``.

Distances: ``l2`` squared Euclidean, ``cosine`` 1 - cos (vectors and queries
normalised), ``dot`` the negated inner product. Lower is better everywhere.

Filtered search admits only allowed rows to the result set while traversing
the whole graph; when the allowed set is small (see ``_use_exact``) an exact
scan of the allowed rows is cheaper and always exact. Deleted rows are
traversed but never returned.

``add(..., threads=n)`` inserts in parallel with per-row spinlocks (never two
held at once); only the single-threaded build is deterministic.

Threads: searches may run concurrently (each takes its own scratch memory);
``add``/``mark_deleted`` must not run while a search on the same index is in
progress (that raises RuntimeError rather than corrupting memory).

File format (all integers little-endian), version 1::

    offset size  field
    0      8     magic b"PXHNSW\\x00\\x01"
    8      4     u32 format version (1)
    12     4     u32 header size (96)
    16     4     u32 dim
    20     4     u32 metric (0 l2, 1 cosine, 2 dot)
    24     4     u32 M
    28     4     u32 M0 (level-0 degree, 2*M)
    32     4     u32 ef_construction
    36     4     u32 ef (default search ef)
    40     8     u64 seed
    48     8     u64 generator state (so incremental inserts continue the sequence)
    56     8     u64 n (rows, deleted included)
    64     8     u64 n_deleted
    72     8     u64 upper pool length (int32 words) = sum(levels) * (M + 1)
    80     4     i32 entry point row (-1 if empty)
    84     4     i32 max level
    88     4     u32 CRC32C of bytes [0, 88)
    92     4     zero
    96           body:  ids i64[n] | vectors f32[n*dim] | links0 i32[n*(M0+1)]
                        | upper pool i32[upper len] | levels u8[n] | deleted u8[n]
    end-8  4     u32 CRC32C of the body
    end-4  4     b"PXHE"

The header/CRC/end framing, ``save`` and ``load`` are the base's
(``proximadb/index/_base.pyx``); ``load`` then checks the graph's structure
(levels, entry point, every link in range).
"""

cimport cython
cimport numpy as cnp
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, log
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from proximadb.index._ann cimport *
from proximadb.index._kernels cimport kernel_level, setup_distance_kernels
from proximadb.index._base cimport (
    METRIC_COSINE,
    MAX_POOL,
    IndexRows,
    VectorIndex,
    distance,
    prepare_query,
    view_array,
    write_results,
)

import os
import struct

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index._base import METRICS, IndexFileFormat

cnp.import_array()
setup_distance_kernels(-1)

cdef enum:
    MAX_LEVEL = 64

FILE_FORMAT = IndexFileFormat("HNSW", b"PXHNSW\x00\x01", 1, struct.Struct("<8sIIIIIIII QQQQQ ii"), b"PXHE")
MAGIC = FILE_FORMAT.magic
END_MAGIC = FILE_FORMAT.end_magic
FORMAT_VERSION = FILE_FORMAT.version


# The graph; the rows' ids, deletion flags, dimension and metric are the base's IndexRows.
ctypedef struct HnswGraph:
    int M
    int M0                  # level-0 degree, 2 * M
    int ef_construction
    double level_mult       # level multiplier 1 / ln(M)
    uint64_t rng_state      # splitmix64 state of the level generator
    char *level0            # level 0, one record per row: [count, M0 links] i32 then the f32 vector
    int64_t record_size     # bytes per level-0 record
    int64_t vector_offset   # offset of the vector in a record, (M0 + 1) * 4
    uint8_t *levels         # top level of each row
    int64_t *upper_offset   # offset of a row's upper block in upper_links (-1: level 0 only)
    int32_t *upper_links    # every row's upper levels, [count, M ids] per level, in row order
    int64_t upper_len       # int32 words used in upper_links
    int64_t upper_cap
    int32_t entry_point     # row the searches start from (-1: empty)
    int max_level
    uint8_t *row_locks      # per-row spinlocks during a parallel add, else NULL
    uint8_t entry_lock      # guards entry_point / max_level during a parallel add


# ---------------------------------------------------------------- C core --

cdef inline const float *row_vector(const HnswGraph *graph, int32_t r) noexcept nogil:
    return <const float *>(graph.level0 + <int64_t>r * graph.record_size + graph.vector_offset)


cdef inline int32_t *links_of(const HnswGraph *graph, int32_t r, int level) noexcept nogil:
    if level == 0:
        return <int32_t *>(graph.level0 + <int64_t>r * graph.record_size)
    return graph.upper_links + graph.upper_offset[r] + <int64_t>(level - 1) * (graph.M + 1)


cdef inline void prefetch_vector(const IndexRows *rows, const HnswGraph *graph, int32_t r) noexcept nogil:
    """Prefetch every cache line of row r's vector (rows are not line-aligned)."""
    cdef const char *p = <const char *>row_vector(graph, r)
    cdef const char *end = p + rows.dim * 4
    while p < end:
        ann_prefetch(p)
        p += 64
    ann_prefetch(end - 1)


cdef int32_t greedy_descend(const IndexRows *rows, const HnswGraph *graph, const float *q, int32_t cur, int top_level,
                            int stop_level) noexcept nogil:
    """Greedy walk from top_level down to stop_level + 1; returns the closest row found."""
    cdef float curd = distance(rows, q, row_vector(graph, cur))
    cdef float d
    cdef int lc, j, cnt
    cdef int32_t *ll
    cdef int32_t c
    cdef bint changed
    for lc in range(top_level, stop_level, -1):
        changed = True
        while changed:
            changed = False
            c = cur
            if graph.row_locks != NULL:
                ann_spin_lock(graph.row_locks + c)
            ll = links_of(graph, c, lc)
            cnt = ll[0]
            for j in range(1, cnt + 1):
                prefetch_vector(rows, graph, ll[j])
            for j in range(1, cnt + 1):
                d = distance(rows, q, row_vector(graph, ll[j]))
                if d < curd:
                    curd = d
                    cur = ll[j]
                    changed = True
            if graph.row_locks != NULL:
                ann_spin_unlock(graph.row_locks + c)
    return cur


cdef int search_layer(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const float *q, int32_t ep,
                      int level, int ef, const uint8_t *allowed, bint filtering) noexcept nogil:
    """Best-first search of one layer from ep; leaves the ef best admitted rows in s.top
    (a max-heap). With filtering, deleted and not-allowed rows are traversed but not
    admitted. Returns 0, or -1 when out of memory."""
    cdef ann_heap *top = &s.top
    cdef ann_heap *cand = &s.cand
    cdef uint16_t *vis
    cdef uint16_t epoch
    cdef int32_t *ll
    cdef int32_t *batch
    cdef int32_t c, nb
    cdef int j, cnt, nb_n
    cdef float d, lb, cd
    if ann_visit_begin(s, rows.n) < 0 or ann_scratch_ids(s, graph.M0 + 1) < 0:
        return -1
    vis = s.vis
    epoch = s.epoch
    batch = s.ids
    top.n = 0
    cand.n = 0
    d = distance(rows, q, row_vector(graph, ep))
    lb = INFINITY
    if not filtering or (not rows.deleted[ep] and (allowed == NULL or allowed[ep])):
        if ann_maxheap_push(top, d, ep) < 0:
            return -1
        lb = d
    if ann_minheap_push(cand, d, ep) < 0:
        return -1
    vis[ep] = epoch
    while cand.n > 0:
        cd = cand.a[0].d
        c = cand.a[0].id
        if cd > lb and (top.n >= ef or not filtering):
            break
        ann_minheap_pop(cand)
        if graph.row_locks != NULL:
            ann_spin_lock(graph.row_locks + c)
        ll = links_of(graph, c, level)
        cnt = ll[0]
        # Gather the unvisited neighbours first and prefetch their vectors, so
        # the memory loads overlap instead of stalling one distance at a time.
        nb_n = 0
        for j in range(1, cnt + 1):
            nb = ll[j]
            if vis[nb] != epoch:
                vis[nb] = epoch
                batch[nb_n] = nb
                nb_n += 1
                prefetch_vector(rows, graph, nb)
        if graph.row_locks != NULL:
            ann_spin_unlock(graph.row_locks + c)
        for j in range(nb_n):
            nb = batch[j]
            d = distance(rows, q, row_vector(graph, nb))
            if top.n < ef or d < lb:
                if ann_minheap_push(cand, d, nb) < 0:
                    return -1
                ann_prefetch(links_of(graph, cand.a[0].id, level))
                if not filtering or (not rows.deleted[nb] and (allowed == NULL or allowed[nb])):
                    if top.n < ef:
                        if ann_maxheap_push(top, d, nb) < 0:
                            return -1
                    else:
                        ann_maxheap_replace_top(top, d, nb)
                    lb = top.a[0].d
    return 0


cdef int select_heuristic(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, ann_heap *h,
                          int mmax) noexcept nogil:
    """Keep at most mmax of the candidates in max-heap h by the HNSW heuristic: a
    candidate is dropped when it is closer to an already kept one than to the base.
    On return h.a[0:h.n] holds the kept rows, closest first (no longer a heap)."""
    cdef int64_t n = h.n
    cdef int64_t i, t, r = 0
    cdef ann_pair c
    cdef bint good
    cdef const float *cv
    if n < mmax:
        if ann_scratch_work(s, n) < 0:
            return -1
        ann_maxheap_drain_sorted(h, s.work)
        memcpy(h.a, s.work, n * sizeof(ann_pair))
        h.n = n
        return 0
    if ann_scratch_work(s, n) < 0:
        return -1
    ann_maxheap_drain_sorted(h, s.work)
    for i in range(n):
        c = s.work[i]
        cv = row_vector(graph, c.id)
        good = True
        for t in range(r):
            if distance(rows, cv, row_vector(graph, h.a[t].id)) < c.d:
                good = False
                break
        if good:
            h.a[r] = c
            r += 1
            if r >= mmax:
                break
    h.n = r
    return 0


cdef int connect_new(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row, int level,
                     int32_t *next_ep) noexcept nogil:
    """Link row at level to the heuristic pick of s.top and the picks back to row."""
    cdef int32_t *ll
    cdef int32_t nb
    cdef int i, r, rc
    cdef int mmax = graph.M0 if level == 0 else graph.M
    if select_heuristic(rows, graph, s, &s.top, graph.M) < 0:
        return -1
    r = <int>s.top.n
    ll = links_of(graph, row, level)
    if graph.row_locks != NULL:
        ann_spin_lock(graph.row_locks + row)
    ll[0] = r
    for i in range(r):
        ll[1 + i] = s.top.a[i].id
    if graph.row_locks != NULL:
        ann_spin_unlock(graph.row_locks + row)
    next_ep[0] = s.top.a[0].id
    # Only this thread writes row's lists, so reading ll here needs no lock; each
    # neighbour's list is changed under its own lock (never two locks held).
    for i in range(r):
        nb = ll[1 + i]
        if graph.row_locks != NULL:
            ann_spin_lock(graph.row_locks + nb)
        rc = link_back(rows, graph, s, nb, row, level, mmax)
        if graph.row_locks != NULL:
            ann_spin_unlock(graph.row_locks + nb)
        if rc < 0:
            return -1
    return 0


cdef int link_back(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t nb, int32_t row, int level,
                   int mmax) noexcept nogil:
    """Add row to nb's list at level; a full list is re-pruned by the heuristic."""
    cdef int32_t *nl = links_of(graph, nb, level)
    cdef int j, cnt = nl[0]
    cdef ann_heap *tmp = &s.tmp
    cdef const float *nv
    if cnt < mmax:
        nl[1 + cnt] = row
        nl[0] = cnt + 1
        return 0
    nv = row_vector(graph, nb)
    tmp.n = 0
    if ann_maxheap_push(tmp, distance(rows, nv, row_vector(graph, row)), row) < 0:
        return -1
    for j in range(1, cnt + 1):
        if ann_maxheap_push(tmp, distance(rows, nv, row_vector(graph, nl[j])), nl[j]) < 0:
            return -1
    if select_heuristic(rows, graph, s, tmp, mmax) < 0:
        return -1
    nl[0] = <int32_t>tmp.n
    for j in range(tmp.n):
        nl[1 + j] = tmp.a[j].id
    return 0


cdef int insert_row(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row) noexcept nogil:
    """Insert row (vector, level and zeroed link lists already in place; rows.n > row)."""
    cdef const float *q = row_vector(graph, row)
    cdef int level = graph.levels[row]
    cdef int lc, maxlevel
    cdef int32_t cur
    if graph.row_locks != NULL:
        ann_spin_lock(&graph.entry_lock)
    cur = graph.entry_point
    maxlevel = graph.max_level
    if graph.row_locks != NULL:
        ann_spin_unlock(&graph.entry_lock)
    if cur < 0:
        graph.entry_point = row
        graph.max_level = level
        return 0
    if level < maxlevel:
        cur = greedy_descend(rows, graph, q, cur, maxlevel, level)
    for lc in range(min(level, maxlevel), -1, -1):
        if search_layer(rows, graph, s, q, cur, lc, graph.ef_construction, NULL, rows.n_deleted > 0) < 0:
            return -1
        if s.top.n == 0:
            continue
        if connect_new(rows, graph, s, row, lc, &cur) < 0:
            return -1
    if level > maxlevel:
        if graph.row_locks != NULL:
            ann_spin_lock(&graph.entry_lock)
        if level > graph.max_level:
            graph.entry_point = row
            graph.max_level = level
        if graph.row_locks != NULL:
            ann_spin_unlock(&graph.entry_lock)
    return 0


cdef int64_t search_graph(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const float *q, int k, int ef,
                          const uint8_t *allowed, int64_t *out_ids, float *out_d) noexcept nogil:
    cdef int32_t cur
    q = prepare_query(rows, s, q)
    if q == NULL:
        return -1
    if graph.entry_point < 0:
        return 0
    cur = graph.entry_point
    if graph.max_level > 0:
        cur = greedy_descend(rows, graph, q, cur, graph.max_level, 0)
    if search_layer(rows, graph, s, q, cur, 0, max(ef, k), allowed, allowed != NULL or rows.n_deleted > 0) < 0:
        return -1
    return write_results(rows, s, k, out_ids, out_d)


cdef int validate_links(const IndexRows *rows, const HnswGraph *graph) noexcept nogil:
    """0 when every link list is within its degree and every link names a row; else
    1 (level 0) or 2 (upper levels)."""
    cdef int64_t r, j, lc
    cdef int32_t *ll
    for r in range(rows.n):
        ll = links_of(graph, <int32_t>r, 0)
        if ll[0] < 0 or ll[0] > graph.M0:
            return 1
        for j in range(1, ll[0] + 1):
            if ll[j] < 0 or ll[j] >= rows.n:
                return 1
        for lc in range(1, graph.levels[r] + 1):
            ll = links_of(graph, <int32_t>r, <int>lc)
            if ll[0] < 0 or ll[0] > graph.M:
                return 2
            for j in range(1, ll[0] + 1):
                if ll[j] < 0 or ll[j] >= rows.n or graph.levels[ll[j]] < lc:
                    return 2
    return 0


cdef inline bint use_exact(int64_t n_allowed, int64_t n_live, int ef, int M0) noexcept:
    """Whether an exact scan of the allowed rows beats a filtered graph search.

    A filtered traversal expands about ef / selectivity nodes and computes about
    M0 / 2 new distances per expansion, i.e. ef * M0 * n_live / (2 * n_allowed);
    the scan computes n_allowed. The scan wins when n_allowed**2 is below
    ef * M0 * n_live / 2: under 5% of 390k rows at ef=64, M=16, and at most a
    few thousand rows on small indexes.
    """
    if n_allowed <= ef:
        return True
    return n_allowed * n_allowed * 2 <= <int64_t>ef * M0 * n_live


@cython.final
cdef class HNSWIndex(VectorIndex):
    """Hierarchical navigable small-world graph index over float32 vectors.

    ``HNSWIndex(dim, metric="l2", M=16, ef_construction=200, seed=0, max_elements=0)``;
    ``max_elements`` only pre-sizes the storage (it grows as needed).
    """

    FILE_FORMAT = FILE_FORMAT

    cdef HnswGraph graph
    cdef int _ef

    def __cinit__(self) -> None:
        memset(&self.graph, 0, sizeof(HnswGraph))
        self.graph.entry_point = -1

    def __init__(self, int dim, str metric="l2", int M=16, int ef_construction=200, seed: int = 0,
                 max_elements: int = 0) -> None:
        self._init_rows(dim, metric, seed)
        if M < 2 or M > 2048:
            raise ValidationError(f"M must be in [2, 2048], got {M}")
        if ef_construction < 1:
            raise ValidationError(f"ef_construction must be >= 1, got {ef_construction}")
        self.graph.M = M
        self.graph.M0 = 2 * M
        # Links and vector of a row side by side (as hnswlib does): expanding a node
        # whose distance was just computed then finds its links already cached.
        self.graph.vector_offset = (self.graph.M0 + 1) * 4
        self.graph.record_size = self.graph.vector_offset + dim * 4
        self.graph.ef_construction = max(ef_construction, M)
        self.graph.level_mult = 1.0 / log(<double>M)
        self.graph.rng_state = self._seed
        self._ef = 64
        if max_elements > 0:
            self._reserve(int(max_elements))

    def __dealloc__(self) -> None:
        free(self.graph.level0)
        free(self.graph.levels)
        free(self.graph.upper_offset)
        free(self.graph.upper_links)

    # -- properties --

    @property
    def M(self) -> int:
        return self.graph.M

    @property
    def ef_construction(self) -> int:
        return self.graph.ef_construction

    @property
    def ef(self) -> int:
        """Default search ef (used when search() gets ef=None); at least k is always used."""
        return self._ef

    @ef.setter
    def ef(self, int value) -> None:
        if value < 1:
            raise ValidationError(f"ef must be >= 1, got {value}")
        self._ef = value

    @property
    def max_level(self) -> int:
        return self.graph.max_level

    def __repr__(self) -> str:
        return (f"HNSWIndex(dim={self.rows.dim}, metric={self.metric!r}, M={self.graph.M}, "
                f"ef_construction={self.graph.ef_construction}, seed={self._seed}, len={len(self)})")

    def memory_usage(self) -> dict[str, int]:
        """Bytes held per part, at the current size (not capacity)."""
        cdef int64_t n = self.rows.n
        return {
            "vectors": n * self.rows.dim * 4,
            "links_level0": n * (self.graph.M0 + 1) * 4,
            "links_upper": self.graph.upper_len * 4 + n * 8,
            "ids": n * 8 + self._idmap.cap * 12,
            "flags": n * 2,
        }

    # -- the kind's part of the base --

    cdef int _grow(self, int64_t old_cap, int64_t cap) except -1:
        cdef void *p = realloc(self.graph.level0, cap * self.graph.record_size)
        if p == NULL:
            raise MemoryError()
        self.graph.level0 = <char *>p
        memset(self.graph.level0 + old_cap * self.graph.record_size, 0, (cap - old_cap) * self.graph.record_size)
        p = realloc(self.graph.levels, cap)
        if p == NULL:
            raise MemoryError()
        self.graph.levels = <uint8_t *>p
        p = realloc(self.graph.upper_offset, cap * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self.graph.upper_offset = <int64_t *>p
        return 0

    cdef int _reserve_upper(self, int64_t need) except -1:
        cdef int64_t cap = self.graph.upper_cap
        cdef void *p
        if need <= cap:
            return 0
        cap = max(need, cap + cap // 2, 4096)
        p = realloc(self.graph.upper_links, cap * sizeof(int32_t))
        if p == NULL:
            raise MemoryError()
        self.graph.upper_links = <int32_t *>p
        self.graph.upper_cap = cap
        return 0

    cdef int _search_effort(self, Py_ssize_t k, object ef) except -1:
        cdef int efv = self._ef if ef is None else <int>ef
        if k < 1 or efv < 1:
            raise ValidationError("k and ef must be >= 1")
        return efv

    cdef bint _prefer_exact(self, int64_t n_allowed, int k, int ef) except -1:
        return use_exact(n_allowed, self.rows.n - self.rows.n_deleted, max(ef, k), self.graph.M0)

    cdef int64_t _search_one(self, ann_scratch *s, const float *q, int k, int ef, const uint8_t *allowed,
                             int64_t *out_ids, float *out_d) noexcept nogil:
        return search_graph(&self.rows, &self.graph, s, q, k, ef, allowed, out_ids, out_d)

    cdef void _row_distances(self, const float *q, const int32_t *rows, int64_t n, float *out) noexcept nogil:
        cdef int64_t j
        for j in range(n):
            if j + 4 < n:
                prefetch_vector(&self.rows, &self.graph, rows[j + 4])
            out[j] = distance(&self.rows, q, row_vector(&self.graph, rows[j]))

    cdef int _add_rows(self, int64_t n0, cnp.ndarray vectors, int threads) except -2:
        cdef int64_t m = vectors.shape[0]
        cdef int64_t i, upper = self.graph.upper_len
        cdef int dim = self.rows.dim
        cdef int lvl, rc = 0
        cdef const float *xp = <const float *>cnp.PyArray_DATA(vectors)
        cdef ann_scratch *s
        cdef ann_scratch *scr[MAX_POOL]
        cdef int t, nt = threads if threads > 0 else (os.cpu_count() or 1)
        cdef int64_t start, end = n0 + m
        cdef int failed = 0
        for i in range(m):
            memcpy(<float *>row_vector(&self.graph, <int32_t>(n0 + i)), xp + i * dim, dim * sizeof(float))
            if self.rows.metric == METRIC_COSINE:
                ann_normalize(<float *>row_vector(&self.graph, <int32_t>(n0 + i)), dim)
            lvl = <int>(-log(ann_rng_unit(&self.graph.rng_state)) * self.graph.level_mult)
            lvl = min(lvl, MAX_LEVEL)
            self.graph.levels[n0 + i] = <uint8_t>lvl
            if lvl > 0:
                self.graph.upper_offset[n0 + i] = upper
                upper += <int64_t>lvl * (self.graph.M + 1)
            else:
                self.graph.upper_offset[n0 + i] = -1
        self._reserve_upper(upper)
        memset(self.graph.upper_links + self.graph.upper_len, 0, (upper - self.graph.upper_len) * sizeof(int32_t))
        self.graph.upper_len = upper
        nt = min(nt, MAX_POOL)
        if nt <= 1 or m < 2 * nt:
            s = self._take_scratch()
            with nogil:
                for i in range(m):
                    self.rows.n = n0 + i + 1
                    if insert_row(&self.rows, &self.graph, s, <int32_t>(n0 + i)) < 0:
                        rc = -1
                        break
            self._give_scratch(s)
            return rc
        self.graph.row_locks = <uint8_t *>calloc(end, 1)
        if self.graph.row_locks == NULL:
            raise MemoryError()
        for t in range(nt):
            scr[t] = self._take_scratch()
        with nogil:
            start = n0
            if self.graph.entry_point < 0:
                self.rows.n = n0 + 1
                rc = insert_row(&self.rows, &self.graph, scr[0], <int32_t>n0)
                start = n0 + 1
            # Every new row is visible (vector, level, empty lists) but unreachable
            # until its own insert links it in.
            self.rows.n = end
            for i in prange(start, end, num_threads=nt, schedule="dynamic", chunksize=16):
                if insert_row(&self.rows, &self.graph, scr[threadid()], <int32_t>i) < 0:
                    failed += 1
        for t in range(nt):
            self._give_scratch(scr[t])
        free(self.graph.row_locks)
        self.graph.row_locks = NULL
        return -1 if failed or rc < 0 else 0

    # -- public API --

    def add(self, ids: object, vectors: object, int threads=1) -> None:
        """Insert vectors under int64 ids. An id that is live already is refused;
        re-adding a deleted id stores a new row for it.

        threads > 1 inserts in parallel (per-node spinlocks, as hnswlib's
        num_threads); the graph then depends on thread timing, so only the default
        threads=1 build is deterministic for a seed. threads=0 means all cores.
        """
        self._add(ids, vectors, threads)

    def search(self, query: object, Py_ssize_t k=10, ef: int | None = None, filter_ids: object = None,
               exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest live rows to query, best first: (ids int64, distances float32).

        filter_ids: allowed ids (int64 array), or a uint8/bool bitmap over internal rows
        (length n_rows). exact: None picks graph or exact scan by the filter's size;
        True/False forces it. Fewer than k results only when fewer rows are allowed.
        """
        return self._search(query, k, ef, filter_ids, exact)

    def search_batch(self, queries: object, Py_ssize_t k=10, ef: int | None = None, filter_ids: object = None,
                     exact: bool | None = None, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """search() for each row of queries on `threads` OpenMP threads (default: all cores).
        Returns (ids (m, k), distances (m, k)); missing results are id -1, distance inf."""
        return self._search_batch(queries, k, ef, filter_ids, exact, threads)

    def reorder(self) -> None:
        """Renumber the rows in breadth-first order of the level-0 graph (from the
        entry point), so that graph neighbours sit close together in memory and a
        search touches fewer cache lines and pages. Results are unchanged; ids are
        external, so only bitmaps over internal rows (see ``ids``) change meaning.
        Worth calling once after a bulk build; O(n * M)."""
        cdef int64_t n = self.rows.n
        cdef int64_t i, j, head = 0, tail = 0, up = 0, cnt, nrec
        cdef int32_t r, old
        cdef int32_t *perm
        cdef int32_t *inv
        cdef int32_t *ll
        cdef int32_t *src
        cdef char *block
        cdef int32_t *upper_links
        cdef int64_t *ids
        cdef uint8_t *levels
        cdef uint8_t *deleted
        cdef int64_t *upper_offset
        if n < 2:
            return
        self._enter_write("reorder")
        try:
            perm = <int32_t *>malloc(n * sizeof(int32_t))
            inv = <int32_t *>malloc(n * sizeof(int32_t))
            block = <char *>malloc(self.rows.cap * self.graph.record_size)
            upper_links = <int32_t *>malloc(max(self.graph.upper_cap, 1) * sizeof(int32_t))
            ids = <int64_t *>malloc(self.rows.cap * sizeof(int64_t))
            levels = <uint8_t *>malloc(self.rows.cap)
            deleted = <uint8_t *>calloc(self.rows.cap, 1)
            upper_offset = <int64_t *>malloc(self.rows.cap * sizeof(int64_t))
            if not (perm and inv and block and upper_links and ids and levels and deleted and upper_offset):
                free(perm); free(inv); free(block); free(upper_links)
                free(ids); free(levels); free(deleted); free(upper_offset)
                raise MemoryError()
            with nogil:
                for i in range(n):
                    inv[i] = -1
                # Breadth-first from the entry point; rows it cannot reach keep their order at the end.
                perm[tail] = self.graph.entry_point
                inv[self.graph.entry_point] = 0
                tail += 1
                i = 0
                while True:
                    while head < tail:
                        ll = links_of(&self.graph, perm[head], 0)
                        head += 1
                        for j in range(1, ll[0] + 1):
                            if inv[ll[j]] < 0:
                                inv[ll[j]] = <int32_t>tail
                                perm[tail] = ll[j]
                                tail += 1
                    while i < n and inv[i] >= 0:
                        i += 1
                    if i >= n:
                        break
                    inv[i] = <int32_t>tail
                    perm[tail] = <int32_t>i
                    tail += 1
                memset(block + n * self.graph.record_size, 0, (self.rows.cap - n) * self.graph.record_size)
                for r in range(n):
                    old = perm[r]
                    memcpy(block + r * self.graph.record_size, self.graph.level0 + old * self.graph.record_size,
                           self.graph.record_size)
                    ll = <int32_t *>(block + r * self.graph.record_size)
                    for j in range(1, ll[0] + 1):
                        ll[j] = inv[ll[j]]
                    ids[r] = self.rows.ids[old]
                    levels[r] = self.graph.levels[old]
                    deleted[r] = self.rows.deleted[old]
                    if levels[r] == 0:
                        upper_offset[r] = -1
                        continue
                    upper_offset[r] = up
                    nrec = <int64_t>levels[r] * (self.graph.M + 1)
                    src = self.graph.upper_links + self.graph.upper_offset[old]
                    for j in range(nrec):
                        upper_links[up + j] = src[j]
                    for cnt in range(levels[r]):
                        ll = upper_links + up + cnt * (self.graph.M + 1)
                        for j in range(1, ll[0] + 1):
                            ll[j] = inv[ll[j]]
                    up += nrec
                for i in range(self._idmap.cap):
                    if self._idmap.rows[i] >= 0:
                        self._idmap.rows[i] = inv[self._idmap.rows[i]]
                self.graph.entry_point = inv[self.graph.entry_point]
            free(self.graph.level0); free(self.graph.upper_links); free(self.rows.ids)
            free(self.graph.levels); free(self.rows.deleted); free(self.graph.upper_offset)
            self.graph.level0 = block
            self.graph.upper_links = upper_links
            self.rows.ids = ids
            self.graph.levels = levels
            self.rows.deleted = deleted
            self.graph.upper_offset = upper_offset
            free(perm)
            free(inv)
        finally:
            self._writing = False


    # -- persistence (framing: the base's save/load) --

    cdef tuple _header_fields(self):
        return (self.rows.dim, self.rows.metric, self.graph.M, self.graph.M0, self.graph.ef_construction, self._ef,
                self._seed, self.graph.rng_state,
                self.rows.n, self.rows.n_deleted, self.graph.upper_len, self.graph.entry_point, self.graph.max_level)

    cdef list _body_arrays(self):
        cdef int64_t n = self.rows.n
        cdef int64_t size = self.graph.record_size
        blocks = view_array(self.graph.level0, n * size, cnp.NPY_UINT8).reshape(n, size)
        return [
            view_array(self.rows.ids, n, cnp.NPY_INT64),
            blocks[:, self.graph.vector_offset:].view(np.float32),
            blocks[:, :self.graph.vector_offset].view(np.int32),
            view_array(self.graph.upper_links, self.graph.upper_len, cnp.NPY_INT32),
            view_array(self.graph.levels, n, cnp.NPY_UINT8),
            view_array(self.rows.deleted, n, cnp.NPY_UINT8),
        ]

    @classmethod
    def _from_header(cls, fields: tuple, path: object) -> tuple[HNSWIndex, int]:
        """An empty index sized for the body the header describes, and that body's size in bytes."""
        cdef HNSWIndex idx
        (dim, metric, M, M0, ef_construction, ef, seed, rng_state, n, n_deleted, upper_len, entry_point,
         max_level) = fields
        if (metric > 2 or M < 2 or M0 != 2 * M or dim < 1 or n >= 2**31 - 1 or n_deleted > n
                or not -1 <= entry_point < n or (n == 0) != (entry_point == -1)):
            raise FILE_FORMAT.error(path, "header fields out of range")
        body = n * 8 + n * dim * 4 + n * (M0 + 1) * 4 + upper_len * 4 + 2 * n
        idx = HNSWIndex(dim, METRICS[metric], M, ef_construction, seed)
        idx._ef = max(1, ef)
        idx._reserve(max(n, 1))
        idx._reserve_upper(max(upper_len, 1))
        idx.rows.n = n
        idx.rows.n_deleted = n_deleted
        idx.graph.upper_len = upper_len
        idx.graph.rng_state = rng_state
        idx.graph.entry_point = entry_point
        idx.graph.max_level = max_level
        return idx, body

    def _check_loaded(self, path: object) -> None:
        cdef int64_t i, upper = 0
        cdef int64_t n = self.rows.n
        cdef int bad
        for i in range(n):
            if self.graph.levels[i] > MAX_LEVEL:
                raise FILE_FORMAT.error(path, f"row {i} has level {self.graph.levels[i]}")
            self.graph.upper_offset[i] = upper if self.graph.levels[i] else -1
            upper += self.graph.levels[i] * (self.graph.M + 1)
        if upper != self.graph.upper_len:
            raise FILE_FORMAT.error(path, "upper link pool does not match the levels")
        if n and (self.graph.entry_point < 0 or self.graph.levels[self.graph.entry_point] != self.graph.max_level):
            raise FILE_FORMAT.error(path, "entry point is not on the top level")
        with nogil:
            bad = validate_links(&self.rows, &self.graph)
        if bad:
            raise FILE_FORMAT.error(path, "a link list is out of range"
                                    + (" (level 0)" if bad == 1 else " (upper level)"))


def simd_level() -> int:
    """The distance kernel variant in use: 0 scalar, 2 AVX2+FMA, 3 AVX-512F."""
    return kernel_level
