/*
 * attention_decode_x86.c -- the AVX2 and AVX-512 `decode` slots of the
 * attention family, float32 (attention_decode.c has the driver and the
 * portable slot; float64 takes the portable one at every level). One slot
 * call is one (b, h): the scores of n keys, their softmax and the weighted
 * sum of the n values, D columns each (64 in the shipped models: 4 zmm or
 * 8 ymm of floats).
 *
 * The two slots compute every value with the same operations in the same
 * order, so they give the same bits (the AVX-512 one keeps in one zmm what
 * the AVX2 one keeps in two ymm):
 *   q.k_j  16 lanes; lane i is the FMA chain over columns c = i, i+16, ...
 *          (c < D; the missing columns of the last 16 are zeros); then
 *          f_i = lane i + lane i+8, and the dot is
 *          ((f0 + f1) + (f2 + f3)) + ((f4 + f5) + (f6 + f7)).
 *          8 keys at a time (AVX2: two groups of 4), so 8 chains run
 *          side by side and one hadd network reduces all 8.
 *   s_j    scale * dot, then + mask_j: two roundings, as the portable slot.
 *   m      the max over j, NaN ignored (exact, any order).
 *   p_j    exp(s_j - m) by pt_expf_diff_avx2 / _avx512 (pt_exp2f_x86.h:
 *          bitwise twins, as the tiled kernels' exp; -inf gives exactly 0).
 *   l      8 double lanes, lane i the sum of p_j over j = i, i+8, ... in
 *          order; then lanes i + i+4, i + i+2, and 0 + 1.
 *   out    per column two FMA chains over the keys with p_j != 0, the even
 *          and the odd j, each in key order (a masked key adds exactly
 *          nothing); then (even + odd) * (float)(1 / l). Columns run in
 *          chunks of 64 (AVX-512: 4 zmm, 2 for a last chunk of 32 or
 *          fewer) or 32 (AVX2: 4 ymm) with both chains in registers; the
 *          chunking changes no column's order.
 * Against the portable slot (libm's expf, one in-order chain per sum) the
 * results differ by rounding only: csrc/tests/test_attention_decode.c states
 * the tolerance.
 */
#include "pt_real.h"
#include "pt_dispatch.h"
#include "attention_tile.h"

#if PT_DTYPE != 64 && defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#include "pt_avx512.h"
#include "pt_exp2f_x86.h"

#define DEC_AVX2 __attribute__((always_inline, target("avx2,fma"))) static inline
#define DEC_AVX512 __attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,fma"))) \
    static inline

/* ------------------------------------------------- shared by both slots */

/* Lanes i < r set (r may be <= 0 or >= 8). */
DEC_AVX2 __m256i dec_mask8(int64_t r)
{
    int rr = r < 0 ? 0 : (r > 8 ? 8 : (int)r);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(rr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Lane j: ((fj0 + fj1) + (fj2 + fj3)) + ((fj4 + fj5) + (fj6 + fj7)). */
DEC_AVX2 __m256 dec_reduce8(const __m256 *f)
{
    __m256 h01 = _mm256_hadd_ps(f[0], f[1]), h23 = _mm256_hadd_ps(f[2], f[3]);
    __m256 h45 = _mm256_hadd_ps(f[4], f[5]), h67 = _mm256_hadd_ps(f[6], f[7]);
    __m256 g0 = _mm256_hadd_ps(h01, h23), g1 = _mm256_hadd_ps(h45, h67);
    return _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20),
                         _mm256_permute2f128_ps(g0, g1, 0x31));
}

/* s[j0 + i] = scale d_i (+ mask[j0 + i]) for i < cnt (<= 8); the running
 * max: *mv over full blocks, *mt over the last one. */
DEC_AVX2 void dec_scores(float *s, const float *mask, int64_t j0, int cnt, __m256 d,
                         float scale, __m256 *mv, float *mt)
{
    __m256 sv = _mm256_mul_ps(_mm256_set1_ps(scale), d);
    if (cnt == 8) {
        if (mask) sv = _mm256_add_ps(sv, _mm256_loadu_ps(mask + j0));
        _mm256_storeu_ps(s + j0, sv);
        *mv = _mm256_max_ps(sv, *mv);             /* NaN in sv: keeps *mv */
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, sv);
    for (int i = 0; i < cnt; i++) {
        float x = t[i];
        if (mask) x += mask[j0 + i];
        s[j0 + i] = x;
        *mt = x > *mt ? x : *mt;
    }
}

DEC_AVX2 float dec_max(__m256 mv, float mt)
{
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    float m = _mm_cvtss_f32(a);
    return mt > m ? mt : m;
}

