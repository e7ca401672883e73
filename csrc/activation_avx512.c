/*
 * activation_avx512.c -- the float32 GELU rows of activation.c (erf and
 * tanh forms, forward and backward) with AVX-512 intrinsics.
 *
 * The AVX2 path's operations, 16 lanes instead of 8: the same formulas,
 * the same FMAs and folded constants, exp as pt_exp2f_neg_avx512
 * (pt_exp2f_x86.h: pt_exp2f_neg_avx2's operations). Every operation is
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
#include "pt_exp2f_x86.h"
#include "pt_alias.h"
#include "pt_gelu.h"

#define A512 PT_TARGET_AVX512
#define INL static inline __attribute__((always_inline))

/* q = erfc(|z| / sqrt 2) / 2 as (e t) p (act_erfc_parts_avx2). */
A512 INL __m512 act_erfc_parts(__m512 z, __m512 a, __m512 *e, __m512 *t)
{
    *e = pt_exp2f_neg_avx512(_mm512_mul_ps(_mm512_mul_ps(z, _mm512_set1_ps(K_EXP2_HALF)), z));
    *t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                       _mm512_fmadd_ps(_mm512_set1_ps(K_ERFC_TZ), a, _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(K_ERFC_P7 * 0.5f);
    p = _mm512_fmadd_ps(p, *t, _mm512_set1_ps(K_ERFC_P6 * 0.5f));
    p = _mm512_fmadd_ps(p, *t, _mm512_set1_ps(K_ERFC_P5 * 0.5f));
    p = _mm512_fmadd_ps(p, *t, _mm512_set1_ps(K_ERFC_P4 * 0.5f));
    p = _mm512_fmadd_ps(p, *t, _mm512_set1_ps(K_ERFC_P3 * 0.5f));
    p = _mm512_fmadd_ps(p, *t, _mm512_set1_ps(K_ERFC_P2 * 0.5f));
    p = _mm512_fmadd_ps(p, *t, _mm512_set1_ps(K_ERFC_P1 * 0.5f));
    return _mm512_fmadd_ps(p, *t, _mm512_set1_ps(K_ERFC_P0 * 0.5f));
}

/* Phi(z) and, through *pdf, phi(z) (act_cdf_avx2). */
A512 INL __m512 act_cdf(__m512 z, __m512 *pdf)
{
    __m512 e, t, p = act_erfc_parts(z, _mm512_abs_ps(z), &e, &t);
    __m512 q = _mm512_mul_ps(_mm512_mul_ps(e, t), p);
    *pdf = _mm512_mul_ps(_mm512_set1_ps(0.39894228040143268f), e);
    __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), q), q);
}

/* z Phi(z) = max(-0, z) - |min(z, 1e30)| q (act_gelu_erf_avx2). */
A512 INL __m512 act_gelu_erf(__m512 z)
{
    __m512 a = _mm512_abs_ps(_mm512_min_ps(z, _mm512_set1_ps(1e30f)));
    __m512 e, t, p = act_erfc_parts(z, a, &e, &t);
    return _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_mul_ps(a, e), t), p,
                            _mm512_max_ps(_mm512_set1_ps(-0.0f), z));
}

/* 1 + tanh(u) and, through *omt2, 1 - tanh(u)^2 (act_tanh_parts_avx2). */
A512 INL __m512 act_tanh_parts(__m512 z, __m512 z2, __m512 *omt2)
{
    __m512 w = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps((float)K_GELU_C), z), z2, z);
    __m512 e = pt_exp2f_neg_avx512(_mm512_mul_ps(_mm512_set1_ps(K_EXP2_TANH),
                                          _mm512_abs_ps(w)));
    __m512 d = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    *omt2 = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(4.0f), e), d), d);
    __mmask16 neg = _mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 two = _mm512_set1_ps(2.0f);
    return _mm512_mul_ps(_mm512_mask_blend_ps(neg, two, _mm512_mul_ps(two, e)), d);
}

A512 INL __m512 act_gelu(__m512 z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) return act_gelu_erf(z);
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

