# Declarations of _ann.h, the C helpers of the index kinds: heaps, scratch memory, the id map,
# spinlocks, the seeded generator, one-query-many-rows kernels (the per-pair distance kernels are
# declared in _kernels.pxd).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t


cdef extern from "_ann.h" nogil:
    void ann_prefetch(const void *p) noexcept
    void ann_prefetch_span(const void *p, size_t nbytes) noexcept
    void ann_spin_lock(uint8_t *l) noexcept
    void ann_spin_unlock(uint8_t *l) noexcept

    uint64_t ann_rng_next(uint64_t *state) noexcept
    double ann_rng_unit(uint64_t *state) noexcept

    ctypedef struct ann_pair:
        float d
        int32_t id
    ctypedef struct ann_heap:
        ann_pair *a
        int64_t n
        int64_t cap
    int ann_heap_reserve(ann_heap *h, int64_t cap) noexcept
    int ann_maxheap_push(ann_heap *h, float d, int32_t id) noexcept
    void ann_maxheap_pop(ann_heap *h) noexcept
    void ann_maxheap_replace_top(ann_heap *h, float d, int32_t id) noexcept
    int ann_minheap_push(ann_heap *h, float d, int32_t id) noexcept
    void ann_minheap_pop(ann_heap *h) noexcept
    int64_t ann_maxheap_drain_sorted(ann_heap *h, ann_pair *out) noexcept

    ctypedef struct ann_scratch:
        uint16_t *vis
        int64_t vis_cap
        uint16_t epoch
        ann_heap cand
        ann_heap top
        ann_heap tmp
        ann_pair *work
        int64_t work_cap
        int32_t *ids
        int64_t ids_cap
        float *qbuf
        int64_t qbuf_cap
        int64_t measured
    ann_scratch *ann_scratch_new() noexcept
    void ann_scratch_free(ann_scratch *s) noexcept
    int ann_scratch_work(ann_scratch *s, int64_t need) noexcept
    int ann_scratch_ids(ann_scratch *s, int64_t need) noexcept
    int ann_scratch_qbuf(ann_scratch *s, int64_t need) noexcept
    int ann_visit_begin(ann_scratch *s, int64_t n) noexcept

    ctypedef struct ann_idmap:
        int64_t *keys
        int32_t *rows
        int64_t cap
        int64_t n
    void ann_idmap_free(ann_idmap *m) noexcept
    int32_t ann_idmap_get(const ann_idmap *m, int64_t key) noexcept
    void ann_idmap_put_nogrow(ann_idmap *m, int64_t key, int32_t row) noexcept
    int ann_idmap_reserve(ann_idmap *m, int64_t extra) noexcept

    int ann_normalize(float *v, size_t d) noexcept

    ctypedef void (*ann_ny_fn)(const float *q, const float *x, size_t d, size_t n, float *out) noexcept nogil
    ann_ny_fn ann_l2sq_ny
    ann_ny_fn ann_dot_ny
    void ann_ny_setup(int level) noexcept
