"""HNSW over int8 scalar-quantized or binary codes, rescored with the float32 originals (a collection's
``index_params={"quantization": {"type": "int8" | "binary", ...}}`` with ``indexing_algorithm="hnsw"``).

Build: an ordinary float32 HNSW graph (``hnsw.pyx``, same ``M`` / ``ef_construction`` / ``seed``)
is built over the segment's rows (reading them where they are: ``add(copy=False)``), then only its
links are kept; each row's vector (normalised
under ``cosine``) is replaced by one byte per dimension: with ``lo`` / ``hi`` the per-dimension
minimum / maximum over the segment and ``step = (hi - lo) / 255`` (1 where ``hi == lo``),
``code = round((x - lo) / step)`` in 0..255, so ``x ~ lo + step * code``.

Search: the graph traversal (``_hnsw_graph.walk_graph``, the walk of ``hnsw.pyx`` too: greedy
descent, then the level-0 best-first search with ``ef' = max(ef, k * oversampling)``) computes
every distance from the float query to the codes (``code_distance``) with the GIL-free kernels
of ``pxd/quant8.h`` (AVX2+FMA or scalar, chosen at run time); the ``ceil(k * oversampling)``
best candidates are then rescored with the float32 vectors, which stay memory-mapped in the
segment's ``vectors.f32`` (``attach_vectors``, never copied; under
``cosine`` one float32 norm per row is kept), and the k best are returned. Distances are those of
``hnsw.pyx`` (``l2`` squared, ``cosine`` 1 - cos, ``dot`` the negated inner product), so results
merge with exact scans. ``rescore=False`` returns the code distances. Filtered searches that are
cheaper as an exact scan (as in ``hnsw.pyx``) scan the float32 vectors. Memory per row: ``dim``
bytes of codes + ``(2M + 1) * 4`` bytes of level-0 links + ids/flags; the float32 index
(``hnsw.pyx``) holds no vectors either (it walks the same memory map), so the codes trade
``dim`` bytes a row of anonymous memory for a walk that reads ``dim`` bytes instead of ``dim * 4``
of the mapped vectors a visited row.

File ``index.hnsw8`` in the segment directory (all integers little-endian), version 1; the
framing (prefix, header CRC, body CRC, end magic, atomic save) is ``_base.pyx``'s::

    offset size  field
    0      8     magic b"PXHNS8\\x00\\x01"
    8      4     u32 format version (1)
    12     4     u32 header size (88)
    16     4     u32 dim
    20     4     u32 metric (0 l2, 1 cosine, 2 dot)
    24     4     u32 M
    28     4     u32 M0 (level-0 degree, 2*M)
    32     4     u32 ef_construction
    36     4     u32 ef (default search ef)
    40     8     u64 seed
    48     8     u64 n (rows, deleted included)
    56     8     u64 n_deleted
    64     8     u64 upper pool length (int32 words) = sum(levels) * (M + 1)
    72     4     i32 entry point row (-1 if empty)
    76     4     i32 max level
    80     4     u32 CRC32C of bytes [0, 80)
    84     4     zero
    88           body:  ids i64[n] | lo f32[dim] | step f32[dim] | codes u8[n*dim]
                        | links0 i32[n*(M0+1)] | upper pool i32[upper len] | levels u8[n] | deleted u8[n]
    end-8  4     u32 CRC32C of the body
    end-4  4     b"PXH8"

The float32 vectors are not in the file: after ``load`` the caller attaches the segment's
(``attach_vectors``); until then the index refuses to search.

Binary (:class:`HNSWBinaryIndex`, file ``index.hnswb``): one bit per dimension, ``1`` where the
stored vector (normalised under ``cosine``) is above the segment's per-dimension mean
(``center``), packed little-endian within bytes, the last byte padded with zero bits
(``code_bytes = ceil(dim / 8)``). The query stays in float32 (asymmetric): the traversal's
distance to a row is minus the inner product of ``q - center`` with the row's signs (+1 for a set
bit, -1 otherwise), summed from a per-query table of 256 partial sums per code byte (``qt``, built
once per query), one lookup per 8 dimensions (``table_distance``, which the product-quantized index of
``hnsw_pq.pyx``, a subclass of :class:`HNSWInt8Index` through ``hnsw_int8.pxd``, shares). It is 32 times smaller than float32 and coarse: with
rescoring, recall depends on the data (embeddings of a few hundred dimensions and up) and on
oversampling (default 4). ``rescore=False`` returns those sign distances. The file is laid out as ``index.hnsw8`` with magic ``b"PXHNSB\x00\x01"``, end
``b"PXHB"``, ``lo`` holding ``center``, ``step`` zeros and ``codes`` u8[n*code_bytes].
"""

