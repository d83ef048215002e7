from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from "endian.h" nogil:
    int PXD_HOST_IS_LE
    uint16_t pxd_load_u16le(const void *p) noexcept
    uint32_t pxd_load_u32le(const void *p) noexcept
    uint64_t pxd_load_u64le(const void *p) noexcept
    void pxd_store_u16le(void *p, uint16_t v) noexcept
    void pxd_store_u32le(void *p, uint32_t v) noexcept
    void pxd_store_u64le(void *p, uint64_t v) noexcept
    void pxd_copy_f32le(float *dst, const void *src, size_t n) noexcept
