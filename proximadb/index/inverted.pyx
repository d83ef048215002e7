"""An inverted index over term ids, scored by BM25 (text) or by dot product (sparse vectors).

One :class:`InvertedIndex` holds the postings of a fixed set of documents (rows 0..n-1), built
at once from a CSR of each document's term ids (:meth:`InvertedIndex.build`, repeated terms are
counted) or of each document's (term, weight) pairs (:meth:`InvertedIndex.build_weighted`).
In memory, as three arrays:

    term_start  int64[n_terms + 1]   postings of term t are [term_start[t], term_start[t+1])
    post_row    int32[postings]      the rows containing t, ascending
    post_value  float32[postings]    the term's count in that row (BM25), or its weight (sparse)
    row_length  float32[n_rows]      terms in the row, repeats counted (BM25's document length)

The arrays are read-only and the index's alone: the scorer reads them without the GIL, trusting
bounds checked once (``term_start`` ascending from 0 to the postings' count, rows in range). A
writeable array given to the constructor is copied (its owner could reuse it); read-only memory
(a derived file's read-only map, ``text_index_file.py``) is used in place.

A query is a list of (term id, weight) pairs; terms unknown to the index (id < 0 or beyond
``n_terms``) are skipped, and a term that appears twice counts twice. Scoring is term at a
time into a per-query accumulator, with the GIL released:

    "bm25"  score(row) = sum over query terms of
            weight * value / (value + k1 * (1 - b + b * row_length[row] / avg_length))
            with ``weight`` the term's IDF, given by the caller (so that IDF can come from
            statistics wider than this index: the whole collection, across segments).
            This is Lucene's BM25 without the constant (k1 + 1) factor, which changes no ranking.
    "dot"   score(row) = sum over query terms of weight * value

Only rows with ``allowed[row] != 0`` (when a mask is given) that share at least one term with
the query are candidates: a row sharing none is not a hit, whatever its score would be. The best ``k`` are returned by score,
descending; ties go to the smaller row, so results are deterministic.
"""

from cython.parallel cimport parallel, prange
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc

import numpy as np

from proximadb.errors import ValidationError

SCORINGS = ("bm25", "dot")


cdef struct hit:
    float score
    int32_t row


cdef inline bint worse(hit a, hit b) noexcept nogil:
    """a ranks below b: lower score, or the same score and a larger row."""
    return a.score < b.score or (a.score == b.score and a.row > b.row)


cdef void heap_sift_down(hit *h, int64_t n, int64_t i) noexcept nogil:
    """Min-heap by rank: h[0] is the worst kept hit."""
    cdef hit x = h[i]
    cdef int64_t c
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and worse(h[c + 1], h[c]):
            c += 1
        if not worse(h[c], x):
            break
        h[i] = h[c]
        i = c
    h[i] = x


cdef void heap_push(hit *h, int64_t n, hit x) noexcept nogil:
    cdef int64_t i = n, p
    while i > 0:
        p = (i - 1) >> 1
        if not worse(x, h[p]):
            break
        h[i] = h[p]
        i = p
    h[i] = x


cdef int64_t score_one(const int64_t[::1] term_start, const int32_t[::1] post_row, const float[::1] post_value,
                       const float[::1] row_length, const int32_t *terms, const float *weights, int64_t nq,
                       int bm25, double k1, double b, double avg_length, const uint8_t *allowed,
                       float *acc, uint8_t *seen, int32_t *touched, hit *top, int64_t k) noexcept nogil:
    """Score one query into ``acc``/``seen`` (all zero on entry, left all zero), keep the best ``k`` in
    ``top`` (sorted best first on return); returns how many were kept."""
    cdef int64_t n_terms = term_start.shape[0] - 1
    cdef int64_t ntouched = 0, i, p, t, kept = 0
    cdef int32_t row
    cdef float w, v
    cdef double norm = k1 * (1.0 - b)
    cdef double slope = k1 * b / avg_length if avg_length > 0 else 0.0
    cdef hit x, tmp
    for i in range(nq):
        t = terms[i]
        if t < 0 or t >= n_terms:
            continue
        w = weights[i]
        for p in range(term_start[t], term_start[t + 1]):
            row = post_row[p]
            if allowed != NULL and allowed[row] == 0:
                continue
            v = post_value[p]
            if seen[row] == 0:
                seen[row] = 1
                touched[ntouched] = row
                ntouched += 1
            if bm25:
                acc[row] += <float>(w * v / (v + norm + slope * row_length[row]))
            else:
                acc[row] += w * v
    for i in range(ntouched):
        row = touched[i]
        x.score = acc[row]
        x.row = row
        acc[row] = 0
        seen[row] = 0
        if kept < k:
            heap_push(top, kept, x)
            kept += 1
        elif worse(top[0], x):
            top[0] = x
            heap_sift_down(top, kept, 0)
    i = kept  # heap -> sorted best first
    while i > 1:
        i -= 1
        tmp = top[0]
        top[0] = top[i]
        top[i] = tmp
        heap_sift_down(top, i, 0)
    return kept