/* The keys of block j0: key j0 + i, or the last key for i past n. */
DEC_AVX2 void dec_keys(const float **kp, const float *k, int64_t j0, int64_t n, int64_t D)
{
    for (int i = 0; i < 8; i++) kp[i] = k + (j0 + i < n ? j0 + i : n - 1) * D;
}

/* l's 4 lanes (after lanes i + i+4) to one: (0 + 2) + (1 + 3). */
DEC_AVX2 double dec_lsum(__m256d l4)
{
    __m128d a = _mm_add_pd(_mm256_castpd256_pd128(l4), _mm256_extractf128_pd(l4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(a, _mm_unpackhi_pd(a, a)));
}

/* ------------------------------------------------------------------ AVX2 */

/* Folded 16-lane dot products of q with keys kp[0..4). */
DEC_AVX2 void dec_dot4_avx2(__m256 *f, const float *q, const float *const *kp, int64_t D)
{
    __m256 l0 = _mm256_setzero_ps(), l1 = l0, l2 = l0, l3 = l0;
    __m256 h0 = l0, h1 = l0, h2 = l0, h3 = l0;
    int64_t c = 0;
    for (; c + 16 <= D; c += 16) {
        __m256 qa = _mm256_loadu_ps(q + c), qb = _mm256_loadu_ps(q + c + 8);
        l0 = _mm256_fmadd_ps(qa, _mm256_loadu_ps(kp[0] + c), l0);
        h0 = _mm256_fmadd_ps(qb, _mm256_loadu_ps(kp[0] + c + 8), h0);
        l1 = _mm256_fmadd_ps(qa, _mm256_loadu_ps(kp[1] + c), l1);
        h1 = _mm256_fmadd_ps(qb, _mm256_loadu_ps(kp[1] + c + 8), h1);
        l2 = _mm256_fmadd_ps(qa, _mm256_loadu_ps(kp[2] + c), l2);
        h2 = _mm256_fmadd_ps(qb, _mm256_loadu_ps(kp[2] + c + 8), h2);
        l3 = _mm256_fmadd_ps(qa, _mm256_loadu_ps(kp[3] + c), l3);
        h3 = _mm256_fmadd_ps(qb, _mm256_loadu_ps(kp[3] + c + 8), h3);
    }
    if (c < D) {
        __m256i ma = dec_mask8(D - c), mb = dec_mask8(D - c - 8);
        __m256 qa = _mm256_maskload_ps(q + c, ma), qb = _mm256_maskload_ps(q + c + 8, mb);
        l0 = _mm256_fmadd_ps(qa, _mm256_maskload_ps(kp[0] + c, ma), l0);
        h0 = _mm256_fmadd_ps(qb, _mm256_maskload_ps(kp[0] + c + 8, mb), h0);
        l1 = _mm256_fmadd_ps(qa, _mm256_maskload_ps(kp[1] + c, ma), l1);
        h1 = _mm256_fmadd_ps(qb, _mm256_maskload_ps(kp[1] + c + 8, mb), h1);
        l2 = _mm256_fmadd_ps(qa, _mm256_maskload_ps(kp[2] + c, ma), l2);
        h2 = _mm256_fmadd_ps(qb, _mm256_maskload_ps(kp[2] + c + 8, mb), h2);
        l3 = _mm256_fmadd_ps(qa, _mm256_maskload_ps(kp[3] + c, ma), l3);
        h3 = _mm256_fmadd_ps(qb, _mm256_maskload_ps(kp[3] + c + 8, mb), h3);
    }
    f[0] = _mm256_add_ps(l0, h0);
    f[1] = _mm256_add_ps(l1, h1);
    f[2] = _mm256_add_ps(l2, h2);
    f[3] = _mm256_add_ps(l3, h3);
}

/* One 32-column chunk of out (cols valid columns from column c0): the even
 * and odd chains over the keys with p != 0, then (even + odd) * inv. */
DEC_AVX2 void dec_pv_avx2(float *o, const float *p, const float *v, int64_t n, int64_t D,
                          int64_t c0, int64_t cols, float inv)
{
    __m256i m0 = dec_mask8(cols), m1 = dec_mask8(cols - 8), m2 = dec_mask8(cols - 16),
            m3 = dec_mask8(cols - 24);
    __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0;
    __m256 d0 = e0, d1 = e0, d2 = e0, d3 = e0;
    const float *vc = v + c0;
    int full = cols >= 32;
#define DEC_LD(x, msk) (full ? _mm256_loadu_ps(x) : _mm256_maskload_ps((x), (msk)))
#define DEC_PV(a0, a1, a2, a3, j)                                                   \
    if (p[j] != 0) {                                                                \
        __m256 pj = _mm256_set1_ps(p[j]);                                           \
        const float *vj = vc + (j) * D;                                             \
        a0 = _mm256_fmadd_ps(pj, DEC_LD(vj, m0), a0);                               \
        a1 = _mm256_fmadd_ps(pj, DEC_LD(vj + 8, m1), a1);                           \
        a2 = _mm256_fmadd_ps(pj, DEC_LD(vj + 16, m2), a2);                          \
        a3 = _mm256_fmadd_ps(pj, DEC_LD(vj + 24, m3), a3);                          \
    }
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
        DEC_PV(e0, e1, e2, e3, j)
        DEC_PV(d0, d1, d2, d3, j + 1)
    }
    if (j < n) DEC_PV(e0, e1, e2, e3, j)
#undef DEC_PV
#undef DEC_LD
    __m256 vi = _mm256_set1_ps(inv);
    float *oc = o + c0;
    __m256 r0 = _mm256_mul_ps(_mm256_add_ps(e0, d0), vi), r1 = _mm256_mul_ps(_mm256_add_ps(e1, d1), vi);
    __m256 r2 = _mm256_mul_ps(_mm256_add_ps(e2, d2), vi), r3 = _mm256_mul_ps(_mm256_add_ps(e3, d3), vi);
    if (full) {
        _mm256_storeu_ps(oc, r0);
        _mm256_storeu_ps(oc + 8, r1);
        _mm256_storeu_ps(oc + 16, r2);
        _mm256_storeu_ps(oc + 24, r3);
    } else {
        _mm256_maskstore_ps(oc, m0, r0);
        _mm256_maskstore_ps(oc + 8, m1, r1);
        _mm256_maskstore_ps(oc + 16, m2, r2);
        _mm256_maskstore_ps(oc + 24, m3, r3);
    }
}

