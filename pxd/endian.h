/* Little-endian loads and stores at any alignment (every ProximaDB format is
 * little-endian). memcpy compiles to a single mov on x86/arm64. */
#ifndef PROXIMADB_ENDIAN_H
#define PROXIMADB_ENDIAN_H
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PXD_BSWAP16(x) __builtin_bswap16(x)
#define PXD_BSWAP32(x) __builtin_bswap32(x)
#define PXD_BSWAP64(x) __builtin_bswap64(x)
#define PXD_HOST_IS_LE 0
#else
#define PXD_BSWAP16(x) (x)
#define PXD_BSWAP32(x) (x)
#define PXD_BSWAP64(x) (x)
#define PXD_HOST_IS_LE 1
#endif

static inline uint16_t pxd_load_u16le(const void *p) { uint16_t v; memcpy(&v, p, 2); return PXD_BSWAP16(v); }
static inline uint32_t pxd_load_u32le(const void *p) { uint32_t v; memcpy(&v, p, 4); return PXD_BSWAP32(v); }
static inline uint64_t pxd_load_u64le(const void *p) { uint64_t v; memcpy(&v, p, 8); return PXD_BSWAP64(v); }
static inline void pxd_store_u16le(void *p, uint16_t v) { v = PXD_BSWAP16(v); memcpy(p, &v, 2); }
static inline void pxd_store_u32le(void *p, uint32_t v) { v = PXD_BSWAP32(v); memcpy(p, &v, 4); }
static inline void pxd_store_u64le(void *p, uint64_t v) { v = PXD_BSWAP64(v); memcpy(p, &v, 8); }

/* Copy n little-endian float32 values into host floats. */
static inline void pxd_copy_f32le(float *dst, const void *src, size_t n) {
#if PXD_HOST_IS_LE
    memcpy(dst, src, n * 4);
#else
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < n; i++) { uint32_t u = pxd_load_u32le(s + 4 * i); memcpy(dst + i, &u, 4); }
#endif
}
#endif
