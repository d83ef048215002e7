"""The HNSW graph's algorithms (Malkov & Yashunin), plain C without the GIL: insertion, search, checks.

The graph (``HnswGraph``, declared in ``_hnsw_graph.pxd``) keeps per row one
level-0 record, its link list ``[count, M0 ids]`` followed by its float32
vector, so that expanding a node finds its links next to the vector just read;
rows above level 0 own a block of ``level * (M + 1)`` int32 in one pool
(``[count, M ids]`` per level). Neighbours are chosen with the paper's
heuristic (hnswlib's ``getNeighborsByHeuristic2``), so recall matches hnswlib
at the same ``M`` / ``ef_construction`` / ``ef``.

Filtered search admits only allowed rows to the result set while traversing
the whole graph; deleted rows are traversed but never returned. A parallel
build (``HnswGraph.row_locks`` set) takes per-row spinlocks, never two at once.
The index class, its rows, the file and the query drivers are in ``hnsw.pyx``
and ``_base.pyx``.
"""

from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t
from libc.string cimport memcpy

from proximadb.index._ann cimport *
from proximadb.index._base cimport IndexRows, distance, prepare_query, write_results
from proximadb.index._kernels cimport setup_distance_kernels

setup_distance_kernels(-1)


cdef int32_t greedy_descend(const IndexRows *rows, const HnswGraph *graph, const RowDistance *dist, const float *q,
                            int32_t cur, int top_level, int stop_level) noexcept nogil:
    """Greedy walk from top_level down to stop_level + 1; returns the closest row found."""
    cdef float curd = row_distance(rows, graph, dist, q, cur)
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
                prefetch_row(rows, graph, dist, ll[j])
            for j in range(1, cnt + 1):
                d = row_distance(rows, graph, dist, q, ll[j])
                if d < curd:
                    curd = d
                    cur = ll[j]
                    changed = True
            if graph.row_locks != NULL:
                ann_spin_unlock(graph.row_locks + c)
    return cur


cdef int search_layer(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const RowDistance *dist,
                      const float *q, int32_t ep, int level, int ef, const uint8_t *allowed,
                      bint filtering) noexcept nogil:
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
    d = row_distance(rows, graph, dist, q, ep)
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
                prefetch_row(rows, graph, dist, nb)
        if graph.row_locks != NULL:
            ann_spin_unlock(graph.row_locks + c)
        for j in range(nb_n):
            nb = batch[j]
            d = row_distance(rows, graph, dist, q, nb)
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
        cur = greedy_descend(rows, graph, NULL, q, cur, maxlevel, level)
    for lc in range(min(level, maxlevel), -1, -1):
        if search_layer(rows, graph, s, NULL, q, cur, lc, graph.ef_construction, NULL, rows.n_deleted > 0) < 0:
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


cdef int walk_graph(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const RowDistance *dist,
                    const float *q, int ef, const uint8_t *allowed) noexcept nogil:
    """The search walk: greedy descent from the entry point to level 1, then the best-first search of
    level 0; leaves the ef best live (and allowed) rows in s.top, a max-heap (empty for an empty
    graph). dist: how rows are measured (NULL: the float32 vectors of the records). 0, or -1 (memory)."""
    cdef int32_t cur
    if graph.entry_point < 0:
        s.top.n = 0
        return 0
    cur = graph.entry_point
    if graph.max_level > 0:
        cur = greedy_descend(rows, graph, dist, q, cur, graph.max_level, 0)
    return search_layer(rows, graph, s, dist, q, cur, 0, ef, allowed, allowed != NULL or rows.n_deleted > 0)


cdef int64_t search_graph(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const float *q, int k, int ef,
                          const uint8_t *allowed, int64_t *out_ids, float *out_d) noexcept nogil:
    q = prepare_query(rows, s, q)
    if q == NULL:
        return -1
    if graph.entry_point < 0:
        return 0
    if walk_graph(rows, graph, s, NULL, q, max(ef, k), allowed) < 0:
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


cdef int check_header(object file_format, object path, int64_t dim, int64_t metric, int64_t M, int64_t M0,
                      int64_t n, int64_t n_deleted, int64_t entry_point, int64_t max_level) except -1:
    """A graph index file's header fields in range, else file_format's CorruptionError."""
    if (metric > 2 or M < 2 or M > 2048 or M0 != 2 * M or dim < 1 or n >= 2**31 - 1 or n_deleted > n
            or not -1 <= entry_point < n or (n == 0) != (entry_point == -1) or not 0 <= max_level <= MAX_LEVEL):
        raise file_format.error(path, "header fields out of range")
    return 0


cdef int check_loaded(const IndexRows *rows, HnswGraph *graph, object file_format, object path) except -1:
    """After a load: each row's upper block offset set from the levels, then the structure checked
    (levels, pool size, entry point, every link in range), else file_format's CorruptionError."""
    cdef int64_t i, upper = 0
    cdef int bad
    for i in range(rows.n):
        if graph.levels[i] > MAX_LEVEL:
            raise file_format.error(path, f"row {i} has level {graph.levels[i]}")
        graph.upper_offset[i] = upper if graph.levels[i] else -1
        upper += graph.levels[i] * (graph.M + 1)
    if upper != graph.upper_len:
        raise file_format.error(path, "upper link pool does not match the levels")
    if rows.n and (graph.entry_point < 0 or graph.levels[graph.entry_point] != graph.max_level):
        raise file_format.error(path, "entry point is not on the top level")
    with nogil:
        bad = validate_links(rows, graph)
    if bad:
        raise file_format.error(path, "a link list is out of range" + (" (level 0)" if bad == 1 else " (upper level)"))
    return 0
