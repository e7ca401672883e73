/*
 * softmax_avx2_f64.c -- the float64 softmax / log_softmax and cross-entropy
 * rows of softmax.c with AVX2 + FMA intrinsics (see softmax.c for the
 * formulas and the special values): pt_sm_avx2fma_f64, the dispatch
 * table's float64 avx2 entry.
 *
 * The operations of softmax_avx512.c's float64 rows, 4 lanes wide:
 *   - the row max is the integer max over the order-preserving keys of the
 *     double bits (exact, so its order does not matter; AVX2 has no 64-bit
 *     max or arithmetic shift: compare and blend, and the sign mask from a
 *     compare with 0);
 *   - exp is pt_exp_pd_avx2 (pt_exp_f64_avx2.h), bitwise pt_exp_pd_avx512;
 *   - sums go into the LANES = 16 double lanes of pt_lanes.h (lane k takes
 *     the elements c = k mod 16: four 4-double accumulators hold lanes
 *     0-3, 4-7, 8-11, 12-15), combined by lane_sum; a row tail uses masked
 *     loads and adds +0 in the lanes past the end (a lane's sum is a sum of
 *     exps, >= +0, or the sum of x, where only the sign of a zero could
 *     change and lse - sum / C does not see it), so a tail element goes to
 *     the lane the portable loop gives it;
 *   - full vectors use plain loads and stores, the masked forms are for the
 *     tail only (masked stores are slow on AMD Zen).
 * So every row is bitwise the AVX-512 one (tests/test_avx2_f64_rows.py
 * checks it), and within the tolerance that file and
 * tests/test_avx512_rows.py state of the portable rows, which call libm's
 * exp. The log_softmax backward (an exp per element) is vectorised, its sum
 * of dy in softmax.c's sum_d order; the softmax backward (a dot and an
 * axpy, no exp) is softmax.c's AVX2 build (pt_sm_avx2_f64), which keeps the
 * portable rows compiled for AVX2 without FMA.
 */
#include "pt_real.h"
#include <string.h>
#include "pt_dispatch.h"

#if PT_X86 && PT_DTYPE == 64
#include <immintrin.h>
#include "pt_lanes.h"   /* LANES, lane_sum */
#include "pt_exp_f64_avx2.h"

#define A2 __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline))

enum { ROW_FINITE, ROW_EMPTY, ROW_NAN };
enum { SE_STORE = 1, SE_SUMX = 2 };

/* Lane mask of the first n (< 4 or more) of 4 doubles. */
A2 INL __m256i smd2_tail(int64_t n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* Order-preserving integer keys of doubles (softmax.c's key_of). */
A2 INL __m256i smd2_keys(__m256i k)
{
    __m256i neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), k);
    return _mm256_xor_si256(k, _mm256_srli_epi64(neg, 1));
}

A2 INL __m256i smd2_max(__m256i a, __m256i b)
{
    return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a));
}

/* m = max_c x[c] (C >= 1) and what it says about the row (softmax.c's
 * row_max). */
A2 static int smd2_row_max(const double *x, int64_t C, double *m_out)
{
    const __m256i kmin = _mm256_set1_epi64x(INT64_MIN);
    __m256i k0 = kmin, k1 = kmin, k2 = kmin, k3 = kmin;
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
        k0 = smd2_max(k0, smd2_keys(_mm256_loadu_si256((const __m256i *)(x + c))));
        k1 = smd2_max(k1, smd2_keys(_mm256_loadu_si256((const __m256i *)(x + c + 4))));
        k2 = smd2_max(k2, smd2_keys(_mm256_loadu_si256((const __m256i *)(x + c + 8))));
        k3 = smd2_max(k3, smd2_keys(_mm256_loadu_si256((const __m256i *)(x + c + 12))));
    }
    for (; c < C; c += 4) {
        __m256i m = smd2_tail(C - c);
        __m256i k = smd2_keys(_mm256_maskload_epi64((const long long *)(x + c), m));
        k0 = smd2_max(k0, _mm256_blendv_epi8(kmin, k, m));
    }
    int64_t kv[4];
    _mm256_storeu_si256((__m256i *)kv, smd2_max(smd2_max(k0, k1), smd2_max(k2, k3)));
    int64_t km = kv[0];
    for (int i = 1; i < 4; i++) km = kv[i] > km ? kv[i] : km;
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

