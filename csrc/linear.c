/*
 * linear.c -- fully connected layer, forward and backward (as
 * torch.nn.functional.linear), built on pt_gemm (BLAS or the C fallback).
 *
 * Shapes: x (N, IN), w (OUT, IN), b (OUT), y (N, OUT).
 *
 *   forward:   y  = x w^T + b
 *              (b is first broadcast into the rows of y, then one GEMM with
 *              beta = 1 adds x w^T: one write pass over y instead of a
 *              separate read-modify-write pass for the bias)
 *   backward:  dx += dy w          (N, OUT) (OUT, IN) -> (N, IN)
 *              dw += dy^T x        (OUT, N) (N, IN)   -> (OUT, IN)
 *              db += sum_n dy[n]   column sums, (OUT)
 *              (accumulate = 0: "=" instead of "+=", so the caller need not
 *              zero the buffers and the GEMMs run with beta = 0)
 *
 * Few rows, forward. In float32, up to the dispatch table's
 * linear_dot_rows, the dot_forward kernel of the linear path in use: a
 * product of few rows read straight from x and w, with no packing (the
 * AVX2 one below, up to PT_LINEAR_DOT_ROWS_AVX2 = 20 rows; the AVX-512
 * one in linear_avx512.c, up to PT_LINEAR_DOT_ROWS_AVX512 = 64;
 * pt_dispatch.h). The environment variable PT_LINEAR_DOT_ROWS overrides
 * the path's row count (0: never). Else, with a BLAS: OpenBLAS's sgemm is
 * ~1.8x faster at
 * N = 17 (~3x at N = 1, ~1.25x at 64, ~1.1x at 128, none from ~480 on)
 * when the row count is its n than when it is its m, i.e. computing
 * y^T = w x^T, (OUT, N), instead of y = x w^T. Column-major BLAS cannot
 * write that product with y's row-major layout (its rows would need a
 * stride), so for 1 < N < PT_LINEAR_SWAP_ROWS_DEFAULT (128) it goes into a
 * scratch y^T (bias broadcast into its rows first, as above) and is
 * transposed into y; for N == 1, y^T and y are the same memory and it is
 * written in place. The environment variable PT_LINEAR_SWAP_ROWS overrides
 * the 128 (0: never), for benchmarks. Both thresholds are read once, with
 * the dispatch table (dispatch.c). The C fallback GEMM gains nothing from
 * the swap (measured: 0.7-1.2x, mostly below 1 at N <= 17) and keeps
 * y = x w^T.
 *
 * GEMM is never called from inside an OpenMP region (it has its own
 * threads, OpenMP or BLAS). The column sums are deterministic and do not
 * depend on the thread count: rows are cut into fixed RB-row chunks, each
 * (chunk, column block) tile sums its rows in order into a double partial,
 * and the partials are added in chunk order.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_dispatch.h"
#include "pt_omp.h"
#include "pt_blas.h"
#include "attention_tile.h"   /* pt_att_transpose */

#define RB 256   /* rows per partial-sum chunk (fixed: thread-count independent) */
#define CB 512   /* columns per tile */

/* db(C) += sum over n of dy(N, C), in double, deterministic. */
static int PT_SFX(colsum_add)(real *db, const real *dy, int64_t N, int64_t C)
{
    if (N == 0 || C == 0) return PT_OK;
    int64_t nchunks = (N + RB - 1) / RB, nblocks = (C + CB - 1) / CB;
    double *part = malloc((size_t)(nchunks * C) * sizeof(double));
    if (!part) return PT_ENOMEM;
    int nth = pt_get_num_threads();
    (void)nth;  /* read only by the OpenMP pragma */
    #pragma omp parallel num_threads(nth) if (N * C > 32768)
    {
        #pragma omp for collapse(2) schedule(static)
        for (int64_t r = 0; r < nchunks; r++)
            for (int64_t cb = 0; cb < nblocks; cb++) {
                int64_t n0 = r * RB, n1 = n0 + RB < N ? n0 + RB : N;
                int64_t c0 = cb * CB, c1 = c0 + CB < C ? c0 + CB : C;
                double *p = part + r * C;
                for (int64_t c = c0; c < c1; c++) p[c] = 0;
                for (int64_t n = n0; n < n1; n++) {
                    const real *row = dy + n * C;
                    for (int64_t c = c0; c < c1; c++) p[c] += row[c];
                }
            }
        #pragma omp for schedule(static)
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int64_t r = 0; r < nchunks; r++) s += part[r * C + c];
            db[c] += (real)s;
        }
    }
    free(part);
    return PT_OK;
}

