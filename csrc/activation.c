/*
 * activation.c -- fused bias + activation, forward and backward.
 *
 * Shapes: x, y, dx, dy (N, C); bias, dbias (C). z = x + bias (bias may be
 * NULL: z = x; a zero bias is then used internally).
 *
 *   NONE       a(z) = z                                    a'(z) = 1
 *   RELU       a(z) = max(z, 0)   (NaN stays NaN)          a'(z) = [z > 0]  (0 at 0, as PyTorch)
 *   GELU_ERF   a(z) = z Phi(z),   Phi(z) = (1 + erf(z/sqrt2)) / 2
 *              a'(z) = Phi(z) + z phi(z),  phi(z) = exp(-z^2/2) / sqrt(2 pi)
 *   GELU_TANH  u = k0 (z + k1 z^3), k0 = sqrt(2/pi), k1 = 0.044715, t = tanh(u)
 *              a(z) = z (1 + t) / 2       (PyTorch approximate='tanh')
 *              a'(z) = (1 + t) / 2 + z (1 - t^2) k0 (1 + 3 k1 z^2) / 2
 *
 * forward:  y = a(x + bias); y may equal x (in place).
 * backward: g = dy * a'(x + bias); dx += g; dbias += sum_n g (with
 *           accumulate == 0: dx = g, dbias = sum_n g; neither is read).
 *
 * Forward: OpenMP over rows. Backward: OpenMP over tiles of fixed RB-row
 * chunks times CB-column blocks; each tile sums its g in row order into a
 * double partial per chunk, and the partials are added in chunk order, so
 * dbias has no races and does not depend on the thread count.
 */
#include <stdlib.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_dispatch.h"
#include "pt_alias.h"

/* float32 on x86 with GCC/Clang, an AVX2 + FMA path picked once (the
 * activation entry of the dispatch table, dispatch.c; PT_ISA=portable
 * forces the portable loops, which the default build compiles for SSE2):
 * the GELU rows are written with intrinsics (below: the same formulas,
 * FMA where a*b+c appears, so results differ from the portable path in
 * the last bits; see
 * tests/test_simd_paths.py for the tolerance), and the other kinds and the
 * backward tile loops (dx += g, dbias partials) are the portable bodies
 * compiled again with target("avx2,fma") (act_row_avx2, grad_tile_avx2).
 * Intrinsics were measured ~20-30% faster than letting GCC vectorise the
 * portable GELU loops for AVX2 (no FMA contraction under -std=c99), and
 * the backward's fused dx/dbias adds 13-17% faster than the scratch row.
 * The GELU rows are compute bound: their cost is the count of vector
 * operations per element (docs/benchmarks.md has the rates). */
#if PT_DTYPE == 32 && defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define ACT_AVX2 1
#define ACT_AVX2_ATTR __attribute__((target("avx2,fma")))
#else
#define ACT_AVX2 0
#endif
#ifdef __GNUC__
#define ACT_BODY static inline __attribute__((always_inline))
#else
#define ACT_BODY static inline
#endif

#define RB 256   /* rows per partial-sum chunk (fixed: thread-count independent) */
#define CB 512   /* columns per tile */

#include "pt_gelu.h"   /* K_SQRT1_2, K_GELU_C, erfc's P, ... */

/* ---- float32 GELU pieces, written so the loops vectorise (libm's erff and
 * tanhf are scalar calls of ~40 ns each here, more than the GEMMs around
 * them). float64 uses libm (exact to ~1 ulp).
 *
 * exp: pt_expf (pt_expf.h), vectorisable, ~2 ulp, flushes below -86.98 to 0.
 * erfc(x) = e^(-x^2) t P(t), t = 1 / (1 + K_ERFC_T x), x >= 0, with P of
 *   degree 7 and K_ERFC_T = 0.425 fitted here (iteratively reweighted least
 *   squares towards the least maximum relative error on x in [0, 9.34],
 *   beyond which e^(-x^2) leaves float32's range): 1.1e-7 relative in
 *   exact arithmetic, 1.4e-7 with P's coefficients rounded to float32,
 *   under the rounding of the float32 evaluation around it.
 *   For z < 0, Phi(z) = erfc(|z|/sqrt2)/2 is computed directly, so the
 *   negative tail keeps its relative accuracy (1 + erf(z/sqrt2) would
 *   cancel).
 * tanh form: with e = exp(-2|u|), 1 + tanh(u) = 2/(1+e) for u >= 0 and
 *   2e/(1+e) for u < 0, 1 - tanh(u)^2 = 4e/(1+e)^2: no cancellation. */
