"""Renumbering an HNSW graph's rows: breadth-first, the body of ``HNSWIndex.reorder``, and into the
rows of a larger set, the body of ``HNSWIndex.grow_from`` (``hnsw.pyx``); both move the links with
``move_links``.

Rows are renumbered in breadth-first order of the level-0 links from the entry point (rows it does
not reach keep their order at the end), so that graph neighbours sit close together in memory. Every
per-row array moves with its rows: the level-0 records (their links renumbered), ids, levels,
deletion flags, upper blocks (renumbered, in the new row order), the id map, and the float32 vectors
and cosine norms, which come out as new arrays of the index's own (``rows.cap`` rows of room).
Growth (a compaction's merged segment, issue #11) places a graph's rows at given rows of a larger
set (``move_links``: their level-0 records, levels and upper blocks, links renumbered); the rows
left out are the caller's to draw levels for and insert. Nothing is written to any file; the
index's file layout is ``hnsw.pyx``'s.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from proximadb.index._ann cimport ann_idmap
from proximadb.index._base cimport IndexRows
from proximadb.index._hnsw_graph cimport HnswGraph, links_of


cdef int64_t move_links(const HnswGraph *graph, const int32_t *perm, const int32_t *inv, int64_t n,
                        char *level0, uint8_t *levels, int64_t *upper_offset, int32_t *upper_links) noexcept nogil:
    """Place row perm[t] of ``graph`` at row t (t < n) of the arrays given, its links renumbered by
    ``inv`` (graph row -> new row; every row a moved row links to must be moved too): level-0 record,
    level, upper block. Upper blocks are laid out in row order from upper_links[0], as a file holds
    them (hnsw.pyx): a row t with perm[t] < 0 keeps its level-0 record and the level the caller put
    in levels[t], and gets an empty block in its place. Returns the upper words used."""
    cdef int64_t t, j, up = 0, nrec
    cdef int64_t size = graph.record_size
    cdef int32_t old, lvl
    cdef int32_t *ll
    cdef const int32_t *src
    for t in range(n):
        old = perm[t]
        if old < 0:
            if levels[t] == 0:
                upper_offset[t] = -1
            else:
                upper_offset[t] = up
                nrec = <int64_t>levels[t] * (graph.M + 1)
                memset(upper_links + up, 0, nrec * sizeof(int32_t))
                up += nrec
            continue
        memcpy(level0 + t * size, graph.level0 + old * size, size)
        ll = <int32_t *>(level0 + t * size)
        for j in range(1, ll[0] + 1):
            ll[j] = inv[ll[j]]
        levels[t] = graph.levels[old]
        if levels[t] == 0:
            upper_offset[t] = -1
            continue
        upper_offset[t] = up
        nrec = <int64_t>levels[t] * (graph.M + 1)
        src = graph.upper_links + graph.upper_offset[old]
        memcpy(upper_links + up, src, nrec * sizeof(int32_t))
        for lvl in range(levels[t]):
            ll = upper_links + up + lvl * (graph.M + 1)
            for j in range(1, ll[0] + 1):
                ll[j] = inv[ll[j]]
        up += nrec
    return up


cdef float *reorder_rows(IndexRows *rows, HnswGraph *graph, ann_idmap *idmap, float **norms) except NULL:
    """Renumber rows.n >= 2 rows whose vectors graph.vectors points at. The graph's and rows' arrays
    are replaced (the old ones freed); returns the renumbered vectors, a new array the caller owns (it
    frees its old copy, if it had one, and points graph.vectors at it). norms[0] (cosine: 1 / |row|,
    or NULL) is replaced by a renumbered copy, the old one freed; graph.inv_norms is the caller's."""
    cdef int64_t n = rows.n, cap = rows.cap
    cdef int dim = rows.dim
    cdef int64_t i, j, head = 0, tail = 0
    cdef int64_t size = graph.record_size
    cdef int32_t r, old
    cdef int32_t *ll
    cdef int32_t *perm = <int32_t *>malloc(n * sizeof(int32_t))
    cdef int32_t *inv = <int32_t *>malloc(n * sizeof(int32_t))
    cdef char *block = <char *>malloc(cap * size)
    cdef int32_t *upper_links = <int32_t *>malloc(max(graph.upper_cap, 1) * sizeof(int32_t))
    cdef int64_t *ids = <int64_t *>malloc(cap * sizeof(int64_t))
    cdef uint8_t *levels = <uint8_t *>malloc(cap)
    cdef uint8_t *deleted = <uint8_t *>calloc(cap, 1)
    cdef int64_t *upper_offset = <int64_t *>malloc(cap * sizeof(int64_t))
    cdef float *vecs = <float *>malloc(cap * dim * sizeof(float))
    cdef float *nrm = <float *>malloc(cap * sizeof(float)) if norms[0] != NULL else NULL
    if not (perm and inv and block and upper_links and ids and levels and deleted and upper_offset and vecs
            and (nrm or norms[0] == NULL)):
        free(perm); free(inv); free(block); free(upper_links)
        free(ids); free(levels); free(deleted); free(upper_offset); free(vecs); free(nrm)
        raise MemoryError()
    with nogil:
        for i in range(n):
            inv[i] = -1
        # Breadth-first from the entry point; rows it cannot reach keep their order at the end.
        perm[tail] = graph.entry_point
        inv[graph.entry_point] = 0
        tail += 1
        i = 0
        while True:
            while head < tail:
                ll = links_of(graph, perm[head], 0)
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
        memset(block + n * size, 0, (cap - n) * size)
        move_links(graph, perm, inv, n, block, levels, upper_offset, upper_links)
        for r in range(n):
            old = perm[r]
            memcpy(vecs + <int64_t>r * dim, graph.vectors + <int64_t>old * dim, dim * sizeof(float))
            if nrm != NULL:
                nrm[r] = norms[0][old]
            ids[r] = rows.ids[old]
            deleted[r] = rows.deleted[old]
        for i in range(idmap.cap):
            if idmap.rows[i] >= 0:
                idmap.rows[i] = inv[idmap.rows[i]]
        graph.entry_point = inv[graph.entry_point]
    free(graph.level0); free(graph.upper_links); free(rows.ids)
    free(graph.levels); free(rows.deleted); free(graph.upper_offset)
    graph.level0 = block
    graph.upper_links = upper_links
    rows.ids = ids
    graph.levels = levels
    rows.deleted = deleted
    graph.upper_offset = upper_offset
    if nrm != NULL:
        free(norms[0])
        norms[0] = nrm
    free(perm)
    free(inv)
    return vecs
