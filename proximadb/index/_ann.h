/* Small C helpers shared by the HNSW and IVF indexes (private to proximadb.index).
 * ann_ (approximate nearest neighbour) prefixes every name: C has one namespace,
 * and these functions are compiled into the same unit as pxd/'s headers.
 *
 *   ann_rng_*      splitmix64: the seeded generator behind HNSW level assignment,
 *                  so a build is identical for a given seed on every platform.
 *   ann_heap       binary heaps of (distance, row) pairs, max- or min-ordered,
 *                  growing on demand (push returns -1 when out of memory).
 *   ann_scratch    per-search working memory: a visited list with epoch
 *                  counters (no clearing and no allocation per search), the
 *                  candidate/result heaps and a sort buffer. One per thread.
 *   ann_idmap      open-addressing hash from int64 external id to int32 row.
 *
 * Everything here is plain C and safe to call without the GIL. Nothing raises:
 * failures are return codes that the Cython caller turns into exceptions.
 */
#ifndef PROXIMADB_INDEX_ANN_H
#define PROXIMADB_INDEX_ANN_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define ann_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)

/* Prefetch every cache line of the nbytes (> 0) from p, which need not be line-aligned. */
static inline void ann_prefetch_span(const void *p, size_t nbytes) {
    const char *c = (const char *)p, *end = c + nbytes;
    for (; c < end; c += 64)
        ann_prefetch(c);
    ann_prefetch(end - 1);
}

/* ---- spinlocks (per-node locks of a parallel HNSW build) ---------------- */
#if defined(__x86_64__) || defined(__i386__)
#define ann_cpu_relax() __builtin_ia32_pause()
#else
#define ann_cpu_relax() ((void)0)
#endif
#include <sched.h>

/* Held only for a few microseconds and never two at a time, so a spin (with a
 * yield when the holder was preempted) beats a mutex. */
static inline void ann_spin_lock(uint8_t *l) {
    int spins = 0;
    while (__atomic_test_and_set(l, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(l, __ATOMIC_RELAXED)) {
            if (++spins < 2000) ann_cpu_relax(); else { sched_yield(); spins = 0; }
        }
    }
}
static inline void ann_spin_unlock(uint8_t *l) { __atomic_clear(l, __ATOMIC_RELEASE); }

/* ---- one query against many contiguous rows (IVF list scans) ------------
 * out[j] = l2sq / dot of q and row j of x (n rows of d floats). Each SIMD
 * variant calls its kernel directly (flatten inlines it), so the scan pays no
 * indirect call per row. ann_ny_setup() picks the variants matching the level
 * chosen by pxd_distance_setup(). */
#include "distance.h"
typedef void (*ann_ny_fn)(const float *q, const float *x, size_t d, size_t n, float *out);

static void ann_l2sq_ny_scalar(const float *q, const float *x, size_t d, size_t n, float *out) {
    for (size_t j = 0; j < n; j++) out[j] = pxd_l2sq_scalar(q, x + j * d, d);
}
static void ann_dot_ny_scalar(const float *q, const float *x, size_t d, size_t n, float *out) {
    for (size_t j = 0; j < n; j++) out[j] = pxd_dot_scalar(q, x + j * d, d);
}
#if PXD_X86
__attribute__((target("avx2,fma"), flatten))
static void ann_l2sq_ny_avx2(const float *q, const float *x, size_t d, size_t n, float *out) {
    for (size_t j = 0; j < n; j++) out[j] = pxd_l2sq_avx2(q, x + j * d, d);
}
__attribute__((target("avx2,fma"), flatten))
static void ann_dot_ny_avx2(const float *q, const float *x, size_t d, size_t n, float *out) {
    for (size_t j = 0; j < n; j++) out[j] = pxd_dot_avx2(q, x + j * d, d);
}
__attribute__((target("avx512f"), flatten))
static void ann_l2sq_ny_avx512(const float *q, const float *x, size_t d, size_t n, float *out) {
    for (size_t j = 0; j < n; j++) out[j] = pxd_l2sq_avx512(q, x + j * d, d);
}
__attribute__((target("avx512f"), flatten))
static void ann_dot_ny_avx512(const float *q, const float *x, size_t d, size_t n, float *out) {
    for (size_t j = 0; j < n; j++) out[j] = pxd_dot_avx512(q, x + j * d, d);
}
#endif

static ann_ny_fn ann_l2sq_ny = ann_l2sq_ny_scalar;
static ann_ny_fn ann_dot_ny = ann_dot_ny_scalar;