#if PT_DTYPE == 32
#include <stdint.h>
#include <string.h>
#include "pt_expf.h"
/* cond ? a : b by bit masks. A plain ?: whose result feeds further float
 * arithmetic is turned into a branch by GCC (without -ffast-math the
 * arithmetic may trap and cannot be speculated) and stops vectorisation. */
static inline float sel_f32(int cond, float a, float b)
{
    int32_t ia, ib, m = -(int32_t)(cond != 0);
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    int32_t r = (ia & m) | (ib & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

/* Phi(z) = (1 + erf(z / sqrt 2)) / 2 and, through *pdf, phi(z). */
static inline float gelu_cdf_f32(float z, float *pdf)
{
    float x = z * 0.70710678118654752f;
    float e = pt_expf(-x * x);               /* = exp(-z^2 / 2) */
    float t = 1.0f / (1.0f + K_ERFC_T * fabsf(x));
    float p = K_ERFC_P7;
    p = p * t + K_ERFC_P6;
    p = p * t + K_ERFC_P5;
    p = p * t + K_ERFC_P4;
    p = p * t + K_ERFC_P3;
    p = p * t + K_ERFC_P2;
    p = p * t + K_ERFC_P1;
    p = p * t + K_ERFC_P0;
    float q = 0.5f * e * t * p;               /* = erfc(|x|) / 2 */
    *pdf = 0.39894228040143268f * e;
    return sel_f32(z < 0, q, 1.0f - q);
}

/* 1 + tanh(u) and, through *omt2, 1 - tanh(u)^2. */
static inline float tanh_parts_f32(float u, float *omt2)
{
    float e = pt_expf(-2.0f * fabsf(u));
    float d = 1.0f / (1.0f + e);
    *omt2 = 4.0f * e * d * d;
    return sel_f32(u < 0, 2.0f * e, 2.0f) * d;
}
#define GELU_CDF(z, pdf) gelu_cdf_f32(z, pdf)
#define TANH_PARTS(u, omt2) tanh_parts_f32(u, omt2)
#else
static inline double gelu_cdf_f64(double z, double *pdf)
{
    *pdf = K_INV_SQRT_2PI * exp(-0.5 * z * z);
    return 0.5 * (1 + erf(z * K_SQRT1_2));
}
static inline double tanh_parts_f64(double u, double *omt2)
{
    double t = tanh(u);
    *omt2 = 1 - t * t;
    return 1 + t;
}
#define GELU_CDF(z, pdf) gelu_cdf_f64(z, pdf)
#define TANH_PARTS(u, omt2) tanh_parts_f64(u, omt2)
#endif

#if ACT_AVX2
/* ---- float32 GELU, AVX2 + FMA: the same formulas as gelu_cdf_f32 and
 * tanh_parts_f32, 8 lanes at a time, exp as 2^t (pt_exp2f_neg_avx2,
 * pt_exp2f_x86.h) with log2(e) folded into t's constant, FMA where a*b+c
 * appears and constant factors folded (exp's argument -z^2/2 as
 * (-log2(e) z/2) z, P's coefficients halved, sqrt(2/pi) into exp's
 * argument), and the erf forward's z Phi(z) as one fused
 * max(-0, z) - |z| q (act_gelu_erf_avx2), so results differ from the
 * portable path in the last bits, most (~2e-5 relative) in the far
 * negative tail, where exp magnifies its argument's rounding; the AVX2 erf
 * form is the more accurate of the two there. Row tails use masked loads
 * and stores, so every element of a row takes the same arithmetic. */
#include <immintrin.h>
#include "pt_exp2f_x86.h"

/* The parts of q = erfc(a / sqrt 2) / 2 = (e t) p for a = |z| (gelu_cdf_f32,
 * with x = z / sqrt 2 folded into the constants and P's coefficients
 * halved, both exact): e = exp(-z^2 / 2), t and p = P(t) / 2. */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 act_erfc_parts_avx2(__m256 z, __m256 a, __m256 *e, __m256 *t)
{
    *e = pt_exp2f_neg_avx2(_mm256_mul_ps(_mm256_mul_ps(z, _mm256_set1_ps(K_EXP2_HALF)), z));
    *t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                       _mm256_fmadd_ps(_mm256_set1_ps(K_ERFC_TZ), a, _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(K_ERFC_P7 * 0.5f);
    p = _mm256_fmadd_ps(p, *t, _mm256_set1_ps(K_ERFC_P6 * 0.5f));
    p = _mm256_fmadd_ps(p, *t, _mm256_set1_ps(K_ERFC_P5 * 0.5f));
    p = _mm256_fmadd_ps(p, *t, _mm256_set1_ps(K_ERFC_P4 * 0.5f));
    p = _mm256_fmadd_ps(p, *t, _mm256_set1_ps(K_ERFC_P3 * 0.5f));
    p = _mm256_fmadd_ps(p, *t, _mm256_set1_ps(K_ERFC_P2 * 0.5f));
    p = _mm256_fmadd_ps(p, *t, _mm256_set1_ps(K_ERFC_P1 * 0.5f));
    return _mm256_fmadd_ps(p, *t, _mm256_set1_ps(K_ERFC_P0 * 0.5f));
}

/* Phi(z) and, through *pdf, phi(z) (gelu_cdf_f32). */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 act_cdf_avx2(__m256 z, __m256 *pdf)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 e, t, p = act_erfc_parts_avx2(z, _mm256_and_ps(z, absmask), &e, &t);
    __m256 q = _mm256_mul_ps(_mm256_mul_ps(e, t), p);
    *pdf = _mm256_mul_ps(_mm256_set1_ps(0.39894228040143268f), e);
    __m256 neg = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), q), q, neg);
}

