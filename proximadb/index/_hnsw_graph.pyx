"""The HNSW graph's search walk (Malkov & Yashunin) and checks, plain C without the GIL; and
``HnswGraphIndex``, the base class of both HNSW kinds (graph storage, knobs, load checks).

The graph (``HnswGraph``, declared in ``_hnsw_graph.pxd``) keeps per row one
level-0 record, its link list ``[count, M0 ids]``; rows above level 0 own a
block of ``level * (M + 1)`` int32 in one pool (``[count, M ids]`` per level).
The float32 vectors are not the graph's: it points at them (``graph.vectors``,
row r at ``r * dim``; a segment's memory-mapped ``vectors.f32``, see
``hnsw.pyx``), and under ``cosine``, where they need not be normalised, at one
``1 / |row|`` per row (``graph.inv_norms``; NULL while every row is of unit length): a row's distance to a query
(normalised) is ``1 - (q . v) / |v|``, between two rows
``1 - (a . b) / (|a| |b|)`` (``vector_distance``, ``pair_distance``). How the graph is
built (neighbour selection, insertion, the level-0 repair) is ``_hnsw_build.pyx``, on this
module's walk of the float32 vectors (``descend_vectors``, ``search_layer_vectors``).

Filtered search measures allowed rows only: a row that is not allowed passes on its
links without being measured (``gather_filtered``, ACORN-1); deleted rows are never
returned. During a parallel
build, or while searches share the graph with an add (``hnsw_shared.pyx``), ``HnswGraph.row_locks``
is set and the walk reads a row's links under its spinlock; it never goes past ``rows.n`` (a
snapshot's count when shared) and returns rows below ``rows.admit_below`` only.
``reachable_count`` / ``unreachable_ids`` check what a walk reaches (a sound
graph: every live row).
The search walk measures rows by a ``RowMeasure`` (a fused type, so the one
source is compiled once per measure): ``RecordVectors``, the float32 vectors
the graph points at (``hnsw.pyx``: ``search_graph``, and the build's walks; the distance
inlined: ``vector_distance``), or a ``RowDistance``, a function and context (``walk_graph``;
``hnsw_int8.pyx``: the query against int8 codes). Both kinds walk the graph with
this one code. The kinds' classes, their files and the
query drivers are in ``hnsw.pyx``, ``hnsw_int8.pyx`` and ``_base.pyx``.
"""

from libc.math cimport INFINITY, log
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t
from libc.stdlib cimport free, realloc
from libc.string cimport memset

from proximadb.index._ann cimport *
from proximadb.index._base cimport IndexRows, VectorIndex, prepare_query, write_results
from proximadb.index._kernels cimport setup_distance_kernels

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index._base import NoRoomError

setup_distance_kernels(-1)

# The filter-first walk (``gather_filtered``): taken while FILTER_FIRST_PERCENT to
# FILTER_FIRST_MAX_PERCENT of the neighbour links the walk has seen (at least FILTER_FIRST_WARMUP
# of them) lead to allowed rows; it measures at most FILTER_FIRST_CAP * M0 rows per expansion.
# Otherwise the walk measures every neighbour, as unfiltered: below that share two hops reach too
# few allowed rows to keep the walk connected (on 200k clustered rows at 2%, recall@10 falls to
# 0.44); above it measuring the few rows that are not allowed costs less than reading the links
# of each (at 50%: 0.24 ms against 0.28). Calibrated with bench/filtered_walk.py
# (bench/results/filtered_walk_200k.json).
DEF FILTER_FIRST_PERCENT = 5
DEF FILTER_FIRST_MAX_PERCENT = 20
DEF FILTER_FIRST_WARMUP = 64
DEF FILTER_FIRST_CAP = 4


cdef inline float row_distance(const IndexRows *rows, const HnswGraph *graph, const RowMeasure *dist,
                               const float *q, int32_t r) noexcept nogil:
    if RowMeasure is RecordVectors:
        return vector_distance(rows, graph, q, r)
    else:
        return dist.fn(dist.ctx, q, r)


cdef inline void prefetch_row(const IndexRows *rows, const HnswGraph *graph, const RowMeasure *dist,
                              int32_t r) noexcept nogil:
    """Prefetch every cache line a row's distance reads."""
    if RowMeasure is RecordVectors:
        prefetch_vector(rows, graph, r)
    else:
        ann_prefetch_span(dist.base + <int64_t>r * dist.stride, dist.nbytes)


