/*
 * activation_avx2_f64.c -- the float64 GELU rows of activation.c (erf and
 * tanh forms, forward and backward) with AVX2 + FMA intrinsics:
 * pt_act_avx2_f64, the dispatch table's float64 avx2 entry.
 *
 * The operations of activation_avx512.c's float64 rows, 4 lanes wide:
 *   - erf form: Phi(z) = erfc(-z / sqrt 2) / 2 through
 *     erfc(x) = exp(-x^2) erfcx(x), erfcx a piecewise degree-12 fit (the
 *     table below, 2.5e-16 relative), one exp for Phi and phi; the
 *     interval's coefficients are read per lane (AVX2 has no two-table
 *     permute) by the same index (two 128-bit loads and an unpack per two
 *     coefficients, in place of a gather per coefficient), with the same
 *     FMAs;
 *   - tanh form: 1 + tanh(u) = 2 / (1 + e) or 2e / (1 + e), 1 - tanh(u)^2 =
 *     4e / (1 + e)^2, e = exp(-2|u|): no cancellation in the tails;
 *   - exp is pt_exp_pd_avx2 (pt_exp_f64_avx2.h), bitwise pt_exp_pd_avx512.
 * Every operation is elementwise and the dbias partials are summed per
 * column in row order, so the results are bitwise those of the AVX-512
 * float64 rows, and within the tolerance tests/test_avx512_rows.py and
 * tests/test_avx2_f64_rows.py state of the portable rows (libm's erf and
 * tanh, whose 0.5 (1 + erf) and 1 + tanh keep only an absolute accuracy in
 * the negative tail). Row tails use masked loads and stores, so every
 * element of a row takes the same arithmetic. The other kinds (none, relu:
 * memory bound) take the portable slots.
 */
#include "pt_real.h"
#include <string.h>
#include "pt_dispatch.h"

#if PT_X86 && PT_DTYPE == 64
#include <immintrin.h>
#include "pt_exp_f64_avx2.h"
#include "pt_alias.h"
#include "pt_gelu.h"

#define A2 __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline))

/* erfcx(x) = erfc(x) exp(x^2) on [0, 6): 16 intervals of width 3/8, on
 * interval i (x in [3i/8, 3(i+1)/8)) a degree-12 polynomial in
 * u = 16x/3 - (2i + 1) in [-1, 1]: ERFCX_T[i][j] is the coefficient of
 * u^(12-j) (j < 13; three zeros pad a row to 128 bytes). Chebyshev interpolants of erfcx computed at 40 digits
 * (mpmath.chebyfit), rounded to double; measured relative error with
 * double Horner evaluation under 2.5e-16. erfcx is smooth and slowly
 * varying where erfc is not, so erfc(x) = exp(-x^2) erfcx(x) keeps the
 * relative accuracy of the exp. The coefficients of
 * activation_avx512.c's ERFCX (its transpose: an interval's coefficients
 * lie together here, for the loads below), so that the two paths agree bit
 * for bit (tests/test_avx2_f64_rows.py checks it). */