__attribute__((target("avx2,fma")))
void att_decode_avx2_f32(float *o, float *s, const float *q, const float *k, const float *v,
                         const float *mask, int64_t n, int64_t D, float scale)
{
    __m256 mv = _mm256_set1_ps(-INFINITY);
    float mt = -INFINITY;
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
        const float *kp[8];
        __m256 f[8];
        dec_keys(kp, k, j0, n, D);
        dec_dot4_avx2(f, q, kp, D);
        dec_dot4_avx2(f + 4, q, kp + 4, D);
        dec_scores(s, mask, j0, n - j0 < 8 ? (int)(n - j0) : 8, dec_reduce8(f), scale, &mv, &mt);
    }
    float m = dec_max(mv, mt);
    if (m == -INFINITY) {              /* no visible key (or n == 0): zeros */
        for (int64_t c = 0; c < D; c++) o[c] = 0;
        return;
    }
    const __m256 sh = _mm256_set1_ps(m);
    __m256d llo = _mm256_setzero_pd(), lhi = llo;
    int64_t j = 0;
    for (; j < n; j += 8) {
        __m256i msk = dec_mask8(n - j);
        __m256 e = pt_expf_diff_avx2(_mm256_maskload_ps(s + j, msk), sh);
        e = _mm256_and_ps(e, _mm256_castsi256_ps(msk));
        _mm256_maskstore_ps(s + j, msk, e);
        llo = _mm256_add_pd(llo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        lhi = _mm256_add_pd(lhi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    float inv = (float)(1.0 / dec_lsum(_mm256_add_pd(llo, lhi)));
    for (int64_t c0 = 0; c0 < D; c0 += 32) dec_pv_avx2(o, s, v, n, D, c0, D - c0, inv);
}

/* --------------------------------------------------------------- AVX-512 */

/* Folded 16-lane dot products of q with keys kp[0..8). */
DEC_AVX512 void dec_dot8_avx512(__m256 *f, const float *q, const float *const *kp, int64_t D)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0;
    int64_t c = 0;
#define DEC_DOT8(LD)                                      \
    a0 = _mm512_fmadd_ps(qv, LD(kp[0] + c), a0);          \
    a1 = _mm512_fmadd_ps(qv, LD(kp[1] + c), a1);          \
    a2 = _mm512_fmadd_ps(qv, LD(kp[2] + c), a2);          \
    a3 = _mm512_fmadd_ps(qv, LD(kp[3] + c), a3);          \
    a4 = _mm512_fmadd_ps(qv, LD(kp[4] + c), a4);          \
    a5 = _mm512_fmadd_ps(qv, LD(kp[5] + c), a5);          \
    a6 = _mm512_fmadd_ps(qv, LD(kp[6] + c), a6);          \
    a7 = _mm512_fmadd_ps(qv, LD(kp[7] + c), a7);
    for (; c + 16 <= D; c += 16) {
        __m512 qv = _mm512_loadu_ps(q + c);
        DEC_DOT8(_mm512_loadu_ps)
    }
    if (c < D) {
        __mmask16 km = (__mmask16)((1u << (D - c)) - 1u);
#define DEC_MLD(x) _mm512_maskz_loadu_ps(km, (x))
        __m512 qv = DEC_MLD(q + c);
        DEC_DOT8(DEC_MLD)
#undef DEC_MLD
    }
#undef DEC_DOT8
#define DEC_FOLD(a) _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps((a), 1))
    f[0] = DEC_FOLD(a0); f[1] = DEC_FOLD(a1); f[2] = DEC_FOLD(a2); f[3] = DEC_FOLD(a3);
    f[4] = DEC_FOLD(a4); f[5] = DEC_FOLD(a5); f[6] = DEC_FOLD(a6); f[7] = DEC_FOLD(a7);
#undef DEC_FOLD
}

/* dec_pv_avx2 for a 64-column chunk, nv (2 or 4, a constant) vectors of
 * it: 2 when at most 32 columns are left. */
DEC_AVX512 void dec_pv_avx512(float *o, const float *p, const float *v, int64_t n, int64_t D,
                              int64_t c0, int64_t cols, float inv, const int nv)
{
    __mmask16 m0 = Z_TAIL(cols), m1 = Z_TAIL(cols - 16), m2 = Z_TAIL(cols - 32),
              m3 = Z_TAIL(cols - 48);
    __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, e3 = e0;
    __m512 d0 = e0, d1 = e0, d2 = e0, d3 = e0;
    const float *vc = v + c0;
#define DEC_PV(a0, a1, a2, a3, j)                                                   \
    if (p[j] != 0) {                                                                \
        __m512 pj = _mm512_set1_ps(p[j]);                                           \
        const float *vj = vc + (j) * D;                                             \
        a0 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m0, vj), a0);                \
        a1 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m1, vj + 16), a1);           \
        if (nv > 2) {                                                               \
            a2 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m2, vj + 32), a2);       \
            a3 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m3, vj + 48), a3);       \
        }                                                                           \
    }
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
        DEC_PV(e0, e1, e2, e3, j)
        DEC_PV(d0, d1, d2, d3, j + 1)
    }
    if (j < n) DEC_PV(e0, e1, e2, e3, j)
