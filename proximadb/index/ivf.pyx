"""IVF-Flat approximate nearest-neighbour index: a k-means coarse quantizer and
inverted lists of contiguous float32 rows, GIL-free search.

Training runs seeded k-means (random initial centroids from the sample, Lloyd
iterations with BLAS-backed assignment, empty clusters re-seeded by splitting
the largest one) on at most ``256 * nlist`` sample rows. ``add`` assigns each
vector to its nearest centroid and appends it to that list (vector + row
number). Rows are numbered in insertion order and carry the int64 id and a
deletion flag. ``search`` ranks the centroids and scans the ``nprobe`` nearest
lists with a bounded heap.

Filtered search admits only allowed rows while scanning and keeps probing
further lists (nearest first) until k allowed rows are found, so it returns k
hits whenever k exist; a small allowed set is scanned exactly instead.

Distances as in hnsw: ``l2`` squared Euclidean, ``cosine`` 1 - cos (vectors,
queries and centroids normalised), ``dot`` negated inner product.

File format (all integers little-endian), version 1::

    offset size  field
    0      8     magic b"PXIVF\\x00\\x00\\x01"
    8      4     u32 format version (1)
    12     4     u32 header size (72)
    16     4     u32 dim
    20     4     u32 metric (0 l2, 1 cosine, 2 dot)
    24     4     u32 nlist
    28     4     u32 default nprobe
    32     4     u32 trained (0/1)
    36     4     zero
    40     8     u64 seed
    48     8     u64 n (rows, deleted included)
    56     8     u64 n_deleted
    64     4     u32 CRC32C of bytes [0, 64)
    68     4     zero
    72           body:  centroids f32[nlist*dim] | list sizes i64[nlist] | ids i64[n]
                        | list rows i32[n] (list after list) | list vectors f32[n*dim]
                        | deleted u8[n]
    end-8  4     u32 CRC32C of the body
    end-4  4     b"PXIE"

The header/CRC/end framing, ``save`` and ``load`` are the base's
(``proximadb/index/_base.pyx``); ``load`` then checks that every row sits in
exactly one list position.
"""

cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free, qsort, realloc
from libc.string cimport memcpy, memset

from proximadb.index._ann cimport *
from proximadb.index._kernels cimport kernel_level, setup_distance_kernels
from proximadb.index._base cimport (
    METRIC_COSINE,
    METRIC_L2,
    IndexRows,
    VectorIndex,
    distance,
    offer,
    prepare_query,
    view_array,
    write_results,
)

import struct

import numpy as np

from proximadb.errors import InvalidVectorError, ValidationError
from proximadb.index._base import METRICS
from proximadb.index.index_file import IndexFileFormat

cnp.import_array()
ann_ny_setup(setup_distance_kernels(-1))

cdef enum:
    SCAN_BLOCK = 128    # rows per distance-kernel call in a list scan

FILE_FORMAT = IndexFileFormat("IVF", b"PXIVF\x00\x00\x01", 1, struct.Struct("<8sIIIIIIIIQQQ"), b"PXIE")
MAGIC = FILE_FORMAT.magic
END_MAGIC = FILE_FORMAT.end_magic
FORMAT_VERSION = FILE_FORMAT.version
KMEANS_ITERATIONS = 10  # as faiss IndexIVF
SAMPLE_PER_LIST = 256


ctypedef struct InvertedList:
    float *vectors       # n * dim, contiguous
    int32_t *rows        # the row of each vector
    int64_t n
    int64_t cap


# The coarse quantizer and the lists; the rows' ids, deletion flags, dimension and metric are the
# base's IndexRows.
ctypedef struct InvertedFile:
    int nlist
    float *centroids     # nlist * dim
    InvertedList *lists
    int32_t *row_list    # list holding each row
    int32_t *row_pos     # position inside that list


cdef int cmp_pair(const void *a, const void *b) noexcept nogil:
    cdef float x = (<const ann_pair *>a).d
    cdef float y = (<const ann_pair *>b).d
    if x < y:
        return -1
    if x > y:
        return 1
    return (<const ann_pair *>a).id - (<const ann_pair *>b).id


