/*
 * softmax.c -- softmax / log_softmax over the last axis, and cross-entropy
 * fused with log_softmax; forward and backward. x is (N, C), row-major.
 *
 * Per row (m = max_c x[c], s = sum_c exp(x[c] - m), lse = m + log(s)):
 *   softmax:      y[c] = exp(x[c] - m) / s
 *   log_softmax:  y[c] = x[c] - lse
 * Subtracting the max keeps every exp argument <= 0, so rows of magnitude
 * 1e4 neither overflow nor lose the large entries.
 *
 * Special values (documented in ops/softmax.py as well):
 *   - -inf entries get probability 0 (log-probability -inf);
 *   - a row of all -inf (no finite or +inf entry) gives softmax 0 and
 *     log_softmax -inf everywhere, lse = -inf (no NaN);
 *   - any NaN in a row makes the whole row NaN (it reaches s);
 *   - a +inf entry makes the whole row NaN (inf - inf), as in PyTorch.
 *   - C == 0: nothing to compute (lse = -inf, the empty logsumexp).
 *
 * Backward (y the forward output; += or, with accumulate == 0, = : see
 * pt_kernels.h):
 *   softmax:      dx[c] += y[c] * (dy[c] - sum_k dy[k] y[k])
 *   log_softmax:  dx[c] += dy[c] - exp(y[c]) * sum_k dy[k]
 *
 * Cross-entropy with label smoothing ls (PyTorch semantics), t = target:
 *   loss = (1-ls) * (-logp[t]) + ls * mean_c(-logp[c])
 *        = lse - (1-ls) * x[t] - ls * mean_c x[c]       (the ls term only
 *          when ls != 0, so that 0 * -inf never appears)
 *   dlogits[c] += dloss * (p[c] - (1-ls) * [c == t] - ls / C),  p = softmax
 * Rows whose target equals ignore_index have loss 0 and gradient 0.
 * The backward recomputes p = exp(x - lse) and renormalises it by its sum,
 * which cancels the rounding of the saved lse (about 5e-4 absolute for
 * float32 logits of magnitude 1e4).
 *
 * Row sums are accumulated in double for both dtypes, in LANES independent
 * lanes combined in a fixed tree (as in layernorm.c); each row is handled
 * by one thread start to finish, so results do not depend on thread count.
 *
 * Speed: a row of the training step's logits (8000 classes, 32 KB) stays in
 * L1/L2 between the passes over it, so main memory sees the logits read
 * once (and dlogits read and written once); what costs is the arithmetic,
 * so every per-row loop must vectorise:
 *   - the max is an integer max over order-preserving keys of the float
 *     bits (GCC will not vectorise a float max reduction without
 *     -ffinite-math-only; an integer max it does);
 *   - exp is pt_expf, computed and summed in one lane loop;
 *   - the row functions are compiled twice on x86 (AVX2 and the SSE2
 *     baseline: two paths of the dispatch table) and both compute the same
 *     operations in the same order (no FMA contraction under -std=c99), so
 *     the results do not depend on the path.
 * Cross-entropy forward: one pass for the max, one for sum exp (and
 * sum x when smoothing). Backward: one pass computes p = exp(x - lse) into
 * a per-thread row buffer while summing it (the renormalisation above
 * needs the whole sum before any write), one writes dlogits from it.
 * Measured on (1024, 8000) float32 logits (the training step's), kernel
 * alone, best of 41 calls, 1 / 2 threads: forward 21-22 / 11.4 ms -> 11 /
 * 5.5-6.2 ms; backward 19-20 / 9.5-9.9 ms -> 10.6 / 5.6-6.9 ms. pt_expf is
 * now the limit (~0.95 ns per exp per core here, 7.7 ms for the 8.2 M).
 * Tried and dropped: software prefetch of the next row (gain within the
 * noise); summing the exps in float (the sum loop 25% faster, but lse off
 * by ~1e-6 relative).
 */
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_expf.h"
#include "pt_dispatch.h"
#include "pt_alias.h"

