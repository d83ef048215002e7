"""Searching an HNSW graph while one thread adds rows to it (issue #11, searches during a continuous
ingest): the memtable's graph (storage/memtable_index.py) grows a chunk at a time while searches go on,
neither waiting for the other.

An ``HNSWIndex`` is shared once :func:`reserve` gave it room ahead and per-row spinlocks
(``HnswGraph.row_locks``, the ones a parallel build takes; kept from then on, as many as rows of room):

* :func:`add` inserts rows on the calling thread beside searches: ``add``'s own serial insertion, which
  takes the row locks, so a walk reads every link list whole. It takes the index's write itself (plain
  searches, plain adds and every other change are refused meanwhile; searches of a snapshot are not,
  ``_adding_shared``). It never moves memory a search reads (the id map's room is reserved too):
  when the rows, their vectors or their upper links need more room than is reserved, it raises
  ``NoRoomError`` before it wrote anything (the level generator put back where it was, so adding again
  builds the same graph), and the caller reserves more while no search runs and adds again. An add counts a row
  (``rows.n``) before it links it, once its vector, id, level and empty link lists are in place.
* :func:`attach` points the index at the caller's array of vectors (a memtable's), which holds each row
  before it is added: no copy of the vectors then.
* :func:`search`: the top k of rows ``[0, limit)`` that ``mask`` allows. Each query walks a snapshot
  (:func:`search_snapshot`): the entry point and top level, read under the entry lock, then the row
  count; the walk passes over links to rows past that count (linked since), walks through rows at or
  past ``limit`` without returning them (``IndexRows.admit_below``), and reads each link list under
  its row's lock. ``limit`` must count rows whose insertion has ended (the caller's count of rows
  added before): they are in the graph as after any add. A row being inserted may be walked through
  with part of its links; every id a list holds names a row whose data is in place.

A query with few allowed rows scans them exactly, as ``HNSWIndex.search`` does (``use_exact``).
Plain ``search``/``add`` keep their guards: they refuse to run beside these calls.
"""

cimport numpy as cnp
from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free

from proximadb.index._ann cimport ann_idmap_reserve, ann_scratch, ann_spin_lock, ann_spin_unlock
from proximadb.index._base cimport MAX_POOL, IndexRows, copy_array
from proximadb.index._hnsw_graph cimport HnswGraph, search_graph
from proximadb.index.hnsw cimport HNSWIndex

import os

import numpy as np

from proximadb.errors import ValidationError

cnp.import_array()


cdef int64_t search_snapshot(const IndexRows *rows, const HnswGraph *graph, ann_scratch *s, const float *q,
                             int k, int ef, const uint8_t *allowed, int64_t limit, int64_t *out_ids,
                             float *out_d) noexcept nogil:
    """One query's walk of the graph as it is now (see the module docstring); -1 when out of memory."""
    cdef IndexRows snap_rows
    cdef HnswGraph snap
    ann_spin_lock(<uint8_t *>&graph.entry_lock)
    snap = graph[0]  # entry point and top level as one pair; the pointers stay: nothing grows
    ann_spin_unlock(<uint8_t *>&graph.entry_lock)
    snap_rows = rows[0]  # read after the entry point: its row is counted
    snap_rows.admit_below = limit
    return search_graph(&snap_rows, &snap, s, q, k, ef, allowed, out_ids, out_d)


def room(HNSWIndex index) -> int:
    """Rows an :func:`add` has room for without moving memory (0 until :func:`reserve`); their upper
    links may still want more (``NoRoomError``)."""
    if not index._locks_kept:
        return 0
    return int(index.rows.cap - index.rows.n)


def reserve(HNSWIndex index, int64_t rows, int64_t upper_words) -> None:
    """Room for ``rows`` rows in all, ``upper_words`` upper link words beyond those in use, and the row
    locks kept from now on. Moves memory: call it while no search runs (refused otherwise)."""
    index._enter_write("reserve")
    try:
        index._reserve(max(rows, 1))
        if not index._external:
            index._own_room()
        index._reserve_upper(index.graph.upper_len + max(upper_words, 1))
        if ann_idmap_reserve(&index._idmap, index.rows.cap - index.rows.n) < 0:  # no rehash beside searches
            raise MemoryError()
        if not index._locks_kept:
            index.graph.row_locks = <uint8_t *>calloc(index.rows.cap, 1)
            if index.graph.row_locks == NULL:
                raise MemoryError()
            index._locks_kept = True
    finally:
        index._writing = False


def attach(HNSWIndex index, vectors: object) -> None:
    """Read the rows' vectors from ``vectors`` from now on, without a copy: a float32 C-contiguous (rows, dim)
    array whose first rows are the index's (the caller's promise: a memtable's, whose written rows never
    change) and which holds each later row before it is added (:func:`add` then copies nothing and checks
    its rows are that array's next ones). The index keeps a reference; its own copy, if any, is freed.
    Moves what a walk reads: call it while no search runs (refused otherwise)."""
    cdef cnp.ndarray arr = vectors
    if (arr.dtype != np.float32 or not arr.flags.c_contiguous or arr.ndim != 2 or arr.shape[1] != index.rows.dim
            or arr.shape[0] < index.rows.n):
        raise ValidationError(f"vectors must be float32, C-contiguous, (>= {index.rows.n}, {index.rows.dim})")
    index._enter_write("attach")
    try:
        index._kept = arr
        index._external = True
        index.graph.vectors = <const float *>cnp.PyArray_DATA(arr)
        free(index._own)
        index._own = NULL
        index._own_cap = 0
    finally:
        index._writing = False