cdef int32_t greedy_descend(const IndexRows *rows, const HnswGraph *graph, const RowMeasure *dist, const float *q,
                            int32_t cur, int top_level, int stop_level) noexcept nogil:
    """Greedy walk from top_level down to stop_level + 1; returns the closest row found (moving to rows
    below rows.admit_below only, so a snapshot's walk starts level 0 from a row whose insertion ended).
    A row's list is copied under its lock and measured after (every walk starts at the entry point)."""
    cdef float curd = row_distance(rows, graph, dist, q, cur)
    cdef float d
    cdef int lc, j, cnt, n_nb
    cdef int32_t *ll
    cdef int32_t c, nb
    cdef int32_t nbs[2048]  # an upper level's list: at most M (<= 2048) rows
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
            n_nb = 0
            for j in range(1, cnt + 1):
                nb = ll[j]
                # Not past the snapshot's rows, nor past those it may return (hnsw_shared.pyx): a row being
                # inserted is linked at its upper levels before its lower ones, a dead end for the descent.
                if nb < rows.n and nb < rows.admit_below:
                    nbs[n_nb] = nb
                    n_nb += 1
            if graph.row_locks != NULL:
                ann_spin_unlock(graph.row_locks + c)
            for j in range(n_nb):
                prefetch_row(rows, graph, dist, nbs[j])
            for j in range(n_nb):
                d = row_distance(rows, graph, dist, q, nbs[j])
                if d < curd:
                    curd = d
                    cur = nbs[j]
                    changed = True
    return cur


cdef inline bint admitted(const IndexRows *rows, const uint8_t *allowed, int32_t r) noexcept nogil:
    return r < rows.admit_below and not rows.deleted[r] and (allowed == NULL or allowed[r])


cdef inline int gather_filtered(const IndexRows *rows, const HnswGraph *graph, const RowMeasure *dist,
                                const uint8_t *allowed, int32_t c, int level, uint16_t *vis, uint16_t epoch,
                                int32_t *batch, int32_t *hops, int cap, int *n_seen, int *n_admitted) noexcept nogil:
    """The rows a filtered walk measures from c, filter first (ACORN-1, Patel et al. 2024): c's
    unvisited admitted neighbours, then, while fewer than cap, the unvisited admitted neighbours of
    its neighbours that are not admitted. Such a row is never measured: it only passes on its links,
    so the walk stays connected through them at the cost of a link list each, not a distance. It
    counts as visited once its whole list was read (a later row may pass through the rest).
    Returns how many rows it put in batch; adds c's links to n_seen, those to admitted rows to
    n_admitted."""
    cdef int32_t *ll
    cdef int32_t nb, hop
    cdef int j, h, cnt, nb_n = 0, hop_n = 0
    if graph.row_locks != NULL:
        ann_spin_lock(graph.row_locks + c)
    ll = links_of(graph, c, level)
    cnt = ll[0]
    n_seen[0] += cnt
    for j in range(1, cnt + 1):
        nb = ll[j]
        if nb >= rows.n:  # linked since the walk's snapshot (hnsw_shared.pyx)
            continue
        if admitted(rows, allowed, nb):
            n_admitted[0] += 1
            if vis[nb] != epoch:
                vis[nb] = epoch
                batch[nb_n] = nb
                nb_n += 1
                prefetch_row(rows, graph, dist, nb)
        elif vis[nb] != epoch:
            hops[hop_n] = nb
            hop_n += 1
            ann_prefetch(links_of(graph, nb, level))
    if graph.row_locks != NULL:
        ann_spin_unlock(graph.row_locks + c)
    for h in range(hop_n):
        if nb_n >= cap:
            break
        hop = hops[h]
        if graph.row_locks != NULL:
            ann_spin_lock(graph.row_locks + hop)
        ll = links_of(graph, hop, level)
        cnt = ll[0]
        for j in range(1, cnt + 1):
            nb = ll[j]
            if nb < rows.n and vis[nb] != epoch and admitted(rows, allowed, nb):
                vis[nb] = epoch
                batch[nb_n] = nb
                nb_n += 1
                prefetch_row(rows, graph, dist, nb)
                if nb_n >= cap and j < cnt:
                    break
        else:
            vis[hop] = epoch
        if graph.row_locks != NULL:
            ann_spin_unlock(graph.row_locks + hop)
    return nb_n