/* z = x + bias in the lanes m selects (z = x without a bias). */
A512 INL __m512 act_z(const float *x, const float *bias, int64_t c, __mmask16 m)
{
    __m512 z = _mm512_maskz_loadu_ps(m, x + c);
    return bias ? _mm512_add_ps(z, _mm512_maskz_loadu_ps(m, bias + c)) : z;
}

/* One row segment of the forward, upwards, or downwards when y lies just
 * above x (pt_alias.h): the masked tail first, then whole vectors. bias
 * may be NULL (z = x); act_gelu_row passes it as a constant, so each case
 * has its own loop without a branch. */
A512 INL void act_gelu_row_body(float *y, const float *x, const float *bias, int64_t n,
                                int kind)
{
    int64_t c = 0;
    if (pt_walk_down(y, x)) {
        c = n - n % 16;
        if (c < n) {
            __mmask16 m = Z_TAIL(n - c);
            _mm512_mask_storeu_ps(y + c, m, act_gelu(act_z(x, bias, c, m), kind));
        }
        for (; c >= 32; c -= 32) {
            __m512 z1 = act_z(x, bias, c - 16, 0xFFFF), z0 = act_z(x, bias, c - 32, 0xFFFF);
            _mm512_storeu_ps(y + c - 16, act_gelu(z1, kind));
            _mm512_storeu_ps(y + c - 32, act_gelu(z0, kind));
        }
        if (c == 16) _mm512_storeu_ps(y, act_gelu(act_z(x, bias, 0, 0xFFFF), kind));
        return;
    }
    for (; c + 32 <= n; c += 32) {   /* two independent chains per step */
        __m512 z0 = act_z(x, bias, c, 0xFFFF), z1 = act_z(x, bias, c + 16, 0xFFFF);
        _mm512_storeu_ps(y + c, act_gelu(z0, kind));
        _mm512_storeu_ps(y + c + 16, act_gelu(z1, kind));
    }
    for (; c < n; c += 16) {
        __mmask16 m = Z_TAIL(n - c);
        _mm512_mask_storeu_ps(y + c, m, act_gelu(act_z(x, bias, c, m), kind));
    }
}
A512 static void act_gelu_row(float *y, const float *x, const float *bias, int64_t n, int kind)
{
    if (bias)
        act_gelu_row_body(y, x, bias, n, kind);
    else
        act_gelu_row_body(y, x, NULL, n, kind);
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

/* z[0..GB) = x + bias over [c, c + GB * 16) of a segment of n, masked past
 * its end. */
#define GB 4
A512 INL void act_z_block(__m512 z[GB], const float *x, const float *bias, int64_t c, int64_t n)
{
    for (int j = 0; j < GB; j++) {
        __mmask16 m = Z_TAIL(n - c - 16 * j);
        z[j] = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + c + 16 * j),
                             _mm512_maskz_loadu_ps(m, bias + c + 16 * j));
    }
}

/* act_gelu_grad_acc_row for dx lying just above x (pt_alias.h): blocks of
 * GB vectors, the x of each block loaded before the stores of the block
 * before it, so that no load of x closely follows a store of dx to its
 * address modulo PT_ALIAS_SPAN (x + bias starts the long chain of each
 * element's arithmetic; dy enters only at its end, and dx lying just
 * above dy measured no slower). Each element is computed as there. */
