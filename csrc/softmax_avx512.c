/*
 * softmax_avx512.c -- the softmax / log_softmax and cross-entropy rows of
 * softmax.c with AVX-512 intrinsics (see softmax.c for the formulas and
 * the special values), the dispatch table's avx512 entries pt_sm_avx512_f32
 * and pt_sm_avx512_f64.
 *
 * float32: the same operations in the same order as the portable rows, so
 * the results are bitwise theirs:
 *   - the row max is the integer max over the order-preserving keys of the
 *     float bits (exact, so its order does not matter);
 *   - exp is pt_expf (pt_expf.h) 16 lanes at a time with its bits: a*b+c
 *     as a multiply then an add (no FMA) wherever the product rounds;
 *     vectors whose lanes are all in [-86, 88] (the usual case) skip the
 *     clamps and masks, which cannot apply to them (sm_expf);
 *   - sums go into the LANES = 16 double lanes of pt_lanes.h (lane k
 *     takes the elements c = k mod 16: a 16-float vector converts to the
 *     8-double halves holding lanes 0-7 and 8-15), combined by lane_sum;
 *     row tails use masked loads and masked adds, so a tail element goes
 *     to the lane the portable loop gives it and the other lanes are not
 *     touched. The softmax backward row is the AVX2 one.
 *   - when y lies just above x modulo 1 MB (pt_alias.h), the exp pass
 *     (sm_row_sumexp) and log_softmax's y = (x - m) - lg load ahead: the
 *     same vectors in the same order; float64 likewise.
 *
 * float64: the same structure (integer max over the keys of the double
 * bits, the 16 double lanes as two 8-double vectors, the same formulas in
 * the same order), but exp is pt_exp_pd_avx512 (pt_exp_f64_avx512.h,
 * at most 2 ulp) where the portable rows call libm's exp (under 1 ulp): so
 * the results are not bitwise the portable ones; tests/test_avx512_rows.py
 * states and checks the tolerance. The log_softmax backward (an exp per
 * element) is vectorised here too, its sum of dy in the portable order;
 * the softmax backward (a dot and an axpy, no exp) is the AVX2 one.
 *
 * argmax_row: float32 16 lanes at a time, each lane keeping the first of
 * its maxima (a strict compare) and its index, and whether it saw a NaN;
 * then the least index among the lanes holding the row's maximum, or the
 * first NaN by the portable scan. Exact: the portable path's index.
 * float64's is the portable scan.
 */
#include "pt_real.h"
#include <string.h>
#include "pt_dispatch.h"

#if PT_X86 && PT_DTYPE == 32
#include "pt_avx512.h"
#include "pt_lanes.h"   /* LANES, lane_sum */
#include "pt_alias.h"

#define A512 PT_TARGET_AVX512
#define INL static inline __attribute__((always_inline))

enum { ROW_FINITE, ROW_EMPTY, ROW_NAN };
enum { SE_STORE = 1, SE_SUMX = 2 };
#define SM_AHEAD 4   /* vectors per block of the load-ahead loops */

/* pt_expf's exp(r) ~ 1 + r + r^2 P(r) for |r| <= ln 2 / 2, 16 lanes, its
 * operations in its order (no FMA). */
A512 INL __m512 sm_expf_poly(__m512 r)
{
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r),
                      _mm512_set1_ps(1.0f));
    return p;
}

/* pt_expf, 16 lanes: the same operations in the same order (the full
 * form, for vectors with a lane outside [-86, 88] or NaN). */
A512 __attribute__((noinline)) static __m512 sm_expf_full(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-86.98f), hi = _mm512_set1_ps(88.72283f);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __mmask16 below = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __mmask16 above = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
    __m512 xc = _mm512_mask_blend_ps(below, x, lo);
    xc = _mm512_mask_blend_ps(above, xc, hi);
    __m512 kb = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)), magic);
    __m512 k = _mm512_sub_ps(kb, magic);
    __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(k, _mm512_set1_ps(0.693359375f)));
    r = _mm512_add_ps(r, _mm512_mul_ps(k, _mm512_set1_ps(2.12194440e-4f)));
    __m512 p = sm_expf_poly(r);
    __m512i two = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_castps_si512(kb), _mm512_set1_epi32(126 - 0x4B400000)), 23);
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, _mm512_castsi512_ps(two)),
                             _mm512_set1_ps(2.0f));
    y = _mm512_maskz_mov_ps((__mmask16)~below, y);
    return _mm512_mask_blend_ps(above, y, _mm512_set1_ps(INFINITY));
}