static const double ERFCX_T[16][16] __attribute__((aligned(64))) = {
    {0x1.2a65ebdb8d265p-40, -0x1.02bd3c8480af9p-36, 0x1.a7a36e5b7c3e9p-33, -0x1.518e9b9f9f412p-29,
     0x1.007aa878346dcp-25, -0x1.71a87c81905a6p-22, 0x1.f62b82bdd29cap-19, -0x1.3ee5b9d5faae2p-15,
     0x1.76a463bf7fc41p-12, -0x1.912922188e52ep-9, 0x1.7f290b262bce6p-6, -0x1.3b55e2ca773bdp-3,
     0x1.a36bbb7f3686dp-1, 0.0, 0.0, 0.0},
    {0x1.a0a6a82334f70p-43, -0x1.85b59633af636p-39, 0x1.5a287d29d4179p-35, -0x1.2bb6bbca940fep-31,
     0x1.f10d7724e0873p-28, -0x1.88f01a24530e4p-24, 0x1.269689ff50023p-20, -0x1.a016ba95a4cbap-17,
     0x1.12689efe18307p-13, -0x1.4e104df514af0p-10, 0x1.7131553a352a8p-7, -0x1.69280943e0edcp-4,
     0x1.2b84f076e14fbp-1, 0.0, 0.0, 0.0},
    {0x1.48d02e3e5f45dp-45, -0x1.4b7bb17466fa8p-41, 0x1.3f0a59b5fe405p-37, -0x1.2bd106a2d0d15p-33,
     0x1.0ef4224d49ffep-29, -0x1.d52ea23fa07bap-26, 0x1.8377905da1cf6p-22, -0x1.2f8b0ba508857p-18,
     0x1.c0069cdd179b3p-15, -0x1.34a4a5b716137p-11, 0x1.880649bbcd2a7p-8, -0x1.c2c7073a1951dp-5,
     0x1.c7f81382721efp-2, 0.0, 0.0, 0.0},
    {0x1.2267a7d2467ecp-47, -0x1.3b2a64ff9670fp-43, 0x1.481f3be492f23p-39, -0x1.4e22542b88569p-35,
     0x1.487d1129e164cp-31, -0x1.36c9f28282ee5p-27, 0x1.19f70a595b94ep-23, -0x1.e871aadb78946p-20,
     0x1.91abc1a74f268p-16, -0x1.3768f0a13aec3p-12, 0x1.c3010c2cc4bacp-9, -0x1.2d1e1adea9a65p-5,
     0x1.6bb376a9390cdp-2, 0.0, 0.0, 0.0},
    {0x1.1c4e11f9e302cp-49, -0x1.4ba6eb37a4d3cp-45, 0x1.74c14ed2599c3p-41, -0x1.9a81a5fdbbd13p-37,
     0x1.b602d0a5b6a9cp-33, -0x1.c3a44b3aa546ep-29, 0x1.c0b8532dd9fefp-25, -0x1.ac0b207f4c15ap-21,
     0x1.865908acc5a8dp-17, -0x1.5278ba5a0fb0bp-13, 0x1.15225c8746777p-9, -0x1.a89990e0df24ep-6,
     0x1.2c6c3d2ac6111p-2, 0.0, 0.0, 0.0},
    {0x1.31c2b0398c632p-51, -0x1.7eb683ecd1fd6p-47, 0x1.cf54ba853ba9fp-43, -0x1.13489da91f887p-38,
     0x1.3df8021677bd6p-34, -0x1.643fc2cb1b72ep-30, 0x1.823d9ccb0b21cp-26, -0x1.9414ee37a351cp-22,
     0x1.968d980a3e8bdp-18, -0x1.87c00c7a25458p-14, 0x1.67ac6340eb0b1p-10, -0x1.389130fba7cc2p-6,
     0x1.fdb50ebdc92cep-3, 0.0, 0.0, 0.0},
    {0x1.6639943f2e55bp-53, -0x1.e029ae1d66e75p-49, 0x1.38552ec358d53p-44, -0x1.8f789dedf013bp-40,
     0x1.f2192b91d3bddp-36, -0x1.2e38e61ef5553p-31, 0x1.643e7cd71bfa6p-27, -0x1.96faace773d7cp-23,
     0x1.c16b2b6e9da60p-19, -0x1.de33d18a37dafp-15, 0x1.e869077553f2fp-11, -0x1.dc88a3a65d839p-7,
     0x1.b9739404354ecp-3, 0.0, 0.0, 0.0},
    {0x1.c5af00fff3204p-55, -0x1.44ed9aee2fb12p-50, 0x1.c51d97362fe10p-46, -0x1.37141f172fc77p-41,
     0x1.a182084f2f383p-37, -0x1.117a4a96ebe8bp-32, 0x1.5d2a358a142f6p-28, -0x1.b1b1cb80341bbp-24,
     0x1.057d0afb2bd26p-19, -0x1.31617a1d4b445p-15, 0x1.58672c089cbcep-11, -0x1.75c64da24a26ep-7,
     0x1.84ae4301fe0b3p-3, 0.0, 0.0, 0.0},
    {0x1.345f58b31f003p-56, -0x1.d701fbfe14eb4p-52, 0x1.5f2512224f972p-47, -0x1.021ec69fd1b27p-42,
     0x1.73cc1c09835a8p-38, -0x1.060c52f19b4e4p-33, 0x1.690c3a7c48779p-29, -0x1.e58557319b108p-25,
     0x1.3e1b8abc71adbp-20, -0x1.956c3a2f1efddp-16, 0x1.f573c75146a12p-12, -0x1.2c2e86bc701abp-7,
     0x1.5acd331e82254p-3, 0.0, 0.0, 0.0},
    {0x1.bf17431dfd7adp-58, -0x1.6b4945566faa9p-53, 0x1.20dab4bba9724p-48, -0x1.c57e441516662p-44,
     0x1.5d8089a813263p-39, -0x1.08343ca190f68p-34, 0x1.8768d105bf27ap-30, -0x1.1bc5b9a495242p-25,
     0x1.9236ef49c3f80p-21, -0x1.163a4d31c5763p-16, 0x1.771600ec30421p-12, -0x1.ebc92df61a377p-8,
     0x1.38d60190223f4p-3, 0.0, 0.0, 0.0},
    {0x1.57a9e42ba4c7cp-59, -0x1.2874e22b449dbp-54, 0x1.f58ce5bd2f573p-50, -0x1.a3586fbc4b661p-45,
     0x1.58db92607a37bp-40, -0x1.16bb3ef5871fap-35, 0x1.ba7854c1d8cd4p-31, -0x1.5891992cb1287p-26,
     0x1.06fee8ead443cp-21, -0x1.8909e6fa6c40cp-17, 0x1.1f27442035bc8p-12, -0x1.99a45ca9cf8cdp-8,
     0x1.1cc7d25f7330ap-3, 0.0, 0.0, 0.0},
    {0x1.16a4b035ecba1p-60, -0x1.fd420e76f0aaap-56, 0x1.c932bbc449feap-51, -0x1.961f61054f8f4p-46,
     0x1.63670196eb9bep-41, -0x1.3236086079441p-36, 0x1.03940f02ebff1p-31, -0x1.b0af5730b926cp-27,
     0x1.62415e80d9c6bp-22, -0x1.1cab29171b64fp-17, 0x1.c092a3ca3321bp-13, -0x1.5a2253d09708ap-8,
     0x1.053e861ffc32bp-3, 0.0, 0.0, 0.0},
    {0x1.da6290099e1a0p-62, -0x1.ca3fe5677fd06p-57, 0x1.b39bfb4dc1287p-52, -0x1.9a1843a2ee151p-47,
     0x1.7ce3bb0cf2780p-42, -0x1.5cd501fdb9d44p-37, 0x1.3ad89ab80a618p-32, -0x1.17e343ba3545dp-27,
     0x1.e9cc88f1a1f7bp-23, -0x1.a5875b814e1f9p-18, 0x1.6487c718aa79fp-13, -0x1.281a6205fdc5ep-8,
     0x1.e277e0aabb532p-4, 0.0, 0.0, 0.0},
    {0x1.a62c4ab01e412p-63, -0x1.ae3655cca68b3p-58, 0x1.b00c6d482612dp-53, -0x1.ae11b04a62547p-48,
     0x1.a6e10c3b2e49cp-43, -0x1.9a90255d1ac82p-38, 0x1.89662f0c86659p-33, -0x1.73d8ad1a1a34ap-28,
     0x1.5a8755f9bd074p-23, -0x1.3e34cac8f9643p-18, 0x1.1fbcf36e8eb41p-13, -0x1.0009a082fd76cp-8,
     0x1.c00c8546be50ap-4, 0.0, 0.0, 0.0},
    {0x1.874e5ae8a0ecdp-64, -0x1.a3d454e3257ecp-59, 0x1.bc79a97824d39p-54, -0x1.d2c56c171c985p-49,
     0x1.e4bed91580e56p-44, -0x1.f1a5adb483401p-39, 0x1.f8da76601f70bp-34, -0x1.f9e7ddf03682ep-29,
     0x1.f48c55a9b5017p-24, -0x1.e8c10ed27a8eep-19, 0x1.d6bdddbf491fcp-14, -0x1.bef9719374b57p-9,
     0x1.a2258dfa0e771p-4, 0.0, 0.0, 0.0},
    {0x1.787a339022e51p-65, -0x1.a8761340d6b24p-60, 0x1.d8c608e26bed2p-55, -0x1.0557f5d53f899p-49,
     0x1.1e0240f98a8f0p-44, -0x1.35bd32eca5ff1p-39, 0x1.4bd6a5dc0bb73p-34, -0x1.5f95004aace39p-29,
     0x1.703f90c558f0dp-24, -0x1.7d27ed27ebfa3p-19, 0x1.85b3fce615198p-14, -0x1.896806e08e45dp-9,
     0x1.87efff770a69ap-4, 0.0, 0.0, 0.0},
};