/* Is the GEMM of this dtype a BLAS (not the C fallback)? */
static int PT_SFX(linear_have_blas)(void)
{
#if PT_DTYPE == 64
    return pt_blas_dgemm != NULL;
#else
    return pt_blas_sgemm != NULL;
#endif
}

/* ---------------------------------------------- few rows: dot products
 * y[i, o] = sum_k x[i, k] w[o, k] (+ b[o]) straight from x and w, both
 * contiguous along k: no packing. A GEMM (BLAS or ours) packs all of w on
 * every call, which for a handful of rows costs as much as the products
 * (OpenBLAS at 17 x 384 -> 1536: sgemm_oncopy 33% of the time, the kernel
 * 32%). A tile is LMR rows of x x LNR rows of w: 12 eight-lane
 * accumulators, per 8 k: 4 w loads, 3 x loads (L1), 12 FMAs; then one
 * horizontal sum per output. Columns of y (rows of w) go in blocks of LNB
 * (~64 KiB of w for k = 384, kept in L2 while every row tile passes), the
 * blocks split between threads. Each y element is one thread's fixed-order
 * sum (lanes k mod 8 in k order, the k % 8 tail in masked lanes, the
 * lanes added pairwise, then b): independent of the thread count.
 * The avx2 path's dot_forward (float32, AVX2+FMA). */
#if PT_DTYPE != 64 && defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define LIN_DOT 1
#include <immintrin.h>
#define LMR 3
#define LNR 4
#define LNB 64

__attribute__((always_inline, target("avx2,fma")))
static inline float lin_hsum(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* y[r*ldy + j] = sum_k x[r*K + k] w[j*K + k] (+ b[j]) for r < mr, j < nr;
 * mr, nr compile-time (always_inline), tail masks lanes k % 8. */
__attribute__((always_inline, target("avx2,fma")))
static inline void lin_dot_tile(float *y, int64_t ldy, const float *x, const float *w,
                                const float *b, int64_t K, const int mr, const int nr,
                                __m256i tail)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    const float *x0 = x, *x1 = mr > 1 ? x + K : x, *x2 = mr > 2 ? x + 2 * K : x;
    const float *w0 = w, *w1 = nr > 1 ? w + K : w, *w2 = nr > 2 ? w + 2 * K : w;
    const float *w3 = nr > 3 ? w + 3 * K : w;
#define LIN_STEP(LD)                                                              \
    {                                                                             \
        __m256 b0 = LD(w0 + k), b1 = nr > 1 ? LD(w1 + k) : b0;                   \
        __m256 b2 = nr > 2 ? LD(w2 + k) : b0, b3 = nr > 3 ? LD(w3 + k) : b0;      \
        __m256 a = LD(x0 + k);                                                    \
        c00 = _mm256_fmadd_ps(a, b0, c00);                                        \
        if (nr > 1) c01 = _mm256_fmadd_ps(a, b1, c01);                            \
        if (nr > 2) c02 = _mm256_fmadd_ps(a, b2, c02);                            \
        if (nr > 3) c03 = _mm256_fmadd_ps(a, b3, c03);                            \
        if (mr > 1) {                                                             \
            a = LD(x1 + k);                                                       \
            c10 = _mm256_fmadd_ps(a, b0, c10);                                    \
            if (nr > 1) c11 = _mm256_fmadd_ps(a, b1, c11);                        \
            if (nr > 2) c12 = _mm256_fmadd_ps(a, b2, c12);                        \
            if (nr > 3) c13 = _mm256_fmadd_ps(a, b3, c13);                        \
        }                                                                         \
        if (mr > 2) {                                                             \
            a = LD(x2 + k);                                                       \
            c20 = _mm256_fmadd_ps(a, b0, c20);                                    \
            if (nr > 1) c21 = _mm256_fmadd_ps(a, b1, c21);                        \
            if (nr > 2) c22 = _mm256_fmadd_ps(a, b2, c22);                        \
            if (nr > 3) c23 = _mm256_fmadd_ps(a, b3, c23);                        \
        }                                                                         \
    }
#define LIN_LOAD(p) _mm256_loadu_ps(p)
#define LIN_MLOAD(p) _mm256_maskload_ps((p), tail)
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) LIN_STEP(LIN_LOAD)
    if (k < K) LIN_STEP(LIN_MLOAD)