/* pt_expf, 16 lanes, bitwise. When every lane is in [-86, 88] (the rows'
 * arguments x - max are <= 0; below -86 only for probabilities under
 * 1e-37), neither clamp applies and k = round(x / ln 2) is in [-124, 127],
 * so three steps give pt_expf's bits with fewer operations:
 *   - r = x - k * 0.693359375 as one fnmadd: k (|k| < 2^8) times the
 *     9-bit constant is exact, so fusing it rounds exactly as the
 *     multiply-then-subtract does (the other products are not exact and
 *     stay a multiply and an add);
 *   - p * 2^k by scalef: pt_expf's p * 2^(k-1) * 2 is exact too when
 *     2^(k-1) and the result are normal floats, as they are for k >= -124;
 *   - no clamps or masks.
 * Any other vector takes sm_expf_full. */
A512 INL __m512 sm_expf(__m512 x)
{
    __mmask16 in = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-86.0f), _CMP_GE_OQ)
                   & _mm512_cmp_ps_mask(x, _mm512_set1_ps(88.0f), _CMP_LE_OQ);
    if (__builtin_expect(in != 0xFFFF, 0)) return sm_expf_full(x);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 kb = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), magic);
    __m512 k = _mm512_sub_ps(kb, magic);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_add_ps(r, _mm512_mul_ps(k, _mm512_set1_ps(2.12194440e-4f)));
    __m512 p = sm_expf_poly(r);
    return _mm512_scalef_ps(p, k);
}

/* Order-preserving integer keys of floats (softmax.c's key_of). */
A512 INL __m512i sm_keys(__m512i k)
{
    return _mm512_xor_si512(k, _mm512_srli_epi32(_mm512_srai_epi32(k, 31), 1));
}

/* m = max_c x[c] (C >= 1) and what it says about the row (softmax.c's
 * row_max). */
A512 static int sm_row_max(const float *x, int64_t C, float *m_out)
{
    const __m512i kmin = _mm512_set1_epi32(INT32_MIN);
    __m512i k0 = kmin, k1 = kmin;
    int64_t c = 0;
    for (; c + 32 <= C; c += 32) {
        k0 = _mm512_max_epi32(k0, sm_keys(_mm512_loadu_si512(x + c)));
        k1 = _mm512_max_epi32(k1, sm_keys(_mm512_loadu_si512(x + c + 16)));
    }
    for (; c < C; c += 16) {
        __mmask16 m = Z_TAIL(C - c);
        k0 = _mm512_mask_max_epi32(k0, m, k0, sm_keys(_mm512_maskz_loadu_epi32(m, x + c)));
    }
    int32_t km = _mm512_reduce_max_epi32(_mm512_max_epi32(k0, k1));
    if (km < 0) km ^= INT32_MAX;
    float m;
    memcpy(&m, &km, sizeof m);
    *m_out = m;
    if (m != m || m == INFINITY) return ROW_NAN;
    if (m == -INFINITY) {
        for (int64_t i = 0; i < C; i++)
            if (x[i] != x[i]) return ROW_NAN;
        return ROW_EMPTY;
    }
    return ROW_FINITE;
}

/* acc (lanes 0-7, 8-15) += v in the lanes m selects. */
A512 INL void sm_acc(__m512d acc[2], __m512 v, __mmask16 m)
{
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    acc[0] = _mm512_mask_add_pd(acc[0], (__mmask8)m, acc[0], lo);
    acc[1] = _mm512_mask_add_pd(acc[1], (__mmask8)(m >> 8), acc[1], hi);
}

A512 INL double sm_acc_sum(const __m512d acc[2])
{
    double a[LANES];
    _mm512_storeu_pd(a, acc[0]);
    _mm512_storeu_pd(a + 8, acc[1]);
    return lane_sum_f32(a);
}

/* s = sum_c exp(x[c] - m) in the double lanes, and what `what` asks
 * (softmax.c's row_sumexp; `what` is a constant at every call). */
