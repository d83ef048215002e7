"""Exact (brute-force) search kernels over float32 rows.

Metrics, all "lower is better" so one selection serves every metric:

  ``"l2"``      SQUARED Euclidean distance ``sum((q - x)**2)``
  ``"dot"``     NEGATED inner product ``-(q . x)``
  ``"cosine"``  ``1 - (q . x)``; rows and query must already be unit length
                (:func:`normalize_rows`), the kernel does not divide by norms.

The per-pair kernels come from ``pxd/distance.h``, declared in ``_kernels.pxd``
(scalar, AVX2+FMA, AVX-512F, picked at import; :func:`set_simd_level` switches them for tests and
benchmarks, in this module only). Every scan runs inside ``with nogil`` over
typed memoryviews, so several Python threads search in parallel, and
:func:`topk_batch` spreads queries over OpenMP threads.

Selection keeps the best k of a scan in a bounded max-heap whose root is the
worst kept hit; the order is (distance, row) so ties go to the smaller row
number and results are deterministic. A distance that is NaN (a NaN component
in a base row) ranks as +inf, i.e. last. Base matrices are read through
``const`` memoryviews, so read-only numpy memmaps of segment files work as-is;
they must be C-contiguous float32 (no silent copy of a large matrix).
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, isfinite, sqrt
from libc.stdint cimport int64_t

cimport openmp

from proximadb.index._ann cimport ann_prefetch_span
from proximadb.index._kernels cimport distance_fn, dot_kernel, kernel_level, l2sq_kernel, setup_distance_kernels

import numpy as np

from proximadb.errors import DimensionMismatchError, InvalidVectorError, ValidationError

METRICS = ("l2", "dot", "cosine")

_LEVEL_NAMES = {0: "scalar", 2: "avx2", 3: "avx512"}
_LEVEL_CODES = {"scalar": 0, "avx2": 2, "avx512": 3, "best": -1}
_BEST_LEVEL = setup_distance_kernels(-1)


# -- SIMD level -----------------------------------------------------------------

def simd_level_name() -> str:
    """The kernel variant in use: ``"scalar"``, ``"avx2"`` or ``"avx512"``."""
    return _LEVEL_NAMES[kernel_level]


def available_simd_levels() -> tuple:
    """Every variant this CPU can run, scalar first (for tests and benchmarks)."""
    return tuple(name for level, name in _LEVEL_NAMES.items() if level <= _BEST_LEVEL)


def set_simd_level(name: str) -> str:
    """Switch this module's kernels (``"best"`` = the fastest this CPU runs).

    A level above what the CPU supports is capped; the level actually in use is
    returned. Not meant to be called while searches run in other threads.
    """
    if name not in _LEVEL_CODES:
        raise ValueError(f"unknown SIMD level {name!r}: expected one of {', '.join(_LEVEL_CODES)}")
    return _LEVEL_NAMES[setup_distance_kernels(_LEVEL_CODES[name])]


# -- per-pair distance ------------------------------------------------------------

cdef struct MetricFn:
    distance_fn fn
    float sign
    float offset


cdef int _metric_fn(object metric, MetricFn *out) except -1:
    """Fill ``out`` with the kernel of ``metric`` as selected now; -1 with ValidationError if unknown."""
    if metric == "l2":
        out.fn = l2sq_kernel
        out.sign = 1.0
        out.offset = 0.0
    elif metric == "dot":
        out.fn = dot_kernel
        out.sign = -1.0
        out.offset = 0.0
    elif metric == "cosine":
        out.fn = dot_kernel
        out.sign = -1.0
        out.offset = 1.0
    else:
        raise ValidationError(f"unknown metric {metric!r}: expected one of 'l2', 'dot', 'cosine'")
    return 0


cdef inline float _raw_distance(const MetricFn *m, const float *a, const float *b, size_t d) noexcept nogil:
    """The metric's value, NaN passed through (pairwise output). Never fails."""
    return m.offset + m.sign * m.fn(a, b, d)


cdef inline float _rank_distance(const MetricFn *m, const float *a, const float *b, size_t d) noexcept nogil:
    """The metric's value for ranking: NaN becomes +inf so it sorts last. Never fails."""
    cdef float r = m.offset + m.sign * m.fn(a, b, d)
    if r != r:
        return INFINITY
    return r


