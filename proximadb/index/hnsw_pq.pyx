"""HNSW over product-quantized codes, rescored with the float32 originals (a collection's
``index_params={"quantization": {"type": "pq", "m": ..., ...}}`` with ``indexing_algorithm="hnsw"``).

:class:`HNSWPQIndex` is the third quantized HNSW variant beside int8 and binary
(``hnsw_int8.pyx``): the same build (a float32 HNSW graph whose links alone are kept), the same
graph walk (``_hnsw_graph.walk_graph``), the same rescoring of the ``ceil(k * oversampling)``
best candidates with the segment's memory-mapped float32 vectors (``attach_vectors``), the same
file framing (``_base.pyx``) and body layout; only the codes, the quantizer and the query's table
are its own.

Codes: the stored vector (normalised under ``cosine``) is split into ``m`` sub-vectors of
``dsub = dim / m`` dimensions; sub-vector ``j`` is coded by the index (one byte) of the nearest of
the ``ksub`` centroids of subspace ``j`` (squared Euclidean distance, whatever the metric). Each
subspace's centroids are trained by the project's k-means (``ivf.kmeans``: seeded Lloyd,
``KMEANS_ITERATIONS`` rounds, empty clusters split) on a sample of at most ``TRAIN_ROWS`` rows of
the segment (chosen with the index's seed: the same rows give the same codebooks), with seed
``seed + j``. ``ksub = min(256, rows)``: a segment of fewer than 256 rows trains one centroid per
sampled row (every row is its own centroid: its code is exact); the codebook entries above ``ksub``
are zero and no code names them.

Search: per query, a table of ``m x 256`` floats (``256 * dim`` multiply-adds, in loops over the
256 centroids of one dimension that the compiler vectorises) (``qt[256 j + c]``): under ``l2`` minus the
squared distance of the query's sub-vector ``j`` to centroid ``c`` of subspace ``j``, under
``dot`` / ``cosine`` their inner product; a row's code distance is ``bias - sum_j qt[256 j +
code_j]`` (``hnsw_int8.table_distance``, the binary index's lookup; ``bias`` 0 under ``l2``, else
the metric's offset, 1 for ``cosine``), i.e. the distance of the query to the row's
reconstruction (``l2`` squared, ``cosine`` 1 - q.x^, ``dot`` -q.x^). ``rescore=False`` returns
those distances. The default oversampling is 4. Memory: ``m`` bytes of codes per row plus the
codebooks, ``256 * dim * 4`` bytes (``m * 256 * dsub`` floats), plus the graph's links.

Default ``m`` (:func:`default_m`): the largest divisor of ``dim`` that is at most ``dim / 4``
(sub-vectors of 4 dimensions or more: 128 -> 32, 100 -> 25, 50 -> 10), 1 when there is none
(``dim`` < 8 or prime).

File ``index.hnswpq`` in the segment directory (all integers little-endian), version 1; the
framing (prefix, header CRC, body CRC, end magic, atomic save) is ``_base.pyx``'s, the body that of
``index.hnsw8`` with the codebooks in place of ``lo`` / ``step``::

    offset size  field
    0      8     magic b"PXHNSP\\x00\\x01"
    8      4     u32 format version (1)
    12     4     u32 header size (96)
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
    80     4     u32 m (sub-vectors; divides dim)
    84     4     u32 ksub (centroids trained per subspace, 1..256; 256 for an empty index)
    88     4     u32 CRC32C of bytes [0, 88)
    92     4     zero
    96           body:  ids i64[n] | codebooks f32[m*dsub*256] (dimension i of subspace j's centroid c
                        at (j*dsub + i)*256 + c: dimension-major, as the query's table reads it)
                        | codes u8[n*m] | links0 i32[n*(M0+1)]
                        | upper pool i32[upper len] | levels u8[n] | deleted u8[n]
    end-8  4     u32 CRC32C of the body
    end-4  4     b"PXHP"

A load also checks that every code is below ``ksub``. The float32 vectors are not in the file: after
``load`` the caller attaches the segment's (``attach_vectors``); until then the index refuses to search.
"""

cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t

from proximadb.index._base cimport METRIC_L2, view_array
from proximadb.index._hnsw_graph cimport RowDistance
from proximadb.index.hnsw_int8 cimport CodeQuery, HNSWInt8Index, table_distance