cimport cython
cimport numpy as cnp
from libc.math cimport ceil
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

from proximadb.index._ann cimport *
from proximadb.index._kernels cimport dot_kernel, kernel_level, l2sq_kernel, setup_distance_kernels
from proximadb.index._hnsw_graph cimport HnswGraphIndex, RowDistance, check_header, walk_graph
from proximadb.index._base cimport (
    METRIC_COSINE,
    METRIC_L2,
    copy_array,
    offer,
    prepare_query,
    view_array,
    write_results,
)

import struct

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index._base import METRICS
from proximadb.index.index_file import IndexFileFormat
from proximadb.index.hnsw import HNSWIndex


cdef extern from "quant8.h" nogil:
    ctypedef float (*q8_l2_fn)(const float *, const float *, const uint8_t *, size_t) noexcept nogil
    ctypedef float (*q8_dot_fn)(const float *, const uint8_t *, size_t) noexcept nogil
    q8_l2_fn q8_l2 "pxd_q8_l2"
    q8_dot_fn q8_dot "pxd_q8_dot"
    int q8_setup "pxd_q8_setup"(int level) noexcept


cnp.import_array()
setup_distance_kernels(-1)
q8_setup(kernel_level)

_HEADER = struct.Struct("<8sIIIIIIII QQQQ ii")
FILE_FORMAT = IndexFileFormat("HNSW int8", b"PXHNS8\x00\x01", 1, _HEADER, b"PXH8")
BINARY_FILE_FORMAT = IndexFileFormat("HNSW binary", b"PXHNSB\x00\x01", 1, _HEADER, b"PXHB")
_ENCODE_BLOCK = 65536  # rows encoded per numpy step (bounds the temporary memory of a build)


cdef float code_distance(const void *ctx, const float *q, int32_t r) noexcept nogil:
    """The distance from the prepared query (ctx, a CodeQuery; q is unused) to row r's code."""
    cdef const CodeQuery *cq = <const CodeQuery *>ctx
    cdef const uint8_t *c = cq.codes + <int64_t>r * cq.dim
    if cq.metric == METRIC_L2:
        return q8_l2(cq.step, cq.qt, c, cq.dim)
    return cq.bias - q8_dot(cq.qt, c, cq.dim)


cdef float table_distance(const void *ctx, const float *q, int32_t r) noexcept nogil:
    """bias minus the sum, over row r's code bytes, of the query's table entries (ctx, a CodeQuery:
    qt[256 j + byte] is byte j's share). Binary: bias 0, the shares of the centred query's inner
    product with the row's signs; PQ (hnsw_pq.pyx): minus the sub-vectors' partial distances."""
    cdef const CodeQuery *cq = <const CodeQuery *>ctx
    cdef const uint8_t *c = cq.codes + <int64_t>r * cq.step_bytes
    cdef const float *t = cq.qt
    cdef float acc = 0
    cdef int j
    for j in range(cq.nbytes):
        acc += t[(j << 8) + c[j]]
    return cq.bias - acc


