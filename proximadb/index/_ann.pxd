# Declarations shared by hnsw.pyx and ivf.pyx: the C helpers of _ann.h and the
# distance kernels of pxd/distance.h (declared here rather than cimported from
# pxd/distance.pxd so that the name cannot be confused with the sibling module
# proximadb/index/distance.pyx).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t


cdef extern from "distance.h" nogil:
    ctypedef float (*pxd_dist_fn)(const float *, const float *, size_t) noexcept nogil
    pxd_dist_fn pxd_l2sq
    pxd_dist_fn pxd_dot
    int pxd_simd_level
    int pxd_distance_setup(int level) noexcept


cdef extern from "_ann.h" nogil:
    void pxa_prefetch(const void *p) noexcept
    void pxa_spin_lock(uint8_t *l) noexcept
    void pxa_spin_unlock(uint8_t *l) noexcept

    uint64_t pxa_rng_next(uint64_t *state) noexcept
    double pxa_rng_unit(uint64_t *state) noexcept

    ctypedef struct pxa_pair:
        float d
        int32_t id
    ctypedef struct pxa_heap:
        pxa_pair *a
        int64_t n
        int64_t cap
    int pxa_heap_reserve(pxa_heap *h, int64_t cap) noexcept
    int pxa_maxheap_push(pxa_heap *h, float d, int32_t id) noexcept
    void pxa_maxheap_pop(pxa_heap *h) noexcept
    void pxa_maxheap_replace_top(pxa_heap *h, float d, int32_t id) noexcept
    int pxa_minheap_push(pxa_heap *h, float d, int32_t id) noexcept
    void pxa_minheap_pop(pxa_heap *h) noexcept
    int64_t pxa_maxheap_drain_sorted(pxa_heap *h, pxa_pair *out) noexcept

    ctypedef struct pxa_scratch:
        uint16_t *vis
        int64_t vis_cap
        uint16_t epoch
        pxa_heap cand
        pxa_heap top
        pxa_heap tmp
        pxa_pair *work
        int64_t work_cap
        int32_t *ids
        int64_t ids_cap
        float *qbuf
        int64_t qbuf_cap
    pxa_scratch *pxa_scratch_new() noexcept
    void pxa_scratch_free(pxa_scratch *s) noexcept
    int pxa_scratch_work(pxa_scratch *s, int64_t need) noexcept
    int pxa_scratch_ids(pxa_scratch *s, int64_t need) noexcept
    int pxa_scratch_qbuf(pxa_scratch *s, int64_t need) noexcept
    int pxa_visit_begin(pxa_scratch *s, int64_t n) noexcept

    ctypedef struct pxa_idmap:
        int64_t *keys
        int32_t *rows
        int64_t cap
        int64_t n
    void pxa_idmap_free(pxa_idmap *m) noexcept
    int32_t pxa_idmap_get(const pxa_idmap *m, int64_t key) noexcept
    void pxa_idmap_put_nogrow(pxa_idmap *m, int64_t key, int32_t row) noexcept
    int pxa_idmap_reserve(pxa_idmap *m, int64_t extra) noexcept

    int pxa_normalize(float *v, size_t d) noexcept

    ctypedef void (*pxa_ny_fn)(const float *q, const float *x, size_t d, size_t n, float *out) noexcept nogil
    pxa_ny_fn pxa_l2sq_ny
    pxa_ny_fn pxa_dot_ny
    void pxa_ny_setup(int level) noexcept