def add(HNSWIndex index, ids: object, vectors: object, int ef_construction) -> None:
    """Insert rows (as ``add(ids, vectors, threads=1)``, at ``ef_construction``) beside :func:`search`
    calls; ``NoRoomError`` when it needs room :func:`reserve` did not give (nothing changed)."""
    cdef int old_ef = index.graph.ef_construction
    if not index._locks_kept:
        raise RuntimeError("hnsw_shared.add on an index that reserve() has not made shared")
    if ef_construction < 1:
        raise ValidationError(f"ef_construction must be >= 1, got {ef_construction}")
    # The write taken here, at once after the check (no Python call between): searches of a snapshot may
    # run beside it, nothing else (plain searches and every other change are refused until it ends).
    if index._writing or index._readers > index._shared_readers:
        raise RuntimeError("HNSWIndex: add while another call is using the index")
    index._writing = True
    index._adding_shared = True
    try:
        index.graph.ef_construction = max(ef_construction, index.graph.M)  # read by this thread only
        index._add(ids, vectors, 1)
    except BaseException:
        index.graph.ef_construction = old_ef
        raise
    finally:
        index._adding_shared = False
        index._writing = False


def search(HNSWIndex index, queries: object, Py_ssize_t k, ef: int | None, int64_t limit,
           mask: object = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per query ((m, k) ids int64 and distances float32; -1 / inf padded) over rows ``[0, limit)``
    that ``mask`` (bool or uint8, at least ``limit`` long; None: all) allows, beside an :func:`add`."""
    cdef cnp.ndarray qs = index._as_matrix(queries, "queries")
    cdef int eff = index._search_effort(k, ef)
    cdef Py_ssize_t m = qs.shape[0], i
    cdef int nt, t, taken = 0
    cdef int64_t n_allowed, n_cand = 0, r
    cdef int failed = 0
    cdef bint exact
    cdef const uint8_t *allowed = NULL
    cdef const int32_t *cand = NULL
    cdef const float *qp = <const float *>cnp.PyArray_DATA(qs)
    cdef int dim = index.rows.dim
    cdef ann_scratch *scr[MAX_POOL]
    cdef int64_t *oi
    cdef float *od
    if index._writing and not index._adding_shared:
        raise RuntimeError("HNSWIndex: search while add is running on the index")
    index._check_searchable()
    index._readers += 1  # at once after the check: an exclusive change waits for these (refused meanwhile)
    index._shared_readers += 1
    try:
        out_ids = np.full((m, k), -1, dtype=np.int64)
        out_d = np.full((m, k), np.inf, dtype=np.float32)
        limit = min(limit, index.rows.n)
        if limit <= 0 or m == 0:
            return out_ids, out_d
        bitmap = None
        if mask is not None:
            bitmap = np.ascontiguousarray(mask)
            bitmap = bitmap.view(np.uint8) if bitmap.dtype == np.bool_ else bitmap.astype(np.uint8, copy=False)
            if bitmap.ndim != 1 or bitmap.shape[0] < limit:
                raise ValidationError(f"mask must cover the {limit} rows searched")
            allowed = <const uint8_t *>cnp.PyArray_DATA(bitmap)
        n_allowed = limit if bitmap is None else int(np.count_nonzero(bitmap[:limit]))
        if n_allowed == limit:  # every row allowed: the walk without a mask
            bitmap = None
            allowed = NULL
        live = None if bitmap is None else bitmap[:limit]  # the rows an exact scan takes (None: all)
        if index.rows.n_deleted:  # deletion flags do not change while searches run (mark_deleted waits)
            live = copy_array(index.rows.deleted, limit, cnp.NPY_UINT8) == 0
            if bitmap is not None:
                live &= bitmap[:limit].astype(bool)
            n_allowed = int(np.count_nonzero(live))
        # As HNSWIndex.search: a scan when no more rows are allowed than k or ef, or when a filter leaves
        # few enough that the scan beats the walk; an unfiltered search of more rows walks.
        exact = n_allowed <= max(k, eff) or (bitmap is not None and index._prefer_exact(n_allowed, <int>k, eff))
        if exact:
            candidates = (np.arange(limit, dtype=np.int32) if live is None
                          else np.flatnonzero(live).astype(np.int32))
            cand = <const int32_t *>cnp.PyArray_DATA(candidates)
            n_cand = candidates.shape[0]
        oi = <int64_t *>cnp.PyArray_DATA(out_ids)
        od = <float *>cnp.PyArray_DATA(out_d)
        nt = 1 if m < 4 else max(1, min(os.cpu_count() or 1, MAX_POOL, <int>m))
        while taken < nt:
            scr[taken] = index._take_scratch()
            taken += 1
        with nogil:
            if nt == 1:
                for i in range(m):
                    if exact:
                        r = index._search_exact(scr[0], qp + i * dim, <int>k, cand, n_cand, oi + i * k, od + i * k)
                    else:
                        r = search_snapshot(&index.rows, &index.graph, scr[0], qp + i * dim, <int>k, eff, allowed,
                                            limit, oi + i * k, od + i * k)
                    if r < 0:
                        failed += 1
            else:
                for i in prange(m, num_threads=nt, schedule="dynamic", chunksize=4):
                    if exact:
                        r = index._search_exact(scr[threadid()], qp + i * dim, <int>k, cand, n_cand,
                                                oi + i * k, od + i * k)
                    else:
                        r = search_snapshot(&index.rows, &index.graph, scr[threadid()], qp + i * dim, <int>k,
                                            eff, allowed, limit, oi + i * k, od + i * k)
                    if r < 0:
                        failed += 1
    finally:
        for t in range(taken):
            index._give_scratch(scr[t])
        index._readers -= 1
        index._shared_readers -= 1
    if failed:
        raise MemoryError()
    return out_ids, out_d