/* The row functions are bodies (SM_BODY, always inlined) compiled twice at
 * the end of the file: for the baseline ISA and with target("avx2"), one
 * path each of the dispatch table (pt_dispatch.h). */
#ifdef __GNUC__
#define SM_BODY static inline __attribute__((always_inline))
#else
#define SM_BODY static inline
#endif

/* Rows are independent; go parallel only when there is enough work. */
#define PT_SOFTMAX_PAR(N, C) ((N) > 1 && (N) * (C) > 32768)

/* exp of a typed value, written so that a loop of it vectorises:
 * float64 libm exp, float32 pt_expf (pt_expf.h). */
#if PT_DTYPE == 64
static inline real PT_SFX(vexp)(real x) { return exp(x); }
#else
static inline real PT_SFX(vexp)(real x) { return pt_expf(x); }
#endif

/* sum of v[0..n) in double, four interleaved partial sums (fixed order,
 * so the same for every thread count). */
static inline double PT_SFX(sum_d)(const real *v, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) {
        s0 += v[c]; s1 += v[c + 1]; s2 += v[c + 2]; s3 += v[c + 3];
    }
    for (; c < n; c++) s0 += v[c];
    return (s0 + s1) + (s2 + s3);
}

/* sum of a[c] * b[c] in double, like sum_d. */
static inline double PT_SFX(dot_d)(const real *a, const real *b, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) {
        s0 += (double)a[c] * b[c];
        s1 += (double)a[c + 1] * b[c + 1];
        s2 += (double)a[c + 2] * b[c + 2];
        s3 += (double)a[c + 3] * b[c + 3];
    }
    for (; c < n; c++) s0 += (double)a[c] * b[c];
    return (s0 + s1) + (s2 + s3);
}

#include "pt_lanes.h"   /* LANES, lane_sum */

/* What a row's maximum says about it. */
enum { ROW_FINITE, ROW_EMPTY, ROW_NAN };

/* Order-preserving integer keys of `real`: key(a) < key(b) iff a < b for
 * non-NaN a, b other than -0 < +0. Positive NaNs get keys above +inf's,
 * negative NaNs keys below -inf's. */
#if PT_DTYPE == 64
typedef int64_t PT_SFX(key_t);
#define KEY_MAG INT64_MAX
#define KEY_MIN INT64_MIN
#else
typedef int32_t PT_SFX(key_t);
#define KEY_MAG INT32_MAX
#define KEY_MIN INT32_MIN
#endif

static inline PT_SFX(key_t) PT_SFX(key_of)(real x)
{
    PT_SFX(key_t) k;
    memcpy(&k, &x, sizeof k);
    return k < 0 ? k ^ KEY_MAG : k;
}

/* m = max_c x[c] (C >= 1). ROW_FINITE: m is finite (a NaN elsewhere in the
 * row still reaches the sum of exps and makes the row NaN there);
 * ROW_EMPTY: every entry is -inf; ROW_NAN: a +inf entry (inf - inf) or a
 * NaN the max could not step over. The max is taken over the integer keys
 * above (one vectorisable integer max; exact, so its order is irrelevant):
 * a positive NaN wins it (ROW_NAN), a negative one loses to everything and
 * is caught by the sum or, in an otherwise all -inf row, by the scan. */
static inline int PT_SFX(row_max)(const real *x, int64_t C, real *m_out)
{
    PT_SFX(key_t) km = KEY_MIN;
    for (int64_t c = 0; c < C; c++) {
        PT_SFX(key_t) k = PT_SFX(key_of)(x[c]);
        km = k > km ? k : km;
    }
    if (km < 0) km ^= KEY_MAG;           /* the key is its own inverse */
    real m;
    memcpy(&m, &km, sizeof m);
    *m_out = m;
    if (m != m || m == INFINITY) return ROW_NAN;
    if (m == -INFINITY) {
        for (int64_t c = 0; c < C; c++)
            if (x[c] != x[c]) return ROW_NAN;
        return ROW_EMPTY;
    }
    return ROW_FINITE;
}