/* Lane mask of the first n (< 4 or more) of 4 doubles. */
A2 INL __m256i actd2_tail(int64_t n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

A2 INL __m256d actd2_abs(__m256d x)
{
    return _mm256_andnot_pd(_mm256_set1_pd(-0.0), x);
}

/* Phi(z) and, through *pdf, phi(z) (activation_avx512.c's actd_cdf):
 * q = erfc(|z| / sqrt 2) / 2 = exp(-z^2 / 2) erfcx(|z| / sqrt 2) / 2,
 * Phi = q for z < 0, 1 - q for z >= 0; |z| / sqrt 2 >= 6: q = 0. The
 * interval index is taken mod 16 (what the AVX-512 permute reads), so a
 * NaN or huge |z| reads inside the table; those lanes are NaN or masked. */
A2 INL __m256d actd2_cdf(__m256d z, __m256d *pdf)
{
    __m256d e = pt_exp_pd_avx2(_mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(-0.5), z), z));
    __m256d x = _mm256_mul_pd(actd2_abs(z), _mm256_set1_pd(K_SQRT1_2));
    __m256d s = _mm256_mul_pd(x, _mm256_set1_pd(8.0 / 3.0));
    __m256d fi = _mm256_floor_pd(s);
    int32_t iv[4];
    _mm_storeu_si128((__m128i *)iv, _mm_and_si128(_mm256_cvttpd_epi32(fi), _mm_set1_epi32(15)));
    const double *t0 = ERFCX_T[iv[0]], *t1 = ERFCX_T[iv[1]], *t2 = ERFCX_T[iv[2]],
                 *t3 = ERFCX_T[iv[3]];
    __m256d u = _mm256_fmsub_pd(s, _mm256_set1_pd(2.0),
                                _mm256_fmadd_pd(fi, _mm256_set1_pd(2.0), _mm256_set1_pd(1.0)));
    /* Coefficients j and j + 1 of the four lanes' intervals: two 128-bit
     * loads per 256-bit register (lanes 0, 2 and 1, 3), one unpack each. */
    __m256d a = _mm256_loadu2_m128d(t2, t0), b = _mm256_loadu2_m128d(t3, t1);
    __m256d r = _mm256_unpacklo_pd(a, b);
    r = _mm256_fmadd_pd(r, u, _mm256_unpackhi_pd(a, b));
    for (int j = 2; j < 13; j += 2) {
        a = _mm256_loadu2_m128d(t2 + j, t0 + j);
        b = _mm256_loadu2_m128d(t3 + j, t1 + j);
        r = _mm256_fmadd_pd(r, u, _mm256_unpacklo_pd(a, b));
        if (j + 1 < 13) r = _mm256_fmadd_pd(r, u, _mm256_unpackhi_pd(a, b));
    }
    __m256d near = _mm256_cmp_pd(x, _mm256_set1_pd(6.0), _CMP_NGE_UQ);   /* or NaN */
    __m256d q = _mm256_and_pd(near, _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(0.5), e), r));
    *pdf = _mm256_mul_pd(_mm256_set1_pd(K_INV_SQRT_2PI), e);
    __m256d neg = _mm256_cmp_pd(z, _mm256_setzero_pd(), _CMP_LT_OQ);
    return _mm256_blendv_pd(_mm256_sub_pd(_mm256_set1_pd(1.0), q), q, neg);
}