#undef LIN_STEP
#undef LIN_LOAD
#undef LIN_MLOAD
    __m256 acc[LMR][LNR] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}};
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float t = lin_hsum(acc[r][j]);
            y[r * ldy + j] = b ? t + b[j] : t;
        }
}

/* lin_dot_tile with mr (1..LMR) and nr (LNR or 1) as constants. */
__attribute__((target("avx2,fma")))
static void lin_dot_any(float *y, int64_t ldy, const float *x, const float *w, const float *b,
                        int64_t K, int mr, int nr, __m256i tail)
{
    switch (mr * 8 + nr) {
    case 3 * 8 + 4: lin_dot_tile(y, ldy, x, w, b, K, 3, 4, tail); break;
    case 2 * 8 + 4: lin_dot_tile(y, ldy, x, w, b, K, 2, 4, tail); break;
    case 1 * 8 + 4: lin_dot_tile(y, ldy, x, w, b, K, 1, 4, tail); break;
    case 3 * 8 + 1: lin_dot_tile(y, ldy, x, w, b, K, 3, 1, tail); break;
    case 2 * 8 + 1: lin_dot_tile(y, ldy, x, w, b, K, 2, 1, tail); break;
    default:        lin_dot_tile(y, ldy, x, w, b, K, 1, 1, tail); break;
    }
}

/* y(N,OUT) = x(N,IN) w(OUT,IN)^T + b by lin_dot_any tiles. */
__attribute__((target("avx2,fma")))
static void lin_dot_forward(float *y, const float *x, const float *w, const float *b,
                            int64_t N, int64_t IN, int64_t OUT)
{
    int64_t nblk = (OUT + LNB - 1) / LNB;
    int nth = pt_get_num_threads();
    (void)nth;                         /* read only by the OpenMP pragma */
    #pragma omp parallel for num_threads(nth) schedule(static) \
        if (N * IN * OUT >= pt_dispatch.linear_par_min)
    for (int64_t blk = 0; blk < nblk; blk++) {
        __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(IN % 8)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        int64_t o0 = blk * LNB, o1 = o0 + LNB < OUT ? o0 + LNB : OUT;
        for (int64_t i = 0; i < N; i += LMR) {
            int mr = (int)(N - i < LMR ? N - i : LMR);
            for (int64_t o = o0; o < o1; ) {
                int nr = o1 - o >= LNR ? LNR : 1;
                lin_dot_any(y + i * OUT + o, OUT, x + i * IN, w + o * IN, b ? b + o : NULL,
                            IN, mr, nr, tail);
                o += nr;
            }
        }
    }
}

#else
#define LIN_DOT 0
#endif

/* The portable and avx2 paths of the dispatch table (pt_dispatch.h); the
 * avx512 one is in linear_avx512.c. The dot kernels are float32 only. */
const struct PT_SFX(pt_lin_kernels) PT_SFX(pt_lin_portable) = {
    "portable", NULL, 0, 0, PT_SFX(pt_linear_packed_portable)};
