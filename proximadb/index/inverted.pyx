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

"dot" with at most ``MAXSCORE_TERMS`` query terms (and no filter that allows fewer than
``MAXSCORE_MIN_ALLOWED`` of the rows) is scored document at a time with MaxScore
pruning instead (Turtle & Flood): each term's largest possible contribution (its weight times
the largest, or for a negative weight the smallest, value in its postings: ``term_hi``/``term_lo``,
computed once per index at its first such search; contributions below 0 count as 0) orders the
terms; once the k-th best score so far (``theta``) exceeds the summed bounds of the smallest few,
those terms are "non-essential": a row found only in them cannot enter the top k, so rows are
enumerated from the essential terms' postings only, and a non-essential term's postings are
skipped to the row at hand (galloping search; post_row is ascending) only while the row can still
reach ``theta``. The answer is the same rows as term at a time (bounds are compared with a
relative slack of 1e-6, so float rounding never prunes a row that ties). Both sum a score in
double and round it to float32 once, clamped to float32's range (a score is never inf or NaN).
"""

from cython.parallel cimport parallel, prange
from libc.float cimport FLT_MAX
from libc.stdint cimport INT32_MAX, int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc, qsort

import numpy as np

from proximadb.errors import ValidationError

SCORINGS = ("bm25", "dot")
MAXSCORE_TERMS = 256  # "dot" queries with more terms are scored term at a time (a row's candidates scan every term)
MAXSCORE_MIN_ALLOWED = 0.3  # and so are those whose filter allows fewer than this fraction of the rows (measured:
# on debian-packages BM25 vectors MaxScore is slower than term at a time below ~30%, faster above)


cdef struct hit:
    float score
    int32_t row


cdef inline bint worse(hit a, hit b) noexcept nogil:
    """a ranks below b: lower score, or the same score and a larger row."""
    return a.score < b.score or (a.score == b.score and a.row > b.row)


cdef inline int64_t heap_offer(hit *top, int64_t kept, int64_t k, hit x) noexcept nogil:
    """Offer x to the best-k heap of ``kept`` hits; returns how many it keeps now."""
    if kept < k:
        heap_push(top, kept, x)
        return kept + 1
    if worse(top[0], x):
        top[0] = x
        heap_sift_down(top, kept, 0)
    return kept


cdef void heap_sort_best_first(hit *top, int64_t kept) noexcept nogil:
    """The heap's hits sorted best first, in place."""
    cdef int64_t i = kept
    cdef hit tmp
    while i > 1:
        i -= 1
        tmp = top[0]
        top[0] = top[i]
        top[i] = tmp
        heap_sift_down(top, i, 0)


cdef inline float to_score(double s) noexcept nogil:
    """A score summed in double as the float32 it is returned as; beyond float32's range it is the
    largest float32 of its sign, never inf (sums of finite float32 products are finite in double)."""
    if s > FLT_MAX:
        return FLT_MAX
    if s < -FLT_MAX:
        return -FLT_MAX
    return <float>s


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
                       double *acc, uint8_t *seen, int32_t *touched, hit *top, int64_t k) noexcept nogil:
    """Score one query into ``acc``/``seen`` (all zero on entry, left all zero), keep the best ``k`` in
    ``top`` (sorted best first on return); returns how many were kept."""
    cdef int64_t n_terms = term_start.shape[0] - 1
    cdef int64_t ntouched = 0, i, p, t, kept = 0
    cdef int32_t row
    cdef float w, v
    cdef double norm = k1 * (1.0 - b)
    cdef double slope = k1 * b / avg_length if avg_length > 0 else 0.0
    cdef hit x
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
                acc[row] += <double>w * v / (v + norm + slope * row_length[row])
            else:
                acc[row] += <double>w * v
    for i in range(ntouched):
        row = touched[i]
        x.score = to_score(acc[row])
        x.row = row
        acc[row] = 0
        seen[row] = 0
        kept = heap_offer(top, kept, k, x)
    heap_sort_best_first(top, kept)
    return kept


cdef struct qterm:
    double bound  # the term's largest contribution to a score, >= 0
    double weight
    int64_t pos  # cursor into the term's postings
    int64_t end


cdef int by_bound(const void *a, const void *b) noexcept nogil:
    cdef double x = (<const qterm *>a).bound, y = (<const qterm *>b).bound
    return -1 if x < y else (1 if x > y else 0)


