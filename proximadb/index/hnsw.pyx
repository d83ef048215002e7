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
held at once); only the single-threaded build is deterministic. Either leaves
every row linked from the entry point (``reachable_count()`` counts them). The graph's
algorithms (insertion, search, checks) and the base class this index shares
with the int8 one (``hnsw_int8.pyx``) are in ``_hnsw_graph.pyx``.

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
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from proximadb.index._ann cimport *
from proximadb.index._kernels cimport kernel_level, setup_distance_kernels
from proximadb.index._hnsw_graph cimport (
    MAX_LEVEL,
    HnswGraphIndex,
    Insertion,
    check_header,
    insert_begin,
    insert_levels,
    insert_row,
    links_of,
    prefetch_vector,
    repair_level0,
    row_vector,
    search_graph,
)
from proximadb.index._base cimport (
    METRIC_COSINE,
    MAX_POOL,
    distance,
    view_array,
)

import os
import struct

import numpy as np

from proximadb.index._base import METRICS, IndexFileFormat

cnp.import_array()
setup_distance_kernels(-1)

FILE_FORMAT = IndexFileFormat("HNSW", b"PXHNSW\x00\x01", 1, struct.Struct("<8sIIIIIIII QQQQQ ii"), b"PXHE")
MAGIC = FILE_FORMAT.magic
END_MAGIC = FILE_FORMAT.end_magic
FORMAT_VERSION = FILE_FORMAT.version


@cython.final
cdef class HNSWIndex(HnswGraphIndex):
    """Hierarchical navigable small-world graph index over float32 vectors.

    ``HNSWIndex(dim, metric="l2", M=16, ef_construction=200, seed=0, max_elements=0)``;
    ``max_elements`` only pre-sizes the storage (it grows as needed).
    """

    FILE_FORMAT = FILE_FORMAT

    cdef bint _interleave  # _add_interleaved is running
    cdef public int64_t repaired  # rows repair_level0 linked back after adds (see _repair)

    def __init__(self, int dim, str metric="l2", int M=16, int ef_construction=200, seed: int = 0,
                 max_elements: int = 0) -> None:
        self._init_rows(dim, metric, seed)
        self._init_graph(M, ef_construction, <int64_t>dim * 4)  # the float32 vector after the links
        if max_elements > 0:
            self._reserve(int(max_elements))

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
        cdef bint interleave = self._interleave and m > 1
        cdef Insertion held
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
                if interleave:  # see _add_interleaved
                    self.rows.n = n0 + 1
                    insert_begin(&self.rows, &self.graph, <int32_t>n0, &held)
                    rc = insert_levels(&self.rows, &self.graph, s, <int32_t>n0, &held, 1)
                for i in range(1 if interleave else 0, m):
                    self.rows.n = n0 + i + 1
                    if rc < 0 or insert_row(&self.rows, &self.graph, s, <int32_t>(n0 + i)) < 0:
                        rc = -1
                        break
                if interleave and rc == 0:
                    rc = insert_levels(&self.rows, &self.graph, s, <int32_t>n0, &held, 0)
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

    cdef int _repair(self) except -2:
        """Link back the rows no walk reaches (repair_level0); self.repaired counts them."""
        cdef int64_t n = self.rows.n, linked
        cdef ann_scratch *s
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

    def add(self, ids: object, vectors: object, int threads=1, bint repair=False) -> None:
        """Insert vectors under int64 ids. An id that is live already is refused;
        re-adding a deleted id stores a new row for it.

        threads > 1 inserts in parallel (per-node spinlocks, as hnswlib's
        num_threads); the graph then depends on thread timing, so only the default
        threads=1 build is deterministic for a seed. threads=0 means all cores.
        repair=True ends with :meth:`repair` (a segment's build does; a build in
        several adds repairs at its last one).
        """
        self._add(ids, vectors, threads)
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
        """Copies of the graph without the vectors: level-0 links (n, M0 + 1) int32, the upper pool int32,
        the levels uint8, then the entry point and the max level (the int8 index, hnsw_int8.pyx, keeps
        these and replaces the float32 vectors by codes)."""
        arrays = self._body_arrays()
        # copy(), not ascontiguousarray: one row's strided view counts as contiguous and would come back
        # uncopied, pointing into memory freed with this index
        return (arrays[2].copy(), arrays[3].copy(), arrays[4].copy(), self.graph.entry_point, self.graph.max_level)

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
        check_header(FILE_FORMAT, path, dim, metric, M, M0, n, n_deleted, entry_point, max_level)
        body = n * 8 + n * dim * 4 + n * (M0 + 1) * 4 + upper_len * 4 + 2 * n
        idx = HNSWIndex(dim, METRICS[metric], M, ef_construction, seed)
        idx._restore_graph(n, n_deleted, upper_len, entry_point, max_level, ef)
        idx.graph.rng_state = rng_state
        return idx, body


def simd_level() -> int:
    """The distance kernel variant in use: 0 scalar, 2 AVX2+FMA, 3 AVX-512F."""
    return kernel_level