A512 static void act_gelu_grad_acc_row_ahead(float *dx, double *p, const float *dy,
                                             const float *x, const float *bias, int64_t n,
                                             int kind, int acc)
{
    __m512 z[GB], zn[GB];
    act_z_block(z, x, bias, 0, n);
    for (int j = 0; j < GB; j++) zn[j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < n; c += 16 * GB) {
        if (c + 16 * GB < n) act_z_block(zn, x, bias, c + 16 * GB, n);
        for (int j = 0; j < GB; j++) {
            int64_t o = c + 16 * j;
            __mmask16 m = Z_TAIL(n - o);
            act_acc(dx ? dx + o : NULL, p ? p + o : NULL,
                    act_gelu_grad(_mm512_maskz_loadu_ps(m, dy + o), z[j], kind), m, acc);
        }
        for (int j = 0; j < GB; j++) z[j] = zn[j];
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
    act_gelu_row(y + c0, x + c0, bias ? bias + c0 : NULL, c1 - c0, kind);
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
    int ahead = dx && pt_store_close_above(dx, x);
    for (int64_t n = n0; n < n1; n++) {
        if (ahead)
            act_gelu_grad_acc_row_ahead(dx + n * C + c0, p ? p + c0 : NULL, dy + n * C + c0,
                                        x + n * C + c0, bias + c0, c1 - c0, kind, acc);
        else
            act_gelu_grad_acc_row(dx ? dx + n * C + c0 : NULL, p ? p + c0 : NULL,
                                  dy + n * C + c0, x + n * C + c0, bias + c0, c1 - c0, kind,
                                  acc);
    }
}
const struct pt_act_kernels_f32 pt_act_avx512_f32 = {
    "avx512", act_row_avx512, act_grad_tile_avx512
};
#elif PT_X86 && PT_DTYPE == 64
#include "pt_avx512.h"
#include "pt_exp_f64_avx512.h"
#include "pt_alias.h"
#include "pt_gelu.h"

#define A512 PT_TARGET_AVX512
#define INL static inline __attribute__((always_inline))

/* erfcx(x) = erfc(x) exp(x^2) on [0, 6): 16 intervals of width 3/8, on
 * interval i (x in [3i/8, 3(i+1)/8)) a degree-12 polynomial in
 * u = 16x/3 - (2i + 1) in [-1, 1]: ERFCX[j][i] is the coefficient of
 * u^(12-j). Chebyshev interpolants of erfcx computed at 40 digits
 * (mpmath.chebyfit), rounded to double; measured relative error with
 * double Horner evaluation under 2.5e-16. erfcx is smooth and slowly
 * varying where erfc is not, so erfc(x) = exp(-x^2) erfcx(x) keeps the
 * relative accuracy of the exp. */
static const double ERFCX[13][16] __attribute__((aligned(64))) = {
    {0x1.2a65ebdb8d265p-40, 0x1.a0a6a82334f70p-43, 0x1.48d02e3e5f45dp-45, 0x1.2267a7d2467ecp-47, 0x1.1c4e11f9e302cp-49, 0x1.31c2b0398c632p-51, 0x1.6639943f2e55bp-53, 0x1.c5af00fff3204p-55, 0x1.345f58b31f003p-56, 0x1.bf17431dfd7adp-58, 0x1.57a9e42ba4c7cp-59, 0x1.16a4b035ecba1p-60, 0x1.da6290099e1a0p-62, 0x1.a62c4ab01e412p-63, 0x1.874e5ae8a0ecdp-64, 0x1.787a339022e51p-65},
    {-0x1.02bd3c8480af9p-36, -0x1.85b59633af636p-39, -0x1.4b7bb17466fa8p-41, -0x1.3b2a64ff9670fp-43, -0x1.4ba6eb37a4d3cp-45, -0x1.7eb683ecd1fd6p-47, -0x1.e029ae1d66e75p-49, -0x1.44ed9aee2fb12p-50, -0x1.d701fbfe14eb4p-52, -0x1.6b4945566faa9p-53, -0x1.2874e22b449dbp-54, -0x1.fd420e76f0aaap-56, -0x1.ca3fe5677fd06p-57, -0x1.ae3655cca68b3p-58, -0x1.a3d454e3257ecp-59, -0x1.a8761340d6b24p-60},
    {0x1.a7a36e5b7c3e9p-33, 0x1.5a287d29d4179p-35, 0x1.3f0a59b5fe405p-37, 0x1.481f3be492f23p-39, 0x1.74c14ed2599c3p-41, 0x1.cf54ba853ba9fp-43, 0x1.38552ec358d53p-44, 0x1.c51d97362fe10p-46, 0x1.5f2512224f972p-47, 0x1.20dab4bba9724p-48, 0x1.f58ce5bd2f573p-50, 0x1.c932bbc449feap-51, 0x1.b39bfb4dc1287p-52, 0x1.b00c6d482612dp-53, 0x1.bc79a97824d39p-54, 0x1.d8c608e26bed2p-55},
    {-0x1.518e9b9f9f412p-29, -0x1.2bb6bbca940fep-31, -0x1.2bd106a2d0d15p-33, -0x1.4e22542b88569p-35, -0x1.9a81a5fdbbd13p-37, -0x1.13489da91f887p-38, -0x1.8f789dedf013bp-40, -0x1.37141f172fc77p-41, -0x1.021ec69fd1b27p-42, -0x1.c57e441516662p-44, -0x1.a3586fbc4b661p-45, -0x1.961f61054f8f4p-46, -0x1.9a1843a2ee151p-47, -0x1.ae11b04a62547p-48, -0x1.d2c56c171c985p-49, -0x1.0557f5d53f899p-49},
    {0x1.007aa878346dcp-25, 0x1.f10d7724e0873p-28, 0x1.0ef4224d49ffep-29, 0x1.487d1129e164cp-31, 0x1.b602d0a5b6a9cp-33, 0x1.3df8021677bd6p-34, 0x1.f2192b91d3bddp-36, 0x1.a182084f2f383p-37, 0x1.73cc1c09835a8p-38, 0x1.5d8089a813263p-39, 0x1.58db92607a37bp-40, 0x1.63670196eb9bep-41, 0x1.7ce3bb0cf2780p-42, 0x1.a6e10c3b2e49cp-43, 0x1.e4bed91580e56p-44, 0x1.1e0240f98a8f0p-44},
    {-0x1.71a87c81905a6p-22, -0x1.88f01a24530e4p-24, -0x1.d52ea23fa07bap-26, -0x1.36c9f28282ee5p-27, -0x1.c3a44b3aa546ep-29, -0x1.643fc2cb1b72ep-30, -0x1.2e38e61ef5553p-31, -0x1.117a4a96ebe8bp-32, -0x1.060c52f19b4e4p-33, -0x1.08343ca190f68p-34, -0x1.16bb3ef5871fap-35, -0x1.3236086079441p-36, -0x1.5cd501fdb9d44p-37, -0x1.9a90255d1ac82p-38, -0x1.f1a5adb483401p-39, -0x1.35bd32eca5ff1p-39},
    {0x1.f62b82bdd29cap-19, 0x1.269689ff50023p-20, 0x1.8377905da1cf6p-22, 0x1.19f70a595b94ep-23, 0x1.c0b8532dd9fefp-25, 0x1.823d9ccb0b21cp-26, 0x1.643e7cd71bfa6p-27, 0x1.5d2a358a142f6p-28, 0x1.690c3a7c48779p-29, 0x1.8768d105bf27ap-30, 0x1.ba7854c1d8cd4p-31, 0x1.03940f02ebff1p-31, 0x1.3ad89ab80a618p-32, 0x1.89662f0c86659p-33, 0x1.f8da76601f70bp-34, 0x1.4bd6a5dc0bb73p-34},
    {-0x1.3ee5b9d5faae2p-15, -0x1.a016ba95a4cbap-17, -0x1.2f8b0ba508857p-18, -0x1.e871aadb78946p-20, -0x1.ac0b207f4c15ap-21, -0x1.9414ee37a351cp-22, -0x1.96faace773d7cp-23, -0x1.b1b1cb80341bbp-24, -0x1.e58557319b108p-25, -0x1.1bc5b9a495242p-25, -0x1.5891992cb1287p-26, -0x1.b0af5730b926cp-27, -0x1.17e343ba3545dp-27, -0x1.73d8ad1a1a34ap-28, -0x1.f9e7ddf03682ep-29, -0x1.5f95004aace39p-29},
    {0x1.76a463bf7fc41p-12, 0x1.12689efe18307p-13, 0x1.c0069cdd179b3p-15, 0x1.91abc1a74f268p-16, 0x1.865908acc5a8dp-17, 0x1.968d980a3e8bdp-18, 0x1.c16b2b6e9da60p-19, 0x1.057d0afb2bd26p-19, 0x1.3e1b8abc71adbp-20, 0x1.9236ef49c3f80p-21, 0x1.06fee8ead443cp-21, 0x1.62415e80d9c6bp-22, 0x1.e9cc88f1a1f7bp-23, 0x1.5a8755f9bd074p-23, 0x1.f48c55a9b5017p-24, 0x1.703f90c558f0dp-24},
    {-0x1.912922188e52ep-9, -0x1.4e104df514af0p-10, -0x1.34a4a5b716137p-11, -0x1.3768f0a13aec3p-12, -0x1.5278ba5a0fb0bp-13, -0x1.87c00c7a25458p-14, -0x1.de33d18a37dafp-15, -0x1.31617a1d4b445p-15, -0x1.956c3a2f1efddp-16, -0x1.163a4d31c5763p-16, -0x1.8909e6fa6c40cp-17, -0x1.1cab29171b64fp-17, -0x1.a5875b814e1f9p-18, -0x1.3e34cac8f9643p-18, -0x1.e8c10ed27a8eep-19, -0x1.7d27ed27ebfa3p-19},
    {0x1.7f290b262bce6p-6, 0x1.7131553a352a8p-7, 0x1.880649bbcd2a7p-8, 0x1.c3010c2cc4bacp-9, 0x1.15225c8746777p-9, 0x1.67ac6340eb0b1p-10, 0x1.e869077553f2fp-11, 0x1.58672c089cbcep-11, 0x1.f573c75146a12p-12, 0x1.771600ec30421p-12, 0x1.1f27442035bc8p-12, 0x1.c092a3ca3321bp-13, 0x1.6487c718aa79fp-13, 0x1.1fbcf36e8eb41p-13, 0x1.d6bdddbf491fcp-14, 0x1.85b3fce615198p-14},
    {-0x1.3b55e2ca773bdp-3, -0x1.69280943e0edcp-4, -0x1.c2c7073a1951dp-5, -0x1.2d1e1adea9a65p-5, -0x1.a89990e0df24ep-6, -0x1.389130fba7cc2p-6, -0x1.dc88a3a65d839p-7, -0x1.75c64da24a26ep-7, -0x1.2c2e86bc701abp-7, -0x1.ebc92df61a377p-8, -0x1.99a45ca9cf8cdp-8, -0x1.5a2253d09708ap-8, -0x1.281a6205fdc5ep-8, -0x1.0009a082fd76cp-8, -0x1.bef9719374b57p-9, -0x1.896806e08e45dp-9},
    {0x1.a36bbb7f3686dp-1, 0x1.2b84f076e14fbp-1, 0x1.c7f81382721efp-2, 0x1.6bb376a9390cdp-2, 0x1.2c6c3d2ac6111p-2, 0x1.fdb50ebdc92cep-3, 0x1.b9739404354ecp-3, 0x1.84ae4301fe0b3p-3, 0x1.5acd331e82254p-3, 0x1.38d60190223f4p-3, 0x1.1cc7d25f7330ap-3, 0x1.053e861ffc32bp-3, 0x1.e277e0aabb532p-4, 0x1.c00c8546be50ap-4, 0x1.a2258dfa0e771p-4, 0x1.87efff770a69ap-4},
};

/* Phi(z) = erfc(-z / sqrt 2) / 2 and, through *pdf, phi(z) =
 * exp(-z^2 / 2) / sqrt(2 pi): one exp for both, since erfc(|z| / sqrt 2) =
 * exp(-z^2 / 2) erfcx(|z| / sqrt 2). With q = erfc(|z| / sqrt 2) / 2:
 * Phi = q for z < 0 (relative accuracy in the negative tail, where the
 * portable 0.5 (1 + erf) keeps only an absolute one), 1 - q for z >= 0.
 * |z| / sqrt 2 >= 6 (q < 1.1e-17): q = 0, Phi exactly 0 or 1 as the
 * portable path gives there. NaN propagates through the exp. */
A512 INL __m512d actd_cdf(__m512d z, __m512d *pdf)
{
    __m512d e = pt_exp_pd_avx512(_mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(-0.5), z), z));
    __m512d x = _mm512_mul_pd(_mm512_abs_pd(z), _mm512_set1_pd(K_SQRT1_2));
    __m512d s = _mm512_mul_pd(x, _mm512_set1_pd(8.0 / 3.0));
    __m512d fi = _mm512_roundscale_pd(s, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512i idx = _mm512_cvttpd_epi64(fi);   /* the permutes read its low 4 bits */
    __m512d u = _mm512_fmsub_pd(s, _mm512_set1_pd(2.0),
                                _mm512_fmadd_pd(fi, _mm512_set1_pd(2.0), _mm512_set1_pd(1.0)));
    __m512d r = _mm512_permutex2var_pd(_mm512_load_pd(ERFCX[0]), idx,
                                       _mm512_load_pd(ERFCX[0] + 8));
    for (int j = 1; j < 13; j++)
        r = _mm512_fmadd_pd(r, u, _mm512_permutex2var_pd(_mm512_load_pd(ERFCX[j]), idx,
                                                         _mm512_load_pd(ERFCX[j] + 8)));
    __mmask8 near = _mm512_cmp_pd_mask(x, _mm512_set1_pd(6.0), _CMP_NGE_UQ);  /* or NaN */
    __m512d q = _mm512_maskz_mul_pd(near, _mm512_mul_pd(_mm512_set1_pd(0.5), e), r);
    *pdf = _mm512_mul_pd(_mm512_set1_pd(K_INV_SQRT_2PI), e);
    __mmask8 neg = _mm512_cmp_pd_mask(z, _mm512_setzero_pd(), _CMP_LT_OQ);
    return _mm512_mask_blend_pd(neg, _mm512_sub_pd(_mm512_set1_pd(1.0), q), q);
}