/* z Phi(z) = m - |z| q with m = max(-0, z) (z (1 - q) for z >= 0, z q
 * below): one fused rounding and no select. m is -0 for z < 0, so a
 * product that underflows keeps z's sign (-0), as z q does; max returns
 * its second operand z for z = +-0 and NaN. |z| is taken of min(z, 1e30),
 * so +inf gives inf - 1e30 * 0 = inf, and -inf gives -0 - inf * 0 = NaN, as
 * z Phi(z) does (and PyTorch); NaN stays NaN through m and e. */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 act_gelu_erf_avx2(__m256 z)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 a = _mm256_and_ps(_mm256_min_ps(z, _mm256_set1_ps(1e30f)), absmask);
    __m256 e, t, p = act_erfc_parts_avx2(z, a, &e, &t);
    return _mm256_fnmadd_ps(_mm256_mul_ps(_mm256_mul_ps(a, e), t), p,
                            _mm256_max_ps(_mm256_set1_ps(-0.0f), z));
}

/* 1 + tanh(u) and, through *omt2, 1 - tanh(u)^2 (tanh_parts_f32) for
 * u = sqrt(2/pi) w, w = z + 0.044715 z^3, given z and z^2 (the factor
 * sqrt(2/pi) is folded into exp's argument -2|u|). */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 act_tanh_parts_avx2(__m256 z, __m256 z2, __m256 *omt2)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 w = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps((float)K_GELU_C), z), z2, z);
    __m256 e = pt_exp2f_neg_avx2(_mm256_mul_ps(_mm256_set1_ps(K_EXP2_TANH),
                                               _mm256_and_ps(w, absmask)));
    __m256 d = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    *omt2 = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(4.0f), e), d), d);
    __m256 neg = _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 two = _mm256_set1_ps(2.0f);
    return _mm256_mul_ps(_mm256_blendv_ps(two, _mm256_mul_ps(two, e), neg), d);
}