A512 INL double sm_row_sumexp(int what, float *e, double *sx, const float *x, float m,
                              int64_t C)
{
    __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    __m512d accx[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    __m512 vm = _mm512_set1_ps(m);
    int64_t c = 0;
    if ((what & SE_STORE) && pt_store_close_above(e, x)) {
        /* e just above x (pt_alias.h): whole blocks of SM_AHEAD vectors,
         * each block's x loaded before the stores of the block before it;
         * the same vectors in the same order as below */
        int64_t nb = C - C % (16 * SM_AHEAD);
        __m512 cur[SM_AHEAD], nxt[SM_AHEAD];
        for (int j = 0; j < SM_AHEAD; j++) {
            cur[j] = nb ? _mm512_loadu_ps(x + 16 * j) : _mm512_setzero_ps();
            nxt[j] = _mm512_setzero_ps();
        }
        for (; c < nb; c += 16 * SM_AHEAD) {
            if (c + 16 * SM_AHEAD < nb)
                for (int j = 0; j < SM_AHEAD; j++)
                    nxt[j] = _mm512_loadu_ps(x + c + 16 * (SM_AHEAD + j));
            for (int j = 0; j < SM_AHEAD; j++) {
                __m512 ev = sm_expf(_mm512_sub_ps(cur[j], vm));
                _mm512_storeu_ps(e + c + 16 * j, ev);
                sm_acc(acc, ev, 0xFFFF);
                if (what & SE_SUMX) sm_acc(accx, cur[j], 0xFFFF);
                cur[j] = nxt[j];
            }
        }
    }
    for (; c + 16 <= C; c += 16) {
        __m512 xv = _mm512_loadu_ps(x + c);
        __m512 ev = sm_expf(_mm512_sub_ps(xv, vm));
        if (what & SE_STORE) _mm512_storeu_ps(e + c, ev);
        sm_acc(acc, ev, 0xFFFF);
        if (what & SE_SUMX) sm_acc(accx, xv, 0xFFFF);
    }
    if (c < C) {
        __mmask16 k = Z_TAIL(C - c);
        __m512 xv = _mm512_maskz_loadu_ps(k, x + c);
        __m512 ev = sm_expf(_mm512_sub_ps(xv, vm));
        if (what & SE_STORE) _mm512_mask_storeu_ps(e + c, k, ev);
        sm_acc(acc, ev, k);
        if (what & SE_SUMX) sm_acc(accx, xv, k);
    }
    if (what & SE_SUMX) *sx = sm_acc_sum(accx);
    return sm_acc_sum(acc);
}

A512 static void softmax_row_avx512(float *yr, const float *xr, int64_t C, int want_log)
{
    float m;
    int kind = sm_row_max(xr, C, &m);
    if (kind != ROW_FINITE) {
        float v = kind == ROW_NAN ? NAN : want_log ? -INFINITY : 0;
        for (int64_t c = 0; c < C; c++) yr[c] = v;
    } else if (want_log) {
        __m512 vm = _mm512_set1_ps(m);
        __m512 lg = _mm512_set1_ps((float)log(sm_row_sumexp(0, NULL, NULL, xr, m, C)));
        int64_t c = 0;
        if (pt_store_close_above(yr, xr)) {       /* load ahead (pt_alias.h) */
            int64_t nb = C - C % (16 * SM_AHEAD);
            __m512 cur[SM_AHEAD], nxt[SM_AHEAD];
            for (int j = 0; j < SM_AHEAD; j++) {
                cur[j] = nb ? _mm512_loadu_ps(xr + 16 * j) : _mm512_setzero_ps();
                nxt[j] = _mm512_setzero_ps();
            }
            for (; c < nb; c += 16 * SM_AHEAD) {
                if (c + 16 * SM_AHEAD < nb)
                    for (int j = 0; j < SM_AHEAD; j++)
                        nxt[j] = _mm512_loadu_ps(xr + c + 16 * (SM_AHEAD + j));
                for (int j = 0; j < SM_AHEAD; j++) {
                    _mm512_storeu_ps(yr + c + 16 * j,
                                     _mm512_sub_ps(_mm512_sub_ps(cur[j], vm), lg));
                    cur[j] = nxt[j];
                }
            }
        }
        for (; c < C; c += 16) {                  /* y = (x - m) - lg */
            __mmask16 k = Z_TAIL(C - c);
            __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), vm);
            _mm512_mask_storeu_ps(yr + c, k, _mm512_sub_ps(v, lg));
        }
    } else {
        __m512 inv = _mm512_set1_ps((float)(1.0 / sm_row_sumexp(SE_STORE, yr, NULL, xr, m, C)));
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 k = Z_TAIL(C - c);
            _mm512_mask_storeu_ps(yr + c, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, yr + c), inv));
        }
    }
}

