"""The core every vector index kind is built on: ``VectorIndex``, the base of HNSWIndex and IVFIndex.

As hnswlib's ``AlgorithmInterface`` and qdrant's ``VectorIndex`` trait, the base
owns what does not depend on how rows are found:

- the rows: int64 external ids, deletion flags, the id -> row map, growth;
- the checks on input (vector matrices, queries, ids, non-finite and, under
  cosine, zero vectors) and ``add`` / ``mark_deleted``;
- per-thread scratch memory (a small pool, so a search allocates nothing);
- the read/write guards (``add`` refuses to run during a search and the reverse; a graph kind's
  ``add_shared`` runs beside searches of a snapshot, see hnsw_shared.pyx, and then nothing may grow:
  ``NoRoomError``);
- filters, turned into a bitmap over rows and the list of allowed live rows,
  and the exact scan of those rows when the kind finds that cheaper;
- the query drivers ``search`` (one query, GIL released) and ``search_batch``
  (OpenMP threads over the queries);
- ``save`` / ``load`` over the index file's framing (index_file.py).

A kind implements only its GIL-free search of one query (``_search_one``), the
distances from a query to given rows (``_row_distances``, for the exact scan),
storing new rows (``_add_rows``), its per-row arrays (``_grow``), its file
header fields and body arrays, and its knobs (``_search_effort``: HNSW's ef,
IVF's nprobe; ``_prefer_exact``: when an exact scan beats the approximate one).
Each kind's public ``search``/``search_batch``/``add`` are one-line wrappers
that keep its own keyword names.

The index file's framing (header, body CRC, end magic; ``save`` / ``load``) is
``index_file.py``'s; each kind's module documents its header fields and body.
"""

cimport numpy as cnp
from cython.parallel cimport prange, threadid
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memset

import os

import numpy as np

from proximadb.errors import (
    DimensionMismatchError,
    InvalidVectorError,
    ValidationError,
    VectorExistsError,
    VectorNotFoundError,
)
from proximadb.index.index_file import IndexFileReader, write_index_file


class NoRoomError(RuntimeError):
    """An add_shared needs memory the index has not reserved (it grows only while no search runs): nothing
    changed; the caller reserves room with searches kept out (hnsw_shared.reserve) and adds again."""

cnp.import_array()

METRICS = ("l2", "cosine", "dot")

cdef enum:
    EXACT_BLOCK = 128   # candidate rows per _row_distances call of the exact scan


# ---------------------------------------------------------------- inputs --

cdef cnp.ndarray as_matrix(object vectors, Py_ssize_t dim, str what):
    """(n, dim) float32 C-contiguous; one vector of dim is taken as a 1-row matrix."""
    cdef cnp.ndarray arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim == 1 and arr.shape[0] == dim:
        arr = arr.reshape(1, dim)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise DimensionMismatchError(f"{what} must have shape (n, {dim}), got {tuple(np.shape(vectors))}")
    return arr


cdef cnp.ndarray as_query(object query, Py_ssize_t dim):
    """A float32 C-contiguous query of dim components, without a copy when it already is one."""
    cdef cnp.ndarray arr
    if (type(query) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>query) == cnp.NPY_FLOAT32
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>query)):
        arr = <cnp.ndarray>query
    else:
        arr = np.ascontiguousarray(query, dtype=np.float32)
    if cnp.PyArray_SIZE(arr) != dim or (arr.ndim != 1 and not (arr.ndim == 2 and arr.shape[0] == 1)):
        raise DimensionMismatchError(f"query must have {dim} components, got shape {np.shape(query)}")
    return arr


cdef inline bint is_row_mask(object filter_ids, int64_t n):
    """filter_ids is a uint8/bool bitmap over the n rows (else: ids)."""
    return (isinstance(filter_ids, np.ndarray) and filter_ids.dtype in (np.uint8, np.bool_)
            and filter_ids.ndim == 1 and filter_ids.shape[0] == n)