#if LIN_DOT
const struct pt_lin_kernels_f32 pt_lin_avx2_f32 = {"avx2", lin_dot_forward,
                                                   PT_LINEAR_DOT_ROWS_AVX2, 2000000,
                                                   pt_linear_packed_avx2_f32};
#endif

/* y(N,OUT) = x w^T + b via yT(OUT,N) = w x^T + b (b broadcast along rows
 * of yT), then y = yT^T; yT may be y itself when N == 1. */
static int PT_SFX(linear_forward_swapped)(real *y, const real *x, const real *w,
                                          const real *b, int64_t N, int64_t IN, int64_t OUT)
{
    real *yT = N == 1 ? y : malloc((size_t)(N * OUT) * sizeof(real));
    if (!yT) return PT_ENOMEM;
    real beta = 0;
    if (b) {
        for (int64_t o = 0; o < OUT; o++)
            for (int64_t n = 0; n < N; n++) yT[o * N + n] = b[o];
        beta = 1;
    }
    int st = PT_FN(pt_gemm)(0, 1, OUT, N, IN, 1, w, IN, x, IN, beta, yT, N);
    if (yT != y) {
        if (st == PT_OK) PT_SFX(pt_att_transpose)(y, OUT, yT, N, OUT, N);
        free(yT);
    }
    return st;
}

int PT_FN(pt_linear_forward)(real *y, const real *x, const real *w, const real *b,
                             int64_t N, int64_t IN, int64_t OUT)
{
    if (N < 0 || IN < 0 || OUT < 0) return PT_EINVAL;
    if (N == 0 || OUT == 0) return PT_OK;
    void (*dot)(real *, const real *, const real *, const real *, int64_t, int64_t, int64_t) =
        PT_KERNELS(lin)->dot_forward;
    if (dot && IN > 0 && IN <= INT_MAX && N <= pt_dispatch.linear_dot_rows) {
        dot(y, x, w, b, N, IN, OUT);
        return PT_OK;
    }
    if (IN > 0 && N < pt_dispatch.linear_swap_rows && PT_SFX(linear_have_blas)())
        return PT_SFX(linear_forward_swapped)(y, x, w, b, N, IN, OUT);
    real beta = 0;
    if (b) {
        #pragma omp parallel for num_threads(pt_get_num_threads()) if (N * OUT > 65536)
        for (int64_t n = 0; n < N; n++)
            memcpy(y + n * OUT, b, (size_t)OUT * sizeof(real));
        beta = 1;
    }
    /* y(N,OUT) = x(N,IN) * w(OUT,IN)^T + beta * y */
    return PT_FN(pt_gemm)(0, 1, N, OUT, IN, 1, x, IN, w, IN, beta, y, OUT);
}

int PT_FN(pt_linear_backward)(real *dx, real *dw, real *db,
                              const real *dy, const real *x, const real *w,
                              int64_t N, int64_t IN, int64_t OUT, int accumulate)
{
    if (N < 0 || IN < 0 || OUT < 0) return PT_EINVAL;
    int st;
    real beta = accumulate ? 1 : 0;
    if (dx) {
        /* dx(N,IN) = dy(N,OUT) * w(OUT,IN) + beta * dx */
        st = PT_FN(pt_gemm)(0, 0, N, IN, OUT, 1, dy, OUT, w, IN, beta, dx, IN);
        if (st != PT_OK) return st;
    }
    if (dw) {
        /* dw(OUT,IN) = dy(N,OUT)^T * x(N,IN) + beta * dw */
        st = PT_FN(pt_gemm)(1, 0, OUT, IN, N, 1, dy, OUT, x, IN, beta, dw, IN);
        if (st != PT_OK) return st;
    }
    if (db && !accumulate) memset(db, 0, (size_t)OUT * sizeof(real));
    if (db) return PT_SFX(colsum_add)(db, dy, N, OUT);
    return PT_OK;
}
