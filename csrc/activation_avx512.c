/*
 * activation_avx512.c -- the float32 GELU rows of activation.c (erf and
 * tanh forms, forward and backward) with AVX-512 intrinsics.
 *
 * The AVX2 path's operations, 16 lanes instead of 8: the same formulas,
 * the same FMAs and folded constants, exp as pt_expf_neg_avx512
 * (pt_expf_avx512.h: pt_expf_neg_avx2's operations). Every operation is
 * elementwise and the dbias partials are summed per column in row order
 * as there, so the results are bitwise those of the AVX2 path, and within
 * its stated tolerance of the portable one (tests/test_simd_paths.py).
 * Row tails use masked loads and stores, so every element of a row takes
 * the same arithmetic. pt_act_avx512_f32 (the dispatch table's avx512
 * entry) sends the other kinds (none, relu: memory bound) to the AVX2
 * slots; float64 keeps its portable entry.
 */
#include "pt_real.h"
#include <string.h>
#include "pt_dispatch.h"

#if PT_X86 && PT_DTYPE == 32
#include "pt_avx512.h"
#include "pt_expf_avx512.h"

#define A512 PT_TARGET_AVX512
#define INL static inline __attribute__((always_inline))

#define K_SQRT_2_PI 0.79788456080286535588    /* sqrt(2/pi) */
#define K_GELU_C    0.044715

/* Phi(z) and, through *pdf, phi(z) (act_cdf_avx2). */
A512 INL __m512 act_cdf(__m512 z, __m512 *pdf)
{
    __m512 e = pt_expf_neg_avx512(_mm512_mul_ps(_mm512_mul_ps(z, _mm512_set1_ps(-0.5f)), z));
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                             _mm512_fmadd_ps(_mm512_set1_ps(0.35355339059327376f),
                                             _mm512_abs_ps(z), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(-5.9073070114e-02f * 0.5f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(2.8459255514e-01f * 0.5f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-4.8723127932e-01f * 0.5f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(2.7809737991e-01f * 0.5f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-2.6642664005e-02f * 0.5f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(2.0269250254e-01f * 0.5f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(2.4310271257e-01f * 0.5f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(2.8237540531e-01f * 0.5f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(2.8208641478e-01f * 0.5f));
    __m512 q = _mm512_mul_ps(_mm512_mul_ps(e, t), p);
    *pdf = _mm512_mul_ps(_mm512_set1_ps(0.39894228040143268f), e);
    __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), q), q);
}

/* 1 + tanh(u) and, through *omt2, 1 - tanh(u)^2 (act_tanh_parts_avx2). */
A512 INL __m512 act_tanh_parts(__m512 z, __m512 z2, __m512 *omt2)
{
    __m512 w = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps((float)K_GELU_C), z), z2, z);
    __m512 e = pt_expf_neg_avx512(_mm512_mul_ps(_mm512_set1_ps((float)(-2 * K_SQRT_2_PI)),
                                          _mm512_abs_ps(w)));
    __m512 d = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    *omt2 = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(4.0f), e), d), d);
    __mmask16 neg = _mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 two = _mm512_set1_ps(2.0f);
    return _mm512_mul_ps(_mm512_mask_blend_ps(neg, two, _mm512_mul_ps(two, e)), d);
}

A512 INL __m512 act_gelu(__m512 z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) {
        __m512 pdf;
        return _mm512_mul_ps(z, act_cdf(z, &pdf));
    }
    __m512 omt2, opt = act_tanh_parts(z, _mm512_mul_ps(z, z), &omt2);
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), z), opt);
}

A512 INL __m512 act_gelu_grad(__m512 dy, __m512 z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) {
        __m512 pdf, cdf = act_cdf(z, &pdf);
        return _mm512_mul_ps(dy, _mm512_fmadd_ps(z, pdf, cdf));
    }
    __m512 z2 = _mm512_mul_ps(z, z), omt2;
    __m512 opt = act_tanh_parts(z, z2, &omt2);
    __m512 du = _mm512_mul_ps(_mm512_set1_ps((float)K_SQRT_2_PI),
                              _mm512_fmadd_ps(_mm512_set1_ps(3 * (float)K_GELU_C), z2,
                                              _mm512_set1_ps(1.0f)));
    __m512 s = _mm512_fmadd_ps(_mm512_mul_ps(z, omt2), du, opt);
    return _mm512_mul_ps(_mm512_mul_ps(dy, _mm512_set1_ps(0.5f)), s);
}