A512 static void ce_fwd_row_avx512(float *loss_out, float *lse_out, const float *xr, int64_t t,
                                   int64_t C, int64_t ignore_index, double ls)
{
    double l, sx = 0;
    int want_sx = loss_out && ls != 0 && t != ignore_index;
    float m;
    int kind = C == 0 ? ROW_EMPTY : sm_row_max(xr, C, &m);
    if (kind == ROW_FINITE)
        l = (double)m + log(want_sx ? sm_row_sumexp(SE_SUMX, NULL, &sx, xr, m, C)
                                    : sm_row_sumexp(0, NULL, NULL, xr, m, C));
    else
        l = kind == ROW_EMPTY ? -INFINITY : NAN;
    *lse_out = (float)l;
    if (!loss_out) return;
    if (t == ignore_index) {
        *loss_out = 0;
        return;
    }
    double nll = kind == ROW_EMPTY ? INFINITY : l - (double)xr[t];
    double v = (1 - ls) * nll;
    if (ls != 0) {
        double smooth = kind == ROW_EMPTY ? INFINITY : l - sx / (double)C;
        v += ls * smooth;
    }
    *loss_out = (float)v;
}

A512 static void ce_bwd_row_avx512(float *dr, float *p, const float *xr, float l, float g,
                                   float off, float on, int64_t t, int64_t C, int acc)
{
    __m512 vg = _mm512_set1_ps(g), voff = _mm512_set1_ps(off);
    if (l == -INFINITY) {
        __m512 d = _mm512_mul_ps(vg, voff);               /* dr -= g * off */
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 k = Z_TAIL(C - c);
            __m512 r = acc ? _mm512_maskz_loadu_ps(k, dr + c) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(dr + c, k, _mm512_sub_ps(r, d));
        }
    } else {
        __m512 inv = _mm512_set1_ps((float)(1.0 / sm_row_sumexp(SE_STORE, p, NULL, xr, l, C)));
        for (int64_t c = 0; c < C; c += 16) {         /* dr += g * (p * inv - off) */
            __mmask16 k = Z_TAIL(C - c);
            __m512 q = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + c), inv), voff);
            __m512 d = _mm512_mul_ps(vg, q);
            _mm512_mask_storeu_ps(dr + c, k,
                                  acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(k, dr + c), d) : d);
        }
    }
    dr[t] -= g * on;
}
/* The softmax backward row is a dot product and an axpy, memory bound:
 * the AVX2 one. */
static void softmax_bwd_row_avx2(float *dxr, const float *dyr, const float *yr, int64_t C,
                                 int want_log, int acc)
{
    pt_sm_avx2_f32.softmax_bwd_row(dxr, dyr, yr, C, want_log, acc);
}

A512 static int64_t argmax_row_avx512(const float *xr, int64_t C)
{
    if (C > INT32_MAX) return pt_sm_argmax_row_f32(xr, C);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    /* lanes past C hold -inf with indices past C: never the first maximum */
    __mmask16 k = C >= 16 ? 0xFFFF : (__mmask16)((1u << C) - 1);
    __m512 best = _mm512_mask_loadu_ps(ninf, k, xr);
    __m512i at = idx;
    __mmask16 nan = _mm512_cmp_ps_mask(best, best, _CMP_UNORD_Q);
    int64_t c = 16;
    for (; c + 16 <= C; c += 16) {
        __m512 v = _mm512_loadu_ps(xr + c);
        idx = _mm512_add_epi32(idx, step);
        __mmask16 up = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        best = _mm512_mask_mov_ps(best, up, v);
        at = _mm512_mask_mov_epi32(at, up, idx);
    }
    if (c < C) {
        k = (__mmask16)((1u << (C - c)) - 1);
        __m512 v = _mm512_mask_loadu_ps(ninf, k, xr + c);
        idx = _mm512_add_epi32(idx, step);
        __mmask16 up = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        best = _mm512_mask_mov_ps(best, up, v);
        at = _mm512_mask_mov_epi32(at, up, idx);
    }
    if (nan) return pt_sm_argmax_row_f32(xr, C);
    float m = _mm512_reduce_max_ps(best);
    __mmask16 top = _mm512_cmp_ps_mask(best, _mm512_set1_ps(m), _CMP_EQ_OQ);
    return _mm512_mask_reduce_min_epi32(top, at);
}