/* What row_sumexp does besides s = sum_c exp(x[c] - m). */
enum { SE_STORE = 1,        /* e[c] = exp(x[c] - m) (e may equal x) */
       SE_SUMX = 2 };       /* *sx = sum_c x[c], in double lanes */

/* s = sum_c exp(x[c] - m) in double lanes, and what `what` asks. Always
 * inlined, and `what` is a constant at every call, so each use is one
 * branch-free loop that vectorises. */
static inline __attribute__((always_inline))
double PT_SFX(row_sumexp)(int what, real *e, double *sx, const real *x, real m, int64_t C)
{
    double acc[LANES] = {0}, accx[LANES] = {0};
    int64_t c = 0;
    for (; c + LANES <= C; c += LANES)
        for (int k = 0; k < LANES; k++) {
            real xv = x[c + k];
            real ev = PT_SFX(vexp)(xv - m);
            if (what & SE_STORE) e[c + k] = ev;
            acc[k] += ev;
            if (what & SE_SUMX) accx[k] += xv;
        }
    for (int k = 0; c + k < C; k++) {
        real xv = x[c + k];
        real ev = PT_SFX(vexp)(xv - m);
        if (what & SE_STORE) e[c + k] = ev;
        acc[k] += ev;
        if (what & SE_SUMX) accx[k] += xv;
    }
    if (what & SE_SUMX) *sx = PT_SFX(lane_sum)(accx);
    return PT_SFX(lane_sum)(acc);
}

/* acc[k] += e[c] = exp(x[c] - m) for the c in [0, n) of lane k = c mod
 * LANES: row_sumexp's SE_STORE loop over a piece of a row that starts at
 * a multiple of LANES. */
static inline __attribute__((always_inline))
void PT_SFX(sumexp_piece)(double acc[LANES], real *e, const real *x, real m, int64_t n)
{
    int64_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (int k = 0; k < LANES; k++) {
            real ev = PT_SFX(vexp)(x[c + k] - m);
            e[c + k] = ev;
            acc[k] += ev;
        }
    for (int k = 0; c + k < n; k++) {
        real ev = PT_SFX(vexp)(x[c + k] - m);
        e[c + k] = ev;
        acc[k] += ev;
    }
}

/* row_sumexp(SE_STORE, e, NULL, x, m, C) for e lying just above x
 * (pt_alias.h): each piece of SM_CHUNK elements is computed into t before
 * any of it is stored into e, so that a load waits on a store only at a
 * piece's start. The same sums in the same order. */
#define SM_CHUNK 256   /* a multiple of LANES */
static inline __attribute__((always_inline))
double PT_SFX(row_sumexp_chunked)(real *e, const real *x, real m, int64_t C)
{
    double acc[LANES] = {0};
    real t[SM_CHUNK];
    for (int64_t c0 = 0; c0 < C; c0 += SM_CHUNK) {
        int64_t n = C - c0 < SM_CHUNK ? C - c0 : SM_CHUNK;
        PT_SFX(sumexp_piece)(acc, t, x + c0, m, n);
        memcpy(e + c0, t, (size_t)n * sizeof(real));
    }
    return PT_SFX(lane_sum)(acc);
}

/* One row of softmax / log_softmax. Compiled twice on x86 (AVX2 and
 * baseline, two paths of the dispatch table): the helpers above inline
 * into each copy, so the exp loop runs 8 floats wide where the CPU allows.
 * Both copies compute the same values (no FMA contraction under -std=c99). */
