/*
 * pt_exp2f_x86.h -- the float32 exp of the x86 vector paths (the attention
 * tiles, the decode slot, GELU), AVX-512 (16 lanes) and AVX2 (8 lanes)
 * twins (internal; header-only). Include inside an x86 guard; call from
 * code compiled for the function's target.
 *
 * pt_exp2f_neg_*(t) = 2^t for t <= 0 (at most a rounding error above 0):
 * k = round(t), f = t - k in [-1/2, 1/2] (exact), 2^f by a degree-5
 * polynomial with p(0) = 1 exactly (minimax for the relative error on
 * [-1/2, 1/2]: 8.1e-8), times 2^k. A caller of exp(x) folds log2(e) into
 * the constant that forms x where it can (GELU: -z^2/2 as
 * (-log2(e)/2 z) z). pt_expf_diff_*(s, b) = exp(s - b) for s <= b (an
 * attention score less its row max or log-sum-exp) as 2^((s - b) log2 e).
 * csrc/tests/test_exp2f.c measures 2^t within 2.2 ulp, and exp(s - b)
 * within 2.2e-7 relative for s - b in [-1, 0] and 2.0e-6 in [-20, 0] (the
 * roundings of s - b and t grow with |t|; pt_expf's Cody-Waite form,
 * vectorised, of s - b measured the same way: 9.3e-8 and 1.0e-6). Lanes
 * with t below PT_EXP2F_LO give +0 (exp(-inf) = 0 exactly, which
 * attention's masked keys rely on; the bound is pt_expf's -86.98 times
 * log2(e), so that the vector paths' tails end where the portable ones'
 * do); the others have k in [-125, 0], so p 2^k is a
 * normal float. NaN passes.
 *
 * Why not pt_expf's form (pt_expf.h, the portable paths' exp): its
 * reduction by ln 2 in two parts and its degree-7 form take 14 vector
 * operations, these 9 (AVX-512) or 13 (AVX2), on the two ports FMAs use;
 * the exp is the largest cost of attention besides the products, and most
 * of GELU's.
 *
 * The twins compute the same f and k and then do the same operations in
 * the same order, so each lane's result is the same bits. AVX-512 takes f
 * = t - round(t) by one vreduceps (round to nearest even: the difference
 * is exact, so it is the f AVX2 forms) and k = t - f (exact), applies 2^k
 * by scalef and clears the lanes below the range by its zero mask: cmp,
 * reduce, sub, 5 FMA, scalef (k by vrndscaleps and f = t - k, as many
 * operations, ran as slowly as the 1.5 * 2^23 rounding). AVX2 rounds by adding and subtracting
 * 1.5 * 2^23, builds 2^k in the exponent field from the rounding's
 * integer, multiplies (exact, as scalef, for the k kept) and clears those
 * lanes by an AND. (A floor form, f = t - floor(t) in [0, 1) by one
 * vreduceps and scalef(p, t), saves the sub, but vreduceps rounds that
 * difference down, inexact for t in (-1, 0), which AVX2 cannot repeat at
 * its present cost.) Above the contract the twins differ: from t = 127.5
 * (AVX2's exponent field overflows) and at t = +inf (AVX-512 +inf, AVX2
 * NaN).
 */
#ifndef PT_EXP2F_X86_H
#define PT_EXP2F_X86_H
#include <immintrin.h>

#define PT_LOG2E 1.44269504088896340736     /* log2(e): exp(x) = 2^(x log2 e) */
#define PT_LOG2E_F 1.44269504088896341f
#define PT_EXP2F_LO (-125.4856f)     /* -86.98 log2(e): below it, 2^t = +0 */

__attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
static inline __m512 pt_exp2f_neg_avx512(__m512 t)
{
    __mmask16 in = _mm512_cmp_ps_mask(t, _mm512_set1_ps(PT_EXP2F_LO), _CMP_NLT_UQ);
    __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 k = _mm512_sub_ps(t, f);                               /* round(t) */
    __m512 p = _mm512_set1_ps(1.327463309e-03f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.671961889e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550678447e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402223498e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931470633e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(in, p, k);
}

__attribute__((always_inline, target("avx2,fma")))
static inline __m256 pt_exp2f_neg_avx2(__m256 t)
{
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 below = _mm256_cmp_ps(t, _mm256_set1_ps(PT_EXP2F_LO), _CMP_LT_OQ);
    __m256 kb = _mm256_add_ps(t, magic);      /* round(t) in the low mantissa bits */
    __m256 f = _mm256_sub_ps(t, _mm256_sub_ps(kb, magic));
    __m256 p = _mm256_set1_ps(1.327463309e-03f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.671961889e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550678447e-02f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402223498e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931470633e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i two = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_castps_si256(kb), _mm256_set1_epi32(127 - 0x4B400000)), 23);
    return _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(two)));
}

/* exp(d) for d <= 0 (up to a rounding error above): 2^(d log2(e)); and
 * exp(s - b) for s <= b as exp(d) of d = s - b rounded, the form every
 * attention kernel uses, so the twins agree bit for bit (a caller that
 * forms s - b otherwise, in one FMA, must round it the same). */
__attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
static inline __m512 pt_expf_neg_avx512(__m512 d)
{
    return pt_exp2f_neg_avx512(_mm512_mul_ps(d, _mm512_set1_ps(PT_LOG2E_F)));
}

__attribute__((always_inline, target("avx2,fma")))
static inline __m256 pt_expf_neg_avx2(__m256 d)
{
    return pt_exp2f_neg_avx2(_mm256_mul_ps(d, _mm256_set1_ps(PT_LOG2E_F)));
}

__attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
static inline __m512 pt_expf_diff_avx512(__m512 s, __m512 b)
{
    return pt_expf_neg_avx512(_mm512_sub_ps(s, b));
}

__attribute__((always_inline, target("avx2,fma")))
static inline __m256 pt_expf_diff_avx2(__m256 s, __m256 b)
{
    return pt_expf_neg_avx2(_mm256_sub_ps(s, b));
}

#endif /* PT_EXP2F_X86_H */