/* 1 + tanh(u) and, through *omt2, 1 - tanh(u)^2, u = k0 (z + k1 z^3) as
 * the portable row computes it (no FMA) (activation_avx512.c's
 * actd_tanh_parts). */
A2 INL __m256d actd2_tanh_parts(__m256d z, __m256d *omt2)
{
    __m256d c = _mm256_mul_pd(_mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(K_GELU_C), z), z), z);
    __m256d w = _mm256_mul_pd(_mm256_set1_pd(K_SQRT_2_PI), _mm256_add_pd(z, c));
    __m256d e = pt_exp_pd_avx2(_mm256_mul_pd(_mm256_set1_pd(-2.0), actd2_abs(w)));
    __m256d d = _mm256_div_pd(_mm256_set1_pd(1.0), _mm256_add_pd(_mm256_set1_pd(1.0), e));
    *omt2 = _mm256_mul_pd(_mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(4.0), e), d), d);
    __m256d neg = _mm256_cmp_pd(w, _mm256_setzero_pd(), _CMP_LT_OQ);
    __m256d two = _mm256_set1_pd(2.0);
    return _mm256_mul_pd(_mm256_blendv_pd(two, _mm256_mul_pd(two, e), neg), d);
}

A2 INL __m256d actd2_gelu(__m256d z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) {
        __m256d pdf;
        return _mm256_mul_pd(z, actd2_cdf(z, &pdf));
    }
    __m256d omt2, opt = actd2_tanh_parts(z, &omt2);
    return _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(0.5), z), opt);
}