# -- bounded max-heap of (distance, row); the root is the worst kept hit ---------

cdef inline bint _worse(float da, int64_t ia, float db, int64_t ib) noexcept nogil:
    """True when hit a ranks after hit b. Never fails."""
    return da > db or (da == db and ia > ib)


cdef inline void _sift_down(float *hd, int64_t *hi, Py_ssize_t size, Py_ssize_t pos) noexcept nogil:
    cdef float d = hd[pos]
    cdef int64_t ix = hi[pos]
    cdef Py_ssize_t child
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _worse(hd[child + 1], hi[child + 1], hd[child], hi[child]):
            child += 1
        if not _worse(hd[child], hi[child], d, ix):
            break
        hd[pos] = hd[child]
        hi[pos] = hi[child]
        pos = child
    hd[pos] = d
    hi[pos] = ix


cdef inline Py_ssize_t _heap_push(float *hd, int64_t *hi, Py_ssize_t size, Py_ssize_t cap,
                                  float d, int64_t ix) noexcept nogil:
    """Offer one hit to a heap of ``size`` <= ``cap`` entries; returns the new size. Never fails."""
    cdef Py_ssize_t pos, parent
    if size < cap:
        pos = size
        while pos > 0:
            parent = (pos - 1) >> 1
            if not _worse(d, ix, hd[parent], hi[parent]):
                break
            hd[pos] = hd[parent]
            hi[pos] = hi[parent]
            pos = parent
        hd[pos] = d
        hi[pos] = ix
        return size + 1
    if _worse(hd[0], hi[0], d, ix):
        hd[0] = d
        hi[0] = ix
        _sift_down(hd, hi, size, 0)
    return size


cdef inline void _heap_sort(float *hd, int64_t *hi, Py_ssize_t size) noexcept nogil:
    """Turn the heap into a best-first array in place."""
    cdef Py_ssize_t end
    cdef float td
    cdef int64_t ti
    for end in range(size - 1, 0, -1):
        td = hd[0]
        ti = hi[0]
        hd[0] = hd[end]
        hi[0] = hi[end]
        hd[end] = td
        hi[end] = ti
        _sift_down(hd, hi, end, 0)


# -- scans ------------------------------------------------------------------------

cdef Py_ssize_t _scan_dense(const MetricFn *m, const float *q, const float *base, Py_ssize_t n,
                            Py_ssize_t d, const unsigned char *mask,
                            float *hd, int64_t *hi, Py_ssize_t cap) noexcept nogil:
    """Best ``cap`` rows of ``base`` (those with nonzero ``mask``, or all when NULL) into hd/hi,
    best first; returns how many were kept. Never fails."""
    cdef Py_ssize_t i, size = 0
    for i in range(n):
        if mask != NULL and mask[i] == 0:
            continue
        size = _heap_push(hd, hi, size, cap, _rank_distance(m, q, base + i * d, d), i)
    _heap_sort(hd, hi, size)
    return size


cdef enum:
    SCAN_PREFETCH = 4        # rows of an exact row scan prefetched ahead of the one measured
    SCAN_PREFETCH_BYTES = 512  # of each: a longer row the hardware prefetcher follows once it is read in order


cdef Py_ssize_t _scan_rows(const MetricFn *m, const float *q, const float *base, Py_ssize_t d,
                           const int64_t *rows, Py_ssize_t nrows,
                           float *hd, int64_t *hi, Py_ssize_t cap) noexcept nogil:
    """Like _scan_dense over the listed (valid, distinct) row numbers only. Never fails.
    The rows are scattered over the base (a selective filter's): each is prefetched
    SCAN_PREFETCH rows ahead, so that many rows' cache misses overlap instead of queueing."""
    cdef Py_ssize_t j, size = 0
    cdef size_t span = min(d * <Py_ssize_t>sizeof(float), <Py_ssize_t>SCAN_PREFETCH_BYTES)
    for j in range(min(nrows, <Py_ssize_t>SCAN_PREFETCH)):
        ann_prefetch_span(base + rows[j] * d, span)
    for j in range(nrows):
        if j + SCAN_PREFETCH < nrows:
            ann_prefetch_span(base + rows[j + SCAN_PREFETCH] * d, span)
        size = _heap_push(hd, hi, size, cap, _rank_distance(m, q, base + rows[j] * d, d), rows[j])
    _heap_sort(hd, hi, size)
    return size


