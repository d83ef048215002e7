from libc.stdint cimport uint32_t

cdef extern from "crc32c.h" nogil:
    void pxd_crc32c_setup() noexcept
    void pxd_crc32c_force_software(int on) noexcept
    uint32_t pxd_crc32c(uint32_t crc, const void *data, size_t n) noexcept
