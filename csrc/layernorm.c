/*
 * layernorm.c -- layer normalisation over the last axis, forward and backward.
 *
 *   mean = sum(x) / C,  var = sum((x - mean)^2) / C   (two passes: exact
 *   for rows whose mean is large, unlike E[x^2] - E[x]^2)
 *   rstd = 1 / sqrt(var + eps),  xhat = (x - mean) * rstd,  y = xhat * w + b
 *
 * Backward (per row, g = dy * w):
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 *   dw += dy * xhat,  db += dy   (summed over rows)
 *
 * Speed (the op is memory bound; one row of C <= a few thousand elements
 * stays in L1/L2 between the passes over it, so main memory sees x read
 * once and y written once in the forward, x and dy read and dx written once
 * in the backward):
 *   - Row sums are accumulated in double for both dtypes, in LANES
 *     independent lanes (lane k takes the elements c = k mod LANES) that are
 *     combined in a fixed tree at the end. This breaks the serial add chain
 *     so the compiler vectorises it, and the order is fixed by the source,
 *     not by the ISA or the thread count (no -ffast-math needed).
 *   - A row's C / LANES adds per lane form a dependent chain (4 cycles
 *     each), which bounds a lone row of a few hundred elements; the forward
 *     therefore sums FWD_ROWS rows side by side (fwd_rows), each row in its
 *     own lanes and order, so the chains of different rows overlap and the
 *     bits stay those of the row alone. Two rows measured 10-15% faster
 *     than one per thread for rows in cache (512 elements, Xeon, AVX-512
 *     and AVX2); four were slower on rows streamed from memory. The
 *     float32 AVX2 path (and the AVX-512 one, which calls it) pipelines
 *     its rows instead: one loop over the
 *     columns writes row r - 1's y, runs row r's variance pass and row
 *     r + 1's sum pass (ln_fwd_pipe_avx2), so that the loads of row r + 1
 *     from memory and the stores of row r - 1 overlap row r's arithmetic
 *     on L1 data (faster than the two-row statistics then the normalize
 *     pass; the figures are in docs/kernels.md).
 *   - Rows streamed from L3 or memory wait on their loads when only the
 *     hardware prefetcher fetches them: the forward's first statistics
 *     pass prefetches x PF_ROWS rows on, the backward's first pass x and
 *     dy BWD_PF_ROWS rows on.
 *   - When y lies just above x modulo 1 MB on 2 MB pages (pt_alias.h),
 *     the normalize pass of the AVX2 and AVX-512 paths loads ahead: x a
 *     block before the stores of the block before it, the rows of a call
 *     last to first (rows_norm_ahead_avx2 here, rows_norm_ahead in
 *     layernorm_avx512.c); walking it down, as the GELU forward does, is
 *     slow when y - x is not a multiple of 64 bytes.
 *   - The hot row functions are built twice on x86 (AVX2 and the SSE2
 *     baseline), one path each of the dispatch table; both compute the same
 *     operations in the same order (no FMA contraction: -std=c99 keeps
 *     -ffp-contract=off), so the results do not depend on the path. On
 *     the float32 AVX2 path the row statistics, the backward row and the
 *     dw/db groups are written with intrinsics (ln_stats_avx2, ln_bwd_avx2,
 *     ln_dwdb_avx2), the same operations again: compiled from the bodies,
 *     their double lanes were kept in memory or left scalar.
 *   - dw/db: rows are cut into blocks that depend only on N and C (never on
 *     the thread count); each block sums into its own double partial, GROUP
 *     rows at a time, and the partials are added in block order, so dw/db
 *     are bitwise independent of the number of threads.
 *   - The backward stores dx, dw, db (accumulate = 0) or adds into them
 *     (pt_kernels.h); storing, dx may be dy itself (in place).
 * Tried and dropped: non-temporal (streaming) stores of y/dx through a
 * per-row buffer -- no measurable gain here; prefetching y for writing
 * ahead of the normalize pass -- no faster with 2 threads.
 */
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_dispatch.h"
#include "pt_alias.h"

/* The row functions are bodies (LN_BODY, always inlined) compiled twice
 * below: for the baseline ISA and with target("avx2"), one path each of the
 * dispatch table (pt_dispatch.h). */
#ifdef __GNUC__
#define LN_BODY static inline __attribute__((always_inline))
#else
#define LN_BODY static inline
#endif

#include "pt_lanes.h"   /* LANES, lane_sum */
/* dw/db row blocks: at least MIN_BLOCK_ROWS rows each, at most MAX_BLOCKS
 * blocks and 32 MB of partials: enough blocks to balance threads, few
 * enough that zeroing and reducing the partials stays cheap */
#define MAX_BLOCKS 64
#define MIN_BLOCK_ROWS 32
#define PARTIAL_DOUBLES ((int64_t)1 << 22)
/* Rows (and dw/db blocks) are handed out guided: long contiguous ranges
 * first, which the prefetches (below) and the hardware prefetcher follow,
 * then shorter ones down to ROW_CHUNK rows (one block), so that on a
 * loaded machine a thread that loses its core for a while does not leave
 * a static share undone. Handed out ROW_CHUNK rows at a time throughout,
 * a thread's rows are short scattered runs, and its prefetches at each
 * run's end fetch rows the other thread takes: measured slower. Every row
 * and block is computed the same way whichever thread takes it, so
 * results stay independent of the schedule and the thread count. */