import struct

import numpy as np

from proximadb.errors import ValidationError
from proximadb.index._base import METRICS
from proximadb.index.index_file import IndexFileFormat
from proximadb.index.ivf import assign, kmeans

cnp.import_array()

_HEADER = struct.Struct("<8sIIIIIIII QQQQ ii II")
FILE_FORMAT = IndexFileFormat("HNSW PQ", b"PXHNSP\x00\x01", 1, _HEADER, b"PXHP")
cdef enum:
    CODE_VALUES = 256   # centroids per subspace: one code byte
KSUB = CODE_VALUES
TRAIN_ROWS = 65536  # rows of a segment sampled to train the codebooks
_ENCODE_BLOCK = 65536  # rows encoded per numpy step


def default_m(dim: int) -> int:
    """The largest divisor of dim that is at most dim / 4 (sub-vectors of >= 4 dims), else 1."""
    return max([d for d in range(1, dim // 4 + 1) if dim % d == 0], default=1)


def training_rows(n: int, seed: int) -> np.ndarray | None:
    """The rows (sorted) the codebooks of a segment of n rows are trained on: None (all of them) up to
    TRAIN_ROWS, else TRAIN_ROWS of them drawn with the seed (the same for the same n and seed)."""
    if n <= TRAIN_ROWS:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, TRAIN_ROWS, replace=False))


def check_m(m: object, dim: int, field: str = "m") -> int:
    """m as an int when it is a number of sub-vectors for dim (1..dim, dividing dim), else ValidationError."""
    if isinstance(m, bool) or not isinstance(m, int):
        raise ValidationError(f"{field} must be an integer, not {m!r}")
    if not 1 <= m <= dim:
        raise ValidationError(f"{field} must be between 1 and the dimension {dim}, not {m}")
    if dim % m:
        raise ValidationError(f"{field} must divide the dimension {dim} (sub-vectors of equal size), not {m}")
    return m


@cython.final
cdef class HNSWPQIndex(HNSWInt8Index):
    """HNSW graph searched on product-quantized codes (m bytes per row), top candidates rescored with
    float32 vectors (see the module's documentation). ``HNSWPQIndex(dim, metric="l2", M=16,
    ef_construction=200, seed=0, m=0)`` (m 0: :func:`default_m`); otherwise HNSWInt8Index's API, with
    ``codebooks()`` for ``quantizer()``."""

    FILE_FORMAT = FILE_FORMAT

    cdef int _m
    cdef int _dsub
    cdef int _ksub
    cdef object _codebooks      # float32 (m, dsub, 256): [j, i, c] is dimension i of centroid c of subspace j
    cdef const float *_cb

    def __init__(self, int dim, str metric="l2", int M=16, int ef_construction=200, seed: int = 0,
                 int m=0) -> None:
        HNSWInt8Index.__init__(self, dim, metric, M, ef_construction, seed)
        m = check_m(m or default_m(dim), dim)
        self._m = m
        self._dsub = dim // m
        self._ksub = KSUB
        self._code_bytes = m
        self._oversampling = 4.0
        self._codebooks = np.zeros((m, self._dsub, KSUB), dtype=np.float32)
        self._cb = <const float *>cnp.PyArray_DATA(self._codebooks)

    @property
    def m(self) -> int:
        """Sub-vectors (code bytes) per row."""
        return self._m

    @property
    def ksub(self) -> int:
        """Centroids trained per subspace (256, fewer for a segment of fewer rows)."""
        return self._ksub

    def codebooks(self) -> np.ndarray:
        """A copy of the codebooks, (m, 256, dim / m) float32; entries from ksub on are unused zeros."""
        return self._codebooks.transpose(0, 2, 1).copy()  # copy(): always a copy, in C order

    def quantizer(self) -> tuple[np.ndarray, np.ndarray]:
        raise ValidationError("HNSWPQIndex has codebooks, not a per-dimension quantizer: use codebooks()")

    def __repr__(self) -> str:
        return (f"HNSWPQIndex(dim={self.rows.dim}, metric={self.metric!r}, M={self.graph.M}, "
                f"ef_construction={self.graph.ef_construction}, seed={self._seed}, m={self._m}, len={len(self)})")

    cdef int64_t _query_floats(self) noexcept nogil:
        return CODE_VALUES * self._m

    cdef void _prepare_code_query(self, const float *q, float *qt, CodeQuery *cq, RowDistance *dist) noexcept nogil:
        """qt[256 j + c]: l2, minus the squared distance of sub-vector j of q to centroid c of subspace j;
        dot / cosine, their inner product."""
        cdef int c, d, dim = self.rows.dim, ds = self._dsub
        cdef bint l2 = self.rows.metric == METRIC_L2
        cdef const float *row
        cdef float *t
        cdef float x, diff
        # One pass per dimension d over the 256 centroid components of d (contiguous): loops the
        # compiler vectorises, the centroids' layout in the file (dimension-major) chosen for them.
        for c in range(CODE_VALUES * self._m):
            qt[c] = 0
        for d in range(dim):
            t = qt + ((d // ds) << 8)
            row = self._cb + <int64_t>d * CODE_VALUES
            x = q[d]
            if l2:
                for c in range(CODE_VALUES):
                    diff = x - row[c]
                    t[c] -= diff * diff
            else:
                for c in range(CODE_VALUES):
                    t[c] += x * row[c]
        cq.qt = qt
        cq.bias = 0 if l2 else self.rows.dot_offset
        cq.nbytes = self._m
        cq.step_bytes = self._code_bytes
        cq.codes = self.codes
        cq.dim = self.rows.dim
        cq.metric = self.rows.metric
        dist.fn = table_distance
        dist.ctx = cq
        dist.base = <const char *>self.codes
        dist.stride = self._code_bytes
        dist.nbytes = self._code_bytes

    cdef int _encode(self, object vectors, int64_t n) except -1:
        """Train the codebooks on (a seeded sample of) the rows, then write every row's code."""
        cdef int j, ds = self._dsub
        if n == 0:
            return 0
        chosen = training_rows(n, int(self._seed))
        sample = self._as_stored(vectors[:n] if chosen is None else np.asarray(vectors)[chosen])
        self._ksub = min(KSUB, sample.shape[0])
        self._codebooks[...] = 0
        for j in range(self._m):
            sub = np.ascontiguousarray(sample[:, j * ds:(j + 1) * ds])
            self._codebooks[j, :, :self._ksub] = kmeans(sub, self._ksub, "l2", int(self._seed) + j).T
        centroids = [np.ascontiguousarray(self._codebooks[j, :, :self._ksub].T) for j in range(self._m)]
        codes = view_array(self.codes, n * self._m, cnp.NPY_UINT8).reshape(n, self._m)
        for s in range(0, n, _ENCODE_BLOCK):
            block = self._as_stored(vectors[s:s + _ENCODE_BLOCK])
            for j in range(self._m):
                codes[s:s + _ENCODE_BLOCK, j] = assign(np.ascontiguousarray(block[:, j * ds:(j + 1) * ds]),
                                                       centroids[j], "l2")
        return 0

    # -- persistence: the int8 index's, with m / ksub in the header and the codebooks as quantizer --

    cdef list _quantizer_arrays(self):
        return [self._codebooks.reshape(-1)]

    cdef tuple _header_fields(self):
        return HNSWInt8Index._header_fields(self) + (self._m, self._ksub)

    @classmethod
    def _empty_for_header(cls, fields: tuple, path: object) -> HNSWPQIndex:
        cdef HNSWPQIndex idx
        dim, metric, M, _, ef_construction, _, seed = fields[:7]
        m, ksub = fields[12:14]
        if not 1 <= m <= dim or dim % m or not 1 <= ksub <= KSUB:
            raise FILE_FORMAT.error(path, "header fields out of range")
        idx = cls(dim, METRICS[metric], M, ef_construction, seed, m)
        idx._ksub = ksub
        return idx

    def _check_loaded(self, path: object) -> None:
        cdef int64_t n = self.rows.n
        HNSWInt8Index._check_loaded(self, path)
        if n and int(view_array(self.codes, n * self._m, cnp.NPY_UINT8).max()) >= self._ksub:
            raise FILE_FORMAT.error(path, f"a code names a centroid beyond the {self._ksub} trained")