def _own_array(arr, dtype):
    """arr as a read-only C-contiguous array of dtype that no one can change later: the scorer reads
    it without the GIL, trusting the bounds checked once. Memory read-only all the way down (a derived
    file's read-only memory map) is used in place; anything writeable (a caller's buffer that may be
    reused) is copied."""
    out = np.ascontiguousarray(arr, dtype=dtype)
    if _writeable_anywhere(out):
        out = out.copy()
    out.flags.writeable = False
    return out


cdef bint _writeable_anywhere(object x):
    """Whether x, or any object its memory comes from (ndarray bases, memoryview owners), is writeable."""
    while x is not None:
        if isinstance(x, np.ndarray):
            if x.flags.writeable:
                return True
            x = x.base
        elif isinstance(x, memoryview):
            if not x.readonly:
                return True
            x = x.obj
        else:
            try:
                return not memoryview(x).readonly
            except TypeError:
                return True
    return False


cdef class InvertedIndex:
    """The postings of rows 0..n_rows-1 (see the module's documentation)."""

    cdef readonly object term_start
    cdef readonly object post_row
    cdef readonly object post_value
    cdef readonly object row_length
    cdef readonly int64_t n_rows
    cdef readonly int64_t n_terms
    cdef readonly double avg_length

    def __init__(self, term_start, post_row, post_value, row_length):
        self.term_start = _own_array(term_start, np.int64)
        self.post_row = _own_array(post_row, np.int32)
        self.post_value = _own_array(post_value, np.float32)
        self.row_length = _own_array(row_length, np.float32)
        if self.term_start.ndim != 1 or self.term_start.shape[0] < 1 or self.term_start[0] != 0:
            raise ValidationError("term_start must be a 1-d array starting at 0")
        if bool((np.diff(self.term_start) < 0).any()):
            raise ValidationError("term_start must ascend (each term's postings follow the previous term's)")
        if self.post_row.shape[0] != self.post_value.shape[0] or self.term_start[self.term_start.shape[0] - 1] != self.post_row.shape[0]:
            raise ValidationError("postings: term_start's last entry, post_row and post_value disagree on their length")
        self.n_terms = self.term_start.shape[0] - 1
        self.n_rows = self.row_length.shape[0]
        if self.post_row.shape[0] and (self.post_row.min() < 0 or self.post_row.max() >= self.n_rows):
            raise ValidationError(f"postings name rows outside 0..{self.n_rows - 1}")
        self.avg_length = float(self.row_length.mean()) if self.n_rows else 0.0

    @staticmethod
    def build(row_start, term_ids, int64_t n_terms):
        """From each row's term ids (``term_ids[row_start[r]:row_start[r+1]]``, repeats counted)."""
        starts = np.ascontiguousarray(row_start, dtype=np.int64)
        terms = np.ascontiguousarray(term_ids, dtype=np.int32)
        return InvertedIndex._build(starts, terms, np.ones(terms.shape[0], dtype=np.float32), n_terms)

    @staticmethod
    def build_weighted(row_start, term_ids, weights, int64_t n_terms):
        """From each row's (term id, weight) pairs: a sparse vector per row (a repeated term sums)."""
        starts = np.ascontiguousarray(row_start, dtype=np.int64)
        terms = np.ascontiguousarray(term_ids, dtype=np.int32)
        values = np.ascontiguousarray(weights, dtype=np.float32)
        if values.shape[0] != terms.shape[0]:
            raise ValidationError(f"{terms.shape[0]} term ids but {values.shape[0]} weights")
        return InvertedIndex._build(starts, terms, values, n_terms)

    @staticmethod
    def _build(const int64_t[::1] starts, const int32_t[::1] terms, const float[::1] values, int64_t n_terms):
        cdef int64_t n_rows = starts.shape[0] - 1
        cdef int64_t r, i, t, pos
        if n_rows < 0 or starts[0] != 0 or starts[n_rows] != terms.shape[0]:
            raise ValidationError("row_start must start at 0 and end at len(term_ids)")
        for r in range(n_rows):
            if starts[r + 1] < starts[r]:
                raise ValidationError(f"row_start is not ascending at row {r}")
        if terms.shape[0] and (np.asarray(terms).min() < 0 or np.asarray(terms).max() >= n_terms):
            raise ValidationError(f"term ids must lie in 0..{n_terms - 1}")
        df = np.zeros(n_terms + 1, dtype=np.int64)
        last = np.full(n_terms, -1, dtype=np.int64)
        slot = np.zeros(n_terms, dtype=np.int64)
        cdef int64_t[::1] dfv = df
        cdef int64_t[::1] lastv = last
        cdef int64_t[::1] slotv = slot
        with nogil:
            for r in range(n_rows):
                for i in range(starts[r], starts[r + 1]):
                    t = terms[i]
                    if lastv[t] != r:
                        lastv[t] = r
                        dfv[t + 1] += 1
        term_start = np.cumsum(df)
        post_row = np.empty(term_start[n_terms], dtype=np.int32)
        post_value = np.zeros(term_start[n_terms], dtype=np.float32)
        lengths = np.empty(n_rows, dtype=np.float32)
        cursor = term_start[:n_terms].copy()
        cdef int64_t[::1] cur = cursor
        cdef int32_t[::1] prow = post_row
        cdef float[::1] pval = post_value
        cdef float[::1] lens = lengths
        last.fill(-1)
        with nogil:
            for r in range(n_rows):
                lens[r] = starts[r + 1] - starts[r]  # tokens, repeats counted (BM25's document length)
                for i in range(starts[r], starts[r + 1]):
                    t = terms[i]
                    if lastv[t] != r:
                        lastv[t] = r
                        pos = cur[t]
                        cur[t] += 1
                        slotv[t] = pos
                        prow[pos] = <int32_t>r
                    pval[slotv[t]] += values[i]
        for arr in (term_start, post_row, post_value, lengths):
            arr.flags.writeable = False  # ours alone: the constructor need not copy them
        return InvertedIndex(term_start, post_row, post_value, lengths)

    def document_frequency(self, term_ids):
        """How many rows contain each term (0 for a term unknown here)."""
        terms = np.asarray(term_ids, dtype=np.int64)
        out = np.zeros(terms.shape[0], dtype=np.int64)
        known = (terms >= 0) & (terms < self.n_terms)
        ts = self.term_start
        out[known] = ts[terms[known] + 1] - ts[terms[known]]
        return out

    def search(self, term_ids, weights, int64_t k, *, str scoring="bm25", double k1=1.5, double b=0.75,
               avg_length=None, allowed=None):
        """The best ``k`` rows for one query: (rows int64, scores float32), best first."""
        rows, scores, counts = self.search_batch([term_ids], [weights], k, scoring=scoring, k1=k1, b=b,
                                                 avg_length=avg_length, allowed=allowed, threads=1)
        return rows[0, :counts[0]], scores[0, :counts[0]]

    def search_batch(self, term_ids, weights, int64_t k, *, str scoring="bm25", double k1=1.5, double b=0.75,
                     avg_length=None, allowed=None, int threads=0):
        """Many queries (a list of term-id arrays and one of weight arrays) over OpenMP threads.

        Returns (rows int64[nq, k], scores float32[nq, k], counts int64[nq]): query q's hits are the
        first counts[q] of its row, best first (the rest is -1 / 0)."""
        if scoring not in SCORINGS:
            raise ValidationError(f"scoring {scoring!r}: use one of {', '.join(SCORINGS)}")
        if k < 1:
            raise ValidationError(f"k must be at least 1, got {k}")
        if len(term_ids) != len(weights):
            raise ValidationError(f"{len(term_ids)} queries but {len(weights)} weight lists")
        if scoring == "bm25" and (k1 < 0 or not 0 <= b <= 1):
            raise ValidationError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        cdef int64_t nq = len(term_ids), q
        offsets = np.zeros(nq + 1, dtype=np.int64)
        for q in range(nq):
            if len(term_ids[q]) != len(weights[q]):
                raise ValidationError(f"query {q}: {len(term_ids[q])} terms but {len(weights[q])} weights")
            offsets[q + 1] = offsets[q] + len(term_ids[q])
        flat_terms = np.concatenate([np.asarray(t, dtype=np.int64) for t in term_ids]) if nq else np.zeros(0, np.int64)
        flat_terms = np.where((flat_terms < 0) | (flat_terms >= self.n_terms), -1, flat_terms).astype(np.int32)
        flat_weights = (np.concatenate([np.asarray(w, dtype=np.float32) for w in weights]) if nq
                        else np.zeros(0, np.float32))
        cdef const uint8_t[::1] mask
        cdef const uint8_t *mask_ptr = NULL
        if allowed is not None:
            mask = np.ascontiguousarray(allowed, dtype=np.uint8)
            if mask.shape[0] != self.n_rows:
                raise ValidationError(f"allowed mask of {mask.shape[0]} rows for an index of {self.n_rows}")
            if self.n_rows:
                mask_ptr = &mask[0]
        cdef double avg = self.avg_length if avg_length is None else float(avg_length)
        cdef int64_t kk = min(k, max(self.n_rows, 1))
        rows = np.full((nq, k), -1, dtype=np.int64)
        scores = np.zeros((nq, k), dtype=np.float32)
        counts = np.zeros(nq, dtype=np.int64)
        cdef int64_t[:, ::1] rows_v = rows
        cdef float[:, ::1] scores_v = scores
        cdef int64_t[::1] counts_v = counts
        cdef const int64_t[::1] off = offsets
        cdef const int32_t[::1] qt = flat_terms
        cdef const float[::1] qw = flat_weights
        cdef const int64_t[::1] ts = self.term_start
        cdef const int32_t[::1] pr = self.post_row
        cdef const float[::1] pv = self.post_value
        cdef const float[::1] rl = self.row_length
        cdef int bm25 = scoring == "bm25"
        cdef int nthreads = threads if threads > 0 else 0
        cdef int64_t n_rows = self.n_rows, j, kept
        cdef float *acc = NULL
        cdef uint8_t *seen = NULL
        cdef int32_t *touched = NULL
        cdef hit *top = NULL
        failed = np.zeros(1, dtype=np.int32)
        cdef int32_t[::1] failed_v = failed
        cdef const int32_t *qterms
        cdef const float *qweights
        if nq == 0:
            return rows, scores, counts
        if nthreads == 0:
            import os
            nthreads = os.cpu_count() or 1
        nthreads = <int>min(nthreads, nq)
        with nogil, parallel(num_threads=nthreads):
            # per thread, once: the accumulator is left all zero by every query
            acc = <float *>calloc(n_rows + 1, sizeof(float))
            seen = <uint8_t *>calloc(n_rows + 1, sizeof(uint8_t))
            touched = <int32_t *>malloc((n_rows + 1) * sizeof(int32_t))
            top = <hit *>malloc(kk * sizeof(hit))
            if acc == NULL or seen == NULL or touched == NULL or top == NULL:
                failed_v[0] = 1  # a shared flag (a variable assigned here would be thread-private)
            else:
                for q in prange(nq, schedule="dynamic"):
                    qterms = NULL
                    qweights = NULL
                    if off[q + 1] > off[q]:
                        qterms = &qt[off[q]]
                        qweights = &qw[off[q]]
                    kept = score_one(ts, pr, pv, rl, qterms, qweights, off[q + 1] - off[q], bm25, k1, b, avg,
                                     mask_ptr, acc, seen, touched, top, kk)
                    counts_v[q] = kept
                    for j in range(kept):
                        rows_v[q, j] = top[j].row
                        scores_v[q, j] = top[j].score
            free(acc)
            free(seen)
            free(touched)
            free(top)
        if failed[0]:
            raise MemoryError("inverted index search: out of memory for the per-query accumulator")
        return rows, scores, counts