#define ROW_CHUNK 16
/* The forward hands fwd_rows FWD_GROUP rows at a time (ROW_CHUNK is a
 * multiple); this path sums FWD_ROWS of them side by side (two AVX2 rows:
 * eight double add chains in 16 vector registers); the float32 AVX2 path
 * pipelines the group's rows (ln_fwd_pipe_avx2), whose first row alone
 * does not overlap another, so longer groups leave fewer such rows. */
#define FWD_GROUP 16
#define FWD_ROWS 2
/* Software prefetch distances (rows), a cache line (LINE elements) at a
 * time. The backward's is the longer: with dw/db, a group of GROUP rows
 * is read by dwdb_group before its rows' dx, so 4 rows on is the next
 * group. A prefetch past the last row is harmless (no fault). */
#define PF_ROWS 2
#define BWD_PF_ROWS 4
#define LINE ((int)(64 / sizeof(real)))
#ifdef __GNUC__
#define LN_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define LN_PREFETCH(p) ((void)(p))
#endif

/* mean[r], rstd[r] of the R rows of stride C at x (R a constant
 * 1..FWD_ROWS: the loops over r unroll). Each row's sums are accumulated
 * in its own LANES double lanes, in the order of a single row; the rows
 * are summed side by side so that R times as many add chains run at once.
 * The variance sums (x - m)^2, the difference rounded to real, squared in
 * double. */
LN_BODY void PT_SFX(rows_stats)(real *mean, real *rstd, const real *x, int64_t C, real eps,
                                int R)
{
    double acc[FWD_ROWS][LANES];
    int64_t rem = C % LANES, cf = C - rem, c;
    for (int r = 0; r < R; r++)
        for (int k = 0; k < LANES; k++) acc[r][k] = 0;
    for (c = 0; c < cf; c += LANES) {
        /* R = 1 (a group's odd last row) does not prefetch: with the
         * prefetches the compiler leaves its loop scalar */
        for (int r = 0; R == FWD_ROWS && r < R; r++)
            for (int k = 0; k < LANES; k += LINE) LN_PREFETCH(x + (r + PF_ROWS) * C + c + k);
        for (int r = 0; r < R; r++)
            for (int k = 0; k < LANES; k++) acc[r][k] += x[r * C + c + k];
    }
    for (int r = 0; r < R; r++) {
        for (int k = 0; k < rem; k++) acc[r][k] += x[r * C + c + k];
        mean[r] = (real)(PT_SFX(lane_sum)(acc[r]) / C);
        for (int k = 0; k < LANES; k++) acc[r][k] = 0;
    }
    for (c = 0; c < cf; c += LANES)
        for (int r = 0; r < R; r++)
            for (int k = 0; k < LANES; k++) {
                double d = (real)(x[r * C + c + k] - mean[r]);
                acc[r][k] += d * d;
            }
    for (int r = 0; r < R; r++) {
        for (int k = 0; k < rem; k++) {
            double d = (real)(x[r * C + c + k] - mean[r]);
            acc[r][k] += d * d;
        }
        rstd[r] = (real)(1.0 / sqrt(PT_SFX(lane_sum)(acc[r]) / C + eps));
    }
}

/* y = xhat * w + b over one row; the four cases are separate loops so each
 * is a plain vector loop (xhat * 1 + 0 == xhat). */
LN_BODY void PT_SFX(row_norm)(real *y, const real *x, const real *w, const real *b, real m,
                              real rs, int64_t C)
{
    if (w && b)
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * rs * w[c] + b[c];
    else if (w)
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * rs * w[c];
    else if (b)
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * rs + b[c];
    else
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * rs;
}

#if PT_X86
#include <immintrin.h>
#include "pt_avx2.h"
#define AHEAD 4   /* vectors per block of rows_norm_ahead_avx2 */
/* The y of R rows (stride C) when y lies just above x (pt_alias.h), on
 * the AVX2 path: the rows, last to first, as one stream of blocks of
 * AHEAD vectors walking up each row, the x of each block loaded before
 * the stores of the block before it (a row's first block before the last
 * stores of the row after it), as rows_norm_ahead in layernorm_avx512.c;
 * the rest of each row (C mod AHEAD * VW) as row_norm. The same
 * operations as row_norm (no FMA), so the same bits. */