cdef inline void scan_list(const IndexRows *rows, const InvertedList *L, const float *q, int k, ann_heap *top,
                           const uint8_t *allowed, bint filtering) noexcept nogil:
    """Offer every admitted row of list L to the bounded max-heap top (capacity > k)."""
    cdef int64_t j, b, nb
    cdef int32_t row
    cdef float d
    cdef float dbuf[SCAN_BLOCK]
    cdef const float *x = L.vectors
    cdef int dim = rows.dim
    cdef ann_ny_fn ny = ann_l2sq_ny if rows.metric == METRIC_L2 else ann_dot_ny
    if filtering:
        for j in range(L.n):
            row = L.rows[j]
            if rows.deleted[row] or (allowed != NULL and not allowed[row]):
                continue
            offer(top, k, distance(rows, q, x + j * dim), row)
        return
    # Unfiltered: distances a block at a time (one kernel call per block), then the heap.
    b = 0
    while b < L.n:
        nb = min(<int64_t>SCAN_BLOCK, L.n - b)
        ny(q, x + b * dim, dim, nb, dbuf)
        for j in range(nb):
            d = dbuf[j] if rows.metric == METRIC_L2 else rows.dot_offset - dbuf[j]
            offer(top, k, d, L.rows[b + j])
        b += nb


cdef int64_t ivf_search(const IndexRows *rows, const InvertedFile *ivf, ann_scratch *s, const float *q, int k,
                        int nprobe, const uint8_t *allowed, int64_t *out_ids, float *out_d) noexcept nogil:
    """Scan the nprobe lists nearest to q; with a filter or deletions, keep probing
    (nearest list first) until k admitted rows are found. Returns the hit count."""
    cdef bint filtering = allowed != NULL or rows.n_deleted > 0
    cdef ann_heap *probe = &s.tmp
    cdef ann_heap *top = &s.top
    cdef ann_pair *order
    cdef int64_t c, n_order, p
    cdef float d
    q = prepare_query(rows, s, q)
    if q == NULL or ann_scratch_work(s, ivf.nlist) < 0 or ann_heap_reserve(top, k + 1) < 0:
        return -1
    if ann_heap_reserve(probe, nprobe + 1) < 0:
        return -1
    order = s.work
    if not filtering or nprobe >= ivf.nlist:
        probe.n = 0
        for c in range(ivf.nlist):
            offer(probe, nprobe, distance(rows, q, ivf.centroids + c * rows.dim), <int32_t>c)
        n_order = ann_maxheap_drain_sorted(probe, order)
    else:
        for c in range(ivf.nlist):
            order[c].d = distance(rows, q, ivf.centroids + c * rows.dim)
            order[c].id = <int32_t>c
        qsort(order, ivf.nlist, sizeof(ann_pair), cmp_pair)
        n_order = ivf.nlist
    top.n = 0
    for p in range(n_order):
        if p >= nprobe and top.n >= k:
            break
        scan_list(rows, &ivf.lists[order[p].id], q, k, top, allowed, filtering)
    return write_results(rows, s, k, out_ids, out_d)


cdef int list_append(const IndexRows *rows, InvertedFile *ivf, int32_t li, int64_t row, const float *x) noexcept nogil:
    cdef InvertedList *L = &ivf.lists[li]
    cdef int64_t nc
    cdef void *p
    if L.n == L.cap:
        nc = max(16, L.cap * 2)
        p = realloc(L.vectors, nc * rows.dim * sizeof(float))
        if p == NULL:
            return -1
        L.vectors = <float *>p
        p = realloc(L.rows, nc * sizeof(int32_t))
        if p == NULL:
            return -1
        L.rows = <int32_t *>p
        L.cap = nc
    memcpy(L.vectors + L.n * rows.dim, x, rows.dim * sizeof(float))
    L.rows[L.n] = <int32_t>row
    ivf.row_list[row] = li
    ivf.row_pos[row] = <int32_t>L.n
    L.n += 1
    return 0


# ------------------------------------------------------------ helpers --

