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
"""

cimport cython
cimport numpy as cnp
from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport calloc, free, qsort, realloc
from libc.string cimport memcpy, memset

from crc32c cimport pxd_crc32c, pxd_crc32c_setup

from proximadb.index._ann cimport *
from proximadb.index._files cimport crc_array as _crc_array, view_array as _view
from proximadb.index._inputs cimport allowed_rows, as_matrix, as_query

import os
import struct
import sys

import numpy as np

from proximadb.errors import (
    CorruptionError,
    DimensionMismatchError,
    InvalidVectorError,
    ValidationError,
    VectorExistsError,
    VectorNotFoundError,
)

cnp.import_array()
pxa_ny_setup(pxd_distance_setup(-1))
pxd_crc32c_setup()

cdef enum:
    MAX_POOL = 16
    SCAN_BLOCK = 128    # rows per distance-kernel call in a list scan
    METRIC_L2 = 0
    METRIC_COSINE = 1
    METRIC_DOT = 2

METRICS = ("l2", "cosine", "dot")
MAGIC = b"PXIVF\x00\x00\x01"
END_MAGIC = b"PXIE"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIIIIIIIQQQ")
_HEADER_SIZE = 72
_HOST_LE = sys.byteorder == "little"
KMEANS_ITERATIONS = 10  # as faiss IndexIVF
SAMPLE_PER_LIST = 256


ctypedef struct IvfList:
    float *vecs
    int32_t *rows
    int64_t n
    int64_t cap


ctypedef struct IvfState:
    int dim
    int metric
    int nlist
    float dot_off
    float *centroids     # nlist * dim
    IvfList *lists
    int64_t n
    int64_t cap
    int64_t *ids
    uint8_t *deleted
    int32_t *row_list    # list holding each row
    int32_t *row_pos     # position inside that list
    int64_t n_deleted


cdef inline float vdist(const IvfState *v, const float *a, const float *b) noexcept nogil:
    if v.metric == METRIC_L2:
        return pxd_l2sq(a, b, v.dim)
    return v.dot_off - pxd_dot(a, b, v.dim)


cdef int cmp_pair(const void *a, const void *b) noexcept nogil:
    cdef float x = (<const pxa_pair *>a).d
    cdef float y = (<const pxa_pair *>b).d
    if x < y:
        return -1
    if x > y:
        return 1
    return (<const pxa_pair *>a).id - (<const pxa_pair *>b).id


cdef inline void scan_list(const IvfState *v, const IvfList *L, const float *q, int k, pxa_heap *top,
                           const uint8_t *allowed, bint filtering) noexcept nogil:
    """Offer every admitted row of list L to the bounded max-heap top (capacity > k)."""
    cdef int64_t j, b, nb
    cdef int32_t row
    cdef float d
    cdef float dbuf[SCAN_BLOCK]
    cdef const float *x = L.vecs
    cdef int dim = v.dim
    cdef pxa_ny_fn ny = pxa_l2sq_ny if v.metric == METRIC_L2 else pxa_dot_ny
    if filtering:
        for j in range(L.n):
            row = L.rows[j]
            if v.deleted[row] or (allowed != NULL and not allowed[row]):
                continue
            d = vdist(v, q, x + j * dim)
            if top.n < k:
                pxa_maxheap_push(top, d, row)
            elif d < top.a[0].d:
                pxa_maxheap_replace_top(top, d, row)
        return
    # Unfiltered: distances a block at a time (one kernel call per block), then the heap.
    b = 0
    while b < L.n:
        nb = min(<int64_t>SCAN_BLOCK, L.n - b)
        ny(q, x + b * dim, dim, nb, dbuf)
        for j in range(nb):
            d = dbuf[j] if v.metric == METRIC_L2 else v.dot_off - dbuf[j]
            if top.n < k:
                pxa_maxheap_push(top, d, L.rows[b + j])
            elif d < top.a[0].d:
                pxa_maxheap_replace_top(top, d, L.rows[b + j])
        b += nb


cdef const float *prepare_query(const IvfState *v, pxa_scratch *s, const float *q) noexcept nogil:
    if v.metric != METRIC_COSINE:
        return q
    if pxa_scratch_qbuf(s, v.dim) < 0:
        return NULL
    memcpy(s.qbuf, q, v.dim * sizeof(float))
    pxa_normalize(s.qbuf, v.dim)
    return s.qbuf


cdef int64_t write_results(const IvfState *v, pxa_scratch *s, int64_t *out_ids, float *out_d) noexcept nogil:
    cdef int64_t i, r = s.top.n
    if pxa_scratch_work(s, r) < 0:
        return -1
    pxa_maxheap_drain_sorted(&s.top, s.work)
    for i in range(r):
        out_ids[i] = v.ids[s.work[i].id]
        out_d[i] = s.work[i].d
    return r


cdef int64_t ivf_search(const IvfState *v, pxa_scratch *s, const float *q, int k, int nprobe,
                        const uint8_t *allowed, int64_t *out_ids, float *out_d) noexcept nogil:
    """Scan the nprobe lists nearest to q; with a filter or deletions, keep probing
    (nearest list first) until k admitted rows are found. Returns the hit count."""
    cdef bint filtering = allowed != NULL or v.n_deleted > 0
    cdef pxa_heap *probe = &s.tmp
    cdef pxa_heap *top = &s.top
    cdef pxa_pair *order
    cdef int64_t c, n_order, p
    cdef float d
    q = prepare_query(v, s, q)
    if q == NULL or pxa_scratch_work(s, v.nlist) < 0 or pxa_heap_reserve(top, k + 1) < 0:
        return -1
    if pxa_heap_reserve(probe, nprobe + 1) < 0:
        return -1
    order = s.work
    if not filtering or nprobe >= v.nlist:
        probe.n = 0
        for c in range(v.nlist):
            d = vdist(v, q, v.centroids + c * v.dim)
            if probe.n < nprobe:
                pxa_maxheap_push(probe, d, <int32_t>c)
            elif d < probe.a[0].d:
                pxa_maxheap_replace_top(probe, d, <int32_t>c)
        n_order = pxa_maxheap_drain_sorted(probe, order)
    else:
        for c in range(v.nlist):
            order[c].d = vdist(v, q, v.centroids + c * v.dim)
            order[c].id = <int32_t>c
        qsort(order, v.nlist, sizeof(pxa_pair), cmp_pair)
        n_order = v.nlist
    top.n = 0
    for p in range(n_order):
        if p >= nprobe and top.n >= k:
            break
        scan_list(v, &v.lists[order[p].id], q, k, top, allowed, filtering)
    return write_results(v, s, out_ids, out_d)


cdef int64_t ivf_exact(const IvfState *v, pxa_scratch *s, const float *q, int k, const int32_t *rows,
                       int64_t nrows, int64_t *out_ids, float *out_d) noexcept nogil:
    """Exact top-k over the given live rows."""
    cdef int64_t i
    cdef int32_t r
    cdef float d
    cdef pxa_heap *top = &s.top
    q = prepare_query(v, s, q)
    if q == NULL or pxa_heap_reserve(top, k + 1) < 0:
        return -1
    top.n = 0
    for i in range(nrows):
        r = rows[i]
        d = vdist(v, q, v.lists[v.row_list[r]].vecs + <int64_t>v.row_pos[r] * v.dim)
        if top.n < k:
            pxa_maxheap_push(top, d, r)
        elif d < top.a[0].d:
            pxa_maxheap_replace_top(top, d, r)
    return write_results(v, s, out_ids, out_d)


cdef int list_append(IvfState *v, int32_t li, int64_t row, const float *x) noexcept nogil:
    cdef IvfList *L = &v.lists[li]
    cdef int64_t nc
    cdef void *p
    if L.n == L.cap:
        nc = max(16, L.cap * 2)
        p = realloc(L.vecs, nc * v.dim * sizeof(float))
        if p == NULL:
            return -1
        L.vecs = <float *>p
        p = realloc(L.rows, nc * sizeof(int32_t))
        if p == NULL:
            return -1
        L.rows = <int32_t *>p
        L.cap = nc
    memcpy(L.vecs + L.n * v.dim, x, v.dim * sizeof(float))
    L.rows[L.n] = <int32_t>row
    v.row_list[row] = li
    v.row_pos[row] = <int32_t>L.n
    L.n += 1
    return 0


# ------------------------------------------------------------ helpers --

def _corrupt(path: object, what: str) -> CorruptionError:
    return CorruptionError(f"IVF index file {os.fspath(path)!r}: {what}")


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
cdef class IVFIndex:
    """Inverted-file index with flat (uncompressed) float32 lists.

    ``IVFIndex(dim, metric="l2", nlist=100, seed=0, nprobe=8)``. Call
    ``train(sample)`` first, or the first ``add`` trains on its own vectors.
    """

    cdef IvfState v
    cdef int _nprobe
    cdef uint64_t _seed
    cdef bint _trained
    cdef cnp.ndarray _centroids
    cdef pxa_idmap _idmap
    cdef pxa_scratch *_pool[MAX_POOL]
    cdef int _pool_n
    cdef int _readers
    cdef bint _writing

    def __cinit__(self) -> None:
        memset(&self.v, 0, sizeof(IvfState))
        memset(&self._idmap, 0, sizeof(pxa_idmap))

    def __init__(self, int dim, str metric="l2", int nlist=100, seed: int = 0, int nprobe=8) -> None:
        if dim < 1:
            raise ValidationError(f"dim must be >= 1, got {dim}")
        if metric not in METRICS:
            raise ValidationError(f"metric must be one of {METRICS}, got {metric!r}")
        if nlist < 1:
            raise ValidationError(f"nlist must be >= 1, got {nlist}")
        if nprobe < 1:
            raise ValidationError(f"nprobe must be >= 1, got {nprobe}")
        self.v.dim = dim
        self.v.metric = METRICS.index(metric)
        self.v.dot_off = 1.0 if self.v.metric == METRIC_COSINE else 0.0
        self.v.nlist = nlist
        self._nprobe = nprobe
        self._seed = <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF)
        self.v.lists = <IvfList *>calloc(nlist, sizeof(IvfList))
        if self.v.lists == NULL:
            raise MemoryError()
        self._centroids = np.zeros((nlist, dim), dtype=np.float32)
        self.v.centroids = <float *>cnp.PyArray_DATA(self._centroids)

    def __dealloc__(self) -> None:
        cdef int i
        for i in range(self._pool_n):
            pxa_scratch_free(self._pool[i])
        if self.v.lists != NULL:
            for i in range(self.v.nlist):
                free(self.v.lists[i].vecs)
                free(self.v.lists[i].rows)
            free(self.v.lists)
        free(self.v.ids)
        free(self.v.deleted)
        free(self.v.row_list)
        free(self.v.row_pos)
        pxa_idmap_free(&self._idmap)

    # -- properties --

    @property
    def dim(self) -> int:
        return self.v.dim

    @property
    def metric(self) -> str:
        return METRICS[self.v.metric]

    @property
    def nlist(self) -> int:
        return self.v.nlist

    @property
    def seed(self) -> int:
        return self._seed

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

    @property
    def n_rows(self) -> int:
        return self.v.n

    @property
    def n_deleted(self) -> int:
        return self.v.n_deleted

    @property
    def ids(self) -> np.ndarray:
        """External id of every internal row (a copy), in row order."""
        if self.v.n == 0:
            return np.empty(0, dtype=np.int64)
        return _view(self.v.ids, self.v.n, cnp.NPY_INT64).copy()

    def list_sizes(self) -> np.ndarray:
        cdef int i
        out = np.empty(self.v.nlist, dtype=np.int64)
        for i in range(self.v.nlist):
            out[i] = self.v.lists[i].n
        return out

    def __len__(self) -> int:
        return self.v.n - self.v.n_deleted

    def __contains__(self, id: int) -> bool:
        cdef int32_t r = pxa_idmap_get(&self._idmap, <int64_t>id)
        return r >= 0 and not self.v.deleted[r]

    def __repr__(self) -> str:
        return (f"IVFIndex(dim={self.v.dim}, metric={self.metric!r}, nlist={self.v.nlist}, "
                f"seed={self._seed}, trained={self._trained}, len={len(self)})")

    # -- internals --

    cdef int _reserve(self, int64_t need) except -1:
        cdef int64_t cap = self.v.cap
        cdef void *p
        if need <= cap:
            return 0
        cap = max(need, cap + cap // 2, 1024)
        p = realloc(self.v.ids, cap * sizeof(int64_t))
        if p == NULL:
            raise MemoryError()
        self.v.ids = <int64_t *>p
        p = realloc(self.v.deleted, cap)
        if p == NULL:
            raise MemoryError()
        self.v.deleted = <uint8_t *>p
        p = realloc(self.v.row_list, cap * sizeof(int32_t))
        if p == NULL:
            raise MemoryError()
        self.v.row_list = <int32_t *>p
        p = realloc(self.v.row_pos, cap * sizeof(int32_t))
        if p == NULL:
            raise MemoryError()
        self.v.row_pos = <int32_t *>p
        self.v.cap = cap
        return 0

    cdef pxa_scratch *_take_scratch(self) except NULL:
        cdef pxa_scratch *s
        if self._pool_n > 0:
            self._pool_n -= 1
            return self._pool[self._pool_n]
        s = pxa_scratch_new()
        if s == NULL:
            raise MemoryError()
        return s

    cdef void _give_scratch(self, pxa_scratch *s) noexcept:
        if self._pool_n < MAX_POOL:
            self._pool[self._pool_n] = s
            self._pool_n += 1
        else:
            pxa_scratch_free(s)

    cdef int _enter_write(self) except -1:
        if self._readers or self._writing:
            raise RuntimeError("IVFIndex: add/train/mark_deleted while another call is using the index")
        self._writing = True
        return 0

    cdef int _enter_read(self) except -1:
        if self._writing:
            raise RuntimeError("IVFIndex: search while add is running on the index")
        if not self._trained:
            raise ValidationError("IVFIndex: search before train/add")
        self._readers += 1
        return 0

    cdef cnp.ndarray _as_matrix(self, object vectors, str what):
        return as_matrix(vectors, self.v.dim, what)

    cdef cnp.ndarray _as_query(self, object query):
        return as_query(query, self.v.dim)

    cdef tuple _prepare_filter(self, object filter_ids, object exact, int k, int nprobe):
        """(bitmap over rows or None, allowed live rows int32 or None, use exact scan)."""
        cdef int64_t n_live = self.v.n - self.v.n_deleted
        cdef int64_t cnt
        bitmap, rows = allowed_rows(filter_ids, bool(exact), self.v.n, self.v.deleted, &self._idmap)
        if bitmap is None:
            return None, None, False
        cnt = len(rows)
        if exact is None:
            # The probed lists hold about nprobe / nlist of the rows; scanning the
            # allowed rows directly is cheaper when they are fewer than that.
            exact = cnt * self.v.nlist <= <int64_t>max(nprobe, 1) * n_live or cnt <= k
        return bitmap, rows, bool(exact)

    # -- public API --

    def train(self, sample: object) -> None:
        """Fit the coarse quantizer (seeded k-means on at most 256 * nlist rows of sample)."""
        cdef cnp.ndarray x = self._as_matrix(sample, "sample")
        if self.v.n:
            raise ValidationError("IVFIndex: train() after vectors were added")
        if x.shape[0] < self.v.nlist:
            raise ValidationError(f"IVFIndex: training needs at least nlist={self.v.nlist} vectors, got {x.shape[0]}")
        if not np.isfinite(x).all():
            raise InvalidVectorError("training vectors contain NaN or infinite components")
        rng = np.random.default_rng(self._seed)
        if x.shape[0] > SAMPLE_PER_LIST * self.v.nlist:
            x = x[np.sort(rng.choice(x.shape[0], SAMPLE_PER_LIST * self.v.nlist, replace=False))]
        if self.v.metric == METRIC_COSINE:
            x = _normalized(x)
        self._enter_write()
        try:
            self._centroids[...] = kmeans(x, self.v.nlist, METRICS[self.v.metric], int(self._seed))
            self._trained = True
        finally:
            self._writing = False

    def add(self, ids: object, vectors: object) -> None:
        """Insert vectors under int64 ids (training on them first if untrained)."""
        cdef cnp.ndarray vecs = self._as_matrix(vectors, "vectors")
        cdef cnp.ndarray ids_arr = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        cdef cnp.ndarray lists
        cdef int64_t m = vecs.shape[0]
        cdef int64_t i, n0 = self.v.n
        cdef int32_t r
        cdef int rc = 0
        cdef const int64_t *ip
        cdef const int32_t *lp
        cdef const float *xp
        if ids_arr.shape[0] != m:
            raise ValidationError(f"{ids_arr.shape[0]} ids for {m} vectors")
        if m == 0:
            return
        if not np.isfinite(vecs).all():
            raise InvalidVectorError("vectors contain NaN or infinite components")
        if self.v.metric == METRIC_COSINE:
            if not np.einsum("ij,ij->i", vecs, vecs).all():
                raise InvalidVectorError("zero vector cannot be indexed under the cosine metric")
            vecs = _normalized(vecs)
        if n0 + m >= 2**31 - 1:
            raise ValidationError("IVFIndex holds at most 2**31 - 2 rows")
        if np.unique(ids_arr).shape[0] != m:
            raise ValidationError("duplicate ids in one add() call")
        ip = <const int64_t *>cnp.PyArray_DATA(ids_arr)
        for i in range(m):
            r = pxa_idmap_get(&self._idmap, ip[i])
            if r >= 0 and not self.v.deleted[r]:
                raise VectorExistsError(f"id {ip[i]} is already in the index")
        if not self._trained:
            self.train(vecs)
        lists = assign(vecs, self._centroids, METRICS[self.v.metric])
        lp = <const int32_t *>cnp.PyArray_DATA(lists)
        xp = <const float *>cnp.PyArray_DATA(vecs)
        self._enter_write()
        try:
            self._reserve(n0 + m)
            if pxa_idmap_reserve(&self._idmap, m) < 0:
                raise MemoryError()
            with nogil:
                for i in range(m):
                    if list_append(&self.v, lp[i], n0 + i, xp + i * self.v.dim) < 0:
                        rc = -1
                        break
                    self.v.ids[n0 + i] = ip[i]
                    self.v.deleted[n0 + i] = 0
                    self.v.n = n0 + i + 1
            for i in range(n0, self.v.n):
                pxa_idmap_put_nogrow(&self._idmap, self.v.ids[i], <int32_t>i)
            if rc < 0:
                raise MemoryError("out of memory while filling the inverted lists")
        finally:
            self._writing = False

    def mark_deleted(self, id: int) -> None:
        """Hide id from every later search."""
        cdef int32_t r = pxa_idmap_get(&self._idmap, <int64_t>id)
        if r < 0 or self.v.deleted[r]:
            raise VectorNotFoundError(f"id {id} is not in the index")
        self._enter_write()
        self.v.deleted[r] = 1
        self.v.n_deleted += 1
        self._writing = False

    def search(self, query: object, Py_ssize_t k=10, nprobe: int | None = None, filter_ids: object = None,
               exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest live rows to query, best first: (ids int64, distances float32).

        filter_ids: allowed ids (int64 array) or a uint8/bool bitmap over internal rows.
        exact: None picks list probing or an exact scan by the filter's size.
        """
        cdef cnp.ndarray q = self._as_query(query)
        cdef int npr = self._nprobe if nprobe is None else <int>nprobe
        cdef cnp.npy_intp kk = k
        cdef cnp.ndarray out_ids, out_d, rows = None
        cdef const uint8_t *allowed = NULL
        cdef const float *qp = <const float *>cnp.PyArray_DATA(q)
        cdef pxa_scratch *s
        cdef int64_t r
        cdef bint use_exact = False
        if k < 1 or npr < 1:
            raise ValidationError("k and nprobe must be >= 1")
        npr = min(npr, self.v.nlist)
        self._enter_read()
        try:
            if filter_ids is not None or exact:
                bitmap, rows, use_exact = self._prepare_filter(filter_ids, exact, <int>k, npr)
                if bitmap is not None:
                    allowed = <const uint8_t *>cnp.PyArray_DATA(bitmap)
            out_ids = cnp.PyArray_EMPTY(1, &kk, cnp.NPY_INT64, 0)
            out_d = cnp.PyArray_EMPTY(1, &kk, cnp.NPY_FLOAT32, 0)
            s = self._take_scratch()
            with nogil:
                if use_exact:
                    r = ivf_exact(&self.v, s, qp, <int>k, <const int32_t *>cnp.PyArray_DATA(rows),
                                  cnp.PyArray_SIZE(rows), <int64_t *>cnp.PyArray_DATA(out_ids),
                                  <float *>cnp.PyArray_DATA(out_d))
                else:
                    r = ivf_search(&self.v, s, qp, <int>k, npr, allowed,
                                   <int64_t *>cnp.PyArray_DATA(out_ids), <float *>cnp.PyArray_DATA(out_d))
            self._give_scratch(s)
        finally:
            self._readers -= 1
        if r < 0:
            raise MemoryError()
        if r < k:
            return out_ids[:r], out_d[:r]
        return out_ids, out_d

    def search_batch(self, queries: object, Py_ssize_t k=10, nprobe: int | None = None,
                     filter_ids: object = None, exact: bool | None = None,
                     threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """search() for each row of queries on `threads` OpenMP threads (default: all cores).
        Returns (ids (m, k), distances (m, k)); missing results are id -1, distance inf."""
        cdef cnp.ndarray qs = self._as_matrix(queries, "queries")
        cdef int npr = self._nprobe if nprobe is None else <int>nprobe
        cdef Py_ssize_t m = qs.shape[0], i
        cdef int nt = threads if threads else (os.cpu_count() or 1)
        cdef cnp.ndarray out_ids, out_d, rows = None
        cdef const uint8_t *allowed = NULL
        cdef const int32_t *rp = NULL
        cdef int64_t nrows = 0
        cdef bint use_exact = False
        cdef pxa_scratch *scr[MAX_POOL]
        cdef int t
        cdef int64_t r
        cdef int failed = 0
        cdef const float *qp = <const float *>cnp.PyArray_DATA(qs)
        cdef int64_t *oi
        cdef float *od
        if k < 1 or npr < 1:
            raise ValidationError("k and nprobe must be >= 1")
        npr = min(npr, self.v.nlist)
        nt = max(1, min(nt, MAX_POOL, max(<int>m, 1)))
        out_ids = np.full((m, k), -1, dtype=np.int64)
        out_d = np.full((m, k), np.inf, dtype=np.float32)
        oi = <int64_t *>cnp.PyArray_DATA(out_ids)
        od = <float *>cnp.PyArray_DATA(out_d)
        self._enter_read()
        try:
            if filter_ids is not None or exact:
                bitmap, rows, use_exact = self._prepare_filter(filter_ids, exact, <int>k, npr)
                if bitmap is not None:
                    allowed = <const uint8_t *>cnp.PyArray_DATA(bitmap)
                rp = <const int32_t *>cnp.PyArray_DATA(rows)
                nrows = cnp.PyArray_SIZE(rows)
            for t in range(nt):
                scr[t] = self._take_scratch()
            with nogil:
                for i in prange(m, num_threads=nt, schedule="dynamic", chunksize=4):
                    if use_exact:
                        r = ivf_exact(&self.v, scr[threadid()], qp + i * self.v.dim, <int>k, rp, nrows,
                                      oi + i * k, od + i * k)
                    else:
                        r = ivf_search(&self.v, scr[threadid()], qp + i * self.v.dim, <int>k, npr, allowed,
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
        """Write the index to path (atomically: a temporary file renamed over it)."""
        cdef int64_t n = self.v.n
        cdef uint32_t crc = 0
        cdef int li
        head = _HEADER.pack(MAGIC, FORMAT_VERSION, _HEADER_SIZE, self.v.dim, self.v.metric, self.v.nlist,
                            self._nprobe, int(self._trained), 0, self._seed, n, self.v.n_deleted)
        head += struct.pack("<II", pxd_crc32c(0, <const char *>head, len(head)), 0)
        assert len(head) == _HEADER_SIZE
        parts = [self._centroids.reshape(-1), self.list_sizes(), _view(self.v.ids, n, cnp.NPY_INT64)]
        parts += [_view(self.v.lists[li].rows, self.v.lists[li].n, cnp.NPY_INT32) for li in range(self.v.nlist)]
        parts += [_view(self.v.lists[li].vecs, self.v.lists[li].n * self.v.dim, cnp.NPY_FLOAT32)
                  for li in range(self.v.nlist)]
        parts.append(_view(self.v.deleted, n, cnp.NPY_UINT8))
        tmp = os.fspath(path) + ".tmp"
        with open(tmp, "wb") as f:
            f.write(head)
            for arr in parts:
                le = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
                crc = _crc_array(crc, le)
                f.write(memoryview(le).cast("B"))
            f.write(struct.pack("<I", crc) + END_MAGIC)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IVFIndex:
        """Read an index written by save(); CorruptionError if the file is damaged."""
        cdef IVFIndex idx
        cdef uint32_t crc = 0
        cdef int64_t i, j, n, nl
        cdef IvfList *L
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEADER_SIZE)
            if len(head) < _HEADER_SIZE:
                raise _corrupt(path, f"truncated header ({len(head)} of {_HEADER_SIZE} bytes)")
            magic, version, hsize, dim, metric, nlist, nprobe, trained, _, seed, n, n_deleted = (
                _HEADER.unpack_from(head))
            if magic != MAGIC:
                raise _corrupt(path, f"bad magic {magic!r} (not an IVF index file)")
            if version != FORMAT_VERSION:
                raise _corrupt(path, f"unsupported format version {version}")
            (hcrc,) = struct.unpack_from("<I", head, 64)
            if hcrc != pxd_crc32c(0, <const char *>head, 64):
                raise _corrupt(path, "header checksum mismatch")
            if (hsize != _HEADER_SIZE or metric > 2 or dim < 1 or nlist < 1 or n >= 2**31 - 1
                    or n_deleted > n or trained > 1):
                raise _corrupt(path, "header fields out of range")
            body = nlist * dim * 4 + nlist * 8 + n * 8 + n * 4 + n * dim * 4 + n
            if size != _HEADER_SIZE + body + 8:
                raise _corrupt(path, f"size {size} bytes, header describes {_HEADER_SIZE + body + 8} (truncated?)")
            idx = IVFIndex(dim, METRICS[metric], nlist, seed, max(nprobe, 1))
            idx._trained = bool(trained)
            idx._reserve(max(n, 1))
            sizes = np.empty(nlist, dtype=np.int64)
            for arr in (idx._centroids.reshape(-1), sizes, _view(idx.v.ids, n, cnp.NPY_INT64)):
                _read_into(f, arr, path)
                crc = _crc_array(crc, arr)
            if sizes.min() < 0 or int(sizes.sum()) != n:
                raise _corrupt(path, "inverted list sizes do not add up to the row count")
            for i in range(nlist):
                L = &idx.v.lists[i]
                nl = sizes[i]
                L.cap = max(nl, 1)
                L.rows = <int32_t *>calloc(L.cap, sizeof(int32_t))
                L.vecs = <float *>calloc(L.cap * dim, sizeof(float))
                if L.rows == NULL or L.vecs == NULL:
                    raise MemoryError()
                L.n = nl
            for i in range(nlist):
                arr = _view(idx.v.lists[i].rows, idx.v.lists[i].n, cnp.NPY_INT32)
                _read_into(f, arr, path)
                crc = _crc_array(crc, arr)
            for i in range(nlist):
                arr = _view(idx.v.lists[i].vecs, idx.v.lists[i].n * dim, cnp.NPY_FLOAT32)
                _read_into(f, arr, path)
                crc = _crc_array(crc, arr)
            arr = _view(idx.v.deleted, n, cnp.NPY_UINT8)
            _read_into(f, arr, path)
            crc = _crc_array(crc, arr)
            tail = f.read(8)
        if len(tail) != 8 or tail[4:] != END_MAGIC:
            raise _corrupt(path, "missing end marker (truncated?)")
        if struct.unpack_from("<I", tail)[0] != crc:
            raise _corrupt(path, "body checksum mismatch")
        # Every row must sit in exactly one list position.
        for i in range(n):
            idx.v.row_list[i] = -1
        for i in range(nlist):
            L = &idx.v.lists[i]
            for j in range(L.n):
                if L.rows[j] < 0 or L.rows[j] >= n or idx.v.row_list[L.rows[j]] != -1:
                    raise _corrupt(path, f"inverted list {i} names a bad or repeated row")
                idx.v.row_list[L.rows[j]] = <int32_t>i
                idx.v.row_pos[L.rows[j]] = <int32_t>j
        idx.v.n = n
        idx.v.n_deleted = n_deleted
        if int(np.count_nonzero(_view(idx.v.deleted, n, cnp.NPY_UINT8))) != n_deleted:
            raise _corrupt(path, "deleted count does not match the deletion flags")
        if pxa_idmap_reserve(&idx._idmap, n) < 0:
            raise MemoryError()
        for i in range(n):
            pxa_idmap_put_nogrow(&idx._idmap, idx.v.ids[i], <int32_t>i)
        return idx


def _read_into(f: object, arr: np.ndarray, path: object) -> None:
    if f.readinto(memoryview(arr).cast("B")) != arr.nbytes:
        raise _corrupt(path, "truncated body")
    if arr.dtype.itemsize > 1 and not _HOST_LE:
        arr.byteswap(inplace=True)


def simd_level() -> int:
    """The distance kernel variant in use: 0 scalar, 2 AVX2+FMA, 3 AVX-512F."""
    return pxd_simd_level