const struct pt_sm_kernels_f32 pt_sm_avx512_f32 = {
    "avx512", softmax_row_avx512, softmax_bwd_row_avx2, ce_fwd_row_avx512, ce_bwd_row_avx512,
    argmax_row_avx512
};
#elif PT_X86 && PT_DTYPE == 64
#include "pt_avx512.h"
#include "pt_lanes.h"   /* LANES, lane_sum */
#include "pt_exp_f64_avx512.h"
#include "pt_alias.h"

#define A512 PT_TARGET_AVX512
#define INL static inline __attribute__((always_inline))

enum { ROW_FINITE, ROW_EMPTY, ROW_NAN };
enum { SE_STORE = 1, SE_SUMX = 2 };
#define SM_AHEAD 4   /* vectors per block of the load-ahead loops */

/* Order-preserving integer keys of doubles (softmax.c's key_of). */
A512 INL __m512i smd_keys(__m512i k)
{
    return _mm512_xor_si512(k, _mm512_srli_epi64(_mm512_srai_epi64(k, 63), 1));
}

/* m = max_c x[c] (C >= 1) and what it says about the row (softmax.c's
 * row_max). */
A512 static int smd_row_max(const double *x, int64_t C, double *m_out)
{
    const __m512i kmin = _mm512_set1_epi64(INT64_MIN);
    __m512i k0 = kmin, k1 = kmin;
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
        k0 = _mm512_max_epi64(k0, smd_keys(_mm512_loadu_si512(x + c)));
        k1 = _mm512_max_epi64(k1, smd_keys(_mm512_loadu_si512(x + c + 8)));
    }
    for (; c < C; c += 8) {
        __mmask8 m = Z_TAIL(C - c);
        k0 = _mm512_mask_max_epi64(k0, m, k0, smd_keys(_mm512_maskz_loadu_epi64(m, x + c)));
    }
    int64_t km = _mm512_reduce_max_epi64(_mm512_max_epi64(k0, k1));
    if (km < 0) km ^= INT64_MAX;
    double m;
    memcpy(&m, &km, sizeof m);
    *m_out = m;
    if (m != m || m == INFINITY) return ROW_NAN;
    if (m == -INFINITY) {
        for (int64_t i = 0; i < C; i++)
            if (x[i] != x[i]) return ROW_NAN;
        return ROW_EMPTY;
    }
    return ROW_FINITE;
}

A512 INL double smd_acc_sum(const __m512d acc[2])
{
    double a[LANES];
    _mm512_storeu_pd(a, acc[0]);
    _mm512_storeu_pd(a + 8, acc[1]);
    return lane_sum_f64(a);
}

/* s = sum_c exp(x[c] - m) in the 16 double lanes (acc[0]: lanes 0-7,
 * acc[1]: 8-15), and what `what` asks (a constant at every call). */