#undef DEC_PV
    __m512 vi = _mm512_set1_ps(inv);
    float *oc = o + c0;
    _mm512_mask_storeu_ps(oc, m0, _mm512_mul_ps(_mm512_add_ps(e0, d0), vi));
    _mm512_mask_storeu_ps(oc + 16, m1, _mm512_mul_ps(_mm512_add_ps(e1, d1), vi));
    if (nv > 2) {
        _mm512_mask_storeu_ps(oc + 32, m2, _mm512_mul_ps(_mm512_add_ps(e2, d2), vi));
        _mm512_mask_storeu_ps(oc + 48, m3, _mm512_mul_ps(_mm512_add_ps(e3, d3), vi));
    }
}

PT_TARGET_AVX512
void att_decode_avx512_f32(float *o, float *s, const float *q, const float *k, const float *v,
                           const float *mask, int64_t n, int64_t D, float scale)
{
    __m256 mv = _mm256_set1_ps(-INFINITY);
    float mt = -INFINITY;
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
        const float *kp[8];
        __m256 f[8];
        dec_keys(kp, k, j0, n, D);
        dec_dot8_avx512(f, q, kp, D);
        dec_scores(s, mask, j0, n - j0 < 8 ? (int)(n - j0) : 8, dec_reduce8(f), scale, &mv, &mt);
    }
    float m = dec_max(mv, mt);
    if (m == -INFINITY) {              /* no visible key (or n == 0): zeros */
        for (int64_t c = 0; c < D; c++) o[c] = 0;
        return;
    }
    const __m512 sh = _mm512_set1_ps(m);
    __m512d l8 = _mm512_setzero_pd();
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 msk = Z_TAIL(n - j);
        __m512 e = pt_expf_diff_avx512(_mm512_maskz_loadu_ps(msk, s + j), sh);
        e = _mm512_maskz_mov_ps(msk, e);
        _mm512_mask_storeu_ps(s + j, msk, e);
        l8 = _mm512_add_pd(l8, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        l8 = _mm512_add_pd(l8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    __m256d l4 = _mm256_add_pd(_mm512_castpd512_pd256(l8), _mm512_extractf64x4_pd(l8, 1));
    float inv = (float)(1.0 / dec_lsum(l4));
    for (int64_t c0 = 0; c0 < D; c0 += 64)
        dec_pv_avx512(o, s, v, n, D, c0, D - c0, inv, D - c0 <= 32 ? 2 : 4);
}

#endif /* float32 on x86 with GCC/Clang */