SM_BODY void PT_SFX(softmax_row)(real *yr, const real *xr, int64_t C, int want_log)
{
    real m;
    int kind = PT_SFX(row_max)(xr, C, &m);
    if (kind != ROW_FINITE) {
        real v = kind == ROW_NAN ? (real)NAN : want_log ? -INFINITY : 0;
        for (int64_t c = 0; c < C; c++) yr[c] = v;
    } else if (want_log) {
        real lg = (real)log(PT_SFX(row_sumexp)(0, NULL, NULL, xr, m, C));
        for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - m) - lg;
    } else {
        double se = pt_store_close_above(yr, xr) ? PT_SFX(row_sumexp_chunked)(yr, xr, m, C)
                                                 : PT_SFX(row_sumexp)(SE_STORE, yr, NULL,
                                                                      xr, m, C);
        real inv = (real)(1.0 / se);
        for (int64_t c = 0; c < C; c++) yr[c] *= inv;
    }
}

int PT_FN(pt_softmax_forward)(real *y, const real *x, int64_t N, int64_t C, int want_log)
{
    if (N < 0 || C < 0) return PT_EINVAL;
    if (N == 0 || C == 0) return PT_OK;
    /* y may equal x: every loop reads x[c] before it writes y[c]. */
    #pragma omp parallel for schedule(static) num_threads(pt_get_num_threads()) \
        if (PT_SOFTMAX_PAR(N, C))
    for (int64_t n = 0; n < N; n++)
        PT_KERNELS(sm)->softmax_row(y + n * C, x + n * C, C, want_log);
    return PT_OK;
}

/* dxr[c] += t[c] (= when !acc) for c in [0, n). */
static void PT_SFX(add_or_store)(real *dxr, const real *t, int64_t n, int acc)
{
    if (acc)
        for (int64_t c = 0; c < n; c++) dxr[c] += t[c];
    else
        for (int64_t c = 0; c < n; c++) dxr[c] = t[c];
}

/* One row of the softmax backward: dxr += J^T dyr (= when !acc), yr the
 * forward output. When dxr lies just above yr or dyr (pt_alias.h), each
 * chunk of SM_CHUNK elements is computed into t before any of it is
 * stored, so that a load waits on a store only at a chunk's start; each
 * element is computed as in the plain loops. */
static void PT_SFX(softmax_bwd_row)(real *dxr, const real *dyr, const real *yr, int64_t C,
                                    int want_log, int acc)
{
    real s = want_log ? (real)PT_SFX(sum_d)(dyr, C) : (real)PT_SFX(dot_d)(dyr, yr, C);
    if (pt_store_close_above(dxr, yr) || pt_store_close_above(dxr, dyr)) {
        real t[SM_CHUNK];
        for (int64_t c0 = 0; c0 < C; c0 += SM_CHUNK) {
            int64_t n = C - c0 < SM_CHUNK ? C - c0 : SM_CHUNK;
            if (want_log)
                for (int64_t c = 0; c < n; c++)
                    t[c] = dyr[c0 + c] - PT_SFX(vexp)(yr[c0 + c]) * s;
            else
                for (int64_t c = 0; c < n; c++) t[c] = yr[c0 + c] * (dyr[c0 + c] - s);
            PT_SFX(add_or_store)(dxr + c0, t, n, acc);
        }
    } else if (want_log) {
        if (acc)
            for (int64_t c = 0; c < C; c++) dxr[c] += dyr[c] - PT_SFX(vexp)(yr[c]) * s;
        else
            for (int64_t c = 0; c < C; c++) dxr[c] = dyr[c] - PT_SFX(vexp)(yr[c]) * s;
    } else {
        if (acc)
            for (int64_t c = 0; c < C; c++) dxr[c] += yr[c] * (dyr[c] - s);
        else
            for (int64_t c = 0; c < C; c++) dxr[c] = yr[c] * (dyr[c] - s);
    }
}

