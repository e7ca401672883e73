/*
 * pt_exp_f64_avx512.h -- a float64 exp for 8 doubles at once, for the
 * row kernels (internal; header-only).
 * Include inside an x86 guard, from code compiled with the AVX-512 target
 * (pt_avx512.h: PT_TARGET_AVX512).
 *
 * k = round(x / ln 2) (the 1.5 * 2^52 shifter), r = x - k ln 2 with ln 2
 * in two parts and FMA (|r| <= ln2 / 2), exp(r) = 1 + r + r^2 P(r), P the
 * Taylor series to r^11 / 13! (truncation below 4e-18 relative), then
 * p 2^k by scalef, which rounds once, so results that go subnormal are
 * rounded once too. Measured against long double exp over [-745.5, 0]
 * (tests/test_avx512_rows.py): under 1 ulp (0.98 at most; glibc's exp
 * 0.51), subnormal results within 1 of their last unit.
 *
 * Made for the row kernels' arguments (a difference from a row max or a
 * logsumexp, minus a square: at most a rounding error above 0), and right
 * everywhere: x < -745.2 gives +0 (exp(-inf) = 0 exactly: the -inf masks
 * of softmax rely on it), x > 710 is clamped to 710, whose exp overflows
 * to +inf (exp(+inf) = +inf), NaN gives NaN (min keeps a NaN second
 * operand, the unordered compare keeps its lane).
 */
#ifndef PT_EXP_F64_AVX512_H
#define PT_EXP_F64_AVX512_H
#include <immintrin.h>

__attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
static inline __m512d pt_exp_pd_avx512(__m512d x)
{
    const __m512d shift = _mm512_set1_pd(6755399441055744.0);      /* 1.5 * 2^52 */
    __mmask8 in = _mm512_cmp_pd_mask(x, _mm512_set1_pd(-745.2), _CMP_NLT_UQ);
    x = _mm512_min_pd(_mm512_set1_pd(710.0), x);
    __m512d kb = _mm512_fmadd_pd(x, _mm512_set1_pd(1.4426950408889634), shift);
    __m512d k = _mm512_sub_pd(kb, shift);
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(0x1.62e42fefa39efp-1), x);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(0x1.abc9e3b39803fp-56), r);
    __m512d p = _mm512_set1_pd(0x1.6124613a86d09p-33);              /* 1/13! */
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.1eed8eff8d898p-29));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.ae64567f544e4p-26));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.27e4fb7789f5cp-22));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.71de3a556c734p-19));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.a01a01a01a01ap-16));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.a01a01a01a01ap-13));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.6c16c16c16c17p-10));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.1111111111111p-7));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.5555555555555p-5));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.5555555555555p-3));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.5));
    p = _mm512_fmadd_pd(p, _mm512_mul_pd(r, r), r);
    p = _mm512_add_pd(p, _mm512_set1_pd(1.0));
    return _mm512_maskz_scalef_pd(in, p, k);
}

#endif /* PT_EXP_F64_AVX512_H */
