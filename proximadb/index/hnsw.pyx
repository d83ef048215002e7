"""HNSW approximate nearest-neighbour index (Malkov & Yashunin), GIL-free build and search.

Rows are numbered in insertion order (``reorder()`` renumbers them breadth-
first for memory locality). Per row the index keeps one level-0 record, its
link list ``[count, M0 ids]``, its int64 external id, its top level and a
deletion flag. Rows above level 0 own a block of ``level * (M + 1)`` int32 in
one pool (``[count, M ids]`` per level), in row order in the file. Levels
come from a splitmix64 generator seeded by ``seed``, so a build is identical
for a given seed, data and insertion order. Neighbours are chosen with the
paper's heuristic (hnswlib's ``getNeighborsByHeuristic2``), so recall matches
hnswlib at the same ``M`` / ``ef_construction`` / ``ef``.

One copy of the vectors (issue #11): the index reads the rows' float32 vectors
through a pointer, row r at ``r * dim``, and keeps no second copy of vectors
it is given to keep. A segment's index is built over the segment's memory-mapped
``vectors.f32`` (``add(..., copy=False)``: an empty index keeps a float32
C-contiguous array as it is) and, after ``load``, is given that map again
(``attach_vectors``; until then it refuses to search). Otherwise (``copy=True``,
the default: the memtable's graph, whose rows grow in RAM) ``add`` copies the
rows into memory of the index's own, grown as rows come; a later ``add`` to an
index over kept vectors first copies them there too. Either way the one walk
(``_hnsw_graph.pyx``) reads ``graph.vectors``. Vectors are stored as given,
not normalised: under ``cosine`` the index keeps ``1 / |row|`` per row
(float32, computed in float64) and the distance of a normalised query ``q`` to
row ``v`` is ``1 - (q . v) / |v|``, of two rows ``1 - (a . b) / (|a| |b|)``.
While every row is of unit length to float32 rounding (``UNIT_NORM_SLACK``: a
collection normalises its rows under cosine) the walk skips the norms and
computes ``1 - (q . v)``, the exact scan's distance, at the old cost.

Distances: ``l2`` squared Euclidean, ``cosine`` 1 - cos (queries normalised),
``dot`` the negated inner product. Lower is better everywhere.

Filtered search returns allowed rows only; from 5% to 20% allowed the walk
measures allowed rows only, passing through the others' links (filter first,
``_hnsw_graph.pyx``'s ``gather_filtered``); when the allowed set is small (see
``use_exact``) an exact scan of the allowed rows is cheaper and always exact.
Deleted rows are traversed but never returned.

``add(..., threads=n)`` inserts in parallel with per-row spinlocks (never two
held at once); only the single-threaded build is deterministic (a segment's
build uses every core: ``threads=0``, see registry.py). Either leaves
every row linked from the entry point (``reachable_count()`` counts them). The graph's
insertion and repair are in ``_hnsw_build.pyx``; its search walk, checks and the base class this
index shares with the int8 one (``hnsw_int8.pyx``) in ``_hnsw_graph.pyx``.

Threads: searches may run concurrently (each takes its own scratch memory);
``add``/``mark_deleted``/``attach_vectors`` must not run while a search on the
same index is in progress (that raises RuntimeError rather than corrupting memory).

File format (all integers little-endian), version 2: the graph, without the vectors::

    offset size  field
    0      8     magic b"PXHNSW\\x00\\x01"
    8      4     u32 format version (2)
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
    96           body:  ids i64[n] | links0 i32[n*(M0+1)] | upper pool i32[upper len]
                        | levels u8[n] | deleted u8[n] | inverse norms f32[n] (cosine only; else absent)
    end-8  4     u32 CRC32C of the body
    end-4  4     b"PXHE"

So a file is ``96 + 8n + 4n(M0+1) + 4 * upper len + 2n (+ 4n under cosine) + 8`` bytes,
``dim * 4`` bytes a row less than version 1.

Version 1 (written up to git 77b1ee1) has the same header (version field 1) and the body
``ids i64[n] | vectors f32[n*dim] (normalised under cosine) | links0 | upper pool | levels |
deleted``, no norms. ``load`` still reads it: the vectors block is checked (CRC) and dropped,
and under ``cosine`` the norms are computed from the vectors ``attach_vectors`` is given; a
later ``save`` writes version 2.

The header/CRC/end framing, ``save`` and ``load`` are the base's
(``proximadb/index/_base.pyx``); ``load`` then checks the graph's structure
(levels, entry point, every link in range).
"""