cdef enum:
    QUERY_GROUP = 8          # queries of a batch that share each pass over a base block
    BLOCK_BYTES = 16384      # base block size: stays in L1d while the group's queries scan it


cdef void _scan_dense_group(const MetricFn *m, const float *qs, Py_ssize_t nq, const float *base,
                            Py_ssize_t n, Py_ssize_t d, const unsigned char *mask,
                            float *hd, int64_t *hi, Py_ssize_t stride, Py_ssize_t cap) noexcept nogil:
    """_scan_dense for nq <= QUERY_GROUP queries at once, base read block by block so each
    block is fetched from memory once per group instead of once per query. Query j's
    results go to hd/hi + j * stride. Same hits, same order as _scan_dense. Never fails."""
    cdef Py_ssize_t sizes[QUERY_GROUP]
    cdef Py_ssize_t block = max(<Py_ssize_t>1, BLOCK_BYTES // (d * <Py_ssize_t>sizeof(float)))
    cdef Py_ssize_t start, stop, i, j
    cdef const float *q
    for j in range(nq):
        sizes[j] = 0
    start = 0
    while start < n:
        stop = min(start + block, n)
        for j in range(nq):
            q = qs + j * d
            for i in range(start, stop):
                if mask != NULL and mask[i] == 0:
                    continue
                sizes[j] = _heap_push(hd + j * stride, hi + j * stride, sizes[j], cap,
                                      _rank_distance(m, q, base + i * d, d), i)
        start = stop
    for j in range(nq):
        _heap_sort(hd + j * stride, hi + j * stride, sizes[j])


cdef Py_ssize_t _first_non_finite(const float *p, Py_ssize_t count) noexcept nogil:
    """Index of the first NaN/inf value, or -1 when all are finite. Never fails."""
    cdef Py_ssize_t i
    for i in range(count):
        if not isfinite(p[i]):
            return i
    return -1


# -- argument checks (Python level, before the GIL is released) --------------------

cdef object _check_base(object base):
    if not isinstance(base, np.ndarray):
        raise ValidationError(f"base must be a numpy float32 array of shape (n, d), not {type(base).__name__}")
    if base.ndim != 2:
        raise ValidationError(f"base must be 2-D (n, d), got shape {base.shape}")
    if base.dtype != np.float32:
        raise ValidationError(
            f"base must be float32, got {base.dtype} "
            "(convert it once with np.ascontiguousarray(base, dtype=np.float32))"
        )
    if not base.flags.c_contiguous:
        raise ValidationError("base must be C-contiguous (convert it once with np.ascontiguousarray(base))")
    if base.shape[1] == 0:
        raise ValidationError("base rows have dimension 0")
    return base


cdef object _check_queries(object queries, Py_ssize_t ndim, Py_ssize_t d, str what):
    """Queries as C-contiguous float32 (converted if needed: they are small), finite, of dimension d."""
    try:
        q = np.ascontiguousarray(queries, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} is not a numeric array: {exc}") from None
    if q.ndim != ndim:
        shape = "(d,)" if ndim == 1 else "(m, d)"
        raise ValidationError(f"{what} must be {ndim}-D {shape}, got shape {q.shape}")
    if q.shape[ndim - 1] != d:
        raise DimensionMismatchError(f"{what} has dimension {q.shape[ndim - 1]}, base rows have dimension {d}")
    cdef const float[::1] flat = q.reshape(-1)
    cdef Py_ssize_t bad
    if flat.shape[0] > 0:
        with nogil:
            bad = _first_non_finite(&flat[0], flat.shape[0])
        if bad >= 0:
            raise InvalidVectorError(f"{what} has a NaN or infinite component (at flat position {bad})")
    return q


cdef Py_ssize_t _check_k(object k) except -1:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValidationError(f"k must be an integer, not {type(k).__name__}")
    if k < 1:
        raise ValidationError(f"k must be >= 1, got {k}")
    return min(int(k), 1 << 62)


cdef object _check_mask(object mask, Py_ssize_t n):
    """None, or a uint8 view of a bool/uint8 mask of length n."""
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    elif mask.dtype != np.uint8:
        raise ValidationError(f"mask must be a bool or uint8 array, got {mask.dtype}")
    if mask.ndim != 1 or mask.shape[0] != n:
        raise ValidationError(f"mask must have shape ({n},) to match the base rows, got {mask.shape}")
    return np.ascontiguousarray(mask)


# -- public API ---------------------------------------------------------------------

def pairwise(queries, base, metric="l2"):
    """All distances between query rows (m, d) and base rows (n, d) as float32 (m, n).

    NaN stays NaN here (only the top-k selection ranks it as +inf).
    """
    cdef MetricFn mf
    _metric_fn(metric, &mf)
    base = _check_base(base)
    cdef const float[:, ::1] bv = base
    cdef Py_ssize_t n = bv.shape[0], d = bv.shape[1]
    q = _check_queries(queries, 2, d, "queries")
    cdef const float[:, ::1] qv = q
    cdef Py_ssize_t m = qv.shape[0], i, j
    out = np.empty((m, n), dtype=np.float32)
    cdef float[:, ::1] ov = out
    if m == 0 or n == 0:
        return out
    with nogil:
        if m == 1:  # one query: no thread team (its start and barrier cost more than the row pass)
            for j in range(n):
                ov[0, j] = _raw_distance(&mf, &qv[0, 0], &bv[j, 0], d)
        else:
            for i in prange(m, schedule="static"):
                for j in range(n):
                    ov[i, j] = _raw_distance(&mf, &qv[i, 0], &bv[j, 0], d)
    return out


def topk(query, base, k, metric="l2", mask=None):
    """The k best base rows for one query: ``(idx int64 (k',), dist float32 (k',))``, best first.

    ``mask`` (bool/uint8, shape (n,)): nonzero marks a candidate row.
    k' = min(k, number of candidates); ties go to the smaller row number.
    """
    cdef MetricFn mf
    _metric_fn(metric, &mf)
    base = _check_base(base)
    cdef const float[:, ::1] bv = base
    cdef Py_ssize_t n = bv.shape[0], d = bv.shape[1]
    q = _check_queries(query, 1, d, "query")
    cdef const float[::1] qv = q
    cdef Py_ssize_t cap = min(_check_k(k), n), size
    mask = _check_mask(mask, n)
    cdef const unsigned char[::1] mv
    cdef const unsigned char *mp = NULL
    if mask is not None and n > 0:
        mv = mask
        mp = &mv[0]
    idx = np.empty(cap, dtype=np.int64)
    dist = np.empty(cap, dtype=np.float32)
    if cap == 0:
        return idx, dist
    cdef int64_t[::1] iv = idx
    cdef float[::1] dv = dist
    with nogil:
        size = _scan_dense(&mf, &qv[0], &bv[0, 0], n, d, mp, &dv[0], &iv[0], cap)
    if size < cap:
        return idx[:size].copy(), dist[:size].copy()
    return idx, dist


def topk_rows(query, base, rows, k, metric="l2"):
    """Like :func:`topk`, scanning only the listed row numbers of ``base``.

    For filtered searches that keep few rows: the cost is proportional to
    ``len(rows)``, not to n. Row numbers must lie in [0, n); a row listed twice
    is scanned once. Returned ``idx`` are row numbers of ``base``.
    """
    cdef MetricFn mf
    _metric_fn(metric, &mf)
    base = _check_base(base)
    cdef const float[:, ::1] bv = base
    cdef Py_ssize_t n = bv.shape[0], d = bv.shape[1]
    q = _check_queries(query, 1, d, "query")
    cdef const float[::1] qv = q
    cdef Py_ssize_t kk = _check_k(k)
    r = _check_rows(rows, n)
    cdef const int64_t[::1] rv = r
    cdef Py_ssize_t nrows = rv.shape[0]
    cdef Py_ssize_t cap = min(kk, nrows), size
    idx = np.empty(cap, dtype=np.int64)
    dist = np.empty(cap, dtype=np.float32)
    if cap == 0:
        return idx, dist
    cdef int64_t[::1] iv = idx
    cdef float[::1] dv = dist
    with nogil:
        size = _scan_rows(&mf, &qv[0], &bv[0, 0], d, &rv[0], nrows, &dv[0], &iv[0], cap)
    return idx, dist


cdef int _check_threads(object threads, int default) except -1:
    """OpenMP threads for a batch: ``default`` for None, else a positive integer (at most 1024)."""
    if threads is None:
        return default
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValidationError(f"threads must be a positive integer or None, got {threads!r}")
    return min(int(threads), 1024)


cdef object _check_rows(object rows, Py_ssize_t n):
    """rows as a C-contiguous int64 array of distinct row numbers in [0, n), ascending (sorted and
    deduplicated when they were not)."""
    r = np.asarray(rows)
    if r.ndim != 1:
        raise ValidationError(f"rows must be a 1-D array of row numbers, got shape {r.shape}")
    if r.shape[0] and not np.issubdtype(r.dtype, np.integer):
        raise ValidationError(f"rows must be integers, got {r.dtype}")
    r = np.ascontiguousarray(r, dtype=np.int64)
    cdef const int64_t[::1] rv = r
    cdef Py_ssize_t nrows = rv.shape[0], j
    cdef bint ascending = True
    if nrows == 0:
        return r
    with nogil:
        for j in range(1, nrows):
            if rv[j] <= rv[j - 1]:
                ascending = False
                break
    if not ascending:
        r = np.unique(r)
        rv = r
        nrows = rv.shape[0]
    if rv[0] < 0 or rv[nrows - 1] >= n:
        bad = rv[0] if rv[0] < 0 else rv[nrows - 1]
        raise ValidationError(f"rows holds row number {bad}, outside the base's [0, {n})")
    return r


def topk_rows_batch(queries, base, rows, k, metric="l2", threads=None):
    """:func:`topk_rows` for each query row (the planner's exact path of a selective filter):
    ``(idx int64 (m, k), dist float32 (m, k))``, padded with -1 / +inf past the candidates.

    The cost is proportional to ``len(rows)``, never to n: each query gathers the listed rows of
    ``base`` and runs the SIMD kernel on them, in parallel over OpenMP threads (GIL released)
    when there are several queries.
    """
    cdef MetricFn mf
    _metric_fn(metric, &mf)
    base = _check_base(base)
    cdef const float[:, ::1] bv = base
    cdef Py_ssize_t n = bv.shape[0], d = bv.shape[1]
    q = _check_queries(queries, 2, d, "queries")
    cdef const float[:, ::1] qv = q
    cdef Py_ssize_t m = qv.shape[0], i
    cdef Py_ssize_t kk = _check_k(k)
    r = _check_rows(rows, n)
    cdef const int64_t[::1] rv = r
    cdef Py_ssize_t nrows = rv.shape[0]
    cdef Py_ssize_t cap = min(kk, nrows)
    cdef int nthreads = _check_threads(threads, openmp.omp_get_max_threads() if m > 1 else 1)
    idx = np.full((m, kk), -1, dtype=np.int64)
    dist = np.full((m, kk), np.inf, dtype=np.float32)
    if m == 0 or cap == 0:
        return idx, dist
    cdef int64_t[:, ::1] iv = idx
    cdef float[:, ::1] dv = dist
    cdef const float *bp = &bv[0, 0]
    cdef const int64_t *rp = &rv[0]
    with nogil:
        if nthreads == 1:
            for i in range(m):
                _scan_rows(&mf, &qv[i, 0], bp, d, rp, nrows, &dv[i, 0], &iv[i, 0], cap)
        else:
            for i in prange(m, num_threads=nthreads, schedule="dynamic"):
                _scan_rows(&mf, &qv[i, 0], bp, d, rp, nrows, &dv[i, 0], &iv[i, 0], cap)
    return idx, dist


def topk_batch(queries, base, k, metric="l2", mask=None, threads=None):
    """:func:`topk` for each query row, in parallel over OpenMP threads (GIL released).

    Returns ``(idx int64 (m, k), dist float32 (m, k))``; a row with fewer than
    k candidates is padded with idx -1 and dist +inf. ``threads`` defaults to
    OpenMP's maximum (``OMP_NUM_THREADS`` or the number of cores).
    """
    cdef MetricFn mf
    _metric_fn(metric, &mf)
    base = _check_base(base)
    cdef const float[:, ::1] bv = base
    cdef Py_ssize_t n = bv.shape[0], d = bv.shape[1]
    q = _check_queries(queries, 2, d, "queries")
    cdef const float[:, ::1] qv = q
    cdef Py_ssize_t m = qv.shape[0]
    cdef Py_ssize_t kk = _check_k(k)
    cdef Py_ssize_t cap = min(kk, n)
    cdef int nthreads = _check_threads(threads, openmp.omp_get_max_threads())
    mask = _check_mask(mask, n)
    cdef const unsigned char[::1] mv
    cdef const unsigned char *mp = NULL
    if mask is not None and n > 0:
        mv = mask
        mp = &mv[0]
    cdef const float *bp = &bv[0, 0] if n > 0 else NULL
    idx = np.full((m, kk), -1, dtype=np.int64)
    dist = np.full((m, kk), np.inf, dtype=np.float32)
    if m == 0 or cap == 0:
        return idx, dist
    cdef int64_t[:, ::1] iv = idx
    cdef float[:, ::1] dv = dist
    cdef Py_ssize_t g, ngroups = (m + QUERY_GROUP - 1) // QUERY_GROUP
    with nogil:
        # Each query's heap lives in its own output row: no allocation in the threads.
        for g in prange(ngroups, num_threads=nthreads, schedule="dynamic"):
            _scan_dense_group(&mf, &qv[g * QUERY_GROUP, 0], min(<Py_ssize_t>QUERY_GROUP, m - g * QUERY_GROUP),
                              bp, n, d, mp, &dv[g * QUERY_GROUP, 0], &iv[g * QUERY_GROUP, 0], kk, cap)
    # Rows that kept fewer than cap hits already hold the -1/+inf padding past them.
    return idx, dist


def normalize_rows(matrix, inplace=False):
    """Scale each row (or a single vector) to unit L2 norm, as float32.

    The norm and the division are done in float64, where no float32 row can
    overflow or underflow (a square is at most ~1.2e77, at least ~2e-90): rows
    with components near float32's maximum, or subnormal ones, come out as
    exact unit vectors, never as zeros or unscaled. A finite non-zero row
    always normalises (its largest component becomes at least 1/sqrt(d)).

    With ``inplace=True`` the matrix must be a writable C-contiguous float32
    array and is modified and returned; otherwise a new array is returned.
    Raises InvalidVectorError, before changing anything, when a row has zero
    norm or a NaN/infinite component.
    """
    if inplace:
        if not isinstance(matrix, np.ndarray) or matrix.dtype != np.float32 or not matrix.flags.c_contiguous:
            raise ValidationError("normalize_rows(inplace=True) needs a C-contiguous float32 numpy array")
        if not matrix.flags.writeable:
            raise ValidationError("normalize_rows(inplace=True) needs a writable array")
        arr = matrix
    else:
        try:
            arr = np.array(matrix, dtype=np.float32, order="C", copy=True)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"matrix is not a numeric array: {exc}") from None
    if arr.ndim not in (1, 2):
        raise ValidationError(f"normalize_rows needs a vector (d,) or a matrix (n, d), got shape {arr.shape}")
    cdef float[:, ::1] av = arr.reshape(1, -1) if arr.ndim == 1 else arr
    cdef Py_ssize_t n = av.shape[0], d = av.shape[1], i, j
    norms = np.empty(n, dtype=np.float64)
    cdef double[::1] nv = norms
    cdef double s
    cdef Py_ssize_t bad = -1
    cdef double inv
    with nogil:
        for i in range(n):
            s = 0.0
            for j in range(d):
                s = s + <double>av[i, j] * <double>av[i, j]
            nv[i] = sqrt(s)
            if bad < 0 and not (nv[i] > 0.0 and isfinite(nv[i])):
                bad = i
        if bad < 0:
            for i in range(n):
                inv = 1.0 / nv[i]
                for j in range(d):
                    av[i, j] = <float>(<double>av[i, j] * inv)
    if bad >= 0:
        what = "the vector" if arr.ndim == 1 else f"row {bad}"
        if nv[bad] == 0.0:
            raise InvalidVectorError(f"{what} has zero norm and cannot be normalised (cosine needs non-zero vectors)")
        raise InvalidVectorError(f"{what} has a NaN or infinite component")
    return arr