cdef object allowed_bitmap(object filter_ids, bint exact_forced, int64_t n, const ann_idmap *idmap):
    """The uint8 bitmap over rows of a filter, or None when there is no filter and no forced exact
    scan. filter_ids: a uint8/bool bitmap over the n rows, or ids."""
    cdef int64_t i, m
    cdef int32_t r
    cdef cnp.ndarray bitmap, ids_arr
    cdef uint8_t *bm
    cdef const int64_t *ip
    if filter_ids is None:
        if not exact_forced:
            return None
        return np.ones(n, dtype=np.uint8)
    if is_row_mask(filter_ids, n):
        return np.ascontiguousarray(filter_ids).view(np.uint8)
    ids_arr = np.ascontiguousarray(filter_ids, dtype=np.int64).reshape(-1)
    bitmap = np.zeros(n, dtype=np.uint8)
    bm = <uint8_t *>cnp.PyArray_DATA(bitmap)
    ip = <const int64_t *>cnp.PyArray_DATA(ids_arr)
    m = ids_arr.shape[0]
    for i in range(m):
        r = ann_idmap_get(idmap, ip[i])
        if r >= 0:
            bm[r] = 1
    return bitmap


cdef inline uint64_t nonzero_bytes(uint64_t w) noexcept nogil:
    """The top bit of each byte of w set where that byte is not zero (SWAR: eight bytes at a time)."""
    cdef uint64_t low7 = 0x7F7F7F7F7F7F7F7FULL
    return (((w & low7) + low7) | w) & ~low7


cdef int64_t count_allowed(const uint8_t *bm, const uint8_t *deleted, int64_t n) noexcept nogil:
    """Rows allowed by the bitmap and not deleted (no array written: a graph walk needs only this).
    Eight rows per step (``nonzero_bytes``; a per-byte loop took most of a filtered search at 1M rows)."""
    cdef int64_t i = 0, cnt = 0
    cdef uint64_t a, d
    while i + 8 <= n:
        memcpy(&a, bm + i, 8)
        memcpy(&d, deleted + i, 8)
        # one bit per byte (bit 7) -> 0/1 per byte, summed by the multiply into the top byte
        cnt += <int64_t>((((nonzero_bytes(a) & ~nonzero_bytes(d)) >> 7) * 0x0101010101010101ULL) >> 56)
        i += 8
    while i < n:
        cnt += (bm[i] != 0) & (deleted[i] == 0)
        i += 1
    return cnt


cdef cnp.ndarray allowed_rows(cnp.ndarray bitmap, const uint8_t *deleted, int64_t n, int64_t cnt):
    """The allowed live rows (int32, ascending) of a bitmap that allows cnt of them (a count from the
    caller: never more than cnt written, and the rows found if there were fewer)."""
    cdef const uint8_t *bm = <const uint8_t *>cnp.PyArray_DATA(bitmap)
    cdef cnp.ndarray rows = np.empty(cnt, dtype=np.int32)
    cdef int32_t *rp = <int32_t *>cnp.PyArray_DATA(rows)
    cdef int64_t i, j = 0
    with nogil:
        for i in range(n):
            if bm[i] and not deleted[i]:
                if j == cnt:
                    break
                rp[j] = <int32_t>i
                j += 1
    return rows if j == cnt else rows[:j]


# ------------------------------------------------------------------ base --

