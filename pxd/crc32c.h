/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
 * ProximaDB on-disk frame. SSE4.2's crc32 instruction when the CPU has it,
 * a slicing-by-8 table otherwise; chosen on first use.
 * pxd_crc32c(0, data, n) gives the standard CRC-32C of data
 * ("123456789" -> 0xE3069283). Pass a previous result to continue. */
#ifndef PROXIMADB_CRC32C_H
#define PROXIMADB_CRC32C_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "cpu.h"

static uint32_t pxd_crc32c_table[8][256];
static int pxd_crc32c_mode = -1; /* -1 unknown, 0 table, 1 sse4.2 */

static void pxd_crc32c_init_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        pxd_crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = pxd_crc32c_table[0][n];
        for (int k = 1; k < 8; k++) { c = pxd_crc32c_table[0][c & 0xff] ^ (c >> 8); pxd_crc32c_table[k][n] = c; }
    }
}

static uint32_t pxd_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4); memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo); hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = pxd_crc32c_table[7][lo & 0xff] ^ pxd_crc32c_table[6][(lo >> 8) & 0xff] ^
              pxd_crc32c_table[5][(lo >> 16) & 0xff] ^ pxd_crc32c_table[4][lo >> 24] ^
              pxd_crc32c_table[3][hi & 0xff] ^ pxd_crc32c_table[2][(hi >> 8) & 0xff] ^
              pxd_crc32c_table[1][(hi >> 16) & 0xff] ^ pxd_crc32c_table[0][hi >> 24];
        p += 8; n -= 8;
    }
    while (n--) crc = pxd_crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if PXD_X86 && defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t pxd_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi((uint32_t)c, *p++); n--; }
    while (n >= 8) { uint64_t v; memcpy(&v, p, 8); c = __builtin_ia32_crc32di(c, v); p += 8; n -= 8; }
    while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

/* Call once with the GIL held (module init) before using from threads. */
static inline void pxd_crc32c_setup(void) {
    if (pxd_crc32c_mode >= 0) return;
    pxd_crc32c_init_table();
#if PXD_X86 && defined(__x86_64__)
    pxd_crc32c_mode = pxd_cpu_has_sse42() ? 1 : 0;
#else
    pxd_crc32c_mode = 0;
#endif
}

/* Force the portable path (tests compare the two). */
static inline void pxd_crc32c_force_software(int on) { pxd_crc32c_setup(); if (on) pxd_crc32c_mode = 0; else { pxd_crc32c_mode = -1; pxd_crc32c_setup(); } }

static inline uint32_t pxd_crc32c(uint32_t crc, const void *data, size_t n) {
#if PXD_X86 && defined(__x86_64__)
    if (pxd_crc32c_mode == 1) return pxd_crc32c_hw(crc, (const unsigned char *)data, n);
#endif
    return pxd_crc32c_sw(crc, (const unsigned char *)data, n);
}
#endif
