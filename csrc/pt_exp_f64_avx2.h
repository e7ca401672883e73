/*
 * pt_exp_f64_avx2.h -- a float64 exp for 4 doubles at once, for the AVX2
 * row kernels (internal; header-only).
 * Include inside an x86 guard, from code compiled with
 * __attribute__((target("avx2,fma"))).
 *
 * The algorithm and the operations of pt_exp_pd_avx512
 * (pt_exp_f64_avx512.h), 4 lanes wide: k = round(x / ln 2) (the
 * 1.5 * 2^52 shifter), r = x - k ln 2 with ln 2 in two parts and FMA
 * (|r| <= ln2 / 2), exp(r) = 1 + r + r^2 P(r), P the Taylor series to
 * r^11 / 13!, the same FMAs in the same order. AVX2 has no scalef, so
 * p 2^k is (p 2^k1) 2^k2 with k2 = floor(k / 2), k1 = k - k2: both factors
 * are normal doubles for every k the clamps allow ([-1075, 1024]), the
 * first product is exact (p in [0.7, 1.42], 2^k1 >= 2^-537), so the second
 * rounds once, as scalef does, subnormal results included. The result is
 * therefore bitwise pt_exp_pd_avx512's: under 1 ulp against long double
 * exp over [-745.5, 0], subnormal results within 1 of their last unit
 * (tests/test_avx2_f64_rows.py checks both, and the bitwise agreement).
 *
 * Special values as pt_exp_pd_avx512: x < -745.2 gives +0 (exp(-inf) = 0
 * exactly: the -inf masks of softmax rely on it), x > 710 is clamped to
 * 710, whose exp overflows to +inf, NaN gives NaN (min keeps a NaN second
 * operand, the unordered compare keeps its lane).
 */
#ifndef PT_EXP_F64_AVX2_H
#define PT_EXP_F64_AVX2_H
#include <immintrin.h>

__attribute__((always_inline, target("avx2,fma")))
static inline __m256d pt_exp_pd_avx2(__m256d x)
{
    const __m256d shift = _mm256_set1_pd(6755399441055744.0);      /* 1.5 * 2^52 */
    __m256d in = _mm256_cmp_pd(x, _mm256_set1_pd(-745.2), _CMP_NLT_UQ);
    x = _mm256_min_pd(_mm256_set1_pd(710.0), x);
    __m256d kb = _mm256_fmadd_pd(x, _mm256_set1_pd(1.4426950408889634), shift);
    __m256d k = _mm256_sub_pd(kb, shift);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(0x1.62e42fefa39efp-1), x);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(0x1.abc9e3b39803fp-56), r);
    __m256d p = _mm256_set1_pd(0x1.6124613a86d09p-33);              /* 1/13! */
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.1eed8eff8d898p-29));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.ae64567f544e4p-26));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.27e4fb7789f5cp-22));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.71de3a556c734p-19));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.a01a01a01a01ap-16));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.a01a01a01a01ap-13));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.6c16c16c16c17p-10));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.1111111111111p-7));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5555555555555p-5));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5555555555555p-3));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.5));
    p = _mm256_fmadd_pd(p, _mm256_mul_pd(r, r), r);
    p = _mm256_add_pd(p, _mm256_set1_pd(1.0));
    /* p 2^k = (p 2^k1) 2^k2 with k2 = floor(k / 2), k1 = k - k2, in
     * integers: the image of kb is E + k, E = bits(1.5 * 2^52), whose low
     * 13 bits are 0; (E + k) >> 1 = E/2 + k2 and (E + k) - that = E/2 + k1,
     * so adding 1023 and shifting left by 52 leaves the exponent fields of
     * 2^k2 and 2^k1. Lanes outside `in` (and NaN lanes) compute garbage
     * that the mask or the NaN p overrides. */
    __m256i ki = _mm256_castpd_si256(kb);
    __m256i h2 = _mm256_srli_epi64(ki, 1), h1 = _mm256_sub_epi64(ki, h2);
    const __m256i bias = _mm256_set1_epi64x(1023);
    __m256d s1 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(h1, bias), 52));
    __m256d s2 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(h2, bias), 52));
    __m256d y = _mm256_mul_pd(_mm256_mul_pd(p, s1), s2);
    return _mm256_and_pd(in, y);
}

#endif /* PT_EXP_F64_AVX2_H */