__attribute__((target("avx2")))
static void PT_SFX(rows_norm_ahead_avx2)(real *y, const real *x, const real *w, const real *b,
                                         const real *mean, const real *rstd, int R, int64_t C)
{
    int64_t nb = C - C % (AHEAD * VW);
    vreal cur[AHEAD], nxt[AHEAD];
    for (int j = 0; j < AHEAD; j++) {
        cur[j] = nb ? V_LOAD(x + (R - 1) * C + j * VW) : V_ZERO();
        nxt[j] = V_ZERO();
    }
    for (int r = R - 1; r >= 0; r--) {
        const real *xr = x + r * C;
        real *yr = y + r * C;
        vreal vm = V_SET1(mean[r]), vrs = V_SET1(rstd[r]);
        for (int64_t c = 0; c < nb; c += AHEAD * VW) {
            if (c + AHEAD * VW < nb)
                for (int j = 0; j < AHEAD; j++) nxt[j] = V_LOAD(xr + c + (AHEAD + j) * VW);
            else if (r > 0)
                for (int j = 0; j < AHEAD; j++) nxt[j] = V_LOAD(xr - C + j * VW);
            for (int j = 0; j < AHEAD; j++) {
                vreal v = V_MUL(V_SUB(cur[j], vm), vrs);
                if (w) v = V_MUL(v, V_LOAD(w + c + j * VW));
                if (b) v = V_ADD(v, V_LOAD(b + c + j * VW));
                V_STORE(yr + c + j * VW, v);
                cur[j] = nxt[j];
            }
        }
        if (nb < C)
            PT_SFX(row_norm)(yr + nb, xr + nb, w ? w + nb : NULL, b ? b + nb : NULL, mean[r],
                             rstd[r], C - nb);
    }
}
#endif

#if PT_X86 && PT_DTYPE != 64
/* The float32 AVX2 path's row sums, written with intrinsics (compiled
 * from the bodies above, gcc keeps the variance's and the backward's
 * double lanes in memory, or leaves them scalar): the same operations in
 * the same order. A block of LANES = 16 floats is four vectors of 4
 * doubles (lanes 0-3, 4-7, 8-11, 12-15), each converted from 4 floats; a
 * row's last C % 16 elements are added into the lanes stored to memory,
 * one by one as the portable loop adds them. Elementwise formulas in
 * float with no FMA (target "avx2" has none). */
#define LN_AVX2 __attribute__((target("avx2")))
#define LN_AVX2_INL static inline __attribute__((always_inline, target("avx2")))

/* The 16 lanes of acc (4 vectors) as doubles in a. */
LN_AVX2_INL void ln_lanes_avx2(double *a, const __m256d *acc)
{
    for (int j = 0; j < 4; j++) _mm256_storeu_pd(a + 4 * j, acc[j]);
}

/* rows_stats with intrinsics (R a constant 1..FWD_ROWS), prefetching the
 * rows PF_ROWS further on as rows_stats does. */
LN_AVX2_INL void ln_stats_avx2_r(float *mean, float *rstd, const float *x, int64_t C,
                                      float eps, int R)
{
    __m256d acc[FWD_ROWS][4];
    double a[LANES];
    int64_t rem = C % LANES, cf = C - rem, c;
    for (int r = 0; r < R; r++)
        for (int j = 0; j < 4; j++) acc[r][j] = _mm256_setzero_pd();
    for (c = 0; c < cf; c += LANES)
        for (int r = 0; r < R; r++) {
            LN_PREFETCH(x + (r + PF_ROWS) * C + c);    /* LANES floats: one line */
            for (int j = 0; j < 4; j++)
                acc[r][j] = _mm256_add_pd(acc[r][j],
                                          _mm256_cvtps_pd(_mm_loadu_ps(x + r * C + c + 4 * j)));
        }
    for (int r = 0; r < R; r++) {
        ln_lanes_avx2(a, acc[r]);
        for (int k = 0; k < rem; k++) a[k] += x[r * C + c + k];
        mean[r] = (float)(lane_sum_f32(a) / C);
        for (int j = 0; j < 4; j++) acc[r][j] = _mm256_setzero_pd();
    }
    for (c = 0; c < cf; c += LANES)
        for (int r = 0; r < R; r++) {
            __m128 vm = _mm_set1_ps(mean[r]);
            for (int j = 0; j < 4; j++) {
                __m256d d = _mm256_cvtps_pd(_mm_sub_ps(_mm_loadu_ps(x + r * C + c + 4 * j), vm));
                acc[r][j] = _mm256_add_pd(acc[r][j], _mm256_mul_pd(d, d));
            }
        }
    for (int r = 0; r < R; r++) {
        ln_lanes_avx2(a, acc[r]);
        for (int k = 0; k < rem; k++) {
            double d = (float)(x[r * C + c + k] - mean[r]);
            a[k] += d * d;
        }
        rstd[r] = (float)(1.0 / sqrt(lane_sum_f32(a) / C + eps));
    }
}

LN_AVX2 static void ln_stats_avx2(float *mean, float *rstd, const float *x, int64_t C,
                                       float eps, int R)
{
    if (R == FWD_ROWS)
        ln_stats_avx2_r(mean, rstd, x, C, eps, FWD_ROWS);
    else
        ln_stats_avx2_r(mean, rstd, x, C, eps, 1);
}
#endif

#if PT_X86 && PT_DTYPE != 64
/* One block of LANES floats at column c, of three rows at once: y of row
 * xy (mean, rstd ny) when norm, row_norm's operations; the variance pass
 * of row xv (mean vm) into v; the sum pass of row xs into s when sum. */