cdef class HNSWInt8Index(HnswGraphIndex):
    """HNSW graph searched on uint8 codes, top candidates rescored with float32 vectors.

    ``HNSWInt8Index(dim, metric="l2", M=16, ef_construction=200, seed=0)``; rows are added in one
    ``add`` call (a segment's index is built once); ``oversampling`` (>= 1) and ``rescore`` are
    settable search defaults.
    """

    FILE_FORMAT = FILE_FORMAT

    def __cinit__(self) -> None:
        self.codes = NULL
        self.lo = NULL
        self.step = NULL
        self._vp = NULL
        self._np = NULL

    def __init__(self, int dim, str metric="l2", int M=16, int ef_construction=200, seed: int = 0) -> None:
        self._init_rows(dim, metric, seed)
        self._init_graph(M, ef_construction)
        self._oversampling = 2.0
        self._rescore = True
        self._code_bytes = self._code_size(dim)
        self.lo = <float *>malloc(dim * sizeof(float))
        self.step = <float *>malloc(dim * sizeof(float))
        if self.lo == NULL or self.step == NULL:
            raise MemoryError()
        for i in range(dim):
            self.lo[i] = 0.0
            self.step[i] = 1.0

    @staticmethod
    def _code_size(int dim) -> int:
        return dim

    cdef int64_t _query_floats(self) noexcept nogil:
        """Room the prepared code query needs (qt), in floats."""
        return self.rows.dim

    def __dealloc__(self) -> None:
        free(self.codes)
        free(self.lo)
        free(self.step)

    # -- properties --

    @property
    def oversampling(self) -> float:
        """Candidates rescored per result: the traversal keeps ceil(k * oversampling) of them."""
        return self._oversampling

    @oversampling.setter
    def oversampling(self, double value) -> None:
        if not 1.0 <= value <= 100.0:
            raise ValidationError(f"oversampling must be between 1 and 100, got {value}")
        self._oversampling = value

    @property
    def rescore(self) -> bool:
        return self._rescore

    @rescore.setter
    def rescore(self, bint value) -> None:
        self._rescore = value

    @property
    def vectors_attached(self) -> bool:
        return self._vp != NULL

    def quantizer(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (lo, step): a row's vector is about lo + step * code."""
        return (copy_array(self.lo, self.rows.dim, cnp.NPY_FLOAT32),
                copy_array(self.step, self.rows.dim, cnp.NPY_FLOAT32))

    def codes_array(self) -> np.ndarray:
        """A copy of the codes, (n_rows, code bytes) uint8."""
        cdef int64_t n = self.rows.n
        return copy_array(self.codes, n * self._code_bytes, cnp.NPY_UINT8).reshape(n, self._code_bytes)

    def memory_usage(self) -> dict[str, int]:
        """Bytes held in memory per part, at the current size; the float32 vectors are memory-mapped
        (page cache, read for rescoring) and reported as ``vectors_mapped``."""
        cdef int64_t n = self.rows.n
        return {
            "codes": n * self._code_bytes + sum(a.nbytes for a in self._quantizer_arrays()),
            "links_level0": n * (self.graph.M0 + 1) * 4,
            "links_upper": self.graph.upper_len * 4 + n * 8,
            "ids": n * 8 + self._idmap.cap * 12,
            "flags": n * 2,
            "norms": n * 4 if self.rows.metric == METRIC_COSINE else 0,
            "vectors_mapped": n * self.rows.dim * 4,
        }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dim={self.rows.dim}, metric={self.metric!r}, M={self.graph.M}, "
                f"ef_construction={self.graph.ef_construction}, seed={self._seed}, len={len(self)})")

    def attach_vectors(self, vectors: object) -> None:
        """The float32 originals of the rows (row i = vectors[i]) for rescoring and exact scans; a
        float32 C-contiguous array (a memory map) is kept as it is, without a copy. Refused while a
        search runs (it reads the array this replaces, which may then be freed)."""
        self._enter_write("attach_vectors")
        try:
            self._set_vectors(vectors)
        finally:
            self._writing = False

    cdef int _set_vectors(self, object vectors) except -1:
        """attach_vectors' work, for a caller that holds the index for writing (attach_vectors, add)."""
        cdef cnp.ndarray arr = np.asarray(vectors)
        if arr.dtype != np.float32 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != self.rows.n or arr.shape[1] != self.rows.dim:
            raise ValidationError(f"vectors must have shape ({self.rows.n}, {self.rows.dim}), got {np.shape(arr)}")
        self._vectors = arr
        self._vp = <const float *>cnp.PyArray_DATA(arr)
        if self.rows.metric == METRIC_COSINE:
            norms = np.empty(self.rows.n, dtype=np.float32)
            for s in range(0, self.rows.n, _ENCODE_BLOCK):
                block = np.asarray(arr[s:s + _ENCODE_BLOCK], dtype=np.float32)
                norms[s:s + _ENCODE_BLOCK] = np.sqrt(np.einsum("ij,ij->i", block, block))
            norms[norms == 0] = 1.0
            self._norms = norms
            self._np = <const float *>cnp.PyArray_DATA(norms)
        return 0

    # -- distances --

    cdef float _float_distance(self, const float *q, int32_t r) noexcept nogil:
        cdef const float *v = self._vp + <int64_t>r * self.rows.dim
        if self.rows.metric == METRIC_L2:
            return l2sq_kernel(q, v, self.rows.dim)
        if self.rows.metric == METRIC_COSINE:
            return 1.0 - dot_kernel(q, v, self.rows.dim) / self._np[r]
        return -dot_kernel(q, v, self.rows.dim)

    cdef void _prepare_code_query(self, const float *q, float *qt, CodeQuery *cq, RowDistance *dist) noexcept nogil:
        cdef int i, dim = self.rows.dim
        cdef float bias = self.rows.dot_offset
        if self.rows.metric == METRIC_L2:
            for i in range(dim):
                qt[i] = q[i] - self.lo[i]
        else:
            for i in range(dim):
                qt[i] = q[i] * self.step[i]
                bias -= q[i] * self.lo[i]
        cq.qt = qt
        cq.bias = bias
        cq.codes = self.codes
        cq.step = self.step
        cq.dim = dim
        cq.metric = self.rows.metric
        dist.fn = code_distance
        dist.ctx = cq
        dist.base = <const char *>self.codes
        dist.stride = self._code_bytes
        dist.nbytes = self._code_bytes

    # -- the kind's part of the base --

    cdef int _grow(self, int64_t old_cap, int64_t cap) except -1:
        cdef void *p
        HnswGraphIndex._grow(self, old_cap, cap)  # the graph's arrays
        p = realloc(self.codes, cap * self._code_bytes)
        if p == NULL:
            raise MemoryError()
        self.codes = <uint8_t *>p
        return 0

    cdef int _check_searchable(self) except -1:
        if self._vp == NULL and self.rows.n > 0:
            raise ValidationError(f"{type(self).__name__}: no float32 vectors attached (attach_vectors) to rescore with")
        return 0

    cdef int64_t _search_one(self, ann_scratch *s, const float *q, int k, int ef, const uint8_t *allowed,
                             int64_t *out_ids, float *out_d) noexcept nogil:
        cdef int dim = self.rows.dim
        cdef int64_t i, n_cand
        cdef int32_t r
        cdef CodeQuery cq
        cdef RowDistance dist
        if ann_scratch_qbuf(s, dim + self._query_floats()) < 0:  # [0, dim): the prepared query, then qt
            return -1
        q = prepare_query(&self.rows, s, q)
        if q == NULL:
            return -1
        if self.graph.entry_point < 0:
            return 0
        self._prepare_code_query(q, s.qbuf + dim, &cq, &dist)
        n_cand = k
        if self._rescore:
            n_cand = max(<int64_t>k, <int64_t>ceil(k * self._oversampling))
        if walk_graph(&self.rows, &self.graph, s, &dist, q, max(<int64_t>ef, n_cand), allowed) < 0:
            return -1
        if not self._rescore:
            return write_results(&self.rows, s, k, out_ids, out_d)
        while s.top.n > n_cand:
            ann_maxheap_pop(&s.top)
        n_cand = s.top.n
        if ann_scratch_work(s, n_cand) < 0:
            return -1
        ann_maxheap_drain_sorted(&s.top, s.work)
        s.top.n = 0
        for i in range(n_cand):
            ann_prefetch(self._vp + <int64_t>s.work[i].id * dim)
        for i in range(n_cand):
            r = s.work[i].id
            offer(&s.top, k, self._float_distance(q, r), r)
        return write_results(&self.rows, s, k, out_ids, out_d)

    cdef void _row_distances(self, const float *q, const int32_t *rows, int64_t n, float *out) noexcept nogil:
        cdef int64_t j
        for j in range(n):
            out[j] = self._float_distance(q, rows[j])

    cdef int _add_rows(self, int64_t n0, cnp.ndarray vectors, int threads) except -2:
        cdef int64_t m = vectors.shape[0]
        cdef int64_t i, upper = 0
        cdef int dim = self.rows.dim
        cdef cnp.ndarray links0, pool, levels, block
        if n0 != 0:
            raise ValidationError(f"{type(self).__name__} takes its rows in one add() call")
        graph = HNSWIndex(dim, self.metric, self.graph.M, self.graph.ef_construction, self._seed)
        # Built once: repaired; over the caller's vectors, not a copy (kept below for rescoring).
        graph.add(np.arange(m, dtype=np.int64), vectors, threads=threads, repair=True, copy=False)
        links0, pool, levels, entry, max_level = graph.graph_arrays()
        del graph
        memcpy(self.graph.level0, cnp.PyArray_DATA(links0), m * self.graph.record_size)
        memcpy(self.graph.levels, cnp.PyArray_DATA(levels), m)
        self._reserve_upper(max(pool.shape[0], 1))
        memcpy(self.graph.upper_links, cnp.PyArray_DATA(pool), pool.shape[0] * sizeof(int32_t))
        self.graph.upper_len = pool.shape[0]
        for i in range(m):
            self.graph.upper_offset[i] = upper if self.graph.levels[i] else -1
            upper += self.graph.levels[i] * (self.graph.M + 1)
        self.graph.entry_point = entry
        self.graph.max_level = max_level
        self._encode(vectors, m)
        self.rows.n = m
        self._set_vectors(vectors)  # add holds the index for writing
        return 0

    cdef int _encode(self, object vectors, int64_t m) except -1:
        """Fit the quantizer to the rows and write their codes."""
        cdef int dim = self.rows.dim
        # The quantizer: per-dimension min / max over the rows (normalised under cosine).
        lo = np.full(dim, np.inf, dtype=np.float32)
        hi = np.full(dim, -np.inf, dtype=np.float32)
        for s in range(0, m, _ENCODE_BLOCK):
            block = self._as_stored(vectors[s:s + _ENCODE_BLOCK])
            lo = np.minimum(lo, block.min(axis=0))
            hi = np.maximum(hi, block.max(axis=0))
        step = (hi - lo) / np.float32(255.0)
        step[~(step > 0)] = 1.0
        memcpy(self.lo, cnp.PyArray_DATA(np.ascontiguousarray(lo, dtype=np.float32)), dim * sizeof(float))
        memcpy(self.step, cnp.PyArray_DATA(np.ascontiguousarray(step, dtype=np.float32)), dim * sizeof(float))
        codes = view_array(self.codes, m * dim, cnp.NPY_UINT8).reshape(m, dim)
        for s in range(0, m, _ENCODE_BLOCK):
            block = self._as_stored(vectors[s:s + _ENCODE_BLOCK])
            codes[s:s + _ENCODE_BLOCK] = np.clip(np.rint((block - lo) / step), 0, 255).astype(np.uint8)
        return 0

    cdef cnp.ndarray _as_stored(self, object block):
        arr = np.asarray(block, dtype=np.float32)
        if self.rows.metric == METRIC_COSINE:
            norms = np.sqrt(np.einsum("ij,ij->i", arr, arr))
            norms[norms == 0] = 1.0
            arr = arr / norms[:, None]
        return arr

    # -- public API --

    def add(self, ids: object, vectors: object, int threads=1, bint repair=True, bint copy=False) -> None:
        """Build the index over vectors under int64 ids, in one call (threads as HNSWIndex.add). The
        vectors are kept (not copied when float32 C-contiguous) for rescoring. The graph is always
        repaired (HNSWIndex.repair: it is built whole); ``repair`` and ``copy`` are accepted for the
        same signature."""
        self._add(ids, vectors, threads)

    # -- persistence (framing: the base's save/load) --

    cdef tuple _header_fields(self):
        return (self.rows.dim, self.rows.metric, self.graph.M, self.graph.M0, self.graph.ef_construction, self._ef,
                self._seed, self.rows.n, self.rows.n_deleted, self.graph.upper_len, self.graph.entry_point,
                self.graph.max_level)

    cdef list _body_arrays(self):
        cdef int64_t n = self.rows.n
        cdef int dim = self.rows.dim
        return [
            view_array(self.rows.ids, n, cnp.NPY_INT64),
            *self._quantizer_arrays(),
            view_array(self.codes, n * self._code_bytes, cnp.NPY_UINT8),
            view_array(self.graph.level0, n * (self.graph.M0 + 1), cnp.NPY_INT32),
            view_array(self.graph.upper_links, self.graph.upper_len, cnp.NPY_INT32),
            view_array(self.graph.levels, n, cnp.NPY_UINT8),
            view_array(self.rows.deleted, n, cnp.NPY_UINT8),
        ]

    cdef list _quantizer_arrays(self):
        """The quantizer's arrays as the file holds them, between the ids and the codes (over the
        index's memory: load fills them)."""
        cdef int dim = self.rows.dim
        return [view_array(self.lo, dim, cnp.NPY_FLOAT32), view_array(self.step, dim, cnp.NPY_FLOAT32)]

    @classmethod
    def _empty_for_header(cls, fields: tuple, path: object) -> HNSWInt8Index:
        """An empty index with the constructor arguments of a file's header fields (the fields after
        the graph's twelve are a subclass's own: hnsw_pq.pyx)."""
        dim, metric, M, _, ef_construction, _, seed = fields[:7]
        return cls(dim, METRICS[metric], M, ef_construction, seed)

    @classmethod
    def _from_header(cls, fields: tuple, path: object) -> tuple[HNSWInt8Index, int]:
        cdef HNSWInt8Index idx
        (dim, metric, M, M0, ef_construction, ef, seed, n, n_deleted, upper_len, entry_point, max_level) = fields[:12]
        check_header(cls.FILE_FORMAT, path, dim, metric, M, M0, n, n_deleted, entry_point, max_level)
        idx = cls._empty_for_header(fields, path)
        quantizer = sum(a.nbytes for a in idx._quantizer_arrays())
        body = n * 8 + quantizer + n * idx._code_bytes + n * (M0 + 1) * 4 + upper_len * 4 + 2 * n
        idx._restore_graph(n, n_deleted, upper_len, entry_point, max_level, ef)
        return idx, body