/* Lane mask for the n < 8 tail elements. */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256i act_tail_mask(int64_t n)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
}

/* y = a(z), z = x + bias, for the GELU kinds. */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 act_gelu_avx2(__m256 z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) return act_gelu_erf_avx2(z);
    __m256 omt2, opt = act_tanh_parts_avx2(z, _mm256_mul_ps(z, z), &omt2);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), z), opt);
}

/* dy * a'(z) for the GELU kinds. */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 act_gelu_grad_avx2(__m256 dy, __m256 z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) {
        __m256 pdf, cdf = act_cdf_avx2(z, &pdf);
        return _mm256_mul_ps(dy, _mm256_fmadd_ps(z, pdf, cdf));
    }
    __m256 z2 = _mm256_mul_ps(z, z), omt2;
    __m256 opt = act_tanh_parts_avx2(z, z2, &omt2);
    __m256 du = _mm256_mul_ps(_mm256_set1_ps((float)K_SQRT_2_PI),
                              _mm256_fmadd_ps(_mm256_set1_ps(3 * (float)K_GELU_C), z2,
                                              _mm256_set1_ps(1.0f)));
    __m256 s = _mm256_fmadd_ps(_mm256_mul_ps(z, omt2), du, opt);
    return _mm256_mul_ps(_mm256_mul_ps(dy, _mm256_set1_ps(0.5f)), s);
}

/* y[c..n) from the last n - c < 8 elements, masked. */
__attribute__((always_inline, target("avx2,fma")))
static inline void act_gelu_tail_avx2(float *y, const float *x, const float *bias, int64_t c,
                                      int64_t n, int kind)
{
    __m256i m = act_tail_mask(n - c);
    __m256 z = _mm256_maskload_ps(x + c, m);
    if (bias) z = _mm256_add_ps(z, _mm256_maskload_ps(bias + c, m));
    _mm256_maskstore_ps(y + c, m, act_gelu_avx2(z, kind));
}

/* z = x + bias over 8 lanes from c (z = x without a bias). */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 act_z_avx2(const float *x, const float *bias, int64_t c)
{
    __m256 z = _mm256_loadu_ps(x + c);
    return bias ? _mm256_add_ps(z, _mm256_loadu_ps(bias + c)) : z;
}

/* One row segment of the forward, upwards, or downwards when y lies just
 * above x (pt_alias.h): the masked tail first, then whole vectors. bias may
 * be NULL (z = x); act_gelu_row_avx2 passes it as a constant, so each case
 * has its own loop without a branch. */
__attribute__((always_inline, target("avx2,fma")))
static inline void act_gelu_row_body_avx2(float *y, const float *x, const float *bias,
                                          int64_t n, int kind)
{
    int64_t c = 0;
    if (pt_walk_down(y, x)) {
        c = n - n % 8;
        if (c < n) act_gelu_tail_avx2(y, x, bias, c, n, kind);
        for (c -= 8; c >= 0; c -= 8)
            _mm256_storeu_ps(y + c, act_gelu_avx2(act_z_avx2(x, bias, c), kind));
        return;
    }
    for (; c + 16 <= n; c += 16) {   /* two independent chains per step */
        __m256 z0 = act_z_avx2(x, bias, c), z1 = act_z_avx2(x, bias, c + 8);
        _mm256_storeu_ps(y + c, act_gelu_avx2(z0, kind));
        _mm256_storeu_ps(y + c + 8, act_gelu_avx2(z1, kind));
    }
    for (; c + 8 <= n; c += 8)
        _mm256_storeu_ps(y + c, act_gelu_avx2(act_z_avx2(x, bias, c), kind));
    if (c < n) act_gelu_tail_avx2(y, x, bias, c, n, kind);
}
ACT_AVX2_ATTR
static void act_gelu_row_avx2(float *y, const float *x, const float *bias, int64_t n, int kind)
{
    if (bias)
        act_gelu_row_body_avx2(y, x, bias, n, kind);
    else
        act_gelu_row_body_avx2(y, x, NULL, n, kind);
}

