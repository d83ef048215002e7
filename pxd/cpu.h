/* Run-time CPU feature detection, queried once per process. */
#ifndef PROXIMADB_CPU_H
#define PROXIMADB_CPU_H

#if defined(__x86_64__) || defined(__i386__)
#define PXD_X86 1
static inline int pxd_cpu_has_sse42(void) { __builtin_cpu_init(); return __builtin_cpu_supports("sse4.2"); }
static inline int pxd_cpu_has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static inline int pxd_cpu_has_avx512f(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx512f"); }
#else
#define PXD_X86 0
static inline int pxd_cpu_has_sse42(void) { return 0; }
static inline int pxd_cpu_has_avx2_fma(void) { return 0; }
static inline int pxd_cpu_has_avx512f(void) { return 0; }
#endif
#endif