static inline void ann_ny_setup(int level) {
    ann_l2sq_ny = ann_l2sq_ny_scalar; ann_dot_ny = ann_dot_ny_scalar;
#if PXD_X86
    if (level == 2) { ann_l2sq_ny = ann_l2sq_ny_avx2; ann_dot_ny = ann_dot_ny_avx2; }
    if (level == 3) { ann_l2sq_ny = ann_l2sq_ny_avx512; ann_dot_ny = ann_dot_ny_avx512; }
#endif
}

/* ---- splitmix64 --------------------------------------------------------- */
static inline uint64_t ann_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform double in (0, 1]: never 0, so -log(u) is finite. */
static inline double ann_rng_unit(uint64_t *state) {
    return ((double)(ann_rng_next(state) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

/* ---- heaps ---------------------------------------------------------------- */
typedef struct { float d; int32_t id; } ann_pair;
typedef struct { ann_pair *a; int64_t n, cap; } ann_heap;

static inline int ann_heap_reserve(ann_heap *h, int64_t cap) {
    if (cap <= h->cap) return 0;
    int64_t nc = h->cap ? h->cap : 64;
    while (nc < cap) nc *= 2;
    ann_pair *a = (ann_pair *)realloc(h->a, (size_t)nc * sizeof(ann_pair));
    if (!a) return -1;
    h->a = a; h->cap = nc;
    return 0;
}

static inline void ann_heap_free(ann_heap *h) { free(h->a); h->a = NULL; h->n = h->cap = 0; }

/* Max-heap: a[0] is the largest distance (the worst of a result set). */
static inline int ann_maxheap_push(ann_heap *h, float d, int32_t id) {
    if (h->n == h->cap && ann_heap_reserve(h, h->n + 1) < 0) return -1;
    int64_t i = h->n++;
    while (i > 0) {
        int64_t p = (i - 1) >> 1;
        if (h->a[p].d >= d) break;
        h->a[i] = h->a[p]; i = p;
    }
    h->a[i].d = d; h->a[i].id = id;
    return 0;
}

static inline void ann_maxheap_sift_down(ann_heap *h, ann_pair x) {
    int64_t n = h->n, i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h->a[c + 1].d > h->a[c].d) c++;
        if (h->a[c].d <= x.d) break;
        h->a[i] = h->a[c]; i = c;
    }
    h->a[i] = x;
}

static inline void ann_maxheap_pop(ann_heap *h) {
    if (--h->n > 0) ann_maxheap_sift_down(h, h->a[h->n]);
}

/* Replace the largest element (the heap must not be empty). */
static inline void ann_maxheap_replace_top(ann_heap *h, float d, int32_t id) {
    ann_pair x; x.d = d; x.id = id;
    ann_maxheap_sift_down(h, x);
}

/* Min-heap: a[0] is the smallest distance (the next candidate to expand). */
static inline int ann_minheap_push(ann_heap *h, float d, int32_t id) {
    if (h->n == h->cap && ann_heap_reserve(h, h->n + 1) < 0) return -1;
    int64_t i = h->n++;
    while (i > 0) {
        int64_t p = (i - 1) >> 1;
        if (h->a[p].d <= d) break;
        h->a[i] = h->a[p]; i = p;
    }
    h->a[i].d = d; h->a[i].id = id;
    return 0;
}

static inline void ann_minheap_pop(ann_heap *h) {
    if (--h->n <= 0) return;
    ann_pair x = h->a[h->n];
    int64_t n = h->n, i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h->a[c + 1].d < h->a[c].d) c++;
        if (h->a[c].d >= x.d) break;
        h->a[i] = h->a[c]; i = c;
    }
    h->a[i] = x;
}

/* Empty a max-heap into out[0..n) in ascending order of distance. */
static inline int64_t ann_maxheap_drain_sorted(ann_heap *h, ann_pair *out) {
    int64_t n = h->n;
    for (int64_t i = n - 1; i >= 0; i--) { out[i] = h->a[0]; ann_maxheap_pop(h); }
    return n;
}

/* ---- per-search scratch --------------------------------------------------- */
typedef struct {
    uint16_t *vis;        /* vis[row] == epoch  <=>  row visited in this search */
    int64_t vis_cap;
    uint16_t epoch;
    ann_heap cand, top, tmp;
    ann_pair *work;       /* sort buffer of the neighbour heuristic */
    int64_t work_cap;
    int32_t *ids;         /* neighbour batch of one expansion */
    int64_t ids_cap;
    float *qbuf;          /* normalised copy of a cosine query */
    int64_t qbuf_cap;
    int64_t measured;     /* rows a graph walk measured (distances computed), for diagnostics */
} ann_scratch;

static inline ann_scratch *ann_scratch_new(void) { return (ann_scratch *)calloc(1, sizeof(ann_scratch)); }

