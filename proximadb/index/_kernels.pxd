# The SIMD distance kernels of pxd/distance.h, declared once for the index package (distance.pyx,
# _ann.pxd, _base.pxd) under a package-qualified name, so that the header's declarations cannot be
# confused with the sibling module proximadb/index/distance.pyx. The header's C names keep their
# pxd_ prefix (C has one namespace); Cython code uses the names below. Every extension module that
# computes distances has its own copy of the dispatch pointers (static in the header) and must call
# setup_distance_kernels() once at import.

ctypedef float (*distance_fn)(const float *, const float *, size_t) noexcept nogil

cdef extern from "distance.h" nogil:
    float l2sq_scalar "pxd_l2sq_scalar"(const float *a, const float *b, size_t d) noexcept
    float dot_scalar "pxd_dot_scalar"(const float *a, const float *b, size_t d) noexcept
    distance_fn l2sq_kernel "pxd_l2sq"      # squared Euclidean distance, best variant for this CPU
    distance_fn dot_kernel "pxd_dot"        # inner product, likewise
    int kernel_level "pxd_simd_level"       # the variant in use: 0 scalar, 2 AVX2+FMA, 3 AVX-512F
    int setup_distance_kernels "pxd_distance_setup"(int level) noexcept  # -1: best; returns the level set
