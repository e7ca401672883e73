/*
 * pt_expf_avx2.h -- pt_expf (pt_expf.h) for 8 floats at once, for x <= 0
 * (internal; header-only). Include inside an x86 guard, from code compiled
 * with __attribute__((target("avx2,fma"))).
 *
 * Every user has a non-positive argument: score - row max or score - lse in
 * attention (at most a rounding error above 0), -z^2/2 and the like in the
 * GELU forms. So there is no upper clamp: lanes below -86.98 compute
 * garbage that the final mask clears to +0 (exp(-inf) = 0 exactly, which
 * attention's masked keys rely on), and the others have k in [-125, 0], so
 * 2^k is a normal float built in the exponent field. NaN passes (the
 * ordered compare is false for it). FMA where a*b+c appears; relative error
 * about 2 ulp, as pt_expf.
 */
#ifndef PT_EXPF_AVX2_H
#define PT_EXPF_AVX2_H
#include <immintrin.h>

__attribute__((always_inline, target("avx2,fma")))
static inline __m256 pt_expf_neg_avx2(__m256 x)
{
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 below = _mm256_cmp_ps(x, _mm256_set1_ps(-86.98f), _CMP_LT_OQ);
    /* k = round(x / ln 2), r = x - k ln 2, exp(r) ~ 1 + r + r^2 P(r) */
    __m256 kb = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
    __m256 k = _mm256_sub_ps(kb, magic);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(k, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i two = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_castps_si256(kb), _mm256_set1_epi32(127 - 0x4B400000)), 23);
    return _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(two)));
}

#endif /* PT_EXPF_AVX2_H */