cdef class VectorIndex:
    """Base of the vector index kinds; not used on its own (see the module docstring)."""

    def __cinit__(self) -> None:
        memset(&self.rows, 0, sizeof(IndexRows))
        self.rows.admit_below = INT64_MAX
        memset(&self._idmap, 0, sizeof(ann_idmap))
        self._pool_n = 0

    def __dealloc__(self) -> None:
        cdef int i
        for i in range(self._pool_n):
            ann_scratch_free(self._pool[i])
        self._pool_n = 0
        free(self.rows.ids)
        free(self.rows.deleted)
        ann_idmap_free(&self._idmap)

    cdef int _init_rows(self, int dim, str metric, object seed) except -1:
        if dim < 1:
            raise ValidationError(f"dim must be >= 1, got {dim}")
        if metric not in METRICS:
            raise ValidationError(f"metric must be one of {METRICS}, got {metric!r}")
        self.rows.dim = dim
        self.rows.metric = METRICS.index(metric)
        self.rows.dot_offset = 1.0 if self.rows.metric == METRIC_COSINE else 0.0
        self._seed = <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF)
        return 0

    # -- properties --

    @property
    def dim(self) -> int:
        return self.rows.dim

    @property
    def metric(self) -> str:
        return METRICS[self.rows.metric]

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def n_rows(self) -> int:
        """Rows stored, deleted ones included."""
        return self.rows.n

    @property
    def n_deleted(self) -> int:
        return self.rows.n_deleted

    @property
    def ids(self) -> np.ndarray:
        """External id of every internal row (a copy), in row order."""
        if self.rows.n == 0:
            return np.empty(0, dtype=np.int64)
        return copy_array(self.rows.ids, self.rows.n, cnp.NPY_INT64)

    def __len__(self) -> int:
        return self.rows.n - self.rows.n_deleted

    def __contains__(self, id: int) -> bool:
        cdef int32_t r = ann_idmap_get(&self._idmap, <int64_t>id)
        return r >= 0 and not self.rows.deleted[r]

    # -- memory, scratch, guards --

    cdef int _reserve(self, int64_t need) except -1:
        """Room for need rows in the base's and the kind's per-row arrays."""
        cdef int64_t old = self.rows.cap
        cdef int64_t cap
        cdef void *p
        if need <= old:
            return 0
        if self._adding_shared:
            raise NoRoomError(f"{need} rows need room the index has not reserved ({old})")
        cap = max(need, old + old // 2, 1024)
        p = realloc(self.rows.ids, cap * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self.rows.ids = <int64_t *>p
        p = realloc(self.rows.deleted, cap)
        if p == NULL:
            raise MemoryError()
        self.rows.deleted = <uint8_t *>p
        memset(self.rows.deleted + old, 0, cap - old)
        self._grow(old, cap)
        self.rows.cap = cap
        return 0

    cdef cnp.ndarray _as_matrix(self, object vectors, str what):
        """(n, dim) float32 C-contiguous; one vector is a 1-row matrix; DimensionMismatchError else."""
        return as_matrix(vectors, self.rows.dim, what)

    cdef ann_scratch *_take_scratch(self) except NULL:
        cdef ann_scratch *s
        if self._pool_n > 0:
            self._pool_n -= 1
            return self._pool[self._pool_n]
        s = ann_scratch_new()
        if s == NULL:
            raise MemoryError()
        return s

    cdef void _give_scratch(self, ann_scratch *s) noexcept:
        if self._pool_n < MAX_POOL:
            self._pool[self._pool_n] = s
            self._pool_n += 1
        else:
            ann_scratch_free(s)

    cdef int _enter_write(self, str call) except -1:
        """Mark a change in progress (cleared by setting _writing = False); refused while any call runs.
        (hnsw_shared.add takes the write itself, beside searches of a snapshot: ``_adding_shared``.)"""
        if self._readers or self._writing:
            raise RuntimeError(f"{type(self).__name__}: {call} while another call is using the index")
        self._writing = True
        return 0

    cdef int _enter_read(self) except -1:
        """Count a search in progress (the caller decrements _readers); refused while a change runs."""
        if self._writing:
            raise RuntimeError(f"{type(self).__name__}: search while add is running on the index")
        self._check_searchable()
        self._readers += 1
        return 0

    cdef bint _few_rows(self, Py_ssize_t k, int effort, object exact):
        """No more live rows than k or the search effort, and the planner free to choose: scan them."""
        return exact is None and self.rows.n - self.rows.n_deleted <= max(k, effort)

    cdef tuple _prepare_filter(self, object filter_ids, object exact, int k, int effort, object allowed_count):
        """(bitmap over rows or None, allowed live rows int32 (only for an exact scan) or None, use exact scan).

        Unfiltered, when the live rows are no more than the search effort or k, they are scanned: as
        cheap as a walk, and exact (a graph walk reaches only the rows linked from its entry point;
        HnswGraphIndex.reachable_count says how many those are).

        allowed_count: the caller's count of the rows a bitmap ``filter_ids`` allows (a planner that
        counted them already), taken instead of counting again when no row of the index is deleted."""
        cdef bint scan = bool(exact) or (filter_ids is None and self._few_rows(k, effort, exact))
        cdef int64_t cnt
        bitmap = allowed_bitmap(filter_ids, scan, self.rows.n, &self._idmap)
        if bitmap is None:
            return None, None, False
        if (allowed_count is not None and self.rows.n_deleted == 0 and is_row_mask(filter_ids, self.rows.n)
                and 0 <= allowed_count <= self.rows.n):
            cnt = allowed_count
        else:
            cnt = count_allowed(<const uint8_t *>cnp.PyArray_DATA(bitmap), self.rows.deleted, self.rows.n)
        if exact is None:
            exact = self._prefer_exact(cnt, k, effort)
        if not exact:  # the walk reads the bitmap: no row list to build
            return bitmap, None, False
        return bitmap, allowed_rows(bitmap, self.rows.deleted, self.rows.n, cnt), True

    # -- what each kind implements --

    cdef int _grow(self, int64_t old_cap, int64_t cap) except -1:
        """Grow the kind's per-row arrays from old_cap to cap rows."""
        raise NotImplementedError(type(self).__name__)

    cdef int _check_searchable(self) except -1:
        """Raise when the index cannot be searched yet (IVF before training)."""
        return 0

    cdef int _search_effort(self, Py_ssize_t k, object effort) except -1:
        """The kind's search knob (ef, nprobe) from the caller's value or the default; checks k too."""
        raise NotImplementedError(type(self).__name__)

    cdef bint _prefer_exact(self, int64_t n_allowed, int k, int effort) except -1:
        """Whether an exact scan of n_allowed filtered rows is cheaper than the approximate search."""
        raise NotImplementedError(type(self).__name__)

    cdef cnp.ndarray _before_add(self, cnp.ndarray vectors):
        """The checked vectors as the kind stores them, before the write guard is taken."""
        return vectors

    cdef int _add_rows(self, int64_t n0, cnp.ndarray vectors, int threads) except -2:
        """Store rows n0.. (ids and flags are in place), advancing rows.n to the rows linked in;
        0, or -1 when memory ran out part-way."""
        raise NotImplementedError(type(self).__name__)

    cdef int64_t _search_one(self, ann_scratch *s, const float *q, int k, int effort, const uint8_t *allowed,
                             int64_t *out_ids, float *out_d) noexcept nogil:
        """Approximate top-k of one query into the outputs (allowed: NULL or a bitmap over rows); the
        hit count, or -1 when out of memory."""
        return -1

    cdef void _row_distances(self, const float *q, const int32_t *rows, int64_t n, float *out) noexcept nogil:
        """out[j] = distance from the prepared query q to row rows[j]."""
        pass

    cdef tuple _header_fields(self):
        """The kind's header fields after the magic/version/size prefix, in its header's order."""
        raise NotImplementedError(type(self).__name__)

    cdef list _body_arrays(self):
        """The arrays of the file body, in file order (views over index memory)."""
        raise NotImplementedError(type(self).__name__)

    # -- changes --

    cdef int _add(self, object ids, object vectors, int threads) except -1:
        cdef cnp.ndarray vecs = self._as_matrix(vectors, "vectors")
        cdef cnp.ndarray ids_arr = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        cdef int64_t m = vecs.shape[0]
        cdef int64_t i, n0 = self.rows.n
        cdef int32_t r
        cdef int rc
        cdef const int64_t *ip
        if ids_arr.shape[0] != m:
            raise ValidationError(f"{ids_arr.shape[0]} ids for {m} vectors")
        if m == 0:
            return 0
        if not np.isfinite(vecs).all():
            raise InvalidVectorError("vectors contain NaN or infinite components")
        if self.rows.metric == METRIC_COSINE and not np.einsum("ij,ij->i", vecs, vecs).all():
            raise InvalidVectorError("zero vector cannot be indexed under the cosine metric")
        if n0 + m >= 2**31 - 1:
            raise ValidationError(f"{type(self).__name__} holds at most 2**31 - 2 rows")
        if np.unique(ids_arr).shape[0] != m:
            raise ValidationError("duplicate ids in one add() call")
        ip = <const int64_t *>cnp.PyArray_DATA(ids_arr)
        for i in range(m):
            r = ann_idmap_get(&self._idmap, ip[i])
            if r >= 0 and not self.rows.deleted[r]:
                raise VectorExistsError(f"id {ip[i]} is already in the index")
        vecs = self._before_add(vecs)
        if not self._adding_shared:  # else hnsw_shared.add holds the write already
            self._enter_write("add")
        try:
            self._reserve(n0 + m)
            if ann_idmap_reserve(&self._idmap, m) < 0:
                raise MemoryError()
            memcpy(self.rows.ids + n0, ip, m * sizeof(int64_t))
            memset(self.rows.deleted + n0, 0, m)
            rc = self._add_rows(n0, vecs, threads)
            # Rows stored and linked in (all of them unless memory ran out).
            for i in range(n0, self.rows.n):
                ann_idmap_put_nogrow(&self._idmap, self.rows.ids[i], <int32_t>i)
            if rc < 0:
                raise MemoryError(f"out of memory while adding to the {type(self).__name__}")
        finally:
            self._writing = False
        return 0

    def mark_deleted(self, id: int) -> None:
        """Hide id from every later search (an HNSW graph keeps its row as a waypoint)."""
        cdef int32_t r = ann_idmap_get(&self._idmap, <int64_t>id)
        if r < 0 or self.rows.deleted[r]:
            raise VectorNotFoundError(f"id {id} is not in the index")
        self._enter_write("mark_deleted")
        self.rows.deleted[r] = 1
        self.rows.n_deleted += 1
        self._writing = False

    # -- queries --

    cdef int64_t _search_exact(self, ann_scratch *s, const float *q, int k, const int32_t *candidates,
                               int64_t n_candidates, int64_t *out_ids, float *out_d) noexcept nogil:
        """Exact top-k over the given rows (the allowed, live rows of a selective filter)."""
        cdef int64_t i, j, nb
        cdef float dbuf[EXACT_BLOCK]
        cdef ann_heap *top = &s.top
        q = prepare_query(&self.rows, s, q)
        if q == NULL or ann_heap_reserve(top, k + 1) < 0:
            return -1
        top.n = 0
        i = 0
        while i < n_candidates:
            nb = min(<int64_t>EXACT_BLOCK, n_candidates - i)
            self._row_distances(q, candidates + i, nb, dbuf)
            for j in range(nb):
                offer(top, k, dbuf[j], candidates[i + j])
            i += nb
        return write_results(&self.rows, s, k, out_ids, out_d)

    cdef tuple _search(self, object query, Py_ssize_t k, object effort, object filter_ids, object exact,
                       object allowed_count):
        cdef cnp.ndarray q = as_query(query, self.rows.dim)
        cdef int eff = self._search_effort(k, effort)
        cdef cnp.npy_intp kk = k
        cdef cnp.ndarray out_ids, out_d, candidates = None
        cdef const uint8_t *allowed = NULL
        cdef const float *qp = <const float *>cnp.PyArray_DATA(q)
        cdef ann_scratch *s
        cdef int64_t r
        cdef bint use_exact = False
        self._enter_read()
        try:
            if filter_ids is not None or exact or self._few_rows(k, eff, exact):
                bitmap, candidates, use_exact = self._prepare_filter(filter_ids, exact, <int>k, eff, allowed_count)
                if bitmap is not None:
                    allowed = <const uint8_t *>cnp.PyArray_DATA(bitmap)
            out_ids = cnp.PyArray_EMPTY(1, &kk, cnp.NPY_INT64, 0)
            out_d = cnp.PyArray_EMPTY(1, &kk, cnp.NPY_FLOAT32, 0)
            s = self._take_scratch()
            s.measured = 0
            with nogil:
                if use_exact:
                    r = self._search_exact(s, qp, <int>k, <const int32_t *>cnp.PyArray_DATA(candidates),
                                           cnp.PyArray_SIZE(candidates), <int64_t *>cnp.PyArray_DATA(out_ids),
                                           <float *>cnp.PyArray_DATA(out_d))
                else:
                    r = self._search_one(s, qp, <int>k, eff, allowed, <int64_t *>cnp.PyArray_DATA(out_ids),
                                         <float *>cnp.PyArray_DATA(out_d))
            self._last_measured = s.measured
            self._give_scratch(s)
        finally:
            self._readers -= 1
        if r < 0:
            raise MemoryError()
        if r < k:
            return out_ids[:r], out_d[:r]
        return out_ids, out_d

    cdef tuple _search_batch(self, object queries, Py_ssize_t k, object effort, object filter_ids,
                             object exact, object threads, object allowed_count):
        cdef cnp.ndarray qs = self._as_matrix(queries, "queries")
        cdef int eff = self._search_effort(k, effort)
        cdef Py_ssize_t m = qs.shape[0], i
        cdef int nt = threads if threads else (os.cpu_count() or 1)
        cdef cnp.ndarray out_ids, out_d, candidates = None
        cdef const uint8_t *allowed = NULL
        cdef const int32_t *cp = NULL
        cdef int64_t n_candidates = 0
        cdef bint use_exact = False
        cdef ann_scratch *scr[MAX_POOL]
        cdef int t
        cdef int64_t r
        cdef int failed = 0
        cdef const float *qp = <const float *>cnp.PyArray_DATA(qs)
        cdef int64_t *oi
        cdef float *od
        cdef int dim = self.rows.dim
        nt = max(1, min(nt, MAX_POOL, max(<int>m, 1)))
        out_ids = np.full((m, k), -1, dtype=np.int64)
        out_d = np.full((m, k), np.inf, dtype=np.float32)
        oi = <int64_t *>cnp.PyArray_DATA(out_ids)
        od = <float *>cnp.PyArray_DATA(out_d)
        self._enter_read()
        try:
            if filter_ids is not None or exact or self._few_rows(k, eff, exact):
                bitmap, candidates, use_exact = self._prepare_filter(filter_ids, exact, <int>k, eff, allowed_count)
                if bitmap is not None:
                    allowed = <const uint8_t *>cnp.PyArray_DATA(bitmap)
                if candidates is not None:
                    cp = <const int32_t *>cnp.PyArray_DATA(candidates)
                    n_candidates = cnp.PyArray_SIZE(candidates)
            for t in range(nt):
                scr[t] = self._take_scratch()
            with nogil:
                for i in prange(m, num_threads=nt, schedule="dynamic", chunksize=4):
                    if use_exact:
                        r = self._search_exact(scr[threadid()], qp + i * dim, <int>k, cp, n_candidates,
                                               oi + i * k, od + i * k)
                    else:
                        r = self._search_one(scr[threadid()], qp + i * dim, <int>k, eff, allowed,
                                             oi + i * k, od + i * k)
                    if r < 0:
                        failed += 1
            for t in range(nt):
                self._give_scratch(scr[t])
        finally:
            self._readers -= 1
        if failed:
            raise MemoryError()
        return out_ids, out_d

    # -- persistence --

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to path (atomically: a temporary file renamed over it). Counted as a reader:
        the body is written from views over the index's memory, so a change (add reallocates that
        memory) is refused until it is done."""
        if self._writing:
            raise RuntimeError(f"{type(self).__name__}: save while add is running on the index")
        self._readers += 1
        try:
            write_index_file(path, type(self).FILE_FORMAT, self._header_fields(), self._body_arrays())
        finally:
            self._readers -= 1

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VectorIndex:
        """Read an index written by save(); CorruptionError if the file is damaged."""
        cdef VectorIndex idx
        cdef int64_t i
        fmt = cls.FILE_FORMAT
        with IndexFileReader(path, fmt) as file:
            if file.version == fmt.version:
                idx, body = cls._from_header(file.fields, path)
            else:
                idx, body = cls._from_old_header(file.version, file.fields, path)
            file.expect_body(body)
            for arr in idx._body_for_load(path):
                file.read_array(arr)
            file.finish()
        if int(np.count_nonzero(view_array(idx.rows.deleted, idx.rows.n, cnp.NPY_UINT8))) != idx.rows.n_deleted:
            raise fmt.error(path, "deleted count does not match the deletion flags")
        idx._check_loaded(path)
        if ann_idmap_reserve(&idx._idmap, idx.rows.n) < 0:
            raise MemoryError()
        for i in range(idx.rows.n):
            ann_idmap_put_nogrow(&idx._idmap, idx.rows.ids[i], <int32_t>i)
        return idx

    def _body_for_load(self, path: object) -> object:
        """The body arrays to fill, in file order; a kind whose later arrays are sized by earlier ones
        yields them one at a time (each is filled before the next is asked for)."""
        return self._body_arrays()

    def _check_loaded(self, path: object) -> None:
        """The kind's structural checks on a loaded body (raise the format's error)."""