static inline void ann_scratch_free(ann_scratch *s) {
    if (!s) return;
    free(s->vis); ann_heap_free(&s->cand); ann_heap_free(&s->top); ann_heap_free(&s->tmp);
    free(s->work); free(s->ids); free(s->qbuf); free(s);
}

static inline int ann_grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return -1;
    *p = q; *cap = nc;
    return 0;
}

static inline int ann_scratch_work(ann_scratch *s, int64_t need) {
    return ann_grow((void **)&s->work, &s->work_cap, need, sizeof(ann_pair));
}
static inline int ann_scratch_ids(ann_scratch *s, int64_t need) {
    return ann_grow((void **)&s->ids, &s->ids_cap, need, sizeof(int32_t));
}
static inline int ann_scratch_qbuf(ann_scratch *s, int64_t need) {
    return ann_grow((void **)&s->qbuf, &s->qbuf_cap, need, sizeof(float));
}

/* Start a new search over n rows: a fresh epoch; the array is cleared only
 * when it grows or the 16-bit epoch wraps (every 65535 searches). */
static inline int ann_visit_begin(ann_scratch *s, int64_t n) {
    if (n > s->vis_cap) {
        int64_t nc = s->vis_cap ? s->vis_cap : 1024;
        while (nc < n) nc *= 2;
        uint16_t *v = (uint16_t *)realloc(s->vis, (size_t)nc * sizeof(uint16_t));
        if (!v) return -1;
        memset(v, 0, (size_t)nc * sizeof(uint16_t));
        s->vis = v; s->vis_cap = nc; s->epoch = 0;
    }
    if (++s->epoch == 0) {
        memset(s->vis, 0, (size_t)s->vis_cap * sizeof(uint16_t));
        s->epoch = 1;
    }
    return 0;
}

/* ---- id -> row hash map ------------------------------------------------- */
typedef struct { int64_t *keys; int32_t *rows; int64_t cap, n; } ann_idmap; /* rows[i] < 0: empty slot */

static inline uint64_t ann_hash64(uint64_t x) {
    x ^= x >> 33; x *= 0xFF51AFD7ED558CCDull; x ^= x >> 33; x *= 0xC4CEB9FE1A85EC53ull; x ^= x >> 33;
    return x;
}

static inline void ann_idmap_free(ann_idmap *m) { free(m->keys); free(m->rows); memset(m, 0, sizeof(*m)); }

static inline int32_t ann_idmap_get(const ann_idmap *m, int64_t key) {
    if (!m->cap) return -1;
    uint64_t mask = (uint64_t)m->cap - 1, i = ann_hash64((uint64_t)key) & mask;
    for (;;) {
        int32_t r = m->rows[i];
        if (r < 0) return -1;
        if (m->keys[i] == key) return r;
        i = (i + 1) & mask;
    }
}

static inline void ann_idmap_put_nogrow(ann_idmap *m, int64_t key, int32_t row) {
    uint64_t mask = (uint64_t)m->cap - 1, i = ann_hash64((uint64_t)key) & mask;
    for (;;) {
        if (m->rows[i] < 0) { m->keys[i] = key; m->rows[i] = row; m->n++; return; }
        if (m->keys[i] == key) { m->rows[i] = row; return; }
        i = (i + 1) & mask;
    }
}

/* Make room for `extra` more keys at a load factor of at most 1/2. */
static inline int ann_idmap_reserve(ann_idmap *m, int64_t extra) {
    int64_t need = (m->n + extra) * 2, nc = m->cap ? m->cap : 64;
    if (need <= m->cap) return 0;
    while (nc < need) nc *= 2;
    ann_idmap old = *m;
    m->keys = (int64_t *)malloc((size_t)nc * sizeof(int64_t));
    m->rows = (int32_t *)malloc((size_t)nc * sizeof(int32_t));
    if (!m->keys || !m->rows) { free(m->keys); free(m->rows); *m = old; return -1; }
    memset(m->rows, 0xff, (size_t)nc * sizeof(int32_t));
    m->cap = nc; m->n = 0;
    for (int64_t i = 0; i < old.cap; i++)
        if (old.rows[i] >= 0) ann_idmap_put_nogrow(m, old.keys[i], old.rows[i]);
    free(old.keys); free(old.rows);
    return 0;
}

/* Scale v (length d) to unit norm; returns 0 if its norm is 0 or not finite. */
static inline int ann_normalize(float *v, size_t d) {
    double s = 0;
    for (size_t i = 0; i < d; i++) s += (double)v[i] * v[i];
    if (!(s > 0) || !isfinite(s)) return 0;
    float inv = (float)(1.0 / sqrt(s));
    for (size_t i = 0; i < d; i++) v[i] *= inv;
    return 1;
}
#endif