/* u = k0 (z + k1 z^3) as the portable row computes it (no FMA), and with
 * e = exp(-2|u|): 1 + tanh(u) = 2/(1+e) (u >= 0) or 2e/(1+e) (u < 0),
 * and through *omt2, 1 - tanh(u)^2 = 4e/(1+e)^2; no cancellation, where
 * the portable 1 + tanh(u) and 1 - tanh(u)^2 keep an absolute accuracy
 * only for large |u|. */
A512 INL __m512d actd_tanh_parts(__m512d z, __m512d *omt2)
{
    __m512d c = _mm512_mul_pd(_mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(K_GELU_C), z), z), z);
    __m512d w = _mm512_mul_pd(_mm512_set1_pd(K_SQRT_2_PI), _mm512_add_pd(z, c));
    __m512d e = pt_exp_pd_avx512(_mm512_mul_pd(_mm512_set1_pd(-2.0), _mm512_abs_pd(w)));
    __m512d d = _mm512_div_pd(_mm512_set1_pd(1.0), _mm512_add_pd(_mm512_set1_pd(1.0), e));
    *omt2 = _mm512_mul_pd(_mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(4.0), e), d), d);
    __mmask8 neg = _mm512_cmp_pd_mask(w, _mm512_setzero_pd(), _CMP_LT_OQ);
    __m512d two = _mm512_set1_pd(2.0);
    return _mm512_mul_pd(_mm512_mask_blend_pd(neg, two, _mm512_mul_pd(two, e)), d);
}