A512 static void act_gelu_row(float *y, const float *x, const float *bias, int64_t n, int kind)
{
    int64_t c = 0;
    for (; c + 32 <= n; c += 32) {   /* two independent chains per step */
        __m512 z0 = _mm512_add_ps(_mm512_loadu_ps(x + c), _mm512_loadu_ps(bias + c));
        __m512 z1 = _mm512_add_ps(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(bias + c + 16));
        _mm512_storeu_ps(y + c, act_gelu(z0, kind));
        _mm512_storeu_ps(y + c + 16, act_gelu(z1, kind));
    }
    for (; c < n; c += 16) {
        __mmask16 m = Z_TAIL(n - c);
        __m512 z = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + c),
                                 _mm512_maskz_loadu_ps(m, bias + c));
        _mm512_mask_storeu_ps(y + c, m, act_gelu(z, kind));
    }
}

/* dx += g (dx = g when !acc) and p += (double)g in the lanes m selects;
 * dx or p may be NULL. */
A512 INL void act_acc(float *dx, double *p, __m512 g, __mmask16 m, int acc)
{
    if (dx)
        _mm512_mask_storeu_ps(dx, m, acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx), g) : g);
    if (p) {
        __mmask8 ml = (__mmask8)m, mh = (__mmask8)(m >> 8);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(g));
        __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(g, 1));
        _mm512_mask_storeu_pd(p, ml, _mm512_add_pd(_mm512_maskz_loadu_pd(ml, p), lo));
        _mm512_mask_storeu_pd(p + 8, mh, _mm512_add_pd(_mm512_maskz_loadu_pd(mh, p + 8), hi));
    }
}

/* One row of the backward: dx[c] += g[c] (= when !acc), p[c] += g[c], c in
 * [0, n). */
A512 static void act_gelu_grad_acc_row(float *dx, double *p, const float *dy, const float *x,
                                       const float *bias, int64_t n, int kind, int acc)
{
    int64_t c = 0;
    for (; c + 32 <= n; c += 32) {
        __m512 z0 = _mm512_add_ps(_mm512_loadu_ps(x + c), _mm512_loadu_ps(bias + c));
        __m512 z1 = _mm512_add_ps(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(bias + c + 16));
        __m512 g0 = act_gelu_grad(_mm512_loadu_ps(dy + c), z0, kind);
        __m512 g1 = act_gelu_grad(_mm512_loadu_ps(dy + c + 16), z1, kind);
        act_acc(dx ? dx + c : NULL, p ? p + c : NULL, g0, 0xFFFF, acc);
        act_acc(dx ? dx + c + 16 : NULL, p ? p + c + 16 : NULL, g1, 0xFFFF, acc);
    }
    for (; c < n; c += 16) {
        __mmask16 m = Z_TAIL(n - c);
        __m512 z = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + c),
                                 _mm512_maskz_loadu_ps(m, bias + c));
        act_acc(dx ? dx + c : NULL, p ? p + c : NULL,
                act_gelu_grad(_mm512_maskz_loadu_ps(m, dy + c), z, kind), m, acc);
    }
}

/* The row slot: the GELU kinds here, the others (memory bound) AVX2's. */
A512 static void act_row_avx512(float *y, const float *x, const float *bias, int64_t c0,
                                int64_t c1, int kind)
{
    if (kind < PT_ACT_GELU_ERF) {
        pt_act_avx2_f32.row(y, x, bias, c0, c1, kind);
        return;
    }
    act_gelu_row(y + c0, x + c0, bias + c0, c1 - c0, kind);
}

/* The grad_tile slot: the GELU kinds here (no scratch row: g is fused into
 * the sums), the others AVX2's. */
A512 static void act_grad_tile_avx512(float *g, double *p, float *dx, const float *dy,
                                      const float *x, const float *bias, int64_t C, int64_t n0,
                                      int64_t n1, int64_t c0, int64_t c1, int kind, int acc)
{
    if (kind < PT_ACT_GELU_ERF) {
        pt_act_avx2_f32.grad_tile(g, p, dx, dy, x, bias, C, n0, n1, c0, c1, kind, acc);
        return;
    }
    if (p) memset(p + c0, 0, (size_t)(c1 - c0) * sizeof(double));
    for (int64_t n = n0; n < n1; n++)
        act_gelu_grad_acc_row(dx ? dx + n * C + c0 : NULL, p ? p + c0 : NULL,
                              dy + n * C + c0, x + n * C + c0, bias + c0, c1 - c0, kind, acc);
}
const struct pt_act_kernels_f32 pt_act_avx512_f32 = {
    "avx512", act_row_avx512, act_grad_tile_avx512
};
#else
typedef int PT_SFX(pt_activation_avx512_unused);
#endif /* PT_X86 && PT_DTYPE == 32 */