/* dx += g (dx = g when !acc) and p += g (in double), g = dy * a'(x + bias)
 * for 8 lanes; dx or p may be NULL. */
__attribute__((always_inline, target("avx2,fma")))
static inline void act_acc_avx2(float *dx, double *p, __m256 g, int acc)
{
    if (dx) _mm256_storeu_ps(dx, acc ? _mm256_add_ps(_mm256_loadu_ps(dx), g) : g);
    if (p) {
        _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p),
                                          _mm256_cvtps_pd(_mm256_castps256_ps128(g))));
        _mm256_storeu_pd(p + 4, _mm256_add_pd(_mm256_loadu_pd(p + 4),
                                              _mm256_cvtps_pd(_mm256_extractf128_ps(g, 1))));
    }
}

/* One row of the backward without the scratch g: dx[c] += g[c] (= when
 * !acc) and p[c] += g[c] for c in [0, n), the same sums in the same order
 * as the portable tile loop. */
ACT_AVX2_ATTR
static void act_gelu_grad_acc_row_avx2(float *dx, double *p, const float *dy, const float *x,
                                       const float *bias, int64_t n, int kind, int acc)
{
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {   /* two independent chains per step */
        __m256 z0 = _mm256_add_ps(_mm256_loadu_ps(x + c), _mm256_loadu_ps(bias + c));
        __m256 z1 = _mm256_add_ps(_mm256_loadu_ps(x + c + 8), _mm256_loadu_ps(bias + c + 8));
        __m256 g0 = act_gelu_grad_avx2(_mm256_loadu_ps(dy + c), z0, kind);
        __m256 g1 = act_gelu_grad_avx2(_mm256_loadu_ps(dy + c + 8), z1, kind);
        act_acc_avx2(dx ? dx + c : NULL, p ? p + c : NULL, g0, acc);
        act_acc_avx2(dx ? dx + c + 8 : NULL, p ? p + c + 8 : NULL, g1, acc);
    }
    for (; c + 8 <= n; c += 8) {
        __m256 z = _mm256_add_ps(_mm256_loadu_ps(x + c), _mm256_loadu_ps(bias + c));
        act_acc_avx2(dx ? dx + c : NULL, p ? p + c : NULL,
                     act_gelu_grad_avx2(_mm256_loadu_ps(dy + c), z, kind), acc);
    }
    if (c < n) {
        __m256i m = act_tail_mask(n - c);
        __m256 z = _mm256_add_ps(_mm256_maskload_ps(x + c, m), _mm256_maskload_ps(bias + c, m));
        __m256 g = act_gelu_grad_avx2(_mm256_maskload_ps(dy + c, m), z, kind);
        if (dx)
            _mm256_maskstore_ps(dx + c, m,
                                acc ? _mm256_add_ps(_mm256_maskload_ps(dx + c, m), g) : g);
        if (p) {
            float gs[8];
            _mm256_storeu_ps(gs, g);
            for (int64_t i = 0; c + i < n; i++) p[c + i] += gs[i];
        }
    }
}

/* act_gelu_grad_acc_row_avx2 for dx lying just above x (pt_alias.h): the
 * whole blocks of four vectors, the x of each block loaded before the
 * stores of the block before it, so that no load of x closely follows a
 * store of dx to its address modulo PT_ALIAS_SPAN; the rest of the row as
 * there. Each element is computed as there. */