A512 INL __m512d actd_gelu(__m512d z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) {
        __m512d pdf;
        return _mm512_mul_pd(z, actd_cdf(z, &pdf));
    }
    __m512d omt2, opt = actd_tanh_parts(z, &omt2);
    return _mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(0.5), z), opt);
}

/* dy a'(z), the portable formulas: dy (Phi + z phi); dy 0.5 (1 + t +
 * (z (1 - t^2)) du), du = k0 (1 + 3 k1 z^2). */
A512 INL __m512d actd_gelu_grad(__m512d dy, __m512d z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) {
        __m512d pdf, cdf = actd_cdf(z, &pdf);
        return _mm512_mul_pd(dy, _mm512_fmadd_pd(z, pdf, cdf));
    }
    __m512d omt2, opt = actd_tanh_parts(z, &omt2);
    __m512d z2 = _mm512_mul_pd(z, z);
    __m512d du = _mm512_mul_pd(_mm512_set1_pd(K_SQRT_2_PI),
                               _mm512_fmadd_pd(_mm512_set1_pd(3 * K_GELU_C), z2,
                                               _mm512_set1_pd(1.0)));
    __m512d s = _mm512_fmadd_pd(_mm512_mul_pd(z, omt2), du, opt);
    return _mm512_mul_pd(_mm512_mul_pd(dy, _mm512_set1_pd(0.5)), s);
}