int PT_FN(pt_softmax_backward)(real *dx, const real *dy, const real *y,
                               int64_t N, int64_t C, int want_log, int accumulate)
{
    if (N < 0 || C < 0) return PT_EINVAL;
    if (!dx || N == 0 || C == 0) return PT_OK;
    #pragma omp parallel for schedule(static) num_threads(pt_get_num_threads()) \
        if (PT_SOFTMAX_PAR(N, C))
    for (int64_t n = 0; n < N; n++)
        PT_KERNELS(sm)->softmax_bwd_row(dx + n * C, dy + n * C, y + n * C, C, want_log,
                                        accumulate);
    return PT_OK;
}

/* PT_EINVAL unless every target is in [0, C) or equals ignore_index. */
static int PT_SFX(check_targets)(const int64_t *targets, int64_t N, int64_t C,
                                 int64_t ignore_index)
{
    for (int64_t n = 0; n < N; n++) {
        int64_t t = targets[n];
        if (t != ignore_index && (t < 0 || t >= C)) return PT_EINVAL;
    }
    return PT_OK;
}

/* One row of the cross-entropy forward: *lse_out = logsumexp(x) and, when
 * loss_out != NULL, *loss_out (0 when t == ignore_index; see the top). */
SM_BODY void PT_SFX(ce_fwd_row)(real *loss_out, real *lse_out, const real *xr, int64_t t,
                               int64_t C, int64_t ignore_index, double ls)
{
    double l;                           /* logsumexp of the row, in double */
    double sx = 0;                      /* sum_c x[c], when smoothing */
    int want_sx = loss_out && ls != 0 && t != ignore_index;
    real m;
    int kind = C == 0 ? ROW_EMPTY : PT_SFX(row_max)(xr, C, &m);
    if (kind == ROW_FINITE)
        l = (double)m + log(want_sx ? PT_SFX(row_sumexp)(SE_SUMX, NULL, &sx, xr, m, C)
                                    : PT_SFX(row_sumexp)(0, NULL, NULL, xr, m, C));
    else
        l = kind == ROW_EMPTY ? -INFINITY : NAN;
    *lse_out = (real)l;
    if (!loss_out) return;
    if (t == ignore_index) {
        *loss_out = 0;
        return;
    }
    /* -logp[t] = lse - x[t]. An all -inf row has logp = -inf everywhere
     * (see the top), so its loss is +inf rather than -inf - -inf. */
    double nll = kind == ROW_EMPTY ? INFINITY : l - (double)xr[t];
    double v = (1 - ls) * nll;
    if (ls != 0) {
        /* mean_c(-logp[c]) = lse - mean_c x[c]; a NaN row has l = NaN, so
         * sx (not summed for it) does not matter */
        double smooth = kind == ROW_EMPTY ? INFINITY : l - sx / (double)C;
        v += ls * smooth;
    }
    *loss_out = (real)v;
}

int PT_FN(pt_cross_entropy_forward)(real *loss, real *lse, const real *logits,
                                    const int64_t *targets, int64_t N, int64_t C,
                                    int64_t ignore_index, real label_smoothing)
{
    if (N < 0 || C < 0) return PT_EINVAL;
    if (!(label_smoothing >= 0 && label_smoothing <= 1)) return PT_EINVAL;
    if (PT_SFX(check_targets)(targets, N, C, ignore_index) != PT_OK) return PT_EINVAL;
    const double ls = label_smoothing;
    #pragma omp parallel for schedule(static) num_threads(pt_get_num_threads()) \
        if (PT_SOFTMAX_PAR(N, C))
    for (int64_t n = 0; n < N; n++) {
        real l;
        PT_KERNELS(sm)->ce_fwd_row(loss ? loss + n : NULL, &l, logits + n * C, targets[n], C,
                           ignore_index, ls);
        if (lse) lse[n] = l;
    }
    return PT_OK;
}