cimport cython
cimport numpy as cnp
from cython.parallel cimport prange, threadid
from libc.math cimport log, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy, memset

from proximadb.index._ann cimport *
from proximadb.index._kernels cimport kernel_level, setup_distance_kernels
from proximadb.index._hnsw_graph cimport (
    MAX_LEVEL,
    HnswGraphIndex,
    check_header,
    prefetch_vector,
    search_graph,
    vector_distance,
)
from proximadb.index._hnsw_build cimport Insertion, insert_begin, insert_levels, insert_row, repair_level0
from proximadb.index._hnsw_reorder cimport reorder_rows
from proximadb.index._base cimport (
    METRIC_COSINE,
    MAX_POOL,
    copy_array,
    view_array,
)

import os
import struct

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index._base import METRICS, NoRoomError
from proximadb.index.index_file import IndexFileFormat

cnp.import_array()
setup_distance_kernels(-1)

FILE_FORMAT = IndexFileFormat("HNSW", b"PXHNSW\x00\x01", 2, struct.Struct("<8sIIIIIIII QQQQQ ii"), b"PXHE",
                              older=(1,))
MAGIC = FILE_FORMAT.magic
END_MAGIC = FILE_FORMAT.end_magic
FORMAT_VERSION = FILE_FORMAT.version


# A row whose 1 / |row| is this close to 1 is of unit length to float32 rounding (a collection normalises
# its rows under cosine, in float64): while every row is, the walk reads no norm (graph.inv_norms NULL).
cdef float UNIT_NORM_SLACK = 3e-7


cdef bint all_unit(const float *inv, int64_t n) noexcept nogil:
    cdef int64_t i
    for i in range(n):
        if not (1.0 - UNIT_NORM_SLACK <= inv[i] <= 1.0 + UNIT_NORM_SLACK):
            return False
    return True


cdef void set_inv_norms(const float *v, float *out, int64_t n, int dim) noexcept nogil:
    """out[i] = 1 / |row i| of the n rows at v (the sum in float64, as ann_normalize)."""
    cdef int64_t i
    cdef int j
    cdef double acc
    for i in range(n):
        acc = 0
        for j in range(dim):
            acc += <double>v[i * dim + j] * v[i * dim + j]
        out[i] = <float>(1.0 / sqrt(acc)) if acc > 0 else 1.0