/* z = x + bias in the lanes m selects (z = x without a bias). */
A512 INL __m512d actd_z(const double *x, const double *bias, int64_t c, __mmask8 m)
{
    __m512d z = _mm512_maskz_loadu_pd(m, x + c);
    return bias ? _mm512_add_pd(z, _mm512_maskz_loadu_pd(m, bias + c)) : z;
}

/* One row segment of the forward; bias may be NULL (act_gelu_row). */
A512 INL void actd_gelu_row_body(double *y, const double *x, const double *bias, int64_t n,
                                 int kind)
{
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {   /* two independent chains per step */
        __m512d z0 = actd_z(x, bias, c, 0xFF), z1 = actd_z(x, bias, c + 8, 0xFF);
        _mm512_storeu_pd(y + c, actd_gelu(z0, kind));
        _mm512_storeu_pd(y + c + 8, actd_gelu(z1, kind));
    }
    for (; c < n; c += 8) {
        __mmask8 m = Z_TAIL(n - c);
        _mm512_mask_storeu_pd(y + c, m, actd_gelu(actd_z(x, bias, c, m), kind));
    }
}
A512 static void actd_gelu_row(double *y, const double *x, const double *bias, int64_t n,
                               int kind)
{
    if (bias)
        actd_gelu_row_body(y, x, bias, n, kind);
    else
        actd_gelu_row_body(y, x, NULL, n, kind);
}