/* One row of the cross-entropy backward, t != ignore_index:
 * dr[c] += g * (p[c] - off - on * [c == t]) (dr starts from 0 when !acc),
 * p = softmax(x) recomputed from the saved lse l. p (C reals) is scratch. */
SM_BODY void PT_SFX(ce_bwd_row)(real *dr, real *p, const real *xr, real l, real g,
                               real off, real on, int64_t t, int64_t C, int acc)
{
    if (l == -INFINITY) {
        /* all -inf row: p = 0 (the softmax convention above) */
        if (acc)
            for (int64_t c = 0; c < C; c++) dr[c] -= g * off;
        else
            for (int64_t c = 0; c < C; c++) dr[c] = (real)0 - g * off;
    } else {
        /* p = exp(x - l), summed as it is written. The sum is 1 up to the
         * rounding of the saved lse; dividing by it cancels that rounding
         * (a common factor of the row). */
        real inv = (real)(1.0 / PT_SFX(row_sumexp)(SE_STORE, p, NULL, xr, l, C));
        if (acc)
            for (int64_t c = 0; c < C; c++) dr[c] += g * (p[c] * inv - off);
        else
            for (int64_t c = 0; c < C; c++) dr[c] = g * (p[c] * inv - off);
    }
    dr[t] -= g * on;
}

int PT_FN(pt_cross_entropy_backward)(real *dlogits, const real *logits,
                                     const real *lse, const int64_t *targets,
                                     const real *dloss, int64_t dloss_stride,
                                     int64_t N, int64_t C,
                                     int64_t ignore_index, real label_smoothing,
                                     int accumulate)
{
    if (N < 0 || C < 0 || dloss_stride < 0) return PT_EINVAL;
    if (!(label_smoothing >= 0 && label_smoothing <= 1)) return PT_EINVAL;
    if (PT_SFX(check_targets)(targets, N, C, ignore_index) != PT_OK) return PT_EINVAL;
    if (!dlogits || N == 0 || C == 0) return PT_OK;
    const double ls = label_smoothing;
    const real off = (real)(ls / (double)C);      /* smoothing mass per class */
    const real on = (real)(1 - ls);                /* extra mass on the target */
    int nth = PT_SOFTMAX_PAR(N, C) ? pt_get_num_threads() : 1;
    /* One row of scratch per thread holds exp(x - lse) between the sum and
     * the write. */
    real *scratch = malloc((size_t)nth * (size_t)C * sizeof(real));
    if (!scratch) return PT_ENOMEM;
    #pragma omp parallel num_threads(nth) if (nth > 1)
    {
        real *p = scratch + (size_t)omp_get_thread_num() * (size_t)C;
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            int64_t t = targets[n];
            if (t == ignore_index) {
                if (!accumulate) memset(dlogits + n * C, 0, (size_t)C * sizeof(real));
                continue;
            }
            PT_KERNELS(sm)->ce_bwd_row(dlogits + n * C, p, logits + n * C, lse[n],
                               dloss[n * dloss_stride], off, on, t, C, accumulate);
        }
    }
    free(scratch);
    return PT_OK;
}

/* The argmax_row slot's rule in one scan (pt_dispatch_slots.h): the first
 * NaN, else the first maximum. */
int64_t PT_SFX(pt_sm_argmax_row)(const real *xr, int64_t C)
{
    int64_t best = 0;
    real bv = xr[0];
    if (bv != bv) return 0;
    for (int64_t j = 1; j < C; j++) {
        real v = xr[j];
        if (v != v) return j;
        if (v > bv) {
            bv = v;
            best = j;
        }
    }
    return best;
}

#if PT_X86 && PT_DTYPE != 64
#include <immintrin.h>
/* The avx2 path's argmax_row, float32: 8 lanes, each keeping the first of
 * its maxima (a strict compare) and its index, and whether it saw a NaN;
 * then the least index among the lanes holding the row's maximum, or the
 * first NaN by the portable scan. Exact: the portable path's index. */