LN_AVX2_INL void ln_pipe_block_avx2(float *y, const float *xy, const __m256 *ny,
                                    const float *w, const float *b, __m256d *v,
                                    const float *xv, __m128 vm, __m256d *s, const float *xs,
                                    int64_t c, const int norm, const int sum)
{
    for (int j = 0; j < 4; j++) {
        __m256d d = _mm256_cvtps_pd(_mm_sub_ps(_mm_loadu_ps(xv + c + 4 * j), vm));
        v[j] = _mm256_add_pd(v[j], _mm256_mul_pd(d, d));
        if (sum) s[j] = _mm256_add_pd(s[j], _mm256_cvtps_pd(_mm_loadu_ps(xs + c + 4 * j)));
    }
    for (int j = 0; norm && j < 2; j++) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xy + c + 8 * j), ny[0]), ny[1]);
        if (w) t = _mm256_mul_ps(t, _mm256_loadu_ps(w + c + 8 * j));
        if (b) t = _mm256_add_ps(t, _mm256_loadu_ps(b + c + 8 * j));
        _mm256_storeu_ps(y + c + 8 * j, t);
    }
}

/* y of row x from column cf on (row_norm's operations). */
LN_AVX2_INL void ln_norm_tail_avx2(float *y, const float *x, const float *w, const float *b,
                                   float m, float rs, int64_t cf, int64_t C)
{
    if (cf < C)
        row_norm_f32(y + cf, x + cf, w ? w + cf : NULL, b ? b + cf : NULL, m, rs, C - cf);
}

/* The forward of nr rows of the float32 AVX2 path, software-pipelined:
 * one loop over the columns writes row r - 1's y, runs row r's variance
 * pass and row r + 1's sum pass, so that the loads of row r + 1 (from
 * memory, prefetched PF_ROWS rows further on) and the stores of row
 * r - 1 overlap row r's arithmetic (on L1 data). Each row's sums are its
 * own lanes in rows_stats' order and its y row_norm's operations, so the
 * bits are those of the other paths. */