cdef int search_layer(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const RowMeasure *dist,
                      const float *q, int32_t ep, int level, int ef, const uint8_t *allowed,
                      bint filtering) noexcept nogil:
    """Best-first search of one layer from ep; leaves the ef best admitted rows in s.top
    (a max-heap). With filtering, deleted and not-allowed rows are never admitted: with an
    allowed set the walk measures allowed rows only (``gather_filtered``); with deletes alone
    it traverses deleted rows as any other. Returns 0, or -1 when out of memory."""
    cdef ann_heap *top = &s.top
    cdef ann_heap *cand = &s.cand
    cdef uint16_t *vis
    cdef uint16_t epoch
    cdef int32_t *ll
    cdef int32_t *batch
    cdef int32_t c, nb
    cdef int j, cnt, nb_n
    cdef float d, lb, cd
    cdef bint by_filter = filtering and allowed != NULL
    cdef int seen = 0, seen_admitted = 0
    cdef int cap = FILTER_FIRST_CAP * graph.M0
    # batch: up to cap rows (the filter-first gather) or M0 (the plain one); then M0 hops
    if ann_visit_begin(s, rows.n) < 0 or ann_scratch_ids(s, cap + graph.M0) < 0:
        return -1
    vis = s.vis
    epoch = s.epoch
    batch = s.ids
    top.n = 0
    cand.n = 0
    d = row_distance(rows, graph, dist, q, ep)
    s.measured += 1
    lb = INFINITY
    if not filtering or admitted(rows, allowed, ep):
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
        if (by_filter and seen >= FILTER_FIRST_WARMUP and seen_admitted * 100 >= seen * FILTER_FIRST_PERCENT
                and seen_admitted * 100 < seen * FILTER_FIRST_MAX_PERCENT):
            nb_n = gather_filtered(rows, graph, dist, allowed, c, level, vis, epoch, batch, batch + cap, cap,
                                   &seen, &seen_admitted)
        else:
            if graph.row_locks != NULL:
                ann_spin_lock(graph.row_locks + c)
            ll = links_of(graph, c, level)
            cnt = ll[0]
            # Gather the unvisited neighbours first and prefetch their vectors, so
            # the memory loads overlap instead of stalling one distance at a time.
            nb_n = 0
            for j in range(1, cnt + 1):
                nb = ll[j]
                if nb >= rows.n:  # linked since the walk's snapshot (hnsw_shared.pyx)
                    continue
                if by_filter:
                    seen_admitted += admitted(rows, allowed, nb)
                if vis[nb] != epoch:
                    vis[nb] = epoch
                    batch[nb_n] = nb
                    nb_n += 1
                    prefetch_row(rows, graph, dist, nb)
            seen += cnt
            if graph.row_locks != NULL:
                ann_spin_unlock(graph.row_locks + c)
        s.measured += nb_n
        for j in range(nb_n):
            nb = batch[j]
            d = row_distance(rows, graph, dist, q, nb)
            if top.n < ef or d < lb:
                if ann_minheap_push(cand, d, nb) < 0:
                    return -1
                ann_prefetch(links_of(graph, cand.a[0].id, level))
                if not filtering or admitted(rows, allowed, nb):
                    if top.n < ef:
                        if ann_maxheap_push(top, d, nb) < 0:
                            return -1
                    else:
                        ann_maxheap_replace_top(top, d, nb)
                    lb = top.a[0].d
    return 0


cdef int32_t descend_vectors(const IndexRows *rows, const HnswGraph *graph, const float *q, int32_t cur,
                             int top_level, int stop_level) noexcept nogil:
    """greedy_descend on the float32 vectors (RecordVectors), for the build (_hnsw_build.pyx)."""
    return greedy_descend(rows, graph, <const RecordVectors *>NULL, q, cur, top_level, stop_level)


cdef int search_layer_vectors(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const float *q,
                              int32_t ep, int level, int ef, const uint8_t *allowed, bint filtering) noexcept nogil:
    """search_layer on the float32 vectors (RecordVectors), for the build (_hnsw_build.pyx)."""
    return search_layer(rows, graph, s, <const RecordVectors *>NULL, q, ep, level, ef, allowed, filtering)


