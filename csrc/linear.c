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
 * Few rows (forward, with a BLAS): OpenBLAS's sgemm is ~1.8x faster at
 * N = 17 (~3x at N = 1, ~1.25x at 64, ~1.1x at 128, none from ~480 on)
 * when the row count is its n than when it is its m, i.e. computing
 * y^T = w x^T, (OUT, N), instead of y = x w^T. Column-major BLAS cannot
 * write that product with y's row-major layout (its rows would need a
 * stride), so for 1 < N < SWAP_ROWS it goes into a scratch y^T (bias
 * broadcast into its rows first, as above) and is transposed into y; for
 * N == 1, y^T and y are the same memory and it is written in place. The
 * environment variable PT_LINEAR_SWAP_ROWS overrides SWAP_ROWS (0: never),
 * for benchmarks. The C fallback GEMM gains nothing from the swap
 * (measured: 0.7-1.2x, mostly below 1 at N <= 17) and keeps y = x w^T.
 *
 * GEMM is never called from inside an OpenMP region (it has its own
 * threads, OpenMP or BLAS). The column sums are deterministic and do not
 * depend on the thread count: rows are cut into fixed RB-row chunks, each
 * (chunk, column block) tile sums its rows in order into a double partial,
 * and the partials are added in chunk order.
 */
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_blas.h"
#include "attention_tile.h"   /* pt_att_transpose */

#define RB 256   /* rows per partial-sum chunk (fixed: thread-count independent) */
#define CB 512   /* columns per tile */
#define SWAP_ROWS 128  /* forward with BLAS: y^T = w x^T below this many rows */

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

/* Row count below which the forward computes y^T = w x^T (see top). */
static int64_t linear_swap_rows(void)
{
    const char *e = getenv("PT_LINEAR_SWAP_ROWS");
    return e && *e ? strtol(e, NULL, 10) : SWAP_ROWS;
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
        PT_SFX(pt_att_select_simd)();
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
    if (IN > 0 && N < linear_swap_rows() && PT_SFX(linear_have_blas)())
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