__attribute__((target("avx2")))
static int64_t argmax_row_avx2(const float *xr, int64_t C)
{
    if (C > INT32_MAX) return pt_sm_argmax_row_f32(xr, C);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), eight = _mm256_set1_epi32(8);
    __m256i idx = lane, at = lane;
    __m256 best = ninf, nan = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= C; c += 8, idx = _mm256_add_epi32(idx, eight)) {
        __m256 v = _mm256_loadu_ps(xr + c);
        __m256 up = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        best = _mm256_blendv_ps(best, v, up);
        at = _mm256_blendv_epi8(at, idx, _mm256_castps_si256(up));
    }
    if (c < C) {
        /* lanes past C read -inf: never above the lane's maximum */
        __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(C - c)), lane);
        __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(xr + c, in),
                                    _mm256_castsi256_ps(in));
        __m256 up = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        best = _mm256_blendv_ps(best, v, up);
        at = _mm256_blendv_epi8(at, idx, _mm256_castps_si256(up));
    }
    if (_mm256_movemask_ps(nan)) return pt_sm_argmax_row_f32(xr, C);
    float bv[8];
    int32_t bi[8];
    _mm256_storeu_ps(bv, best);
    _mm256_storeu_si256((__m256i *)bi, at);
    /* a lane that never rose above -inf keeps index lane < C: an all -inf
     * row gives 0, its first maximum */
    int64_t r = bi[0];
    float m = bv[0];
    for (int q = 1; q < 8; q++)
        if (bv[q] > m || (bv[q] == m && bi[q] < r)) {
            m = bv[q];
            r = bi[q];
        }
    return r;
}
#define SM_ARGMAX_AVX2 argmax_row_avx2
#else
#define SM_ARGMAX_AVX2 PT_SFX(pt_sm_argmax_row)
#endif

/* ---------------------------------------------- the paths (pt_dispatch.h)
 * The row bodies compiled for the baseline ISA (portable) and for AVX2;
 * both do the same operations in the same order (no FMA contraction under
 * -std=c99, and target("avx2") has no FMA), so the results are the same.
 * The softmax backward row is the baseline build in both. */
#define SM_PATH(SFX, NAME, ATTR, ARGMAX)                                                \
    ATTR static void PT_SFX(softmax_row##SFX)(real *yr, const real *xr, int64_t C,     \
                                              int want_log)                           \
    {                                                                                 \
        PT_SFX(softmax_row)(yr, xr, C, want_log);                                     \
    }                                                                                 \
    ATTR static void PT_SFX(ce_fwd_row##SFX)(real *loss_out, real *lse_out,           \
                                             const real *xr, int64_t t, int64_t C,    \
                                             int64_t ignore_index, double ls)         \
    {                                                                                 \
        PT_SFX(ce_fwd_row)(loss_out, lse_out, xr, t, C, ignore_index, ls);            \
    }                                                                                 \
    ATTR static void PT_SFX(ce_bwd_row##SFX)(real *dr, real *p, const real *xr,       \
                                             real l, real g, real off, real on,       \
                                             int64_t t, int64_t C, int acc)           \
    {                                                                                 \
        PT_SFX(ce_bwd_row)(dr, p, xr, l, g, off, on, t, C, acc);                      \
    }                                                                                 \
    const struct PT_SFX(pt_sm_kernels) PT_SFX(pt_sm##SFX) = {                          \
        NAME, PT_SFX(softmax_row##SFX), PT_SFX(softmax_bwd_row),                      \
        PT_SFX(ce_fwd_row##SFX), PT_SFX(ce_bwd_row##SFX), ARGMAX};

SM_PATH(_portable, "portable", , PT_SFX(pt_sm_argmax_row))
#if PT_X86
SM_PATH(_avx2, "avx2", __attribute__((target("avx2"))), SM_ARGMAX_AVX2)
#endif