cdef inline int walk(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const RowMeasure *dist,
                     const float *q, int ef, const uint8_t *allowed) noexcept nogil:
    """The search walk: greedy descent from the entry point to level 1, then the best-first search of
    level 0; leaves the ef best live (and allowed) rows in s.top, a max-heap (empty for an empty
    graph). 0, or -1 when out of memory."""
    cdef int32_t cur
    if graph.entry_point < 0:
        s.top.n = 0
        return 0
    cur = graph.entry_point
    if graph.max_level > 0:
        cur = greedy_descend(rows, graph, dist, q, cur, graph.max_level, 0)
    return search_layer(rows, graph, s, dist, q, cur, 0, ef, allowed,
                        allowed != NULL or rows.n_deleted > 0 or rows.admit_below < rows.n)


cdef int walk_graph(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const RowDistance *dist,
                    const float *q, int ef, const uint8_t *allowed) noexcept nogil:
    """The search walk (see walk) with rows measured by dist."""
    return walk(rows, graph, s, dist, q, ef, allowed)


cdef int64_t search_graph(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const float *q, int k, int ef,
                          const uint8_t *allowed, int64_t *out_ids, float *out_d) noexcept nogil:
    q = prepare_query(rows, s, q)
    if q == NULL:
        return -1
    if graph.entry_point < 0:
        return 0
    if walk(rows, graph, s, <const RecordVectors *>NULL, q, max(ef, k), allowed) < 0:
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


cdef int64_t mark_from(const IndexRows *rows, const HnswGraph *graph, uint8_t *seen, int32_t *queue,
                       int32_t start) noexcept nogil:
    """Mark in seen the rows not yet marked that a breadth-first walk of the level-0 links from start
    reaches (start included), passing through marked rows' neighbours only once; returns the live
    rows newly marked. queue: rows.n int32 of room."""
    cdef int64_t head = 0, tail = 0, live = 0
    cdef int32_t r, nb
    cdef int32_t *ll
    cdef int j
    if seen[start]:
        return 0
    seen[start] = 1
    queue[tail] = start
    tail += 1
    while head < tail:
        r = queue[head]
        head += 1
        if not rows.deleted[r]:
            live += 1
        ll = links_of(graph, r, 0)
        for j in range(1, ll[0] + 1):
            nb = ll[j]
            if not seen[nb]:
                seen[nb] = 1
                queue[tail] = nb
                tail += 1
    return live


cdef int64_t reach_level0(const IndexRows *rows, const HnswGraph *graph, uint8_t *seen,
                          int32_t *queue) noexcept nogil:
    """Mark in seen (rows.n zeroed bytes) the rows a breadth-first walk of the level-0 links from the
    entry point reaches, passing through deleted rows as a search does (queue: rows.n int32 of room);
    returns the live rows reached."""
    if graph.entry_point < 0:
        return 0
    return mark_from(rows, graph, seen, queue, graph.entry_point)



cdef int check_header(object file_format, object path, int64_t dim, int64_t metric, int64_t M, int64_t M0,
                      int64_t n, int64_t n_deleted, int64_t entry_point, int64_t max_level) except -1:
    """A graph index file's header fields in range, else file_format's CorruptionError."""
    if (metric > 2 or M < 2 or M > 2048 or M0 != 2 * M or dim < 1 or n >= 2**31 - 1 or n_deleted > n
            or not -1 <= entry_point < n or (n == 0) != (entry_point == -1) or not 0 <= max_level <= MAX_LEVEL):
        raise file_format.error(path, "header fields out of range")
    return 0


cdef inline bint use_exact(int64_t n_allowed, int64_t n_live, int ef, int M0) noexcept:
    """Whether an exact scan of the allowed rows beats a filtered graph walk.

    From FILTER_FIRST_PERCENT of the rows up, the walk goes filter first (``gather_filtered``) or,
    above FILTER_FIRST_MAX_PERCENT, finds allowed rows among most neighbours: either way its cost
    hardly depends on the share, about 2 * ef * M0 rows of a scan. Below it the walk measures every
    neighbour, about ef * M0 / (2 * share) rows, each about 2x one in a blocked SIMD scan; measured,
    it costs about a quarter of that, so the scan wins while 4 * n_allowed**2 <= ef * M0 * n_live.
    On 200k clustered rows of 128 dimensions at ef 64, M 16 (bench/filtered_walk.py): 2%: walk
    4.9 ms, scan 0.46; 5%: 2.1 and 1.2; 10%: 0.63 and 1.8; 25%: 0.59 and 5.2. Monotone in
    n_allowed (``exact_scan_limit``): about 10,000 rows of 200,000, 22,600 of 1,000,000.
    """
    if n_allowed <= ef:
        return True
    if n_allowed * 100 >= n_live * FILTER_FIRST_PERCENT:
        return n_allowed <= 2 * <int64_t>ef * M0
    return 4 * n_allowed * n_allowed <= <int64_t>ef * M0 * n_live