LN_AVX2 static void ln_fwd_pipe_avx2(float *y, float *mean, float *rstd, const float *x,
                                     const float *w, const float *b, int64_t nr, int64_t C,
                                     float eps)
{
    __m256d s[4], v[4];
    __m256 ny[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    double a[LANES];
    int64_t rem = C % LANES, cf = C - rem, c;
    for (int j = 0; j < 4; j++) s[j] = _mm256_setzero_pd();
    for (c = 0; c < cf; c += LANES) {
        LN_PREFETCH(x + PF_ROWS * C + c);
        for (int j = 0; j < 4; j++)
            s[j] = _mm256_add_pd(s[j], _mm256_cvtps_pd(_mm_loadu_ps(x + c + 4 * j)));
    }
    ln_lanes_avx2(a, s);
    for (int k = 0; k < rem; k++) a[k] += x[c + k];
    mean[0] = (float)(lane_sum_f32(a) / C);
    for (int64_t r = 0; r < nr; r++) {
        const float *xr = x + r * C, *xn = xr + C, *xp = r > 0 ? xr - C : xr;
        float *yp = r > 0 ? y + (r - 1) * C : y;       /* row r - 1's y (unused for r = 0) */
        int next = r + 1 < nr;
        __m128 vm = _mm_set1_ps(mean[r]);
        for (int j = 0; j < 4; j++) s[j] = v[j] = _mm256_setzero_pd();
        if (r > 0) {
            ny[0] = _mm256_set1_ps(mean[r - 1]);
            ny[1] = _mm256_set1_ps(rstd[r - 1]);
        }
        if (r > 0 && next)
            for (c = 0; c < cf; c += LANES) {
                LN_PREFETCH(xn + PF_ROWS * C + c);
                ln_pipe_block_avx2(yp, xp, ny, w, b, v, xr, vm, s, xn, c, 1, 1);
            }
        else if (next)
            for (c = 0; c < cf; c += LANES) {
                LN_PREFETCH(xn + PF_ROWS * C + c);
                ln_pipe_block_avx2(yp, xp, ny, w, b, v, xr, vm, s, xn, c, 0, 1);
            }
        else if (r > 0)
            for (c = 0; c < cf; c += LANES)
                ln_pipe_block_avx2(yp, xp, ny, w, b, v, xr, vm, s, xn, c, 1, 0);
        else
            for (c = 0; c < cf; c += LANES)
                ln_pipe_block_avx2(yp, xp, ny, w, b, v, xr, vm, s, xn, c, 0, 0);
        if (r > 0) ln_norm_tail_avx2(yp, xp, w, b, mean[r - 1], rstd[r - 1], cf, C);
        ln_lanes_avx2(a, v);
        for (int k = 0; k < rem; k++) {
            double d = (float)(xr[c + k] - mean[r]);
            a[k] += d * d;
        }
        rstd[r] = (float)(1.0 / sqrt(lane_sum_f32(a) / C + eps));
        if (next) {
            ln_lanes_avx2(a, s);
            for (int k = 0; k < rem; k++) a[k] += xn[c + k];
            mean[r + 1] = (float)(lane_sum_f32(a) / C);
        }
    }
    row_norm_f32(y + (nr - 1) * C, x + (nr - 1) * C, w, b, mean[nr - 1], rstd[nr - 1], C);
}
#endif

/* nr rows of the forward: y, mean(nr), rstd(nr) from x, FWD_ROWS rows at a
 * time. On the AVX2 path (avx2 = 1), y lying just above x takes
 * rows_norm_ahead_avx2. */
LN_BODY void PT_SFX(ln_fwd_rows)(real *y, real *mean, real *rstd, const real *x,
                                const real *w, const real *b, int64_t nr, int64_t C, real eps,
                                int avx2)
{
    int ahead = avx2 && pt_store_close_above(y, x);
#if PT_X86 && PT_DTYPE != 64
    if (avx2 && !ahead) {
        ln_fwd_pipe_avx2(y, mean, rstd, x, w, b, nr, C, eps);
        return;
    }
#endif
    while (nr > 0) {
        int R = nr >= FWD_ROWS ? FWD_ROWS : 1;
#if PT_X86 && PT_DTYPE != 64
        if (avx2)
            ln_stats_avx2(mean, rstd, x, C, eps, R);
        else
#endif
        if (R == FWD_ROWS)
            PT_SFX(rows_stats)(mean, rstd, x, C, eps, FWD_ROWS);
        else
            PT_SFX(rows_stats)(mean, rstd, x, C, eps, 1);
#if PT_X86
        if (ahead)
            PT_SFX(rows_norm_ahead_avx2)(y, x, w, b, mean, rstd, R, C);
        else
#endif
            for (int r = 0; r < R; r++)
                PT_SFX(row_norm)(y + r * C, x + r * C, w, b, mean[r], rstd[r], C);
        y += R * C, x += R * C, mean += R, rstd += R, nr -= R;
    }
}

int PT_FN(pt_layernorm_forward)(real *y, real *mean, real *rstd,
                                const real *x, const real *w, const real *b,
                                int64_t N, int64_t C, real eps)
{
    if (N < 0 || C < 0) return PT_EINVAL;
    if (C == 0) return PT_OK;
    int64_t ng = (N + FWD_GROUP - 1) / FWD_GROUP;
    #pragma omp parallel for schedule(guided, ROW_CHUNK / FWD_GROUP) \
        num_threads(pt_get_num_threads()) if (N * C > 16384)
    for (int64_t g = 0; g < ng; g++) {
        int64_t n0 = g * FWD_GROUP, nr = N - n0 < FWD_GROUP ? N - n0 : FWD_GROUP;
        real m[FWD_GROUP], rs[FWD_GROUP];
        PT_KERNELS(ln)->fwd_rows(y + n0 * C, m, rs, x + n0 * C, w, b, nr, C, eps);
        for (int64_t r = 0; r < nr; r++) {
            if (mean) mean[n0 + r] = m[r];
            if (rstd) rstd[n0 + r] = rs[r];
        }
    }
    return PT_OK;
}

/* Prefetches the LANES elements at x and dy BWD_PF_ROWS rows (of C) on. */
LN_BODY void PT_SFX(bwd_prefetch)(const real *x, const real *dy, int64_t C)
{
    for (int k = 0; k < LANES; k += LINE) {
        LN_PREFETCH(x + BWD_PF_ROWS * C + k);
        LN_PREFETCH(dy + BWD_PF_ROWS * C + k);
    }
}

/* One row of the backward. Pass 1 (reads x, dy): sg = sum g, sgx = sum g*xhat
 * in double lanes. Pass 2 (row now in L1):
 * dx = or += rstd * (g - mean(g) - xhat * mean(g*xhat)). Each dx[c] is
 * computed from x[c] and dy[c] after pass 1, so dx may be dy or x (in place). */
LN_BODY void PT_SFX(ln_bwd_row)(real *dx, const real *dy, const real *x, const real *w,
                               real m, real rs, int64_t C, int accumulate)
{
    double ag[LANES] = {0}, agx[LANES] = {0};
    int64_t c = 0;
    if (w) {
        for (; c + LANES <= C; c += LANES) {
            PT_SFX(bwd_prefetch)(x + c, dy + c, C);
            for (int k = 0; k < LANES; k++) {
                real h = (x[c + k] - m) * rs;
                real g = dy[c + k] * w[c + k];
                ag[k] += g;
                agx[k] += (double)g * h;
            }
        }
        for (int k = 0; c + k < C; k++) {
            real h = (x[c + k] - m) * rs;
            real g = dy[c + k] * w[c + k];
            ag[k] += g;
            agx[k] += (double)g * h;
        }
    } else {
        for (; c + LANES <= C; c += LANES) {
            PT_SFX(bwd_prefetch)(x + c, dy + c, C);
            for (int k = 0; k < LANES; k++) {
                real h = (x[c + k] - m) * rs;
                ag[k] += dy[c + k];
                agx[k] += (double)dy[c + k] * h;
            }
        }
        for (int k = 0; c + k < C; k++) {
            real h = (x[c + k] - m) * rs;
            ag[k] += dy[c + k];
            agx[k] += (double)dy[c + k] * h;
        }
    }
    real mg = (real)(PT_SFX(lane_sum)(ag) / C), mgx = (real)(PT_SFX(lane_sum)(agx) / C);
    if (w && accumulate)
        for (c = 0; c < C; c++) dx[c] += rs * (dy[c] * w[c] - mg - (x[c] - m) * rs * mgx);
    else if (w)
        for (c = 0; c < C; c++) dx[c] = rs * (dy[c] * w[c] - mg - (x[c] - m) * rs * mgx);
    else if (accumulate)
        for (c = 0; c < C; c++) dx[c] += rs * (dy[c] - mg - (x[c] - m) * rs * mgx);
    else
        for (c = 0; c < C; c++) dx[c] = rs * (dy[c] - mg - (x[c] - m) * rs * mgx);
}

/* dw/db partials of a group of nr <= GROUP rows starting at row pointers
 * dy, x (row stride C): pdw(C) += sum_r dy_r * xhat_r, pdb(C) += sum_r dy_r.
 * A full group first sums its GROUP terms in real (a pairwise tree, one or
 * two roundings more per term) and adds that to the double partial: a
 * quarter of the conversions and read-modify-writes of the double partials,
 * which otherwise cost as much as the rest of the backward. */
#define GROUP 4
LN_BODY void PT_SFX(ln_dwdb_cols)(double *restrict pdw, double *restrict pdb,
                                 const real *dy, const real *x,
                                 const real *mean, const real *rstd, int nr, int64_t n,
                                 int64_t C)
{
    if (nr == GROUP) {
        const real *x0 = x, *x1 = x + C, *x2 = x + 2 * C, *x3 = x + 3 * C;
        const real *d0 = dy, *d1 = dy + C, *d2 = dy + 2 * C, *d3 = dy + 3 * C;
        real m0 = mean[0], m1 = mean[1], m2 = mean[2], m3 = mean[3];
        real r0 = rstd[0], r1 = rstd[1], r2 = rstd[2], r3 = rstd[3];
        for (int64_t c = 0; c < n; c++) {
            real h0 = (x0[c] - m0) * r0, h1 = (x1[c] - m1) * r1;
            real h2 = (x2[c] - m2) * r2, h3 = (x3[c] - m3) * r3;
            pdw[c] += (double)((d0[c] * h0 + d1[c] * h1) + (d2[c] * h2 + d3[c] * h3));
            pdb[c] += (double)((d0[c] + d1[c]) + (d2[c] + d3[c]));
        }
        return;
    }
    for (int r = 0; r < nr; r++) {
        const real *xr = x + r * C, *dr = dy + r * C;
        real m = mean[r], rs = rstd[r];
        for (int64_t c = 0; c < n; c++) {
            pdw[c] += (double)(dr[c] * ((xr[c] - m) * rs));
            pdb[c] += (double)dr[c];
        }
    }
}

LN_BODY void PT_SFX(ln_dwdb_group)(double *restrict pdw, double *restrict pdb,
                                  const real *dy, const real *x,
                                  const real *mean, const real *rstd, int nr, int64_t C)
{
    PT_SFX(ln_dwdb_cols)(pdw, pdb, dy, x, mean, rstd, nr, C, C);
}

#if PT_X86 && PT_DTYPE != 64
/* ln_bwd_row with intrinsics (the float32 AVX2 path), hw = (w != NULL) a
 * constant: pass 1 in the 16 double lanes (tail as ln_stats_avx2),
 * pass 2 eight floats at a time, the tail as the portable loop. */
LN_AVX2_INL void ln_bwd_avx2_w(float *dx, const float *dy, const float *x, const float *w,
                                   float m, float rs, int64_t C, int accumulate, const int hw)
{
    __m256d ag[4], agx[4];
    double a[LANES], b[LANES];
    const __m128 vm4 = _mm_set1_ps(m), vrs4 = _mm_set1_ps(rs);
    int64_t c = 0;
    for (int j = 0; j < 4; j++) ag[j] = agx[j] = _mm256_setzero_pd();
    for (; c + LANES <= C; c += LANES) {
        LN_PREFETCH(x + BWD_PF_ROWS * C + c);     /* LANES floats: one line */
        LN_PREFETCH(dy + BWD_PF_ROWS * C + c);
        for (int j = 0; j < 4; j++) {
            __m128 h = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(x + c + 4 * j), vm4), vrs4);
            __m128 g = _mm_loadu_ps(dy + c + 4 * j);
            if (hw) g = _mm_mul_ps(g, _mm_loadu_ps(w + c + 4 * j));
            __m256d gd = _mm256_cvtps_pd(g);
            ag[j] = _mm256_add_pd(ag[j], gd);
            agx[j] = _mm256_add_pd(agx[j], _mm256_mul_pd(gd, _mm256_cvtps_pd(h)));
        }
    }
    ln_lanes_avx2(a, ag);
    ln_lanes_avx2(b, agx);
    for (int k = 0; c + k < C; k++) {
        float h = (x[c + k] - m) * rs;
        float g = hw ? dy[c + k] * w[c + k] : dy[c + k];
        a[k] += g;
        b[k] += (double)g * h;
    }
    float mg = (float)(lane_sum_f32(a) / C), mgx = (float)(lane_sum_f32(b) / C);
    const __m256 vm = _mm256_set1_ps(m), vrs = _mm256_set1_ps(rs);
    const __m256 vmg = _mm256_set1_ps(mg), vmgx = _mm256_set1_ps(mgx);
    for (c = 0; c + 8 <= C; c += 8) {
        __m256 g = _mm256_loadu_ps(dy + c);
        if (hw) g = _mm256_mul_ps(g, _mm256_loadu_ps(w + c));
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vrs);
        __m256 v = _mm256_mul_ps(vrs, _mm256_sub_ps(_mm256_sub_ps(g, vmg), _mm256_mul_ps(h, vmgx)));
        if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(dx + c), v);
        _mm256_storeu_ps(dx + c, v);
    }
    for (; c < C; c++) {
        float g = hw ? dy[c] * w[c] : dy[c];
        float v = rs * (g - mg - (x[c] - m) * rs * mgx);
        dx[c] = accumulate ? dx[c] + v : v;
    }
}