@cython.final
cdef class HNSWBinaryIndex(HNSWInt8Index):
    """HNSW graph searched on one bit per dimension (Hamming distance), top candidates rescored with
    float32 vectors (see the module's documentation). Same constructor and API as HNSWInt8Index;
    ``quantizer()`` returns (center, zeros)."""

    FILE_FORMAT = BINARY_FILE_FORMAT

    def __init__(self, int dim, str metric="l2", int M=16, int ef_construction=200, seed: int = 0) -> None:
        HNSWInt8Index.__init__(self, dim, metric, M, ef_construction, seed)
        self._oversampling = 4.0
        for i in range(dim):
            self.step[i] = 0.0

    @staticmethod
    def _code_size(int dim) -> int:
        return (dim + 7) // 8

    cdef int _encode(self, object vectors, int64_t m) except -1:
        cdef int dim = self.rows.dim
        total = np.zeros(dim, dtype=np.float64)
        for s in range(0, m, _ENCODE_BLOCK):
            total += self._as_stored(vectors[s:s + _ENCODE_BLOCK]).sum(axis=0, dtype=np.float64)
        center = np.ascontiguousarray(total / max(m, 1), dtype=np.float32)
        memcpy(self.lo, cnp.PyArray_DATA(center), dim * sizeof(float))
        codes = view_array(self.codes, m * self._code_bytes, cnp.NPY_UINT8).reshape(m, self._code_bytes)
        for s in range(0, m, _ENCODE_BLOCK):
            codes[s:s + _ENCODE_BLOCK] = np.packbits(self._as_stored(vectors[s:s + _ENCODE_BLOCK]) > center, axis=1,
                                                     bitorder="little")
        return 0

    cdef int64_t _query_floats(self) noexcept nogil:
        return 256 * ((self.rows.dim + 7) // 8)

    cdef void _prepare_code_query(self, const float *q, float *qt, CodeQuery *cq, RowDistance *dist) noexcept nogil:
        """qt[256 j + v]: the sum over the 8 dimensions of byte j of +-(q - center), + where v has the bit."""
        cdef int dim = self.rows.dim
        cdef int nbytes = (dim + 7) // 8
        cdef int j, b, d, v
        cdef float base, w[8]
        cdef float *t
        for j in range(nbytes):
            t = qt + (j << 8)
            base = 0
            for b in range(8):
                d = 8 * j + b
                w[b] = 2 * (q[d] - self.lo[d]) if d < dim else 0
                base -= w[b] / 2
            t[0] = base
            for v in range(1, 256):  # v with its lowest set bit b cleared, plus that bit's weight
                b = 0
                while not (v >> b) & 1:
                    b += 1
                t[v] = t[v & (v - 1)] + w[b]
        cq.qt = qt
        cq.bias = 0
        cq.nbytes = nbytes
        cq.step_bytes = self._code_bytes
        cq.codes = self.codes
        cq.dim = dim
        cq.metric = self.rows.metric
        dist.fn = table_distance
        dist.ctx = cq
        dist.base = <const char *>self.codes
        dist.stride = self._code_bytes
        dist.nbytes = nbytes
