/*
 * gemm.c -- row-major GEMM: C[M,N] := alpha * op(A) op(B) + beta * C.
 *
 * With a BLAS pointer set (blas.c) we call the column-major Fortran routine
 * on swapped operands: a row-major C is a column-major C^T, and
 * C^T = op(B)^T op(A)^T (as scikit-learn's _cython_blas.pyx does).
 *
 * Otherwise a blocked, packed fallback in the style of BLIS / GotoBLAS:
 * B is packed into KC x NC panels of NR-wide strips, A into MC x KC blocks
 * of MR-tall strips, and an MR x NR micro-kernel accumulates in registers.
 * Row blocks of C are shared among OpenMP threads.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_blas.h"
#include "pt_omp.h"

#define MR 4
#define NR 16
#define MC 128
#define KC 256
#define NC 2048

/* A element (i, p) of op(A), B element (p, j) of op(B). */
#define A_AT(i, p) (trans_a ? A[(int64_t)(p) * lda + (i)] : A[(int64_t)(i) * lda + (p)])
#define B_AT(p, j) (trans_b ? B[(int64_t)(j) * ldb + (p)] : B[(int64_t)(p) * ldb + (j)])

/* Pack op(B)[pc:pc+kc, jc:jc+nc] as strips of NR columns, each kc x NR,
 * zero-padded on the right. */
static void PT_SFX(pack_b)(real *Bp, int trans_b, const real *B, int64_t ldb,
                           int64_t pc, int64_t kc, int64_t jc, int64_t nc)
{
    for (int64_t jr = 0; jr < nc; jr += NR) {
        int64_t nr = nc - jr < NR ? nc - jr : NR;
        real *dst = Bp + jr * kc;
        for (int64_t p = 0; p < kc; p++) {
            int64_t j = 0;
            for (; j < nr; j++) dst[p * NR + j] = B_AT(pc + p, jc + jr + j);
            for (; j < NR; j++) dst[p * NR + j] = 0;
        }
    }
}

/* Pack op(A)[ic:ic+mc, pc:pc+kc] as strips of MR rows, each kc x MR
 * (column by column), zero-padded at the bottom. */
static void PT_SFX(pack_a)(real *Ap, int trans_a, const real *A, int64_t lda,
                           int64_t ic, int64_t mc, int64_t pc, int64_t kc)
{
    for (int64_t ir = 0; ir < mc; ir += MR) {
        int64_t mr = mc - ir < MR ? mc - ir : MR;
        real *dst = Ap + ir * kc;
        for (int64_t p = 0; p < kc; p++) {
            int64_t i = 0;
            for (; i < mr; i++) dst[p * MR + i] = A_AT(ic + ir + i, pc + p);
            for (; i < MR; i++) dst[p * MR + i] = 0;
        }
    }
}

/* C[0:mr, 0:nr] += alpha * Ap(kc x MR)^T Bp(kc x NR). */
static void PT_SFX(micro_kernel)(int64_t kc, const real *restrict Ap,
                                 const real *restrict Bp, real alpha,
                                 real *C, int64_t ldc, int64_t mr, int64_t nr)
{
    real acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < kc; p++) {
        const real *a = Ap + p * MR;
        const real *b = Bp + p * NR;
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                acc[i][j] += a[i] * b[j];
    }
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++)
            C[i * ldc + j] += alpha * acc[i][j];
}

/* C := beta * C, with beta == 0 overwriting (NaN in C does not survive). */
static void PT_SFX(scale_c)(real *C, int64_t ldc, int64_t M, int64_t N, real beta)
{
    if (beta == 1) return;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (M * N > 65536)
    for (int64_t i = 0; i < M; i++) {
        real *row = C + i * ldc;
        if (beta == 0) memset(row, 0, (size_t)N * sizeof(real));
        else for (int64_t j = 0; j < N; j++) row[j] *= beta;
    }
}

int PT_FN(pt_gemm_fallback)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                            real alpha, const real *A, int64_t lda,
                            const real *B, int64_t ldb,
                            real beta, real *C, int64_t ldc)
{
    if (M < 0 || N < 0 || K < 0) return PT_EINVAL;
    if (M == 0 || N == 0) return PT_OK;
    PT_SFX(scale_c)(C, ldc, M, N, beta);
    if (K == 0 || alpha == 0) return PT_OK;

    int64_t ncmax = N < NC ? N : NC, kcmax = K < KC ? K : KC;
    int64_t nc_pad = (ncmax + NR - 1) / NR * NR;
    real *Bp = malloc((size_t)(kcmax * nc_pad) * sizeof(real));
    if (!Bp) return PT_ENOMEM;
    int status = PT_OK;
    int nth = pt_get_num_threads();

    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = N - jc < NC ? N - jc : NC;
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = K - pc < KC ? K - pc : KC;
            PT_SFX(pack_b)(Bp, trans_b, B, ldb, pc, kc, jc, nc);
            int64_t nblocks = (M + MC - 1) / MC;
            #pragma omp parallel num_threads(nth) if (nblocks > 1 && M * nc * kc > 32768)
            {
                real *Ap = malloc((size_t)(MC * kc) * sizeof(real));
                if (!Ap) {
                    #pragma omp atomic write
                    status = PT_ENOMEM;
                }
                #pragma omp for schedule(dynamic)
                for (int64_t blk = 0; blk < nblocks; blk++) {
                    if (!Ap) continue;
                    int64_t ic = blk * MC;
                    int64_t mc = M - ic < MC ? M - ic : MC;
                    PT_SFX(pack_a)(Ap, trans_a, A, lda, ic, mc, pc, kc);
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        int64_t nr = nc - jr < NR ? nc - jr : NR;
                        for (int64_t ir = 0; ir < mc; ir += MR) {
                            int64_t mr = mc - ir < MR ? mc - ir : MR;
                            PT_SFX(micro_kernel)(kc, Ap + ir * kc, Bp + jr * kc, alpha,
                                                 C + (ic + ir) * ldc + jc + jr, ldc, mr, nr);
                        }
                    }
                }
                free(Ap);
            }
            if (status != PT_OK) goto done;
        }
    }
done:
    free(Bp);
    return status;
}

int PT_FN(pt_gemm)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                   real alpha, const real *A, int64_t lda,
                   const real *B, int64_t ldb,
                   real beta, real *C, int64_t ldc)
{
    if (M < 0 || N < 0 || K < 0) return PT_EINVAL;
    if (M == 0 || N == 0) return PT_OK;
#if PT_DTYPE == 64
    pt_dgemm_fn blas = pt_blas_dgemm;
#else
    pt_sgemm_fn blas = pt_blas_sgemm;
#endif
    int fits = M < INT_MAX && N < INT_MAX && K < INT_MAX &&
               lda < INT_MAX && ldb < INT_MAX && ldc < INT_MAX;
    if (!blas || !fits || K == 0)
        return PT_FN(pt_gemm_fallback)(trans_a, trans_b, M, N, K, alpha, A, lda,
                                       B, ldb, beta, C, ldc);
    /* Column-major: C^T (N x M) = op(B)^T (N x K) * op(A)^T (K x M). */
    char tb = trans_b ? 'T' : 'N', ta = trans_a ? 'T' : 'N';
    int m = (int)N, n = (int)M, k = (int)K;
    int ib = (int)(ldb > 0 ? ldb : 1), ia = (int)(lda > 0 ? lda : 1), ic = (int)ldc;
    real al = alpha, be = beta;
    blas(&tb, &ta, &m, &n, &k, &al, (real *)B, &ib, (real *)A, &ia, &be, C, &ic);
    return PT_OK;
}
