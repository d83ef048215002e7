/* Distances from a prepared float32 query to uint8 scalar-quantized codes (the int8 HNSW index,
 * proximadb/index/hnsw_int8.pyx), with run-time SIMD dispatch like distance.h.
 *
 * A stored vector x is approximated per dimension as x_d ~ lo_d + step_d * c_d (c_d in 0..255).
 *   pxd_q8_l2(step, b, c, d)   sum_d (step_d * c_d - b_d)^2, with b = q - lo: the squared L2
 *                              distance from q to the decoded vector
 *   pxd_q8_dot(qt, c, d)       sum_d qt_d * c_d, with qt = q * step: the inner product with the
 *                              decoded vector is sum(q * lo) + pxd_q8_dot(q * step, c)
 * pxd_q8_setup(level) picks the variants for a level of pxd_distance_setup (2: AVX2+FMA).
 */
#ifndef PROXIMADB_QUANT8_H
#define PROXIMADB_QUANT8_H
#include <stddef.h>
#include <stdint.h>
#include "cpu.h"
#if PXD_X86
#include <immintrin.h>
#endif

typedef float (*pxd_q8_l2_fn)(const float *, const float *, const uint8_t *, size_t);
typedef float (*pxd_q8_dot_fn)(const float *, const uint8_t *, size_t);

static float pxd_q8_l2_scalar(const float *step, const float *b, const uint8_t *c, size_t d) {
    float s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= d; i += 2) {
        float t0 = step[i] * (float)c[i] - b[i], t1 = step[i + 1] * (float)c[i + 1] - b[i + 1];
        s0 += t0 * t0; s1 += t1 * t1;
    }
    for (; i < d; i++) { float t = step[i] * (float)c[i] - b[i]; s0 += t * t; }
    return s0 + s1;
}

static float pxd_q8_dot_scalar(const float *qt, const uint8_t *c, size_t d) {
    float s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= d; i += 2) { s0 += qt[i] * (float)c[i]; s1 += qt[i + 1] * (float)c[i + 1]; }
    for (; i < d; i++) s0 += qt[i] * (float)c[i];
    return s0 + s1;
}

#if PXD_X86
__attribute__((target("avx2,fma")))
static inline __m256 pxd_q8_load8(const uint8_t *c) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)c)));
}

__attribute__((target("avx2,fma")))
static inline float pxd_q8_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
static float pxd_q8_l2_avx2(const float *step, const float *b, const uint8_t *c, size_t d) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256 t0 = _mm256_fmsub_ps(_mm256_loadu_ps(step + i), pxd_q8_load8(c + i), _mm256_loadu_ps(b + i));
        __m256 t1 = _mm256_fmsub_ps(_mm256_loadu_ps(step + i + 8), pxd_q8_load8(c + i + 8), _mm256_loadu_ps(b + i + 8));
        acc0 = _mm256_fmadd_ps(t0, t0, acc0);
        acc1 = _mm256_fmadd_ps(t1, t1, acc1);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 t0 = _mm256_fmsub_ps(_mm256_loadu_ps(step + i), pxd_q8_load8(c + i), _mm256_loadu_ps(b + i));
        acc0 = _mm256_fmadd_ps(t0, t0, acc0);
    }
    float s = pxd_q8_hsum(_mm256_add_ps(acc0, acc1));
    for (; i < d; i++) { float t = step[i] * (float)c[i] - b[i]; s += t * t; }
    return s;
}

__attribute__((target("avx2,fma")))
static float pxd_q8_dot_avx2(const float *qt, const uint8_t *c, size_t d) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qt + i), pxd_q8_load8(c + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(qt + i + 8), pxd_q8_load8(c + i + 8), acc1);
    }
    for (; i + 8 <= d; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qt + i), pxd_q8_load8(c + i), acc0);
    float s = pxd_q8_hsum(_mm256_add_ps(acc0, acc1));
    for (; i < d; i++) s += qt[i] * (float)c[i];
    return s;
}
#endif

static pxd_q8_l2_fn pxd_q8_l2 = pxd_q8_l2_scalar;
static pxd_q8_dot_fn pxd_q8_dot = pxd_q8_dot_scalar;

/* level as returned by pxd_distance_setup: >= 2 uses AVX2+FMA (AVX-512 machines too). */
static inline int pxd_q8_setup(int level) {
    pxd_q8_l2 = pxd_q8_l2_scalar; pxd_q8_dot = pxd_q8_dot_scalar;
#if PXD_X86
    if (level >= 2) { pxd_q8_l2 = pxd_q8_l2_avx2; pxd_q8_dot = pxd_q8_dot_avx2; return 2; }
#endif
    return 0;
}
#endif