def _normalized(x: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
    norms[norms == 0] = 1
    return (x / norms[:, None]).astype(np.float32)


def assign(x: np.ndarray, centroids: np.ndarray, metric: str, chunk: int = 8192) -> np.ndarray:
    """Nearest centroid of every row of x (BLAS matrix products, chunked)."""
    out = np.empty(len(x), dtype=np.int32)
    cn = np.einsum("ij,ij->i", centroids, centroids) if metric == "l2" else None
    for s in range(0, len(x), chunk):
        ip = x[s:s + chunk] @ centroids.T
        if cn is None:
            out[s:s + chunk] = np.argmax(ip, axis=1)
        else:
            out[s:s + chunk] = np.argmin(cn[None, :] - 2 * ip, axis=1)
    return out


def kmeans(x: np.ndarray, k: int, metric: str, seed: int, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Seeded Lloyd k-means: random initial centroids from x; an empty cluster is
    re-seeded by splitting the largest one (as faiss does). Spherical for cosine."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    cent = x[np.sort(rng.choice(n, k, replace=False))].astype(np.float32)
    for _ in range(iterations):
        a = assign(x, cent, metric)
        counts = np.bincount(a, minlength=k)
        order = np.argsort(a, kind="stable")
        nonempty = np.flatnonzero(counts)
        starts = (np.cumsum(counts) - counts)[nonempty]
        sums = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
        cent[nonempty] = (sums / counts[nonempty, None]).astype(np.float32)
        for c in np.flatnonzero(counts == 0):
            big = int(np.argmax(counts))
            eps = (rng.standard_normal(d).astype(np.float32) * 1e-3 + 1e-6) * (np.abs(cent[big]) + 1e-6)
            cent[c] = cent[big] + eps
            cent[big] = cent[big] - eps
            counts[c] = counts[big] // 2
            counts[big] -= counts[c]
        if metric == "cosine":
            cent = _normalized(cent)
    return np.ascontiguousarray(cent, dtype=np.float32)


@cython.final
cdef class IVFIndex(VectorIndex):
    """Inverted-file index with flat (uncompressed) float32 lists.

    ``IVFIndex(dim, metric="l2", nlist=100, seed=0, nprobe=8)``. Call
    ``train(sample)`` first, or the first ``add`` trains on its own vectors.
    """

    FILE_FORMAT = FILE_FORMAT

    cdef InvertedFile ivf
    cdef int _nprobe
    cdef bint _trained
    cdef cnp.ndarray _centroids

    def __cinit__(self) -> None:
        memset(&self.ivf, 0, sizeof(InvertedFile))

    def __init__(self, int dim, str metric="l2", int nlist=100, seed: int = 0, int nprobe=8) -> None:
        self._init_rows(dim, metric, seed)
        if nlist < 1:
            raise ValidationError(f"nlist must be >= 1, got {nlist}")
        if nprobe < 1:
            raise ValidationError(f"nprobe must be >= 1, got {nprobe}")
        self.ivf.nlist = nlist
        self._nprobe = nprobe
        self.ivf.lists = <InvertedList *>calloc(nlist, sizeof(InvertedList))
        if self.ivf.lists == NULL:
            raise MemoryError()
        self._centroids = np.zeros((nlist, dim), dtype=np.float32)
        self.ivf.centroids = <float *>cnp.PyArray_DATA(self._centroids)

    def __dealloc__(self) -> None:
        cdef int i
        if self.ivf.lists != NULL:
            for i in range(self.ivf.nlist):
                free(self.ivf.lists[i].vectors)
                free(self.ivf.lists[i].rows)
            free(self.ivf.lists)
        free(self.ivf.row_list)
        free(self.ivf.row_pos)

    # -- properties --

    @property
    def nlist(self) -> int:
        return self.ivf.nlist

    @property
    def is_trained(self) -> bool:
        return self._trained

    @property
    def nprobe(self) -> int:
        """Default number of lists probed by search() when nprobe=None."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, int value) -> None:
        if value < 1:
            raise ValidationError(f"nprobe must be >= 1, got {value}")
        self._nprobe = value

    @property
    def centroids(self) -> np.ndarray:
        return self._centroids.copy()

    def list_sizes(self) -> np.ndarray:
        cdef int i
        out = np.empty(self.ivf.nlist, dtype=np.int64)
        for i in range(self.ivf.nlist):
            out[i] = self.ivf.lists[i].n
        return out

    def __repr__(self) -> str:
        return (f"IVFIndex(dim={self.rows.dim}, metric={self.metric!r}, nlist={self.ivf.nlist}, "
                f"seed={self._seed}, trained={self._trained}, len={len(self)})")

    # -- the kind's part of the base --

    cdef int _grow(self, int64_t old_cap, int64_t cap) except -1:
        cdef void *p = realloc(self.ivf.row_list, cap * sizeof(int32_t))
        if p == NULL:
            raise MemoryError()
        self.ivf.row_list = <int32_t *>p
        p = realloc(self.ivf.row_pos, cap * sizeof(int32_t))
        if p == NULL:
            raise MemoryError()
        self.ivf.row_pos = <int32_t *>p
        return 0

    cdef int _check_searchable(self) except -1:
        if not self._trained:
            raise ValidationError("IVFIndex: search before train/add")
        return 0

    cdef int _search_effort(self, Py_ssize_t k, object nprobe) except -1:
        cdef int npr = self._nprobe if nprobe is None else <int>nprobe
        if k < 1 or npr < 1:
            raise ValidationError("k and nprobe must be >= 1")
        return min(npr, self.ivf.nlist)

    cdef bint _prefer_exact(self, int64_t n_allowed, int k, int nprobe) except -1:
        # The probed lists hold about nprobe / nlist of the rows; scanning the
        # allowed rows directly is cheaper when they are fewer than that.
        cdef int64_t n_live = self.rows.n - self.rows.n_deleted
        return n_allowed * self.ivf.nlist <= <int64_t>max(nprobe, 1) * n_live or n_allowed <= k

    cdef int64_t _search_one(self, ann_scratch *s, const float *q, int k, int nprobe, const uint8_t *allowed,
                             int64_t *out_ids, float *out_d) noexcept nogil:
        return ivf_search(&self.rows, &self.ivf, s, q, k, nprobe, allowed, out_ids, out_d)

    cdef void _row_distances(self, const float *q, const int32_t *rows, int64_t n, float *out) noexcept nogil:
        cdef int64_t j
        cdef int32_t r
        for j in range(n):
            r = rows[j]
            out[j] = distance(&self.rows, q, self.ivf.lists[self.ivf.row_list[r]].vectors
                              + <int64_t>self.ivf.row_pos[r] * self.rows.dim)

    cdef cnp.ndarray _before_add(self, cnp.ndarray vectors):
        if self.rows.metric == METRIC_COSINE:
            vectors = _normalized(vectors)
        if not self._trained:
            self.train(vectors)
        return vectors

    cdef int _add_rows(self, int64_t n0, cnp.ndarray vectors, int threads) except -2:
        cdef cnp.ndarray lists = assign(vectors, self._centroids, METRICS[self.rows.metric])
        cdef const int32_t *lp = <const int32_t *>cnp.PyArray_DATA(lists)
        cdef const float *xp = <const float *>cnp.PyArray_DATA(vectors)
        cdef int64_t i, m = vectors.shape[0]
        cdef int rc = 0
        with nogil:
            for i in range(m):
                if list_append(&self.rows, &self.ivf, lp[i], n0 + i, xp + i * self.rows.dim) < 0:
                    rc = -1
                    break
                self.rows.n = n0 + i + 1
        return rc

    # -- public API --

    def train(self, sample: object) -> None:
        """Fit the coarse quantizer (seeded k-means on at most 256 * nlist rows of sample)."""
        cdef cnp.ndarray x = self._as_matrix(sample, "sample")
        if self.rows.n:
            raise ValidationError("IVFIndex: train() after vectors were added")
        if x.shape[0] < self.ivf.nlist:
            raise ValidationError(f"IVFIndex: training needs at least nlist={self.ivf.nlist} vectors, got {x.shape[0]}")
        if not np.isfinite(x).all():
            raise InvalidVectorError("training vectors contain NaN or infinite components")
        rng = np.random.default_rng(self._seed)
        if x.shape[0] > SAMPLE_PER_LIST * self.ivf.nlist:
            x = x[np.sort(rng.choice(x.shape[0], SAMPLE_PER_LIST * self.ivf.nlist, replace=False))]
        if self.rows.metric == METRIC_COSINE:
            x = _normalized(x)
        self._enter_write("train")
        try:
            self._centroids[...] = kmeans(x, self.ivf.nlist, METRICS[self.rows.metric], int(self._seed))
            self._trained = True
        finally:
            self._writing = False

    def add(self, ids: object, vectors: object) -> None:
        """Insert vectors under int64 ids (training on them first if untrained)."""
        self._add(ids, vectors, 1)

    def search(self, query: object, Py_ssize_t k=10, nprobe: int | None = None, filter_ids: object = None,
               exact: bool | None = None, allowed_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest live rows to query, best first: (ids int64, distances float32).

        filter_ids: allowed ids (int64 array) or a uint8/bool bitmap over internal rows.
        exact: None picks list probing or an exact scan by the filter's size.
        allowed_count: how many rows a bitmap filter_ids allows, when the caller knows (not counted again).
        """
        return self._search(query, k, nprobe, filter_ids, exact, allowed_count)

    def search_batch(self, queries: object, Py_ssize_t k=10, nprobe: int | None = None,
                     filter_ids: object = None, exact: bool | None = None,
                     threads: int | None = None, allowed_count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """search() for each row of queries on `threads` OpenMP threads (default: all cores).
        Returns (ids (m, k), distances (m, k)); missing results are id -1, distance inf."""
        return self._search_batch(queries, k, nprobe, filter_ids, exact, threads, allowed_count)

    # -- persistence (framing: the base's save/load) --

    cdef tuple _header_fields(self):
        return (self.rows.dim, self.rows.metric, self.ivf.nlist, self._nprobe, int(self._trained), 0, self._seed,
                self.rows.n, self.rows.n_deleted)

    cdef list _body_arrays(self):
        cdef int li
        cdef InvertedList *L
        parts = [self._centroids, self.list_sizes(), view_array(self.rows.ids, self.rows.n, cnp.NPY_INT64)]
        for li in range(self.ivf.nlist):
            L = &self.ivf.lists[li]
            parts.append(view_array(L.rows, L.n, cnp.NPY_INT32))
        for li in range(self.ivf.nlist):
            L = &self.ivf.lists[li]
            parts.append(view_array(L.vectors, L.n * self.rows.dim, cnp.NPY_FLOAT32))
        parts.append(view_array(self.rows.deleted, self.rows.n, cnp.NPY_UINT8))
        return parts

    @classmethod
    def _from_header(cls, fields: tuple, path: object) -> tuple[IVFIndex, int]:
        """An empty index sized for the body the header describes, and that body's size in bytes."""
        cdef IVFIndex idx
        dim, metric, nlist, nprobe, trained, _, seed, n, n_deleted = fields
        if metric > 2 or dim < 1 or nlist < 1 or n >= 2**31 - 1 or n_deleted > n or trained > 1:
            raise FILE_FORMAT.error(path, "header fields out of range")
        body = nlist * dim * 4 + nlist * 8 + n * 8 + n * 4 + n * dim * 4 + n
        idx = IVFIndex(dim, METRICS[metric], nlist, seed, max(nprobe, 1))
        idx._trained = bool(trained)
        idx._reserve(max(n, 1))
        idx.rows.n = n
        idx.rows.n_deleted = n_deleted
        return idx, body

    def _body_for_load(self, path: object) -> object:
        """Centroids, list sizes and ids first: the sizes say how long each list's arrays are."""
        cdef int64_t i, nl
        cdef InvertedList *L
        sizes = np.empty(self.ivf.nlist, dtype=np.int64)
        yield self._centroids
        yield sizes
        yield view_array(self.rows.ids, self.rows.n, cnp.NPY_INT64)
        if sizes.min() < 0 or int(sizes.sum()) != self.rows.n:
            raise FILE_FORMAT.error(path, "inverted list sizes do not add up to the row count")
        for i in range(self.ivf.nlist):
            L = &self.ivf.lists[i]
            nl = sizes[i]
            L.cap = max(nl, 1)
            L.rows = <int32_t *>calloc(L.cap, sizeof(int32_t))
            L.vectors = <float *>calloc(L.cap * self.rows.dim, sizeof(float))
            if L.rows == NULL or L.vectors == NULL:
                raise MemoryError()
            L.n = nl
        for i in range(self.ivf.nlist):
            yield view_array(self.ivf.lists[i].rows, self.ivf.lists[i].n, cnp.NPY_INT32)
        for i in range(self.ivf.nlist):
            yield view_array(self.ivf.lists[i].vectors, self.ivf.lists[i].n * self.rows.dim, cnp.NPY_FLOAT32)
        yield view_array(self.rows.deleted, self.rows.n, cnp.NPY_UINT8)

    def _check_loaded(self, path: object) -> None:
        """Every row must sit in exactly one list position."""
        cdef int64_t i, j
        cdef InvertedList *L
        for i in range(self.rows.n):
            self.ivf.row_list[i] = -1
        for i in range(self.ivf.nlist):
            L = &self.ivf.lists[i]
            for j in range(L.n):
                if L.rows[j] < 0 or L.rows[j] >= self.rows.n or self.ivf.row_list[L.rows[j]] != -1:
                    raise FILE_FORMAT.error(path, f"inverted list {i} names a bad or repeated row")
                self.ivf.row_list[L.rows[j]] = <int32_t>i
                self.ivf.row_pos[L.rows[j]] = <int32_t>j


def simd_level() -> int:
    """The distance kernel variant in use: 0 scalar, 2 AVX2+FMA, 3 AVX-512F."""
    return kernel_level
