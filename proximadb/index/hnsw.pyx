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
the whole graph; when the allowed set is small (see ``use_exact``) an exact
scan of the allowed rows is cheaper and always exact. Deleted rows are
traversed but never returned.

``add(..., threads=n)`` inserts in parallel with per-row spinlocks (never two
held at once); only the single-threaded build is deterministic. The graph's
algorithms (insertion, search, checks) are in ``_hnsw_graph.pyx``.

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
from libc.math cimport log
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from proximadb.index._ann cimport *
from proximadb.index._kernels cimport kernel_level, setup_distance_kernels
from proximadb.index._hnsw_graph cimport (
    MAX_LEVEL,
    HnswGraph,
    insert_row,
    links_of,
    prefetch_vector,
    row_vector,
    search_graph,
    validate_links,
)
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

FILE_FORMAT = IndexFileFormat("HNSW", b"PXHNSW\x00\x01", 1, struct.Struct("<8sIIIIIIII QQQQQ ii"), b"PXHE")
MAGIC = FILE_FORMAT.magic
END_MAGIC = FILE_FORMAT.end_magic
FORMAT_VERSION = FILE_FORMAT.version


cdef inline bint use_exact(int64_t n_allowed, int64_t n_live, int ef, int M0) noexcept:
    """Whether an exact scan of the allowed rows beats a filtered graph search.

    A filtered traversal expands about ef / selectivity nodes and computes about
    M0 / 2 new distances per expansion, i.e. ef * M0 * n_live / (2 * n_allowed);
    the scan computes n_allowed. Measured, a distance in the walk costs about 2x
    one in the scan (random access, visited set, heaps against a blocked SIMD
    scan): on 60,000 clustered rows of 128 dimensions at ef 64, M 16, the walk
    and the scan cost the same near 17% (15%: walk 3.0 ms, scan 2.4 ms; 20%:
    1.7 ms and 3.8 ms). So the scan wins when n_allowed**2 is below
    ef * M0 * n_live: under 18% of 60k rows, 14% of 100k and 4.5% of 1M at
    ef=64, M=16. Recall in the middle band was measured too: on clustered data
    the walk finds >= 0.999 of the filtered top 10 at 1-20% (100k rows, ef 64);
    on i.i.d. noise, where even the unfiltered walk finds only 0.46 at ef 64,
    the filtered walk finds more than the unfiltered one, not less.
    """
    if n_allowed <= ef:
        return True
    return n_allowed * n_allowed <= <int64_t>ef * M0 * n_live


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

    def graph_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        """Copies of the graph without the vectors: level-0 links (n, M0 + 1) int32, the upper pool int32,
        the levels uint8, then the entry point and the max level (the int8 index, hnsw_int8.pyx, keeps
        these and replaces the float32 vectors by codes)."""
        arrays = self._body_arrays()
        return (np.ascontiguousarray(arrays[2]), arrays[3].copy(), arrays[4].copy(), self.graph.entry_point,
                self.graph.max_level)

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