/* dy a'(z): dy (Phi + z phi); dy 0.5 (1 + t + (z (1 - t^2)) du),
 * du = k0 (1 + 3 k1 z^2). */
A2 INL __m256d actd2_gelu_grad(__m256d dy, __m256d z, int kind)
{
    if (kind == PT_ACT_GELU_ERF) {
        __m256d pdf, cdf = actd2_cdf(z, &pdf);
        return _mm256_mul_pd(dy, _mm256_fmadd_pd(z, pdf, cdf));
    }
    __m256d omt2, opt = actd2_tanh_parts(z, &omt2);
    __m256d z2 = _mm256_mul_pd(z, z);
    __m256d du = _mm256_mul_pd(_mm256_set1_pd(K_SQRT_2_PI),
                               _mm256_fmadd_pd(_mm256_set1_pd(3 * K_GELU_C), z2,
                                               _mm256_set1_pd(1.0)));
    __m256d s = _mm256_fmadd_pd(_mm256_mul_pd(z, omt2), du, opt);
    return _mm256_mul_pd(_mm256_mul_pd(dy, _mm256_set1_pd(0.5)), s);
}

/* z = x + bias over 4 lanes from c (z = x without a bias). */
A2 INL __m256d actd2_z(const double *x, const double *bias, int64_t c)
{
    __m256d z = _mm256_loadu_pd(x + c);
    return bias ? _mm256_add_pd(z, _mm256_loadu_pd(bias + c)) : z;
}

/* One row segment of the forward; bias may be NULL (z = x): actd2_gelu_row
 * passes it as a constant, so each case has its own loop. */
A2 INL void actd2_gelu_row_body(double *y, const double *x, const double *bias, int64_t n,
                                int kind)
{
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {   /* two independent chains per step */
        __m256d z0 = actd2_z(x, bias, c), z1 = actd2_z(x, bias, c + 4);
        _mm256_storeu_pd(y + c, actd2_gelu(z0, kind));
        _mm256_storeu_pd(y + c + 4, actd2_gelu(z1, kind));
    }
    for (; c < n; c += 4) {
        __m256i m = actd2_tail(n - c);
        __m256d z = _mm256_maskload_pd(x + c, m);
        if (bias) z = _mm256_add_pd(z, _mm256_maskload_pd(bias + c, m));
        _mm256_maskstore_pd(y + c, m, actd2_gelu(z, kind));
    }
}
A2 static void actd2_gelu_row(double *y, const double *x, const double *bias, int64_t n,
                              int kind)
{
    if (bias)
        actd2_gelu_row_body(y, x, bias, n, kind);
    else
        actd2_gelu_row_body(y, x, NULL, n, kind);
}

/* dx += g (dx = g when !acc) and p += g in the lanes m selects; dx or p
 * may be NULL. */
A2 INL void actd2_acc(double *dx, double *p, __m256d g, __m256i m, int acc)
{
    if (dx)
        _mm256_maskstore_pd(dx, m, acc ? _mm256_add_pd(_mm256_maskload_pd(dx, m), g) : g);
    if (p) _mm256_maskstore_pd(p, m, _mm256_add_pd(_mm256_maskload_pd(p, m), g));
}

A2 static void actd2_gelu_grad_acc_row(double *dx, double *p, const double *dy,
                                       const double *x, const double *bias, int64_t n,
                                       int kind, int acc)
{
    const __m256i all = _mm256_set1_epi64x(-1);
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256d z0 = _mm256_add_pd(_mm256_loadu_pd(x + c), _mm256_loadu_pd(bias + c));
        __m256d z1 = _mm256_add_pd(_mm256_loadu_pd(x + c + 4), _mm256_loadu_pd(bias + c + 4));
        __m256d g0 = actd2_gelu_grad(_mm256_loadu_pd(dy + c), z0, kind);
        __m256d g1 = actd2_gelu_grad(_mm256_loadu_pd(dy + c + 4), z1, kind);
        actd2_acc(dx ? dx + c : NULL, p ? p + c : NULL, g0, all, acc);
        actd2_acc(dx ? dx + c + 4 : NULL, p ? p + c + 4 : NULL, g1, all, acc);
    }
    for (; c < n; c += 4) {
        __m256i m = actd2_tail(n - c);
        __m256d z = _mm256_add_pd(_mm256_maskload_pd(x + c, m), _mm256_maskload_pd(bias + c, m));
        actd2_acc(dx ? dx + c : NULL, p ? p + c : NULL,
                  actd2_gelu_grad(_mm256_maskload_pd(dy + c, m), z, kind), m, acc);
    }
}

