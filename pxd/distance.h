/* Float32 distance kernels with run-time SIMD dispatch.
 *
 * Every kernel exists as a scalar reference (always compiled, any CPU) and as
 * AVX2+FMA and AVX-512F variants compiled with per-function target attributes
 * (no -march=native). pxd_distance_setup() picks the best variant for this CPU
 * once; call it at module import with the GIL held. Any dimension works: the
 * SIMD loops handle the remainder with a masked (AVX-512) or scalar tail.
 *
 *   pxd_l2sq(a, b, d)  squared Euclidean distance
 *   pxd_dot(a, b, d)   inner product
 * Cosine distance is 1 - dot on vectors normalised at insert.
 */
#ifndef PROXIMADB_DISTANCE_H
#define PROXIMADB_DISTANCE_H
#include <stddef.h>
#include "cpu.h"
#if PXD_X86
#include <immintrin.h>
#endif

typedef float (*pxd_dist_fn)(const float *, const float *, size_t);

static float pxd_l2sq_scalar(const float *a, const float *b, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        float t0 = a[i] - b[i], t1 = a[i + 1] - b[i + 1], t2 = a[i + 2] - b[i + 2], t3 = a[i + 3] - b[i + 3];
        s0 += t0 * t0; s1 += t1 * t1; s2 += t2 * t2; s3 += t3 * t3;
    }
    for (; i < d; i++) { float t = a[i] - b[i]; s0 += t * t; }
    return (s0 + s1) + (s2 + s3);
}

static float pxd_dot_scalar(const float *a, const float *b, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]; s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3];
    }
    for (; i < d; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

#if PXD_X86
__attribute__((target("avx2,fma")))
static inline float pxd_hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    __m128 s = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, s);
    s = _mm_add_ss(s, sh);
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
static float pxd_l2sq_avx2(const float *a, const float *b, size_t d) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        acc0 = _mm256_fmadd_ps(t0, t0, acc0);
        acc1 = _mm256_fmadd_ps(t1, t1, acc1);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        acc0 = _mm256_fmadd_ps(t, t, acc0);
    }
    float s = pxd_hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < d; i++) { float t = a[i] - b[i]; s += t * t; }
    return s;
}

__attribute__((target("avx2,fma")))
static float pxd_dot_avx2(const float *a, const float *b, size_t d) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= d; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float s = pxd_hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < d; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx512f")))
static float pxd_l2sq_avx512(const float *a, const float *b, size_t d) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 t1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        acc0 = _mm512_fmadd_ps(t0, t0, acc0);
        acc1 = _mm512_fmadd_ps(t1, t1, acc1);
    }
    for (; i + 16 <= d; i += 16) {
        __m512 t = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        acc0 = _mm512_fmadd_ps(t, t, acc0);
    }
    if (i < d) {
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1u);
        __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        acc1 = _mm512_fmadd_ps(t, t, acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

__attribute__((target("avx512f")))
static float pxd_dot_avx512(const float *a, const float *b, size_t d) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i + 16 <= d; i += 16)
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    if (i < d) {
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1u);
        acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#endif

/* The chosen kernels (per extension module; each module calls setup once). */
static pxd_dist_fn pxd_l2sq = pxd_l2sq_scalar;
static pxd_dist_fn pxd_dot = pxd_dot_scalar;
static int pxd_simd_level = 0; /* 0 scalar, 2 avx2+fma, 3 avx512f */

/* level: -1 = best available; 0 = scalar; 2 = avx2; 3 = avx512 (capped to the CPU).
 * Returns the level in use. */
static inline int pxd_distance_setup(int level) {
    int best = 0;
#if PXD_X86
    if (pxd_cpu_has_avx2_fma()) best = 2;
    if (best == 2 && pxd_cpu_has_avx512f()) best = 3;
#endif
    if (level < 0 || level > best) level = best;
    if (level == 1) level = 0;
    pxd_l2sq = pxd_l2sq_scalar; pxd_dot = pxd_dot_scalar;
#if PXD_X86
    if (level == 2) { pxd_l2sq = pxd_l2sq_avx2; pxd_dot = pxd_dot_avx2; }
    if (level == 3) { pxd_l2sq = pxd_l2sq_avx512; pxd_dot = pxd_dot_avx512; }
#endif
    pxd_simd_level = level;
    return level;
}
#endif
