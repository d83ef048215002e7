"""Building an HNSW graph (Malkov & Yashunin) on float32 vectors, plain C without the GIL: neighbour
selection, insertion and the level-0 repair; the body of ``HNSWIndex.add`` and ``HNSWIndex.repair``
(``hnsw.pyx``).

The graph (``HnswGraph``), its walk and its checks are ``_hnsw_graph.pyx``'s; a row is inserted as
the paper says: a greedy descent from the entry point to the row's level (``descend_vectors``), then
per level down to 0 a best-first search for ``ef_construction`` candidates (``search_layer_vectors``)
and links to the heuristic's pick of them (hnswlib's ``getNeighborsByHeuristic2``: a candidate is
dropped when it is closer to an already kept one than to the row), each linked back, a full list
pruned again by the heuristic. A parallel build (``HnswGraph.row_locks`` set) takes per-row
spinlocks, never two at once. A row being inserted can be reached, and linked to, at a level before
its own links there are written (``merge_links``: they are merged, never overwritten);
``insert_begin`` / ``insert_levels`` let a test replay that order on one thread. Pruning can still
leave a live row that no walk reaches: ``repair_level0`` links each such row from its nearest
reachable row with room. Nothing here writes a file.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.string cimport memcpy

from proximadb.index._ann cimport *
from proximadb.index._base cimport METRIC_COSINE, IndexRows
from proximadb.index._hnsw_graph cimport (
    HnswGraph,
    descend_vectors,
    links_of,
    mark_from,
    pair_distance,
    reach_level0,
    row_vector,
    search_layer_vectors,
)
from proximadb.index._kernels cimport setup_distance_kernels

setup_distance_kernels(-1)


cdef int select_heuristic(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, ann_heap *h,
                          int mmax) noexcept nogil:
    """Keep at most mmax of the candidates in max-heap h by the HNSW heuristic: a
    candidate is dropped when it is closer to an already kept one than to the base.
    On return h.a[0:h.n] holds the kept rows, closest first (no longer a heap)."""
    cdef int64_t n = h.n
    cdef int64_t i, t, r = 0
    cdef ann_pair c
    cdef bint good
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
        good = True
        for t in range(r):
            if pair_distance(rows, graph, c.id, h.a[t].id) < c.d:
                good = False
                break
        if good:
            h.a[r] = c
            r += 1
            if r >= mmax:
                break
    h.n = r
    return 0


cdef int merge_links(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row, int level,
                     int mmax) noexcept nogil:
    """Write row's picks (s.top.a[0:s.top.n]) into its own list at level, which the caller holds locked.

    The list is not always empty: in a parallel build a row of level >= 1 is reachable at its upper
    levels once its first link back there is written, so another thread can descend to it, find its
    lower list still empty, link to it alone and add itself to that list by a link back. Overwriting
    the list drops that other row's only in-link (no walk reaches it again); so the picks are merged
    with the links already there, re-pruned by the heuristic when they overflow, as a link back is."""
    cdef int32_t *ll = links_of(graph, row, level)
    cdef int cnt = ll[0]
    cdef int i, j, r = <int>s.top.n
    cdef int32_t nb
    cdef bint known
    cdef ann_heap *tmp = &s.tmp
    if cnt == 0:
        ll[0] = r
        for i in range(r):
            ll[1 + i] = s.top.a[i].id
        return 0
    tmp.n = 0
    for j in range(1, cnt + 1):
        if ann_maxheap_push(tmp, pair_distance(rows, graph, row, ll[j]), ll[j]) < 0:
            return -1
    for i in range(r):
        nb = s.top.a[i].id
        known = False
        for j in range(1, cnt + 1):
            if ll[j] == nb:
                known = True
                break
        if not known and ann_maxheap_push(tmp, s.top.a[i].d, nb) < 0:
            return -1
    if tmp.n > mmax and select_heuristic(rows, graph, s, tmp, mmax) < 0:
        return -1
    ll[0] = <int32_t>tmp.n
    for j in range(tmp.n):
        ll[1 + j] = tmp.a[j].id
    return 0


cdef int connect_new(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row, int level,
                     int32_t *next_ep) noexcept nogil:
    """Link row at level to the heuristic pick of s.top (merged into its list, see merge_links) and
    the picks back to row."""
    cdef int32_t nb
    cdef int i, r, rc
    cdef int mmax = graph.M0 if level == 0 else graph.M
    if select_heuristic(rows, graph, s, &s.top, graph.M) < 0:
        return -1
    r = <int>s.top.n
    next_ep[0] = s.top.a[0].id
    if graph.row_locks != NULL:
        ann_spin_lock(graph.row_locks + row)
    rc = merge_links(rows, graph, s, row, level, mmax)
    if graph.row_locks != NULL:
        ann_spin_unlock(graph.row_locks + row)
    if rc < 0:
        return -1
    # The picks are read from s.top (this thread's), not from row's list: other threads' links back
    # change that list meanwhile. Each neighbour's list is changed under its own lock (never two held).
    for i in range(r):
        nb = s.top.a[i].id
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
    """Add row to nb's list at level (unless there: in a parallel build nb may have linked to row
    first, see merge_links); a full list is re-pruned by the heuristic."""
    cdef int32_t *nl = links_of(graph, nb, level)
    cdef int j, cnt = nl[0]
    cdef ann_heap *tmp = &s.tmp
    for j in range(1, cnt + 1):
        if nl[j] == row:
            return 0
    if cnt < mmax:
        nl[1 + cnt] = row
        nl[0] = cnt + 1
        return 0
    tmp.n = 0
    if ann_maxheap_push(tmp, pair_distance(rows, graph, nb, row), row) < 0:
        return -1
    for j in range(1, cnt + 1):
        if ann_maxheap_push(tmp, pair_distance(rows, graph, nb, nl[j]), nl[j]) < 0:
            return -1
    if select_heuristic(rows, graph, s, tmp, mmax) < 0:
        return -1
    nl[0] = <int32_t>tmp.n
    for j in range(tmp.n):
        nl[1 + j] = tmp.a[j].id
    return 0


cdef const float *row_query(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, int32_t row) noexcept nogil:
    """Row's vector as a search query: itself, or under cosine a normalised copy in s.qbuf (NULL:
    out of memory)."""
    cdef const float *v = row_vector(graph, row)
    cdef int i
    cdef float inv
    if rows.metric != METRIC_COSINE or graph.inv_norms == NULL:  # NULL: every row is of unit length
        return v
    if ann_scratch_qbuf(s, rows.dim) < 0:
        return NULL
    inv = graph.inv_norms[row]
    for i in range(rows.dim):
        s.qbuf[i] = v[i] * inv
    return s.qbuf


cdef int insert_begin(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row,
                      Insertion *ins) noexcept nogil:
    """Start inserting row (vector, level and zeroed link lists already in place; rows.n > row): read
    the entry point and descend greedily to the row's level. The first row becomes the entry point.
    The row's query (ins.q) lives in s.qbuf under cosine: s serves this insertion until it ends.
    0, or -1 when out of memory."""
    cdef int level = graph.levels[row]
    cdef int32_t cur
    ins.q = row_query(rows, graph, s, row)
    if ins.q == NULL:
        return -1
    if graph.row_locks != NULL:
        ann_spin_lock(&graph.entry_lock)
    cur = graph.entry_point
    ins.maxlevel = graph.max_level
    if graph.row_locks != NULL:
        ann_spin_unlock(&graph.entry_lock)
    if cur < 0:
        graph.entry_point = row
        graph.max_level = level
        ins.next_level = -1
        return 0
    if level < ins.maxlevel:
        cur = descend_vectors(rows, graph, ins.q, cur, ins.maxlevel, level)
    ins.cur = cur
    ins.next_level = min(level, ins.maxlevel)
    return 0


cdef int insert_levels(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row, Insertion *ins,
                       int down_to) noexcept nogil:
    """Connect row at its levels from ins.next_level down to down_to; once level 0 is linked, a row
    above the max level read at the start becomes the entry point. 0, or -1 when out of memory."""
    cdef const float *q = ins.q
    cdef int level = graph.levels[row]
    cdef int lc
    for lc in range(ins.next_level, down_to - 1, -1):
        if search_layer_vectors(rows, graph, s, q, ins.cur, lc, graph.ef_construction, NULL, rows.n_deleted > 0) < 0:
            return -1
        if s.top.n == 0:
            continue
        if connect_new(rows, graph, s, row, lc, &ins.cur) < 0:
            return -1
    if ins.next_level >= 0 and down_to == 0 and level > ins.maxlevel:
        if graph.row_locks != NULL:
            ann_spin_lock(&graph.entry_lock)
        if level > graph.max_level:
            graph.entry_point = row
            graph.max_level = level
        if graph.row_locks != NULL:
            ann_spin_unlock(&graph.entry_lock)
    ins.next_level = min(ins.next_level, down_to - 1)
    return 0


cdef int insert_row(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, int32_t row) noexcept nogil:
    """Insert row (vector, level and zeroed link lists already in place; rows.n > row)."""
    cdef Insertion ins
    if insert_begin(rows, graph, s, row, &ins) < 0:
        return -1
    return insert_levels(rows, graph, s, row, &ins, 0)




cdef int64_t repair_level0(const IndexRows *rows, HnswGraph *graph, ann_scratch *s, uint8_t *seen,
                           int32_t *queue) noexcept nogil:
    """Link every live row that no level-0 walk from the entry point reaches (reach_level0) into the
    level-0 list of the nearest reachable row that has room, found by a walk to the row's own vector
    (ef_construction), so that a search can return it again. Links are only added, never replaced,
    so no other row loses an in-link. Single-threaded, on a float32 graph. seen and
    queue: rows.n bytes (zeroed) / int32. Returns the rows linked (-1: out of memory); a row whose
    candidates all have full lists stays unreachable."""
    cdef int64_t r, i, n_found, linked = 0
    cdef int32_t cur, c
    cdef int32_t *ll
    cdef const float *q
    if graph.entry_point < 0:
        return 0
    reach_level0(rows, graph, seen, queue)
    for r in range(rows.n):
        if seen[r] or rows.deleted[r]:
            continue
        q = row_query(rows, graph, s, <int32_t>r)
        if q == NULL:
            return -1
        cur = descend_vectors(rows, graph, q, graph.entry_point, graph.max_level, 0)
        if search_layer_vectors(rows, graph, s, q, cur, 0, graph.ef_construction, NULL, rows.n_deleted > 0) < 0:
            return -1
        if ann_scratch_work(s, s.top.n) < 0:
            return -1
        n_found = ann_maxheap_drain_sorted(&s.top, s.work)
        s.top.n = 0
        c = -1
        for i in range(n_found):  # nearest first: the first reachable row with room
            if s.work[i].id != r and seen[s.work[i].id] and links_of(graph, s.work[i].id, 0)[0] < graph.M0:
                c = s.work[i].id
                break
        if c < 0:
            continue
        ll = links_of(graph, c, 0)
        ll[0] += 1
        ll[ll[0]] = <int32_t>r
        linked += 1
        mark_from(rows, graph, seen, queue, <int32_t>r)  # r and what only r leads to are reachable now
    return linked