A512 INL double smd_row_sumexp(int what, double *e, double *sx, const double *x, double m,
                               int64_t C)
{
    __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    __m512d accx[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    __m512d vm = _mm512_set1_pd(m);
    int64_t c = 0;
    if ((what & SE_STORE) && pt_store_close_above(e, x)) {
        /* e just above x (pt_alias.h): as sm_row_sumexp, the same vectors
         * into the same halves in the same order as below (SM_AHEAD even) */
        int64_t nb = C - C % (8 * SM_AHEAD);
        __m512d cur[SM_AHEAD], nxt[SM_AHEAD];
        for (int j = 0; j < SM_AHEAD; j++) {
            cur[j] = nb ? _mm512_loadu_pd(x + 8 * j) : _mm512_setzero_pd();
            nxt[j] = _mm512_setzero_pd();
        }
        for (; c < nb; c += 8 * SM_AHEAD) {
            if (c + 8 * SM_AHEAD < nb)
                for (int j = 0; j < SM_AHEAD; j++)
                    nxt[j] = _mm512_loadu_pd(x + c + 8 * (SM_AHEAD + j));
            for (int j = 0; j < SM_AHEAD; j++) {
                __m512d ev = pt_exp_pd_avx512(_mm512_sub_pd(cur[j], vm));
                _mm512_storeu_pd(e + c + 8 * j, ev);
                acc[j % 2] = _mm512_add_pd(acc[j % 2], ev);
                if (what & SE_SUMX) accx[j % 2] = _mm512_add_pd(accx[j % 2], cur[j]);
                cur[j] = nxt[j];
            }
        }
    }
    for (; c + 16 <= C; c += 16)
        for (int j = 0; j < 2; j++) {
            __m512d xv = _mm512_loadu_pd(x + c + 8 * j);
            __m512d ev = pt_exp_pd_avx512(_mm512_sub_pd(xv, vm));
            if (what & SE_STORE) _mm512_storeu_pd(e + c + 8 * j, ev);
            acc[j] = _mm512_add_pd(acc[j], ev);
            if (what & SE_SUMX) accx[j] = _mm512_add_pd(accx[j], xv);
        }
    for (int j = 0; j < 2 && c + 8 * j < C; j++) {
        __mmask8 k = Z_TAIL(C - c - 8 * j);
        __m512d xv = _mm512_maskz_loadu_pd(k, x + c + 8 * j);
        __m512d ev = pt_exp_pd_avx512(_mm512_sub_pd(xv, vm));
        if (what & SE_STORE) _mm512_mask_storeu_pd(e + c + 8 * j, k, ev);
        acc[j] = _mm512_mask_add_pd(acc[j], k, acc[j], ev);
        if (what & SE_SUMX) accx[j] = _mm512_mask_add_pd(accx[j], k, accx[j], xv);
    }
    if (what & SE_SUMX) *sx = smd_acc_sum(accx);
    return smd_acc_sum(acc);
}

A512 static void softmax_row_avx512_f64(double *yr, const double *xr, int64_t C, int want_log)
{
    double m;
    int kind = smd_row_max(xr, C, &m);
    if (kind != ROW_FINITE) {
        double v = kind == ROW_NAN ? NAN : want_log ? -INFINITY : 0;
        for (int64_t c = 0; c < C; c++) yr[c] = v;
    } else if (want_log) {
        __m512d vm = _mm512_set1_pd(m);
        __m512d lg = _mm512_set1_pd(log(smd_row_sumexp(0, NULL, NULL, xr, m, C)));
        int64_t c = 0;
        if (pt_store_close_above(yr, xr)) {       /* load ahead (pt_alias.h) */
            int64_t nb = C - C % (8 * SM_AHEAD);
            __m512d cur[SM_AHEAD], nxt[SM_AHEAD];
            for (int j = 0; j < SM_AHEAD; j++) {
                cur[j] = nb ? _mm512_loadu_pd(xr + 8 * j) : _mm512_setzero_pd();
                nxt[j] = _mm512_setzero_pd();
            }
            for (; c < nb; c += 8 * SM_AHEAD) {
                if (c + 8 * SM_AHEAD < nb)
                    for (int j = 0; j < SM_AHEAD; j++)
                        nxt[j] = _mm512_loadu_pd(xr + c + 8 * (SM_AHEAD + j));
                for (int j = 0; j < SM_AHEAD; j++) {
                    _mm512_storeu_pd(yr + c + 8 * j, _mm512_sub_pd(_mm512_sub_pd(cur[j], vm), lg));
                    cur[j] = nxt[j];
                }
            }
        }
        for (; c < C; c += 8) {                   /* y = (x - m) - lg */
            __mmask8 k = Z_TAIL(C - c);
            __m512d v = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, xr + c), vm);
            _mm512_mask_storeu_pd(yr + c, k, _mm512_sub_pd(v, lg));
        }
    } else {
        __m512d inv = _mm512_set1_pd(1.0 / smd_row_sumexp(SE_STORE, yr, NULL, xr, m, C));
        for (int64_t c = 0; c < C; c += 8) {
            __mmask8 k = Z_TAIL(C - c);
            _mm512_mask_storeu_pd(yr + c, k, _mm512_mul_pd(_mm512_maskz_loadu_pd(k, yr + c), inv));
        }
    }
}