/* dx += g (dx = g when !acc) and p += g in the lanes m selects; dx or p
 * may be NULL. */
A512 INL void actd_acc(double *dx, double *p, __m512d g, __mmask8 m, int acc)
{
    if (dx)
        _mm512_mask_storeu_pd(dx, m, acc ? _mm512_add_pd(_mm512_maskz_loadu_pd(m, dx), g) : g);
    if (p) _mm512_mask_storeu_pd(p, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, p), g));
}

A512 static void actd_gelu_grad_acc_row(double *dx, double *p, const double *dy,
                                        const double *x, const double *bias, int64_t n,
                                        int kind, int acc)
{
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        __m512d z0 = _mm512_add_pd(_mm512_loadu_pd(x + c), _mm512_loadu_pd(bias + c));
        __m512d z1 = _mm512_add_pd(_mm512_loadu_pd(x + c + 8), _mm512_loadu_pd(bias + c + 8));
        __m512d g0 = actd_gelu_grad(_mm512_loadu_pd(dy + c), z0, kind);
        __m512d g1 = actd_gelu_grad(_mm512_loadu_pd(dy + c + 8), z1, kind);
        actd_acc(dx ? dx + c : NULL, p ? p + c : NULL, g0, 0xFF, acc);
        actd_acc(dx ? dx + c + 8 : NULL, p ? p + c + 8 : NULL, g1, 0xFF, acc);
    }
    for (; c < n; c += 8) {
        __mmask8 m = Z_TAIL(n - c);
        __m512d z = _mm512_add_pd(_mm512_maskz_loadu_pd(m, x + c),
                                  _mm512_maskz_loadu_pd(m, bias + c));
        actd_acc(dx ? dx + c : NULL, p ? p + c : NULL,
                 actd_gelu_grad(_mm512_maskz_loadu_pd(m, dy + c), z, kind), m, acc);
    }
}

/* z[0..GBD) = x + bias and d[0..GBD) = dy over [c, c + GBD * 8) of a
 * segment of n, masked past its end. */