A2 INL double smd2_acc_sum(const __m256d acc[4])
{
    double a[LANES];
    for (int j = 0; j < 4; j++) _mm256_storeu_pd(a + 4 * j, acc[j]);
    return lane_sum_f64(a);
}

/* s = sum_c exp(x[c] - m) in the 16 double lanes (acc[j]: lanes 4j to
 * 4j + 3), and what `what` asks (a constant at every call). */
A2 INL double smd2_row_sumexp(int what, double *e, double *sx, const double *x, double m,
                              int64_t C)
{
    __m256d acc[4], accx[4];
    for (int j = 0; j < 4; j++) acc[j] = accx[j] = _mm256_setzero_pd();
    __m256d vm = _mm256_set1_pd(m);
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
        /* In the cross-entropy backward this is the first read of the row
         * from memory (elsewhere a max pass has read it), with an exp's
         * work per 32 bytes between loads: the lines 1 KB ahead are
         * requested early (inside the row only: no pointer past its end). */
        if (c + 144 <= C) {
            _mm_prefetch((const char *)(x + c + 128), _MM_HINT_T0);
            _mm_prefetch((const char *)(x + c + 136), _MM_HINT_T0);
        }
        for (int j = 0; j < 4; j++) {
            __m256d xv = _mm256_loadu_pd(x + c + 4 * j);
            __m256d ev = pt_exp_pd_avx2(_mm256_sub_pd(xv, vm));
            if (what & SE_STORE) _mm256_storeu_pd(e + c + 4 * j, ev);
            acc[j] = _mm256_add_pd(acc[j], ev);
            if (what & SE_SUMX) accx[j] = _mm256_add_pd(accx[j], xv);
        }
    }
    for (int j = 0; j < 4 && c + 4 * j < C; j++) {
        __m256i k = smd2_tail(C - c - 4 * j);
        __m256d kd = _mm256_castsi256_pd(k);
        __m256d xv = _mm256_maskload_pd(x + c + 4 * j, k);
        __m256d ev = _mm256_and_pd(kd, pt_exp_pd_avx2(_mm256_sub_pd(xv, vm)));
        if (what & SE_STORE) _mm256_maskstore_pd(e + c + 4 * j, k, ev);
        acc[j] = _mm256_add_pd(acc[j], ev);
        if (what & SE_SUMX) accx[j] = _mm256_add_pd(accx[j], xv);
    }
    if (what & SE_SUMX) *sx = smd2_acc_sum(accx);
    return smd2_acc_sum(acc);
}

A2 static void softmax_row_avx2_f64(double *yr, const double *xr, int64_t C, int want_log)
{
    double m;
    int kind = smd2_row_max(xr, C, &m);
    if (kind != ROW_FINITE) {
        double v = kind == ROW_NAN ? NAN : want_log ? -INFINITY : 0;
        for (int64_t c = 0; c < C; c++) yr[c] = v;
    } else if (want_log) {
        __m256d vm = _mm256_set1_pd(m);
        __m256d lg = _mm256_set1_pd(log(smd2_row_sumexp(0, NULL, NULL, xr, m, C)));
        int64_t c = 0;                             /* y = (x - m) - lg */
        for (; c + 4 <= C; c += 4)
            _mm256_storeu_pd(yr + c,
                             _mm256_sub_pd(_mm256_sub_pd(_mm256_loadu_pd(xr + c), vm), lg));
        if (c < C) {
            __m256i k = smd2_tail(C - c);
            __m256d v = _mm256_sub_pd(_mm256_maskload_pd(xr + c, k), vm);
            _mm256_maskstore_pd(yr + c, k, _mm256_sub_pd(v, lg));
        }
    } else {
        __m256d inv = _mm256_set1_pd(1.0 / smd2_row_sumexp(SE_STORE, yr, NULL, xr, m, C));
        int64_t c = 0;
        for (; c + 4 <= C; c += 4)
            _mm256_storeu_pd(yr + c, _mm256_mul_pd(_mm256_loadu_pd(yr + c), inv));
        if (c < C) {
            __m256i k = smd2_tail(C - c);
            _mm256_maskstore_pd(yr + c, k, _mm256_mul_pd(_mm256_maskload_pd(yr + c, k), inv));
        }
    }
}