def exact_scan_limit(int64_t n_live, int ef=64, int M=16) -> int:
    """The most allowed rows of n_live that a filtered search at ef (M) scans exactly rather than
    walks (``use_exact``, which is monotone in the allowed rows); what a planner that picks the
    route before it has a mask asks (``storage/filter_plan.py``)."""
    cdef int64_t lo = 0, hi = n_live, mid
    while lo < hi:  # the largest n with use_exact(n) true
        mid = (lo + hi + 1) // 2
        if use_exact(mid, n_live, ef, 2 * M):
            lo = mid
        else:
            hi = mid - 1
    return lo


cdef class HnswGraphIndex(VectorIndex):
    """What both HNSW kinds share: the graph (level-0 link records, the upper pool, levels), its build knobs ``M`` / ``ef_construction``, the search knob ``ef``, the
    exact-scan choice, the public search methods and the load checks. A kind keeps its rows' vectors
    (float32 ones the graph points at, or codes), adds rows and searches one query (``walk_graph``)."""

    def __cinit__(self) -> None:
        memset(&self.graph, 0, sizeof(HnswGraph))
        self.graph.entry_point = -1

    def __dealloc__(self) -> None:
        free(self.graph.level0)
        free(self.graph.levels)
        free(self.graph.upper_offset)
        free(self.graph.upper_links)
        if self._locks_kept:
            free(self.graph.row_locks)

    cdef int _init_graph(self, int M, int ef_construction) except -1:
        """After _init_rows: the graph's parameters."""
        if M < 2 or M > 2048:
            raise ValidationError(f"M must be in [2, 2048], got {M}")
        if ef_construction < 1:
            raise ValidationError(f"ef_construction must be >= 1, got {ef_construction}")
        self.graph.M = M
        self.graph.M0 = 2 * M
        self.graph.dim = self.rows.dim
        self.graph.record_size = (self.graph.M0 + 1) * 4
        self.graph.ef_construction = max(ef_construction, M)
        self.graph.level_mult = 1.0 / log(<double>M)
        self.graph.rng_state = self._seed
        self._ef = 64
        return 0

    @property
    def M(self) -> int:
        return self.graph.M

    @property
    def ef_construction(self) -> int:
        """The candidates an insertion searches for (at least M); a new value holds for the rows
        added from then on (the memtable graph lowers it while it lags behind, storage/memtable_index.py)."""
        return self.graph.ef_construction

    @ef_construction.setter
    def ef_construction(self, int value) -> None:
        if value < 1:
            raise ValidationError(f"ef_construction must be >= 1, got {value}")
        self._enter_write("setting ef_construction")
        self.graph.ef_construction = max(value, self.graph.M)
        self._writing = False

    @property
    def ef(self) -> int:
        """Default search ef (used when search() gets ef=None); at least k is always used."""
        return self._ef

    @ef.setter
    def ef(self, int value) -> None:
        if value < 1:
            raise ValidationError(f"ef must be >= 1, got {value}")
        self._ef = value

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
        if self._locks_kept:
            p = realloc(self.graph.row_locks, cap)
            if p == NULL:
                raise MemoryError()
            self.graph.row_locks = <uint8_t *>p
            memset(self.graph.row_locks + old_cap, 0, cap - old_cap)
        return 0

    cdef int _reserve_upper(self, int64_t need) except -1:
        cdef int64_t cap = self.graph.upper_cap
        cdef void *p
        if need <= cap:
            return 0
        if self._adding_shared:
            raise NoRoomError(f"{need} upper link words need room the graph has not reserved ({cap})")
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

    def search(self, query: object, Py_ssize_t k=10, ef: int | None = None, filter_ids: object = None,
               exact: bool | None = None, allowed_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest live rows to query, best first: (ids int64, distances float32).

        filter_ids: allowed ids (int64 array), or a uint8/bool bitmap over internal rows
        (length n_rows). exact: None picks graph or exact scan by the filter's size;
        True/False forces it. Fewer than k results only when fewer rows are allowed.
        allowed_count: how many rows a bitmap filter_ids allows, when the caller knows (not counted again).
        """
        return self._search(query, k, ef, filter_ids, exact, allowed_count)

    def search_batch(self, queries: object, Py_ssize_t k=10, ef: int | None = None, filter_ids: object = None,
                     exact: bool | None = None, threads: int | None = None,
                     allowed_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """search() for each row of queries on `threads` OpenMP threads (default: all cores).
        Returns (ids (m, k), distances (m, k)); missing results are id -1, distance inf."""
        return self._search_batch(queries, k, ef, filter_ids, exact, threads, allowed_count)

    cdef object _reach(self):
        """Per row (uint8): 1 live and reached by reach_level0, 2 live and not reached, 0 deleted."""
        cdef int64_t i, n = self.rows.n
        seen = np.zeros(max(n, 1), np.uint8)
        queue = np.empty(max(n, 1), np.int32)
        cdef uint8_t[::1] sv = seen
        cdef int32_t[::1] qv = queue
        if self._writing:  # as _enter_read, but the walk reads links only: no vectors needed
            raise RuntimeError(f"{type(self).__name__}: reachability check while add is running on the index")
        self._readers += 1
        try:
            with nogil:
                reach_level0(&self.rows, &self.graph, &sv[0], &qv[0])
                for i in range(n):
                    sv[i] = 0 if self.rows.deleted[i] else (1 if sv[i] else 2)
        finally:
            self._readers -= 1
        return seen[:n]

    @property
    def last_measured(self) -> int:
        """How many rows the last single-query ``search`` measured (distances computed) in its
        level-0 walk: 0 after an exact scan. A diagnostic (the walk's cost), e.g. of how few rows a
        filtered walk measures; with searches on several threads, of whichever finished last."""
        return self._last_measured

    def reachable_count(self) -> int:
        """Live rows a search walk can reach: those a breadth-first walk of the level-0 links from the
        entry point finds (through deleted rows, as a search passes them). Equal to len(self) in a
        sound graph; fewer means live rows no graph walk returns (an exact search still does).
        O(rows * M0), read-only."""
        return int(np.count_nonzero(self._reach() == 1))

    def unreachable_ids(self) -> np.ndarray:
        """The ids (int64, in row order) of the live rows reachable_count leaves out."""
        return self.ids[self._reach() == 2]

    # -- persistence: the kind's _from_header checks its fields (check_header), then restores --

    cdef int _restore_graph(self, int64_t n, int64_t n_deleted, int64_t upper_len, int64_t entry_point,
                            int64_t max_level, int64_t ef) except -1:
        """Size a new index for a loaded body and set the counts its header gives."""
        self._ef = max(1, ef)
        self._reserve(max(n, 1))
        self._reserve_upper(max(upper_len, 1))
        self.rows.n = n
        self.rows.n_deleted = n_deleted
        self.graph.upper_len = upper_len
        self.graph.entry_point = <int32_t>entry_point
        self.graph.max_level = <int>max_level
        return 0

    def _check_loaded(self, path: object) -> None:
        """After a load: each row's upper block offset set from the levels, then the structure checked
        (levels, pool size, entry point, every link in range), else the kind's CorruptionError."""
        cdef int64_t i, upper = 0
        cdef int bad
        file_format = type(self).FILE_FORMAT
        for i in range(self.rows.n):
            if self.graph.levels[i] > MAX_LEVEL:
                raise file_format.error(path, f"row {i} has level {self.graph.levels[i]}")
            self.graph.upper_offset[i] = upper if self.graph.levels[i] else -1
            upper += self.graph.levels[i] * (self.graph.M + 1)
        if upper != self.graph.upper_len:
            raise file_format.error(path, "upper link pool does not match the levels")
        if self.rows.n and (self.graph.entry_point < 0
                            or self.graph.levels[self.graph.entry_point] != self.graph.max_level):
            raise file_format.error(path, "entry point is not on the top level")
        with nogil:
            bad = validate_links(&self.rows, &self.graph)
        if bad:
            raise file_format.error(path, "a link list is out of range"
                                    + (" (level 0)" if bad == 1 else " (upper level)"))