cdef class HNSWIndex(HnswGraphIndex):
    """Hierarchical navigable small-world graph index over float32 vectors.

    ``HNSWIndex(dim, metric="l2", M=16, ef_construction=200, seed=0, max_elements=0)``;
    ``max_elements`` only pre-sizes the storage (it grows as needed).
    """

    FILE_FORMAT = FILE_FORMAT
    # Its fields are declared in hnsw.pxd (_hnsw_grow.pyx grows one).

    def __cinit__(self) -> None:
        self._own = NULL
        self._inv = NULL
        self._kept = None
        self._file_version = FORMAT_VERSION
        self._unit = True

    def __dealloc__(self) -> None:
        free(self._own)
        free(self._inv)

    def __init__(self, int dim, str metric="l2", int M=16, int ef_construction=200, seed: int = 0,
                 max_elements: int = 0) -> None:
        self._init_rows(dim, metric, seed)
        self._init_graph(M, ef_construction)
        if max_elements > 0:
            self._reserve(int(max_elements))

    @property
    def max_level(self) -> int:
        return self.graph.max_level

    @property
    def vectors_attached(self) -> bool:
        """Whether the index has its rows' vectors (its own or kept ones); a loaded index has not
        until ``attach_vectors``."""
        return self.graph.vectors != NULL or self.rows.n == 0

    @property
    def owns_vectors(self) -> bool:
        """Whether the vectors are a copy in the index's own memory (add(copy=True), reorder())."""
        return self._own != NULL

    def __repr__(self) -> str:
        return (f"HNSWIndex(dim={self.rows.dim}, metric={self.metric!r}, M={self.graph.M}, "
                f"ef_construction={self.graph.ef_construction}, seed={self._seed}, len={len(self)})")

    def memory_usage(self) -> dict[str, int]:
        """Bytes held per part, at the current size (not capacity): ``vectors`` the index's own copy
        (0 when it reads kept or attached vectors, reported as ``vectors_mapped``)."""
        cdef int64_t n = self.rows.n
        cdef int64_t vbytes = n * self.rows.dim * 4
        return {
            "vectors": vbytes if self._own != NULL else 0,
            "vectors_mapped": vbytes if self._own == NULL and self.graph.vectors != NULL else 0,
            "norms": n * 4 if self.rows.metric == METRIC_COSINE else 0,
            "links_level0": n * (self.graph.M0 + 1) * 4,
            "links_upper": self.graph.upper_len * 4 + n * 8,
            "ids": n * 8 + self._idmap.cap * 12,
            "flags": n * 2,
        }

    # -- vectors --

    def attach_vectors(self, vectors: object) -> None:
        """The float32 vectors of the rows (row i = vectors[i]), read by every search from now on: a
        float32 C-contiguous array (a segment's memory map) is kept as it is, without a copy; the
        index's own copy, if any, is freed. A loaded index needs this before it searches."""
        cdef cnp.ndarray arr = np.asarray(vectors)
        if arr.dtype != np.float32 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != self.rows.n or arr.shape[1] != self.rows.dim:
            raise ValidationError(f"vectors must have shape ({self.rows.n}, {self.rows.dim}), got {np.shape(arr)}")
        self._enter_write("attach_vectors")
        try:
            self._kept = arr
            self._external = False
            self.graph.vectors = <const float *>cnp.PyArray_DATA(arr) if self.rows.n else NULL
            free(self._own)
            self._own = NULL
            self._own_cap = 0
            if self._norms_stale and self.rows.n:
                with nogil:
                    set_inv_norms(self.graph.vectors, self._inv, self.rows.n, self.rows.dim)
                self._check_unit(0)
            self._norms_stale = False
        finally:
            self._writing = False

    cdef void _check_unit(self, int64_t first) noexcept:
        """After the norms of rows [first, n) were set: the walk reads the norms unless every row is unit."""
        if self._inv == NULL:
            return
        if first == 0:
            self._unit = True
        if self._unit and not all_unit(self._inv + first, self.rows.n - first):
            self._unit = False
        self.graph.inv_norms = NULL if self._unit else self._inv

    cdef int _own_room(self) except -1:
        """Own memory for rows.cap rows holding the vectors (the kept rows copied in, the first time)."""
        cdef int64_t cap = self.rows.cap
        cdef void *p
        if self._own != NULL and self._own_cap >= cap:
            return 0
        if self._adding_shared:
            raise NoRoomError(f"the vectors of {cap} rows need room the index has not reserved")
        p = realloc(self._own, cap * self.rows.dim * sizeof(float))
        if p == NULL:
            raise MemoryError()
        if self._own == NULL and self.rows.n:
            memcpy(p, self.graph.vectors, self.rows.n * self.rows.dim * sizeof(float))
        self._own = <float *>p
        self._own_cap = cap
        self._kept = None
        self.graph.vectors = self._own
        return 0

    # -- the kind's part of the base --

    cdef int _grow(self, int64_t old_cap, int64_t cap) except -1:
        cdef void *p
        HnswGraphIndex._grow(self, old_cap, cap)
        if self.rows.metric == METRIC_COSINE:
            p = realloc(self._inv, cap * sizeof(float))
            if p == NULL:
                raise MemoryError()
            self._inv = <float *>p
            self.graph.inv_norms = NULL if self._unit else self._inv
        return 0

    cdef int _check_searchable(self) except -1:
        if self.graph.vectors == NULL and self.rows.n > 0:
            raise ValidationError("HNSWIndex: no vectors attached (attach_vectors after load)")
        return 0

    cdef cnp.ndarray _before_add(self, cnp.ndarray vectors):
        self._check_searchable()  # adding needs the rows' vectors too
        return vectors

    cdef int64_t _search_one(self, ann_scratch *s, const float *q, int k, int ef, const uint8_t *allowed,
                             int64_t *out_ids, float *out_d) noexcept nogil:
        return search_graph(&self.rows, &self.graph, s, q, k, ef, allowed, out_ids, out_d)

    cdef void _row_distances(self, const float *q, const int32_t *rows, int64_t n, float *out) noexcept nogil:
        cdef int64_t j
        for j in range(n):
            if j + 4 < n:
                prefetch_vector(&self.rows, &self.graph, rows[j + 4])
            out[j] = vector_distance(&self.rows, &self.graph, q, rows[j])

    cdef int _add_rows(self, int64_t n0, cnp.ndarray vectors, int threads) except -2:
        cdef int64_t m = vectors.shape[0]
        cdef int64_t i, upper = self.graph.upper_len
        cdef int dim = self.rows.dim
        cdef int rc = 0
        cdef const float *xp = <const float *>cnp.PyArray_DATA(vectors)
        cdef ann_scratch *s
        cdef ann_scratch *s_held
        cdef int nt = threads if threads > 0 else (os.cpu_count() or 1)
        cdef int64_t start, end = n0 + m
        cdef bint interleave = self._interleave and m > 1
        cdef Insertion held
        cdef uint64_t rng = self.graph.rng_state
        if self._external:  # the caller's array holds the rows already (hnsw_shared.attach)
            if xp != self.graph.vectors + n0 * dim or n0 + m > self._kept.shape[0]:
                raise ValidationError("an index reading an attached array adds that array's next rows only")
        elif not (n0 == 0 and self._keep):
            self._own_room()  # (room for rows.cap rows, reserved by _add: NoRoomError beside searches)
        # Levels and upper room first: an add beside searches (hnsw_shared.pyx) that finds too little room
        # leaves before it wrote anything, the level generator where it was (the same graph when it adds again).
        upper = self._draw_levels(n0, m, NULL, upper)
        try:
            self._reserve_upper(upper)
        except NoRoomError:
            self.graph.rng_state = rng
            raise
        if self._external:
            pass
        elif n0 == 0 and self._keep:  # keep the caller's float32 C-contiguous array (_as_matrix made it so)
            free(self._own)
            self._own = NULL
            self._own_cap = 0
            self._kept = vectors
            self.graph.vectors = xp
        else:
            memcpy(self._own + n0 * dim, xp, m * dim * sizeof(float))
        if self.rows.metric == METRIC_COSINE:
            with nogil:
                set_inv_norms(self.graph.vectors + n0 * dim, self._inv + n0, m, dim)
            if self._unit and not all_unit(self._inv + n0, m):
                self._unit = False
                self.graph.inv_norms = self._inv
        memset(self.graph.upper_links + self.graph.upper_len, 0, (upper - self.graph.upper_len) * sizeof(int32_t))
        self.graph.upper_len = upper
        nt = min(nt, MAX_POOL)
        if nt <= 1 or m < 2 * nt:
            s = self._take_scratch()
            s_held = self._take_scratch()  # the held row's query (insert_begin) lives in its own scratch
            with nogil:
                if interleave:  # see _add_interleaved
                    self.rows.n = n0 + 1
                    rc = insert_begin(&self.rows, &self.graph, s_held, <int32_t>n0, &held)
                    if rc == 0:
                        rc = insert_levels(&self.rows, &self.graph, s_held, <int32_t>n0, &held, 1)
                for i in range(1 if interleave else 0, m):
                    self.rows.n = n0 + i + 1
                    if rc < 0 or insert_row(&self.rows, &self.graph, s, <int32_t>(n0 + i)) < 0:
                        rc = -1
                        break
                if interleave and rc == 0:
                    rc = insert_levels(&self.rows, &self.graph, s_held, <int32_t>n0, &held, 0)
            self._give_scratch(s_held)
            self._give_scratch(s)
            return rc
        start = n0
        if self.graph.entry_point < 0:  # the first row becomes the entry point, alone
            self.rows.n = n0 + 1
            s = self._take_scratch()
            with nogil:
                rc = insert_row(&self.rows, &self.graph, s, <int32_t>n0)
            self._give_scratch(s)
            start = n0 + 1
        self.rows.n = end  # as before: every row's level was drawn, so every row is counted
        if rc < 0:
            return -1
        return self._insert_parallel(np.arange(start, end, dtype=np.int32), nt)

    cdef int64_t _draw_levels(self, int64_t n0, int64_t m, const int32_t *which, int64_t upper) except -1:
        """Draw the level of rows n0..n0+m (or which[0..m]) and place their upper blocks from ``upper``
        on; returns the upper words then in use (the caller reserves and zeroes them)."""
        cdef int64_t i, r
        cdef int lvl
        for i in range(m):
            r = which[i] if which != NULL else n0 + i
            lvl = <int>(-log(ann_rng_unit(&self.graph.rng_state)) * self.graph.level_mult)
            lvl = min(lvl, MAX_LEVEL)
            self.graph.levels[r] = <uint8_t>lvl
            if lvl > 0:
                self.graph.upper_offset[r] = upper
                upper += <int64_t>lvl * (self.graph.M + 1)
            else:
                self.graph.upper_offset[r] = -1
        return upper

    cdef int _insert_parallel(self, cnp.ndarray todo, int nt) except -2:
        """Insert the rows in ``todo`` (int32) on nt threads with per-row spinlocks. Each is visible
        already (rows.n covers it; vector, level, empty lists) but unreachable until its own insert
        links it in. 0, or -1 when memory ran out."""
        cdef int32_t[::1] tv = todo
        cdef int64_t i, m = todo.shape[0]
        cdef int t, failed = 0
        cdef ann_scratch *scr[MAX_POOL]
        if m == 0:
            return 0
        nt = max(1, min(nt, MAX_POOL))
        if not self._locks_kept:  # else the shared graph's (hnsw_shared.pyx), rows.cap of them
            self.graph.row_locks = <uint8_t *>calloc(self.rows.n, 1)
            if self.graph.row_locks == NULL:
                raise MemoryError()
        for t in range(nt):
            scr[t] = self._take_scratch()
        with nogil:
            for i in prange(m, num_threads=nt, schedule="dynamic", chunksize=16):
                if insert_row(&self.rows, &self.graph, scr[threadid()], tv[i]) < 0:
                    failed += 1
        for t in range(nt):
            self._give_scratch(scr[t])
        if not self._locks_kept:
            free(self.graph.row_locks)
            self.graph.row_locks = NULL
        return -1 if failed else 0

    cdef int _repair(self) except -2:
        """Link back the rows no walk reaches (repair_level0); self.repaired counts them."""
        cdef int64_t n = self.rows.n, linked
        cdef ann_scratch *s
        self._check_searchable()
        seen = np.zeros(max(n, 1), np.uint8)
        queue = np.empty(max(n, 1), np.int32)
        cdef uint8_t[::1] sv = seen
        cdef int32_t[::1] qv = queue
        s = self._take_scratch()
        with nogil:
            linked = repair_level0(&self.rows, &self.graph, s, &sv[0], &qv[0])
        self._give_scratch(s)
        if linked < 0:
            return -1
        self.repaired += linked
        return 0

    # -- public API --

    def add(self, ids: object, vectors: object, int threads=1, bint repair=False, bint copy=True) -> None:
        """Insert vectors under int64 ids. An id that is live already is refused;
        re-adding a deleted id stores a new row for it.

        threads > 1 inserts in parallel (per-node spinlocks, as hnswlib's
        num_threads); the graph then depends on thread timing, so only the default
        threads=1 build is deterministic for a seed. threads=0 means all cores.
        repair=True ends with :meth:`repair` (a segment's build does; a build in
        several adds repairs at its last one). copy=False on an empty index keeps
        a float32 C-contiguous ``vectors`` (a segment's memory map) as the rows'
        vectors without a copy: the caller must not change it. Otherwise the rows
        are copied into the index's own memory.
        """
        self._keep = not copy
        try:
            self._add(ids, vectors, threads)
        finally:
            self._keep = False
        if repair:
            self.repair()

    def repair(self) -> int:
        """Link every live row that no graph walk reaches into the level-0 list of its nearest
        reachable row with room (HNSW's neighbour pruning can drop every in-link of a row, on one
        thread too: 64 of 56,238 rows of MiniLM embeddings). Links are only added. Returns the rows
        linked now (``repaired`` counts them all); O(rows * M0) plus a walk per row linked."""
        before = self.repaired
        self._enter_write("repair")
        try:
            if self._repair() < 0:
                raise MemoryError("HNSW repair: out of memory")
        finally:
            self._writing = False
        return int(self.repaired - before)

    def _add_interleaved(self, ids: object, vectors: object) -> None:
        """add() on one thread in an order a parallel build can take (for tests, not an API): the
        batch's first row is linked at its levels above 0, then the other rows are inserted whole,
        then the first row's level 0 is linked. A row that descends to the first one meanwhile finds
        its level-0 list empty, links to it alone and adds itself to that list (see merge_links)."""
        self._interleave = True
        try:
            self._add(ids, vectors, 1)
        finally:
            self._interleave = False

    def graph_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        """Copies of the graph: level-0 links (n, M0 + 1) int32, the upper pool int32, the levels
        uint8, then the entry point and the max level (the int8 index, hnsw_int8.pyx, keeps these
        and searches codes)."""
        cdef int64_t n = self.rows.n
        links0 = copy_array(self.graph.level0, n * (self.graph.M0 + 1), cnp.NPY_INT32).reshape(n, self.graph.M0 + 1)
        return (links0, copy_array(self.graph.upper_links, self.graph.upper_len, cnp.NPY_INT32),
                copy_array(self.graph.levels, n, cnp.NPY_UINT8), self.graph.entry_point, self.graph.max_level)

    def reorder(self) -> None:
        """Renumber the rows in breadth-first order of the level-0 graph (from the
        entry point), so that graph neighbours sit close together in memory and a
        search touches fewer cache lines and pages. Results are unchanged; ids are
        external, so only bitmaps over internal rows (see ``ids``) change meaning.
        The vectors are permuted into the index's own memory (kept or attached
        vectors are copied: their order is the caller's). Worth calling once after
        a bulk build of an index that owns its vectors; O(n * M)
        (``_hnsw_reorder.pyx``)."""
        cdef float *vecs
        if self.rows.n < 2:
            return
        self._check_searchable()
        self._enter_write("reorder")
        try:
            vecs = reorder_rows(&self.rows, &self.graph, &self._idmap, &self._inv)
            free(self._own)
            self._own = vecs
            self._own_cap = self.rows.cap
            self._kept = None
            self._external = False
            self.graph.vectors = vecs
            if self._inv != NULL:
                self.graph.inv_norms = NULL if self._unit else self._inv
        finally:
            self._writing = False

    # -- persistence (framing: the base's save/load) --

    cdef tuple _header_fields(self):
        if self._norms_stale:
            raise ValidationError("HNSWIndex: attach_vectors before saving an index read from a version-1 file "
                                  "(its norms come from the vectors)")
        return (self.rows.dim, self.rows.metric, self.graph.M, self.graph.M0, self.graph.ef_construction, self._ef,
                self._seed, self.graph.rng_state,
                self.rows.n, self.rows.n_deleted, self.graph.upper_len, self.graph.entry_point, self.graph.max_level)

    cdef list _body_arrays(self):
        cdef int64_t n = self.rows.n
        arrays = [
            view_array(self.rows.ids, n, cnp.NPY_INT64),
            view_array(self.graph.level0, n * (self.graph.M0 + 1), cnp.NPY_INT32),
            view_array(self.graph.upper_links, self.graph.upper_len, cnp.NPY_INT32),
            view_array(self.graph.levels, n, cnp.NPY_UINT8),
            view_array(self.rows.deleted, n, cnp.NPY_UINT8),
        ]
        if self.rows.metric == METRIC_COSINE:
            arrays.append(view_array(self._inv, n, cnp.NPY_FLOAT32))
        return arrays

    def _body_for_load(self, path: object) -> object:
        arrays = self._body_arrays()
        if self._file_version == 1:  # ids | vectors (read for the CRC, dropped) | links0 | ... | deleted
            n, dim = self.rows.n, self.rows.dim
            dropped = np.lib.stride_tricks.as_strided(np.empty(dim, np.float32), shape=(n, dim),
                                                      strides=(0, 4), writeable=True)
            arrays = [arrays[0], dropped, *arrays[1:5]]
        return arrays

    def _check_loaded(self, path: object) -> None:
        HnswGraphIndex._check_loaded(self, path)
        self._file_version = FORMAT_VERSION
        if not self._norms_stale:
            self._check_unit(0)

    @classmethod
    def _from_header(cls, fields: tuple, path: object) -> tuple[HNSWIndex, int]:
        """An empty index sized for the body the header describes, and that body's size in bytes."""
        return cls._from_header_of(FORMAT_VERSION, fields, path)

    @classmethod
    def _from_old_header(cls, version: int, fields: tuple, path: object) -> tuple[HNSWIndex, int]:
        """_from_header for a file of an older version (FILE_FORMAT.older)."""
        return cls._from_header_of(version, fields, path)

    @classmethod
    def _from_header_of(cls, version: int, fields: tuple, path: object) -> tuple[HNSWIndex, int]:
        cdef HNSWIndex idx
        (dim, metric, M, M0, ef_construction, ef, seed, rng_state, n, n_deleted, upper_len, entry_point,
         max_level) = fields
        check_header(FILE_FORMAT, path, dim, metric, M, M0, n, n_deleted, entry_point, max_level)
        body = n * 8 + n * (M0 + 1) * 4 + upper_len * 4 + 2 * n
        if version == 1:
            body += n * dim * 4
        elif metric == METRIC_COSINE:
            body += n * 4
        idx = HNSWIndex(dim, METRICS[metric], M, ef_construction, seed)
        idx._restore_graph(n, n_deleted, upper_len, entry_point, max_level, ef)
        idx.graph.rng_state = rng_state
        idx._file_version = version
        idx._norms_stale = version == 1 and metric == METRIC_COSINE
        return idx, body


def simd_level() -> int:
    """The distance kernel variant in use: 0 scalar, 2 AVX2+FMA, 3 AVX-512F."""
    return kernel_level