cdef inline int64_t seek(const int32_t[::1] post_row, int64_t lo, int64_t end, int32_t row) noexcept nogil:
    """The first position in [lo, end) whose row is >= ``row`` (end when none): galloping, then halving."""
    cdef int64_t step = 1, hi, mid
    if lo >= end or post_row[lo] >= row:
        return lo
    while lo + step < end and post_row[lo + step] < row:
        lo += step
        step <<= 1
    hi = lo + step if lo + step < end else end
    while hi - lo > 1:  # post_row[lo] < row; post_row[hi] >= row, or hi == end
        mid = (lo + hi) >> 1
        if post_row[mid] < row:
            lo = mid
        else:
            hi = mid
    return hi


cdef int64_t score_dot_maxscore(const int64_t[::1] term_start, const int32_t[::1] post_row,
                                const float[::1] post_value, const float *term_hi, const float *term_lo,
                                const int32_t *terms, const float *weights, int64_t nq, const uint8_t *allowed,
                                qterm *qs, double *cum, hit *top, int64_t k) noexcept nogil:
    """One "dot" query by MaxScore (see the module's documentation) into ``top`` (sorted best first on
    return); ``qs``/``cum`` hold ``nq`` entries. Returns how many were kept."""
    cdef int64_t n_terms = term_start.shape[0] - 1
    cdef int64_t n = 0, i, e = 0, kept = 0
    cdef int32_t t, row
    cdef double w, bound, score, theta = 0.0, slack = 0.0
    cdef bint full = False, pruned
    cdef hit x
    for i in range(nq):
        t = terms[i]
        if t < 0 or t >= n_terms or term_start[t] == term_start[t + 1]:
            continue
        w = weights[i]
        bound = w * term_hi[t] if w >= 0 else w * term_lo[t]
        qs[n].bound = bound if bound > 0 else 0.0
        qs[n].weight = w
        qs[n].pos = term_start[t]
        qs[n].end = term_start[t + 1]
        n += 1
    qsort(qs, n, sizeof(qterm), by_bound)
    bound = 0.0
    for i in range(n):
        bound += qs[i].bound
        cum[i] = bound
    while True:
        row = INT32_MAX
        for i in range(e, n):  # the next row of any essential term
            if qs[i].pos < qs[i].end and post_row[qs[i].pos] < row:
                row = post_row[qs[i].pos]
        if row == INT32_MAX:
            break
        if allowed != NULL and allowed[row] == 0:  # filtered out: only step past it
            for i in range(e, n):
                if qs[i].pos < qs[i].end and post_row[qs[i].pos] == row:
                    qs[i].pos += 1
            continue
        score = 0.0
        for i in range(e, n):
            if qs[i].pos < qs[i].end and post_row[qs[i].pos] == row:
                score += qs[i].weight * post_value[qs[i].pos]
                qs[i].pos += 1
        pruned = False
        i = e - 1
        while i >= 0:  # non-essential terms, largest bound first, while the row can still reach theta
            if full and score + cum[i] < theta - slack:
                pruned = True
                break
            qs[i].pos = seek(post_row, qs[i].pos, qs[i].end, row)
            if qs[i].pos < qs[i].end and post_row[qs[i].pos] == row:
                score += qs[i].weight * post_value[qs[i].pos]
            i -= 1
        if pruned:
            continue
        x.score = to_score(score)
        x.row = row
        kept = heap_offer(top, kept, k, x)
        if kept == k:
            full = True
            theta = top[0].score
            slack = 1e-6 * (theta if theta > 0 else -theta)
            while e < n and cum[e] < theta - slack:
                e += 1
    heap_sort_best_first(top, kept)
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
    cdef object _bounds  # (term_hi, term_lo) float32[n_terms]: made at the first "dot" search

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

    def term_bounds(self):
        """(term_hi, term_lo): each term's largest and smallest value in its postings (0 for a term with
        none), as float32[n_terms]; MaxScore's bounds, made once."""
        if self._bounds is None:
            starts = np.asarray(self.term_start)
            values = np.asarray(self.post_value)
            hi = np.zeros(self.n_terms, dtype=np.float32)
            lo = np.zeros(self.n_terms, dtype=np.float32)
            used = starts[1:] > starts[:self.n_terms]
            if used.any():
                firsts = starts[:self.n_terms][used]
                hi[used] = np.maximum.reduceat(values, firsts)
                lo[used] = np.minimum.reduceat(values, firsts)
            self._bounds = (hi, lo)
        return self._bounds

    def document_frequency(self, term_ids):
        """How many rows contain each term (0 for a term unknown here)."""
        terms = np.asarray(term_ids, dtype=np.int64)
        out = np.zeros(terms.shape[0], dtype=np.int64)
        known = (terms >= 0) & (terms < self.n_terms)
        ts = self.term_start
        out[known] = ts[terms[known] + 1] - ts[terms[known]]
        return out

    def search(self, term_ids, weights, int64_t k, *, str scoring="bm25", double k1=1.5, double b=0.75,
               avg_length=None, allowed=None, bint maxscore=True):
        """The best ``k`` rows for one query: (rows int64, scores float32), best first."""
        rows, scores, counts = self.search_batch([term_ids], [weights], k, scoring=scoring, k1=k1, b=b,
                                                 avg_length=avg_length, allowed=allowed, threads=1,
                                                 maxscore=maxscore)
        return rows[0, :counts[0]], scores[0, :counts[0]]

    def search_batch(self, term_ids, weights, int64_t k, *, str scoring="bm25", double k1=1.5, double b=0.75,
                     avg_length=None, allowed=None, int threads=0, bint maxscore=True):
        """Many queries (a list of term-id arrays and one of weight arrays) over OpenMP threads.
        ``maxscore=False``: "dot" term at a time too (the same rows; for comparisons).

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
        cdef double *acc = NULL
        cdef uint8_t *seen = NULL
        cdef int32_t *touched = NULL
        cdef hit *top = NULL
        cdef qterm *qs = NULL
        cdef double *cum = NULL
        cdef int64_t longest = 0
        cdef const float[::1] t_hi
        cdef const float[::1] t_lo
        cdef const float *hi_ptr = NULL
        cdef const float *lo_ptr = NULL
        cdef int pruning = maxscore and scoring == "dot" and self.n_terms > 0
        if pruning:
            longest = int(np.diff(offsets).max()) if nq else 0
            pruning = longest <= MAXSCORE_TERMS
        if pruning and allowed is not None and self.n_rows:
            # few rows allowed: theta stays low, nothing is pruned, and term at a time reads less per row
            pruning = np.count_nonzero(mask) >= MAXSCORE_MIN_ALLOWED * self.n_rows
        if pruning:
            t_hi, t_lo = self.term_bounds()
            hi_ptr = &t_hi[0]
            lo_ptr = &t_lo[0]
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
            acc = NULL  # every per-thread pointer is set here (a thread's private copy starts undefined)
            seen = NULL
            touched = NULL
            qs = NULL
            cum = NULL
            top = <hit *>malloc(kk * sizeof(hit))
            if pruning:  # per query: its terms and their bounds' running sums
                qs = <qterm *>malloc((longest + 1) * sizeof(qterm))
                cum = <double *>malloc((longest + 1) * sizeof(double))
            else:  # per query: an accumulator over the rows
                acc = <double *>calloc(n_rows + 1, sizeof(double))
                seen = <uint8_t *>calloc(n_rows + 1, sizeof(uint8_t))
                touched = <int32_t *>malloc((n_rows + 1) * sizeof(int32_t))
            if top == NULL or (pruning and (qs == NULL or cum == NULL)) or (
                    not pruning and (acc == NULL or seen == NULL or touched == NULL)):
                failed_v[0] = 1  # a shared flag (a variable assigned here would be thread-private)
            else:
                for q in prange(nq, schedule="dynamic"):
                    qterms = NULL
                    qweights = NULL
                    if off[q + 1] > off[q]:
                        qterms = &qt[off[q]]
                        qweights = &qw[off[q]]
                    if pruning:
                        kept = score_dot_maxscore(ts, pr, pv, hi_ptr, lo_ptr, qterms, qweights, off[q + 1] - off[q],
                                                  mask_ptr, qs, cum, top, kk)
                    else:
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
            free(qs)
            free(cum)
        if failed[0]:
            raise MemoryError("inverted index search: out of memory for the per-query accumulator")
        return rows, scores, counts