#define GBD 4
A512 INL void actd_grad_block(__m512d z[GBD], __m512d d[GBD], const double *dy,
                              const double *x, const double *bias, int64_t c, int64_t n)
{
    for (int j = 0; j < GBD; j++) {
        __mmask8 m = Z_TAIL(n - c - 8 * j);
        z[j] = _mm512_add_pd(_mm512_maskz_loadu_pd(m, x + c + 8 * j),
                             _mm512_maskz_loadu_pd(m, bias + c + 8 * j));
        d[j] = _mm512_maskz_loadu_pd(m, dy + c + 8 * j);
    }
}

/* actd_gelu_grad_acc_row for dx lying just above x or dy (pt_alias.h):
 * x and dy a block of GBD vectors ahead of dx's stores. Each element is
 * computed as there. */
A512 static void actd_gelu_grad_acc_row_ahead(double *dx, double *p, const double *dy,
                                              const double *x, const double *bias, int64_t n,
                                              int kind, int acc)
{
    __m512d z[GBD], d[GBD], zn[GBD], dn[GBD];
    actd_grad_block(z, d, dy, x, bias, 0, n);
    for (int j = 0; j < GBD; j++) zn[j] = dn[j] = _mm512_setzero_pd();
    for (int64_t c = 0; c < n; c += 8 * GBD) {
        if (c + 8 * GBD < n) actd_grad_block(zn, dn, dy, x, bias, c + 8 * GBD, n);
        for (int j = 0; j < GBD; j++) {
            int64_t o = c + 8 * j;
            actd_acc(dx ? dx + o : NULL, p ? p + o : NULL, actd_gelu_grad(d[j], z[j], kind),
                     Z_TAIL(n - o), acc);
        }
        for (int j = 0; j < GBD; j++) z[j] = zn[j], d[j] = dn[j];
    }
}

/* The row slot: the GELU kinds here, the others (memory bound) the
 * portable ones, as in activation_avx2_f64.c. */
A512 static void act_row_avx512_f64(double *y, const double *x, const double *bias, int64_t c0,
                                    int64_t c1, int kind)
{
    if (kind < PT_ACT_GELU_ERF) {
        pt_act_portable_f64.row(y, x, bias, c0, c1, kind);
        return;
    }
    actd_gelu_row(y + c0, x + c0, bias ? bias + c0 : NULL, c1 - c0, kind);
}

/* The grad_tile slot: the GELU kinds here (g fused into the sums: dbias
 * partials per column in row order, as the portable tile), the others the
 * portable ones. */
A512 static void act_grad_tile_avx512_f64(double *g, double *p, double *dx, const double *dy,
                                          const double *x, const double *bias, int64_t C,
                                          int64_t n0, int64_t n1, int64_t c0, int64_t c1,
                                          int kind, int acc)
{
    if (kind < PT_ACT_GELU_ERF) {
        pt_act_portable_f64.grad_tile(g, p, dx, dy, x, bias, C, n0, n1, c0, c1, kind, acc);
        return;
    }
    if (p) memset(p + c0, 0, (size_t)(c1 - c0) * sizeof(double));
    int ahead = dx && (pt_store_close_above(dx, x) || pt_store_close_above(dx, dy));
    for (int64_t n = n0; n < n1; n++) {
        if (ahead)
            actd_gelu_grad_acc_row_ahead(dx + n * C + c0, p ? p + c0 : NULL, dy + n * C + c0,
                                            x + n * C + c0, bias + c0, c1 - c0, kind, acc);
        else
            actd_gelu_grad_acc_row(dx ? dx + n * C + c0 : NULL, p ? p + c0 : NULL, dy + n * C + c0,
                                      x + n * C + c0, bias + c0, c1 - c0, kind, acc);
    }
}
const struct pt_act_kernels_f64 pt_act_avx512_f64 = {
    "avx512", act_row_avx512_f64, act_grad_tile_avx512_f64
};
#else
typedef int PT_SFX(pt_activation_avx512_unused);
#endif /* PT_X86 */
