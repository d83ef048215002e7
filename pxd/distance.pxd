ctypedef float (*pxd_dist_fn)(const float *, const float *, size_t) noexcept nogil

cdef extern from "distance.h" nogil:
    float pxd_l2sq_scalar(const float *a, const float *b, size_t d) noexcept
    float pxd_dot_scalar(const float *a, const float *b, size_t d) noexcept
    pxd_dist_fn pxd_l2sq
    pxd_dist_fn pxd_dot
    int pxd_simd_level
    int pxd_distance_setup(int level) noexcept