/* actd2_gelu_grad_acc_row for dx lying just above x (pt_alias.h): the
 * whole blocks of four vectors, the x of each block loaded before the
 * stores of the block before it; the rest of the row as there. Each
 * element is computed as there. */
A2 static void actd2_gelu_grad_acc_row_ahead(double *dx, double *p, const double *dy,
                                             const double *x, const double *bias, int64_t n,
                                             int kind, int acc)
{
    const __m256i all = _mm256_set1_epi64x(-1);
    int64_t nb = n - n % 16;
    if (nb) {
        __m256d z[4], zn[4];
        for (int j = 0; j < 4; j++) {
            z[j] = _mm256_add_pd(_mm256_loadu_pd(x + 4 * j), _mm256_loadu_pd(bias + 4 * j));
            zn[j] = _mm256_setzero_pd();
        }
        for (int64_t c = 0; c < nb; c += 16) {
            if (c + 16 < nb)
                for (int j = 0; j < 4; j++)
                    zn[j] = _mm256_add_pd(_mm256_loadu_pd(x + c + 16 + 4 * j),
                                          _mm256_loadu_pd(bias + c + 16 + 4 * j));
            for (int j = 0; j < 4; j++) {
                int64_t o = c + 4 * j;
                actd2_acc(dx ? dx + o : NULL, p ? p + o : NULL,
                          actd2_gelu_grad(_mm256_loadu_pd(dy + o), z[j], kind), all, acc);
            }
            for (int j = 0; j < 4; j++) z[j] = zn[j];
        }
    }
    if (nb < n)
        actd2_gelu_grad_acc_row(dx ? dx + nb : NULL, p ? p + nb : NULL, dy + nb, x + nb,
                                bias + nb, n - nb, kind, acc);
}

/* The row slot: the GELU kinds here, the others (memory bound) the
 * portable ones. */
A2 static void act_row_avx2_f64(double *y, const double *x, const double *bias, int64_t c0,
                                int64_t c1, int kind)
{
    if (kind < PT_ACT_GELU_ERF) {
        pt_act_portable_f64.row(y, x, bias, c0, c1, kind);
        return;
    }
    actd2_gelu_row(y + c0, x + c0, bias ? bias + c0 : NULL, c1 - c0, kind);
}

/* The grad_tile slot: the GELU kinds here (g fused into the sums: dbias
 * partials per column in row order, as the portable tile), the others the
 * portable ones. */
A2 static void act_grad_tile_avx2_f64(double *g, double *p, double *dx, const double *dy,
                                      const double *x, const double *bias, int64_t C,
                                      int64_t n0, int64_t n1, int64_t c0, int64_t c1,
                                      int kind, int acc)
{
    if (kind < PT_ACT_GELU_ERF) {
        pt_act_portable_f64.grad_tile(g, p, dx, dy, x, bias, C, n0, n1, c0, c1, kind, acc);
        return;
    }
    if (p) memset(p + c0, 0, (size_t)(c1 - c0) * sizeof(double));
    int ahead = dx && pt_store_close_above(dx, x);
    for (int64_t n = n0; n < n1; n++) {
        if (ahead)
            actd2_gelu_grad_acc_row_ahead(dx + n * C + c0, p ? p + c0 : NULL, dy + n * C + c0,
                                          x + n * C + c0, bias + c0, c1 - c0, kind, acc);
        else
            actd2_gelu_grad_acc_row(dx ? dx + n * C + c0 : NULL, p ? p + c0 : NULL,
                                    dy + n * C + c0, x + n * C + c0, bias + c0, c1 - c0, kind,
                                    acc);
    }
}

const struct pt_act_kernels_f64 pt_act_avx2_f64 = {
    "avx2", act_row_avx2_f64, act_grad_tile_avx2_f64
};
#else
typedef int PT_SFX(pt_activation_avx2_f64_unused);
#endif /* PT_X86 && PT_DTYPE == 64 */