ACT_AVX2_ATTR
static void act_gelu_grad_acc_row_ahead_avx2(float *dx, double *p, const float *dy,
                                             const float *x, const float *bias, int64_t n,
                                             int kind, int acc)
{
    int64_t nb = n - n % 32;
    if (nb) {
        __m256 z[4], zn[4];
        for (int j = 0; j < 4; j++) {
            z[j] = _mm256_add_ps(_mm256_loadu_ps(x + 8 * j), _mm256_loadu_ps(bias + 8 * j));
            zn[j] = _mm256_setzero_ps();
        }
        for (int64_t c = 0; c < nb; c += 32) {
            if (c + 32 < nb)
                for (int j = 0; j < 4; j++)
                    zn[j] = _mm256_add_ps(_mm256_loadu_ps(x + c + 32 + 8 * j),
                                          _mm256_loadu_ps(bias + c + 32 + 8 * j));
            for (int j = 0; j < 4; j++) {
                int64_t o = c + 8 * j;
                act_acc_avx2(dx ? dx + o : NULL, p ? p + o : NULL,
                             act_gelu_grad_avx2(_mm256_loadu_ps(dy + o), z[j], kind), acc);
            }
            for (int j = 0; j < 4; j++) z[j] = zn[j];
        }
    }
    if (nb < n)
        act_gelu_grad_acc_row_avx2(dx ? dx + nb : NULL, p ? p + nb : NULL, dy + nb, x + nb,
                                   bias + nb, n - nb, kind, acc);
}
#endif /* ACT_AVX2 */

/* a(x + bias) for one row segment [c0, c1); bias may be NULL (z = x): the
 * callers (act_row_z) pass it as a constant, so each case has its own
 * loops. One loop per kind, so the simple ones (none, relu) vectorise; the
 * GELU loops walk down when y lies just above x (pt_alias.h; measured on
 * the GELU rows, which are compute bound, so that each element's loads
 * waiting on the previous element's stores is what costs). */
#define ACT_Z(c) (bias ? x[c] + bias[c] : x[c])
#define ACT_LOOP(...)                                      \
    do {                                                   \
        if (down)                                          \
            for (c = c1 - 1; c >= c0; c--) { __VA_ARGS__ } \
        else                                               \
            for (c = c0; c < c1; c++) { __VA_ARGS__ }      \
    } while (0)
ACT_BODY void PT_SFX(act_row_body)(real *y, const real *x, const real *bias,
                                   int64_t c0, int64_t c1, int kind)
{
    int64_t c;
    int down = pt_walk_down(y, x);
    switch (kind) {
    case PT_ACT_NONE:
        for (c = c0; c < c1; c++) y[c] = ACT_Z(c);
        break;
    case PT_ACT_RELU:
        for (c = c0; c < c1; c++) {
            real z = ACT_Z(c);
            y[c] = z < 0 ? 0 : z;
        }
        break;
    case PT_ACT_GELU_ERF:
        ACT_LOOP(real z = ACT_Z(c), pdf; y[c] = z * GELU_CDF(z, &pdf););
        break;
    case PT_ACT_GELU_TANH:
        ACT_LOOP(real z = ACT_Z(c), omt2;
                 real u = (real)K_SQRT_2_PI * (z + (real)K_GELU_C * z * z * z);
                 y[c] = (real)0.5 * z * TANH_PARTS(u, &omt2););
        break;
    }
}

/* g[c] = dy[c] * a'(x[c] + bias[c]) for c in [c0, c1) (pointers already
 * offset by the caller to the segment). */
ACT_BODY void PT_SFX(grad_row)(real *g, const real *dy, const real *x,
                             const real *bias, int64_t c0, int64_t c1, int kind)
{
    int64_t c;
    switch (kind) {
    case PT_ACT_NONE:
        for (c = c0; c < c1; c++) g[c] = dy[c];
        break;
    case PT_ACT_RELU:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c], d = dy[c];   /* unconditional load: vectorises */
            g[c] = z > 0 ? d : 0;
        }
        break;
    case PT_ACT_GELU_ERF:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c], pdf;
            real cdf = GELU_CDF(z, &pdf);
            g[c] = dy[c] * (cdf + z * pdf);
        }
        break;
    case PT_ACT_GELU_TANH:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c];
            real z2 = z * z;
            real u = (real)K_SQRT_2_PI * (z + (real)K_GELU_C * z2 * z);
            real omt2, opt = TANH_PARTS(u, &omt2);   /* 1 + t, 1 - t^2 */
            real du = (real)K_SQRT_2_PI * (1 + 3 * (real)K_GELU_C * z2);
            g[c] = dy[c] * (real)0.5 * (opt + z * omt2 * du);
        }
        break;
    }
}