LN_AVX2 static void ln_bwd_avx2(float *dx, const float *dy, const float *x,
                                        const float *w, float m, float rs, int64_t C,
                                        int accumulate)
{
    if (w)
        ln_bwd_avx2_w(dx, dy, x, w, m, rs, C, accumulate, 1);
    else
        ln_bwd_avx2_w(dx, dy, x, w, m, rs, C, accumulate, 0);
}

/* p[0..8) += the 8 floats of v, widened. */
LN_AVX2_INL void ln_part_add_avx2(double *p, __m256 v)
{
    _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p),
                                      _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
    _mm256_storeu_pd(p + 4, _mm256_add_pd(_mm256_loadu_pd(p + 4),
                                          _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
}

/* ln_dwdb_group with intrinsics (the float32 AVX2 path): eight columns
 * at a time, the last C % 8 as the portable loop. */
LN_AVX2 static void ln_dwdb_avx2(double *restrict pdw, double *restrict pdb,
                                           const float *dy, const float *x, const float *mean,
                                           const float *rstd, int nr, int64_t C)
{
    int64_t c = 0;
    if (nr == GROUP) {
        const float *x0 = x, *x1 = x + C, *x2 = x + 2 * C, *x3 = x + 3 * C;
        const float *d0 = dy, *d1 = dy + C, *d2 = dy + 2 * C, *d3 = dy + 3 * C;
        const __m256 m0 = _mm256_set1_ps(mean[0]), m1 = _mm256_set1_ps(mean[1]);
        const __m256 m2 = _mm256_set1_ps(mean[2]), m3 = _mm256_set1_ps(mean[3]);
        const __m256 r0 = _mm256_set1_ps(rstd[0]), r1 = _mm256_set1_ps(rstd[1]);
        const __m256 r2 = _mm256_set1_ps(rstd[2]), r3 = _mm256_set1_ps(rstd[3]);
        for (; c + 8 <= C; c += 8) {
            __m256 e0 = _mm256_loadu_ps(d0 + c), e1 = _mm256_loadu_ps(d1 + c);
            __m256 e2 = _mm256_loadu_ps(d2 + c), e3 = _mm256_loadu_ps(d3 + c);
            __m256 h0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x0 + c), m0), r0);
            __m256 h1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x1 + c), m1), r1);
            __m256 h2 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x2 + c), m2), r2);
            __m256 h3 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x3 + c), m3), r3);
            __m256 sw = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(e0, h0), _mm256_mul_ps(e1, h1)),
                                      _mm256_add_ps(_mm256_mul_ps(e2, h2), _mm256_mul_ps(e3, h3)));
            __m256 sb = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
            ln_part_add_avx2(pdw + c, sw);
            ln_part_add_avx2(pdb + c, sb);
        }
        if (c < C)
            ln_dwdb_cols_f32(pdw + c, pdb + c, dy + c, x + c, mean, rstd, nr, C - c, C);
        return;
    }
    for (int r = 0; r < nr; r++) {
        const float *xr = x + r * C, *dr = dy + r * C;
        const __m256 vm = _mm256_set1_ps(mean[r]), vrs = _mm256_set1_ps(rstd[r]);
        for (c = 0; c + 8 <= C; c += 8) {
            __m256 d = _mm256_loadu_ps(dr + c);
            __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + c), vm), vrs);
            ln_part_add_avx2(pdw + c, _mm256_mul_ps(d, h));
            ln_part_add_avx2(pdb + c, d);
        }
    }
    if (c < C)
        ln_dwdb_cols_f32(pdw + c, pdb + c, dy + c, x + c, mean, rstd, nr, C - c, C);
}
#endif