A2 static void ce_fwd_row_avx2_f64(double *loss_out, double *lse_out, const double *xr,
                                   int64_t t, int64_t C, int64_t ignore_index, double ls)
{
    double l, sx = 0;
    int want_sx = loss_out && ls != 0 && t != ignore_index;
    double m;
    int kind = C == 0 ? ROW_EMPTY : smd2_row_max(xr, C, &m);
    if (kind == ROW_FINITE)
        l = m + log(want_sx ? smd2_row_sumexp(SE_SUMX, NULL, &sx, xr, m, C)
                            : smd2_row_sumexp(0, NULL, NULL, xr, m, C));
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

A2 static void ce_bwd_row_avx2_f64(double *dr, double *p, const double *xr, double l, double g,
                                   double off, double on, int64_t t, int64_t C, int acc)
{
    __m256d vg = _mm256_set1_pd(g), voff = _mm256_set1_pd(off);
    if (l == -INFINITY) {
        __m256d d = _mm256_mul_pd(vg, voff);              /* dr -= g * off */
        int64_t c = 0;
        for (; c + 4 <= C; c += 4) {
            __m256d r = acc ? _mm256_loadu_pd(dr + c) : _mm256_setzero_pd();
            _mm256_storeu_pd(dr + c, _mm256_sub_pd(r, d));
        }
        if (c < C) {
            __m256i k = smd2_tail(C - c);
            __m256d r = acc ? _mm256_maskload_pd(dr + c, k) : _mm256_setzero_pd();
            _mm256_maskstore_pd(dr + c, k, _mm256_sub_pd(r, d));
        }
    } else {
        __m256d inv = _mm256_set1_pd(1.0 / smd2_row_sumexp(SE_STORE, p, NULL, xr, l, C));
        int64_t c = 0;                                 /* dr += g * (p * inv - off) */
        for (; c + 4 <= C; c += 4) {
            __m256d q = _mm256_sub_pd(_mm256_mul_pd(_mm256_loadu_pd(p + c), inv), voff);
            __m256d d = _mm256_mul_pd(vg, q);
            _mm256_storeu_pd(dr + c, acc ? _mm256_add_pd(_mm256_loadu_pd(dr + c), d) : d);
        }
        if (c < C) {
            __m256i k = smd2_tail(C - c);
            __m256d q = _mm256_sub_pd(_mm256_mul_pd(_mm256_maskload_pd(p + c, k), inv), voff);
            __m256d d = _mm256_mul_pd(vg, q);
            _mm256_maskstore_pd(dr + c, k,
                                acc ? _mm256_add_pd(_mm256_maskload_pd(dr + c, k), d) : d);
        }
    }
    dr[t] -= g * on;
}

/* One row of the softmax backward. log_softmax: dx = dy - exp(y) s with
 * s = sum_c dy[c] in softmax.c's sum_d order (four partials, lane c mod 4,
 * the tail into the first; then (s0 + s1) + (s2 + s3)), the exp
 * vectorised. softmax (no exp): softmax.c's AVX2 row. */
A2 static void softmax_bwd_row_avx2_f64(double *dxr, const double *dyr, const double *yr,
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
    __m256d vs = _mm256_set1_pd((sp[0] + sp[1]) + (sp[2] + sp[3]));
    for (c = 0; c + 4 <= C; c += 4) {
        __m256d e = pt_exp_pd_avx2(_mm256_loadu_pd(yr + c));
        __m256d v = _mm256_sub_pd(_mm256_loadu_pd(dyr + c), _mm256_mul_pd(e, vs));
        _mm256_storeu_pd(dxr + c, acc ? _mm256_add_pd(_mm256_loadu_pd(dxr + c), v) : v);
    }
    if (c < C) {
        __m256i k = smd2_tail(C - c);
        __m256d e = pt_exp_pd_avx2(_mm256_maskload_pd(yr + c, k));
        __m256d v = _mm256_sub_pd(_mm256_maskload_pd(dyr + c, k), _mm256_mul_pd(e, vs));
        _mm256_maskstore_pd(dxr + c, k,
                            acc ? _mm256_add_pd(_mm256_maskload_pd(dxr + c, k), v) : v);
    }
}

const struct pt_sm_kernels_f64 pt_sm_avx2fma_f64 = {
    "avx2", softmax_row_avx2_f64, softmax_bwd_row_avx2_f64, ce_fwd_row_avx2_f64,
    ce_bwd_row_avx2_f64, pt_sm_argmax_row_f64
};
#else
typedef int PT_SFX(pt_softmax_avx2_f64_unused);
#endif /* PT_X86 && PT_DTYPE == 64 */
