cdef extern from "cpu.h" nogil:
    int pxd_cpu_has_sse42() noexcept
    int pxd_cpu_has_avx2_fma() noexcept
    int pxd_cpu_has_avx512f() noexcept