/* The row bodies compiled for the baseline ISA (portable) and for AVX2
 * (float32: the backward row and dw/db groups with intrinsics, above);
 * all do the same operations in the same order (no FMA contraction under
 * -std=c99, and target("avx2") has no FMA), so the results are the same. */
#define LN_PATH(SFX, NAME, ATTR, AVX2, BWD_ROW, DWDB_GROUP)                           \
    ATTR static void PT_SFX(ln_fwd_rows##SFX)(real *y, real *mean, real *rstd,        \
                                              const real *x, const real *w,           \
                                              const real *b, int64_t nr, int64_t C,   \
                                              real eps)                               \
    {                                                                                 \
        PT_SFX(ln_fwd_rows)(y, mean, rstd, x, w, b, nr, C, eps, AVX2);                \
    }                                                                                 \
    ATTR static void PT_SFX(ln_bwd_row##SFX)(real *dx, const real *dy, const real *x, \
                                             const real *w, real m, real rs,          \
                                             int64_t C, int accumulate)               \
    {                                                                                 \
        BWD_ROW(dx, dy, x, w, m, rs, C, accumulate);                                  \
    }                                                                                 \
    ATTR static void PT_SFX(ln_dwdb_group##SFX)(double *restrict pdw,                 \
                                                 double *restrict pdb,                \
                                                 const real *dy, const real *x,       \
                                                 const real *mean, const real *rstd,  \
                                                 int nr, int64_t C)                   \
    {                                                                                 \
        DWDB_GROUP(pdw, pdb, dy, x, mean, rstd, nr, C);                               \
    }                                                                                 \
    const struct PT_SFX(pt_ln_kernels) PT_SFX(pt_ln##SFX) = {                          \
        NAME, PT_SFX(ln_fwd_rows##SFX), PT_SFX(ln_bwd_row##SFX),                       \
        PT_SFX(ln_dwdb_group##SFX)};

LN_PATH(_portable, "portable", , 0, PT_SFX(ln_bwd_row), PT_SFX(ln_dwdb_group))
#if PT_X86 && PT_DTYPE != 64
LN_PATH(_avx2, "avx2", __attribute__((target("avx2"))), 1, ln_bwd_avx2, ln_dwdb_avx2)
#elif PT_X86
LN_PATH(_avx2, "avx2", __attribute__((target("avx2"))), 1, PT_SFX(ln_bwd_row),
        PT_SFX(ln_dwdb_group))
#endif

int PT_FN(pt_layernorm_backward)(real *dx, real *dw, real *db,
                                 const real *dy, const real *x, const real *w,
                                 const real *mean, const real *rstd,
                                 int64_t N, int64_t C, int accumulate)
{
    if (N < 0 || C < 0) return PT_EINVAL;
    if (N == 0 && !accumulate) {          /* no rows: dw, db are empty sums */
        for (int64_t c = 0; c < C; c++) {
            if (dw) dw[c] = 0;
            if (db) db[c] = 0;
        }
    }
    if (C == 0 || N == 0) return PT_OK;
    if (!dx && !dw && !db) return PT_OK;
    /* dw/db: row blocks of B rows (a function of N and C only, a multiple
     * of GROUP); block j sums its rows' dy*xhat and dy into part[j] =
     * (pdw(C), pdb(C)) in double, GROUP rows at a time from the block start. */
    double *part = NULL;
    int64_t nblk = 0, B = 0;
    if (dw || db) {
        nblk = PARTIAL_DOUBLES / (2 * C);
        if (nblk > MAX_BLOCKS) nblk = MAX_BLOCKS;
        if (nblk > N / MIN_BLOCK_ROWS) nblk = N / MIN_BLOCK_ROWS;
        if (nblk < 1) nblk = 1;
        B = (N + nblk - 1) / nblk;
        B = (B + GROUP - 1) / GROUP * GROUP;
        nblk = (N + B - 1) / B;
        part = calloc((size_t)nblk * 2 * (size_t)C, sizeof(double));
        if (!part) return PT_ENOMEM;
    }
    #pragma omp parallel num_threads(pt_get_num_threads()) if (N * C > 16384)
    {
        if (!part) {
            #pragma omp for schedule(guided, ROW_CHUNK)
            for (int64_t n = 0; n < N; n++)
                PT_KERNELS(ln)->bwd_row(dx + n * C, dy + n * C, x + n * C, w, mean[n], rstd[n],
                                   C, accumulate);
        } else {
            #pragma omp for schedule(guided, 1)
            for (int64_t j = 0; j < nblk; j++) {
                double *pdw = part + (size_t)j * 2 * C, *pdb = pdw + C;
                int64_t end = (j + 1) * B < N ? (j + 1) * B : N;
                for (int64_t n = j * B; n < end; n += GROUP) {
                    int nr = end - n < GROUP ? (int)(end - n) : GROUP;
                    /* dw/db first: dx may overwrite dy (in place) */
                    PT_KERNELS(ln)->dwdb_group(pdw, pdb, dy + n * C, x + n * C, mean + n, rstd + n,
                                          nr, C);
                    for (int64_t r = n; dx && r < n + nr; r++)
                        PT_KERNELS(ln)->bwd_row(dx + r * C, dy + r * C, x + r * C, w, mean[r],
                                           rstd[r], C, accumulate);
                }
            }
        }
    }
    if (!part) return PT_OK;
    /* reduce the block partials in block order (columns in parallel) */
    #pragma omp parallel for schedule(static) num_threads(pt_get_num_threads()) if (nblk * C > 65536)
    for (int64_t c = 0; c < C; c++) {
        double sw = 0, sb = 0;
        for (int64_t j = 0; j < nblk; j++) {
            sw += part[(size_t)j * 2 * C + c];
            sb += part[(size_t)j * 2 * C + C + c];
        }
        if (dw) dw[c] = accumulate ? dw[c] + (real)sw : (real)sw;
        if (db) db[c] = accumulate ? db[c] + (real)sb : (real)sb;
    }
    free(part);
    return PT_OK;
}