/* Backward over one tile: rows [n0, n1), columns [c0, c1): g = dy * a'(z)
 * into the scratch g (CB wide), then dx += g (dx = g when !acc) and p += g
 * (double partial of dbias, zeroed here; either may be NULL). The AVX2
 * GELU path (avx2 = 1) does the same sums in the same order without the
 * scratch row. */
ACT_BODY void PT_SFX(grad_tile_body)(real *g, double *p, real *dx, const real *dy,
                                     const real *x, const real *bias, int64_t C,
                                     int64_t n0, int64_t n1, int64_t c0, int64_t c1, int kind,
                                     int acc, int avx2)
{
    if (p) for (int64_t c = c0; c < c1; c++) p[c] = 0;
    for (int64_t n = n0; n < n1; n++) {
#if ACT_AVX2
        if (avx2 && kind >= PT_ACT_GELU_ERF) {   /* fused: no scratch g */
            (dx && pt_store_close_above(dx, x) ? act_gelu_grad_acc_row_ahead_avx2
                                               : act_gelu_grad_acc_row_avx2)(
                dx ? dx + n * C + c0 : NULL, p ? p + c0 : NULL, dy + n * C + c0,
                x + n * C + c0, bias + c0, c1 - c0, kind, acc);
            continue;
        }
#endif
        PT_SFX(grad_row)(g, dy + n * C + c0, x + n * C + c0, bias + c0, 0, c1 - c0, kind);
        if (dx) {
            real *dxr = dx + n * C;
            if (acc)
                for (int64_t c = c0; c < c1; c++) dxr[c] += g[c - c0];
            else
                for (int64_t c = c0; c < c1; c++) dxr[c] = g[c - c0];
        }
        if (p) for (int64_t c = c0; c < c1; c++) p[c] += g[c - c0];
    }
}

/* The portable versions (baseline ISA: SSE2 on x86-64). */
static void PT_SFX(act_row)(real *y, const real *x, const real *bias,
                            int64_t c0, int64_t c1, int kind)
{
    if (bias)
        PT_SFX(act_row_body)(y, x, bias, c0, c1, kind);
    else
        PT_SFX(act_row_body)(y, x, NULL, c0, c1, kind);
}
static void PT_SFX(grad_tile)(real *g, double *p, real *dx, const real *dy, const real *x,
                              const real *bias, int64_t C, int64_t n0, int64_t n1,
                              int64_t c0, int64_t c1, int kind, int acc)
{
    PT_SFX(grad_tile_body)(g, p, dx, dy, x, bias, C, n0, n1, c0, c1, kind, acc, 0);
}

#if ACT_AVX2
/* The same loops compiled for AVX2 + FMA (the bodies are inlined here). */
ACT_AVX2_ATTR
static void PT_SFX(act_row_avx2)(real *y, const real *x, const real *bias,
                                 int64_t c0, int64_t c1, int kind)
{
    if (kind >= PT_ACT_GELU_ERF) {
        act_gelu_row_avx2(y + c0, x + c0, bias ? bias + c0 : NULL, c1 - c0, kind);
        return;
    }
    if (bias)
        PT_SFX(act_row_body)(y, x, bias, c0, c1, kind);
    else
        PT_SFX(act_row_body)(y, x, NULL, c0, c1, kind);
}
ACT_AVX2_ATTR
static void PT_SFX(grad_tile_avx2)(real *g, double *p, real *dx, const real *dy,
                                   const real *x, const real *bias, int64_t C, int64_t n0,
                                   int64_t n1, int64_t c0, int64_t c1, int kind, int acc)
{
    PT_SFX(grad_tile_body)(g, p, dx, dy, x, bias, C, n0, n1, c0, c1, kind, acc, 1);
}
#endif

/* The paths of the dispatch table (pt_dispatch.h); float64's SIMD paths
 * are activation_avx2_f64.c and activation_avx512.c. */
