/*
 * pt_expf_avx512.h -- pt_expf (pt_expf.h) for 16 floats at once, for
 * x <= 0 (internal; header-only). Include inside an x86 guard, from code
 * compiled with the AVX-512 target (pt_avx512.h: PT_TARGET_AVX512).
 *
 * The same contract and the same operations, in the same order, as
 * pt_expf_neg_avx2 (pt_expf_avx2.h), so each lane's result is bitwise the
 * one the AVX2 version gives: no upper clamp (every caller's argument is
 * at most a rounding error above 0); lanes below -86.98 give +0 (exp(-inf)
 * = 0 exactly, which attention's masked keys rely on), the others have k in
 * [-125, 0], so 2^k is a normal float built in the exponent field; NaN
 * passes (the ordered compare is false for it). FMA where a*b+c appears;
 * relative error about 2 ulp, as pt_expf. The differences: 2^k is applied
 * by scalef (exact, as the AVX2 multiply by 2^k built in the exponent
 * field, for every k this range gives), and the lanes below the range are
 * cleared by its zero mask instead of an AND.
 */
#ifndef PT_EXPF_AVX512_H
#define PT_EXPF_AVX512_H
#include <immintrin.h>

__attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
static inline __m512 pt_expf_neg_avx512(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __mmask16 in = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-86.98f), _CMP_NLT_UQ);
    /* k = round(x / ln 2), r = x - k ln 2, exp(r) ~ 1 + r + r^2 P(r) */
    __m512 kb = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
    __m512 k = _mm512_sub_ps(kb, magic);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(k, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    /* p 2^k, exact (a normal float for k >= -125); lanes not `in`
     * (x < -86.98): +0 */
    return _mm512_maskz_scalef_ps(in, p, k);
}

#endif /* PT_EXPF_AVX512_H */