A512 static void ce_fwd_row_avx512_f64(double *loss_out, double *lse_out, const double *xr,
                                       int64_t t, int64_t C, int64_t ignore_index, double ls)
{
    double l, sx = 0;
    int want_sx = loss_out && ls != 0 && t != ignore_index;
    double m;
    int kind = C == 0 ? ROW_EMPTY : smd_row_max(xr, C, &m);
    if (kind == ROW_FINITE)
        l = m + log(want_sx ? smd_row_sumexp(SE_SUMX, NULL, &sx, xr, m, C)
                            : smd_row_sumexp(0, NULL, NULL, xr, m, C));
    else
        l = kind == ROW_EMPTY ? -INFINITY : NAN;
    *lse_out = l;
    if (!loss_out) return;
    if (t == ignore_index) {
        *loss_out = 0;
        return;
    }
    double nll = kind == ROW_EMPTY ? INFINITY : l - xr[t];
    double v = (1 - ls) * nll;
    if (ls != 0) {
        double smooth = kind == ROW_EMPTY ? INFINITY : l - sx / (double)C;
        v += ls * smooth;
    }
    *loss_out = v;
}

A512 static void ce_bwd_row_avx512_f64(double *dr, double *p, const double *xr, double l,
                                       double g, double off, double on, int64_t t, int64_t C,
                                       int acc)
{
    __m512d vg = _mm512_set1_pd(g), voff = _mm512_set1_pd(off);
    if (l == -INFINITY) {
        __m512d d = _mm512_mul_pd(vg, voff);              /* dr -= g * off */
        for (int64_t c = 0; c < C; c += 8) {
            __mmask8 k = Z_TAIL(C - c);
            __m512d r = acc ? _mm512_maskz_loadu_pd(k, dr + c) : _mm512_setzero_pd();
            _mm512_mask_storeu_pd(dr + c, k, _mm512_sub_pd(r, d));
        }
    } else {
        __m512d inv = _mm512_set1_pd(1.0 / smd_row_sumexp(SE_STORE, p, NULL, xr, l, C));
        for (int64_t c = 0; c < C; c += 8) {          /* dr += g * (p * inv - off) */
            __mmask8 k = Z_TAIL(C - c);
            __m512d q = _mm512_sub_pd(_mm512_mul_pd(_mm512_maskz_loadu_pd(k, p + c), inv), voff);
            __m512d d = _mm512_mul_pd(vg, q);
            _mm512_mask_storeu_pd(dr + c, k,
                                  acc ? _mm512_add_pd(_mm512_maskz_loadu_pd(k, dr + c), d) : d);
        }
    }
    dr[t] -= g * on;
}

/* One row of the softmax backward. log_softmax: dx = dy - exp(y) s with
 * s = sum_c dy[c] in softmax.c's sum_d order (four partials, lane c mod 4,
 * the tail into the first; then (s0 + s1) + (s2 + s3)), the exp
 * vectorised. softmax (no exp): the AVX2 row. */
A512 static void softmax_bwd_row_avx512_f64(double *dxr, const double *dyr, const double *yr,
                                            int64_t C, int want_log, int acc)
{
    if (!want_log) {
        pt_sm_avx2_f64.softmax_bwd_row(dxr, dyr, yr, C, want_log, acc);
        return;
    }
    __m256d s4 = _mm256_setzero_pd();
    int64_t c = 0;
    for (; c + 4 <= C; c += 4) s4 = _mm256_add_pd(s4, _mm256_loadu_pd(dyr + c));
    double sp[4];
    _mm256_storeu_pd(sp, s4);
    for (; c < C; c++) sp[0] += dyr[c];
    __m512d vs = _mm512_set1_pd((sp[0] + sp[1]) + (sp[2] + sp[3]));
    for (c = 0; c < C; c += 8) {
        __mmask8 k = Z_TAIL(C - c);
        __m512d e = pt_exp_pd_avx512(_mm512_maskz_loadu_pd(k, yr + c));
        __m512d v = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, dyr + c), _mm512_mul_pd(e, vs));
        _mm512_mask_storeu_pd(dxr + c, k,
                              acc ? _mm512_add_pd(_mm512_maskz_loadu_pd(k, dxr + c), v) : v);
    }
}

const struct pt_sm_kernels_f64 pt_sm_avx512_f64 = {
    "avx512", softmax_row_avx512_f64, softmax_bwd_row_avx512_f64, ce_fwd_row_avx512_f64,
    ce_bwd_row_avx512_f64, pt_sm_argmax_row_f64
};
#else
typedef int PT_SFX(pt_softmax_avx512_unused);
#endif /* PT_X86 */