const struct PT_SFX(pt_act_kernels) PT_SFX(pt_act_portable) = {
    "portable", PT_SFX(act_row), PT_SFX(grad_tile)};
#if ACT_AVX2
const struct PT_SFX(pt_act_kernels) PT_SFX(pt_act_avx2) = {
    "avx2", PT_SFX(act_row_avx2), PT_SFX(grad_tile_avx2)};
#endif

int PT_FN(pt_bias_act_forward)(real *y, const real *x, const real *bias,
                               int64_t N, int64_t C, int kind)
{
    if (N < 0 || C < 0 || kind < PT_ACT_NONE || kind > PT_ACT_GELU_TANH) return PT_EINVAL;
    if (N == 0 || C == 0) return PT_OK;
    /* Cheap kinds are memory bound: go parallel only for big arrays. */
    int64_t work = N * C * (kind >= PT_ACT_GELU_ERF ? 8 : 1);
    (void)work;  /* read only by the OpenMP pragma */
    void (*row)(real *, const real *, const real *, int64_t, int64_t, int) =
        PT_KERNELS(act)->row;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (work > 65536)
    for (int64_t n = 0; n < N; n++)
        row(y + n * C, x + n * C, bias, 0, C, kind);   /* bias may be NULL */
    return PT_OK;
}

int PT_FN(pt_bias_act_backward)(real *dx, real *dbias, const real *dy,
                                const real *x, const real *bias,
                                int64_t N, int64_t C, int kind, int accumulate)
{
    if (N < 0 || C < 0 || kind < PT_ACT_NONE || kind > PT_ACT_GELU_TANH) return PT_EINVAL;
    if (N == 0 && dbias && !accumulate)   /* no rows: the sum is 0 */
        for (int64_t c = 0; c < C; c++) dbias[c] = 0;
    if (N == 0 || C == 0 || (!dx && !dbias)) return PT_OK;
    int nth = pt_get_num_threads();
    int64_t work = N * C * (kind >= PT_ACT_GELU_ERF ? 8 : 1);
    (void)nth; (void)work;  /* read only by the OpenMP pragmas */
    int64_t nchunks = (N + RB - 1) / RB, nblocks = (C + CB - 1) / CB;
    double *part = NULL;
    if (dbias) {
        part = malloc((size_t)(nchunks * C) * sizeof(double));
        if (!part) return PT_ENOMEM;
    }
    real *zeros = NULL;   /* no bias: a zero bias, so the tile loops have no branch on it */
    if (!bias) {
        zeros = calloc((size_t)C, sizeof(real));
        if (!zeros) { free(part); return PT_ENOMEM; }
        bias = zeros;
    }
    void (*tile)(real *, double *, real *, const real *, const real *, const real *, int64_t,
                 int64_t, int64_t, int64_t, int64_t, int, int) = PT_KERNELS(act)->grad_tile;
    int status = PT_OK;
    #pragma omp parallel num_threads(nth) if (work > 65536)
    {
        /* One scratch segment of g per thread (CB wide). */
        real *g = malloc(CB * sizeof(real));
        if (!g) {
            #pragma omp atomic write
            status = PT_ENOMEM;
        }
        #pragma omp for collapse(2) schedule(static)
        for (int64_t r = 0; r < nchunks; r++)
            for (int64_t cb = 0; cb < nblocks; cb++) {
                if (!g) continue;
                int64_t n0 = r * RB, n1 = n0 + RB < N ? n0 + RB : N;
                int64_t c0 = cb * CB, c1 = c0 + CB < C ? c0 + CB : C;
                tile(g, part ? part + r * C : NULL, dx, dy, x, bias, C, n0, n1, c0, c1, kind,
                     accumulate);
            }
        free(g);
        /* After the implicit barrier of the loop above, status is the same
         * for every thread. */
        if (part && status == PT_OK) {
            #pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) {
                double s = 0;
                for (int64_t r = 0; r < nchunks; r++) s += part[r * C + c];
                dbias[c] = accumulate ? dbias[c] + (real)s : (real)s;
            }
        }
    }
    free(part);
    free(zeros);
    return status;
}
