/*
 * gemm.c -- row-major GEMM: C[M,N] := alpha * op(A) op(B) + beta * C.
 *
 * With a BLAS pointer set (blas.c) we call the column-major Fortran routine
 * on swapped operands: a row-major C is a column-major C^T, and
 * C^T = op(B)^T op(A)^T (as scikit-learn's _cython_blas.pyx does).
 *
 * Otherwise a blocked, packed fallback in the style of BLIS / GotoBLAS
 * (Van Zee & van de Geijn, "BLIS", TOMS 2015; Goto & van de Geijn 2008):
 *
 *   for jc in 0..N step NC                 B panel  op(B)[pc:+kc, jc:+nc]
 *     for pc in 0..K step KC               packed once, shared (L3)
 *       pack B panel -> Bp: nc/NR strips, each kc x NR, row p contiguous
 *       for ic in 0..M step mc  (threads)  A block op(A)[ic:+mc, pc:+kc]
 *         pack A block -> Ap: mc/MR strips, each kc x MR, column p contiguous
 *         for jr in 0..nc step NR          (per thread, L2 holds Ap)
 *           for ir in 0..mc step MR        (L1 holds one Bp strip)
 *             C[ir:+MR, jr:+NR] (=|+=) alpha * sum_p Ap[p, 0:MR]^T Bp[p, 0:NR]
 *
 * The micro-kernel keeps the MR x NR tile of sums in registers: per p it
 * loads one row of the B strip (NR values), broadcasts each of the MR values
 * of the A column, and does MR*NR multiply-adds. Edge strips are
 * zero-padded when packed, so the kernel always computes a full tile and
 * only the store is clipped to mr x nr. For small M (<= DIRECT_B_ROWS) and
 * untransposed B, full strips are read in place instead of packed.
 *
 * beta is folded into the first K block's store (pc == 0: C = alpha*acc +
 * beta*C, or C = alpha*acc without reading C when beta == 0, so NaN in C does
 * not survive); later K blocks add (C = alpha*acc + C).
 *
 * Three micro-kernels, each naming its register tile MR x NR and cache
 * blocks in its dispatch slot (pt_dispatch_slots.h), which the driver packs
 * and blocks for: a portable C one and, on x86 with GCC/Clang, an AVX2+FMA
 * one (6 x 16 float32, below) and an AVX-512F one (14 x 32 float32,
 * gemm_avx512.c), written with intrinsics in functions with
 * __attribute__((target(...))), so the default -O3 build without -march
 * still has them; chosen once by ISA level (dispatch.c).
 *
 * Threads: every thread packs its own A blocks; work items are (row block,
 * column range of the packed B panel) so that small M still gives every
 * thread work. Every C element is computed by one thread, in an order (the
 * K blocks, then p within a block) that does not depend on the thread count
 * or on where its tile lies, so results are bitwise identical for any
 * number of threads.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_blas.h"
#include "pt_omp.h"
#include "pt_dispatch.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PT_GEMM_X86 1
#include <immintrin.h>
#else
#define PT_GEMM_X86 0
#endif

/* Register tile MR x NR = 6 x (two 256-bit vectors): 12 accumulators +
 * 2 B vectors + 1 broadcast A = 15 of the 16 ymm registers. Cache blocks
 * for 32 KiB L1d / 512 KiB L2 per core (Zen 3; fine on Intel too):
 * a kc x NR strip of Bp (16 KiB) stays in L1, the mc x kc block Ap
 * (144 KiB) in L2, the kc x nc panel Bp (4 or 8 MiB) in L3. MC = 144 (f32)
 * and 72 (f64) measured better than half or twice that; KC = 256 was no
 * worse than 128..384 (measured on a shared, noisy 2-core Zen 3 VM). */
#if PT_DTYPE == 64
#define NR 8
#define MC 72
#else
#define NR 16
#define MC 144
#endif
#define MR 6
#define KC 256
#define NC 4096
#define DIRECT_B_ROWS 48

static int64_t PT_SFX(min64)(int64_t a, int64_t b) { return a < b ? a : b; }


/* ------------------------------------------------------------- packing */

/* One strip of Bp: op(B)[pc:pc+kc, j0:j0+nr] (nr <= w) as kc rows of w,
 * zero-padded on the right. op(B)(p, j) is B[p*ldb + j], or B[j*ldb + p]
 * when trans_b; the inner loop runs along contiguous memory either way. */
static void PT_SFX(pack_b)(real *restrict dst, int trans_b, const real *restrict B,
                           int64_t ldb, int64_t pc, int64_t kc, int64_t j0, int64_t nr,
                           int64_t w)
{
    if (!trans_b) {
        for (int64_t p = 0; p < kc; p++) {
            const real *src = B + (pc + p) * ldb + j0;
            int64_t j = 0;
            for (; j < nr; j++) dst[p * w + j] = src[j];
            for (; j < w; j++) dst[p * w + j] = 0;
        }
    } else {
        for (int64_t j = 0; j < w; j++) {
            const real *src = B + (j0 + j) * ldb + pc;
            if (j < nr) for (int64_t p = 0; p < kc; p++) dst[p * w + j] = src[p];
            else        for (int64_t p = 0; p < kc; p++) dst[p * w + j] = 0;
        }
    }
}

/* One strip of Ap: op(A)[i0:i0+mr, pc:pc+kc] (mr <= h) as kc columns of
 * h, zero-padded at the bottom. op(A)(i, p) is A[i*lda + p], or
 * A[p*lda + i] when trans_a. */
static void PT_SFX(pack_a)(real *restrict dst, int trans_a, const real *restrict A,
                           int64_t lda, int64_t i0, int64_t mr, int64_t pc, int64_t kc,
                           int64_t h)
{
    if (trans_a) {
        for (int64_t p = 0; p < kc; p++) {
            const real *src = A + (pc + p) * lda + i0;
            int64_t i = 0;
            for (; i < mr; i++) dst[p * h + i] = src[i];
            for (; i < h; i++) dst[p * h + i] = 0;
        }
    } else {
        for (int64_t i = 0; i < h; i++) {
            const real *src = A + (i0 + i) * lda + pc;
            if (i < mr) for (int64_t p = 0; p < kc; p++) dst[p * h + i] = src[p];
            else        for (int64_t p = 0; p < kc; p++) dst[p * h + i] = 0;
        }
    }
}

/* --------------------------------------------------------- micro-kernels
 * kernel(kc, Ap, Bp, ldbp, C, ldc, mr, nr, alpha, beta):
 *   acc[MR][NR] = sum_{p < kc} Ap[p*MR + i] * Bp[p*ldbp + j]
 *   C[i, j] = alpha*acc[i][j] + beta*C[i, j]   for i < mr, j < nr,
 * with beta == 0 meaning "do not read C" and beta == 1 "C + alpha*acc".
 * ldbp is NR for a packed strip, or ldb when a full strip is read straight
 * from an untransposed B (see the driver). */
typedef void (*PT_SFX(kernel_fn))(int64_t kc, const real *restrict Ap, const real *restrict Bp,
                                  int64_t ldbp, real *C, int64_t ldc, int64_t mr, int64_t nr,
                                  real alpha, real beta);

/* Portable kernel: plain loops the compiler vectorises for the baseline ISA
 * (SSE2 on x86-64). Two rows of the tile at a time, so the sums (2 x NR)
 * stay in the 16 xmm registers; a whole MR x NR tile would spill. */
static void PT_SFX(kernel_c)(int64_t kc, const real *restrict Ap, const real *restrict Bp,
                             int64_t ldbp, real *C, int64_t ldc, int64_t mr, int64_t nr,
                             real alpha, real beta)
{
    real acc[MR][NR];
    for (int i = 0; i < MR; i += 2) {
        real r0[NR] = {0}, r1[NR] = {0};
        for (int64_t p = 0; p < kc; p++) {
            real a0 = Ap[p * MR + i], a1 = Ap[p * MR + i + 1];
            const real *b = Bp + p * ldbp;
            for (int j = 0; j < NR; j++) {
                r0[j] += a0 * b[j];
                r1[j] += a1 * b[j];
            }
        }
        memcpy(acc[i], r0, sizeof r0);
        memcpy(acc[i + 1], r1, sizeof r1);
    }
    for (int64_t i = 0; i < mr; i++) {
        real *c = C + i * ldc;
        if (beta == 0)      for (int64_t j = 0; j < nr; j++) c[j] = alpha * acc[i][j];
        else if (beta == 1) for (int64_t j = 0; j < nr; j++) c[j] = alpha * acc[i][j] + c[j];
        else for (int64_t j = 0; j < nr; j++) c[j] = alpha * acc[i][j] + beta * c[j];
    }
}

#if PT_GEMM_X86
/* AVX2 + FMA kernel: a tile row is two 256-bit vectors. */
#include "pt_avx2.h"

__attribute__((target("avx2,fma")))
static void PT_SFX(kernel_avx2)(int64_t kc, const real *restrict Ap, const real *restrict Bp,
                                int64_t ldbp, real *C, int64_t ldc, int64_t mr, int64_t nr,
                                real alpha, real beta)
{
    vreal c00 = V_ZERO(), c01 = V_ZERO(), c10 = V_ZERO(), c11 = V_ZERO();
    vreal c20 = V_ZERO(), c21 = V_ZERO(), c30 = V_ZERO(), c31 = V_ZERO();
    vreal c40 = V_ZERO(), c41 = V_ZERO(), c50 = V_ZERO(), c51 = V_ZERO();
    /* Fetch the C tile now; it is needed only after the loop (~kc*6 cycles).
     * (Prefetches past the end of an array, here or of Ap below, are harmless.) */
    for (int i = 0; i < MR; i++) _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
    for (int64_t p = 0; p < kc; p++) {
        _mm_prefetch((const char *)(Ap + 12 * MR), _MM_HINT_T0);  /* A streams from L2 */
        vreal b0 = V_LOAD(Bp), b1 = V_LOAD(Bp + VW), a;
        a = V_BCAST(Ap + 0); c00 = V_FMA(a, b0, c00); c01 = V_FMA(a, b1, c01);
        a = V_BCAST(Ap + 1); c10 = V_FMA(a, b0, c10); c11 = V_FMA(a, b1, c11);
        a = V_BCAST(Ap + 2); c20 = V_FMA(a, b0, c20); c21 = V_FMA(a, b1, c21);
        a = V_BCAST(Ap + 3); c30 = V_FMA(a, b0, c30); c31 = V_FMA(a, b1, c31);
        a = V_BCAST(Ap + 4); c40 = V_FMA(a, b0, c40); c41 = V_FMA(a, b1, c41);
        a = V_BCAST(Ap + 5); c50 = V_FMA(a, b0, c50); c51 = V_FMA(a, b1, c51);
        Ap += MR;
        Bp += ldbp;
    }
    vreal acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                        {c30, c31}, {c40, c41}, {c50, c51}};
    /* Edge tiles go through a full MR x NR copy of C, so every element
     * sees the same vector arithmetic wherever its tile lies. */
    real tile[MR * NR];
    int edge = mr < MR || nr < NR;
    real *dst = edge ? tile : C;
    int64_t ld = edge ? NR : ldc;
    if (edge) {
        memset(tile, 0, sizeof tile);
        if (beta != 0)
            for (int64_t i = 0; i < mr; i++) memcpy(tile + i * NR, C + i * ldc, (size_t)nr * sizeof(real));
    }
    vreal va = V_SET1(alpha), vb = V_SET1(beta);
    for (int i = 0; i < MR; i++)
        for (int h = 0; h < 2; h++) {
            real *d = dst + i * ld + h * VW;
            vreal r = V_MUL(va, acc[i][h]);
            if (beta == 1) r = V_ADD(r, V_LOAD(d));
            else if (beta != 0) r = V_ADD(r, V_MUL(vb, V_LOAD(d)));
            V_STORE(d, r);
        }
    if (edge)
        for (int64_t i = 0; i < mr; i++) memcpy(C + i * ldc, tile + i * NR, (size_t)nr * sizeof(real));
}
#endif /* PT_GEMM_X86 */

/* The paths of the dispatch table (pt_dispatch.h). */
const struct PT_SFX(pt_gemm_kernels) PT_SFX(pt_gemm_portable) = {
    "portable", PT_SFX(kernel_c), MR, NR, MC, KC};
#if PT_GEMM_X86
const struct PT_SFX(pt_gemm_kernels) PT_SFX(pt_gemm_avx2) = {
    "avx2", PT_SFX(kernel_avx2), MR, NR, MC, KC};
#endif

/* ---------------------------------------------------------------- driver */

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

/* malloc'ed buffer of n reals aligned to 64 bytes; *raw is what to free. */
static real *PT_SFX(alloc_aligned)(size_t n, void **raw)
{
    *raw = malloc(n * sizeof(real) + 64);
    if (!*raw) return NULL;
    return (real *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
}

int PT_FN(pt_gemm_fallback)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                            real alpha, const real *A, int64_t lda,
                            const real *B, int64_t ldb,
                            real beta, real *C, int64_t ldc)
{
    if (M < 0 || N < 0 || K < 0) return PT_EINVAL;
    if (M == 0 || N == 0) return PT_OK;
    if (K == 0 || alpha == 0) {
        PT_SFX(scale_c)(C, ldc, M, N, beta);
        return PT_OK;
    }
    const struct PT_SFX(pt_gemm_kernels) *kr = PT_KERNELS(gemm);
    const int64_t tile_m = kr->mr, tile_n = kr->nr, block_m = kr->mc, block_k = kr->kc;
    int nth = pt_get_num_threads();
    int par = nth > 1 && (double)M * (double)N * (double)K > 1e6;
    int64_t nt = par ? nth : 1;

    /* Row blocks: a count that is a multiple of the thread count, each a
     * multiple of the kernel's tile_m rows and at most block_m. When there
     * are fewer row blocks than threads, the tile_n-wide strips of the B
     * panel are split nsplit ways too. */
    int64_t nbm = (M + block_m - 1) / block_m;
    nbm = (nbm + nt - 1) / nt * nt;
    int64_t mc = ((M + nbm - 1) / nbm + tile_m - 1) / tile_m * tile_m;
    nbm = (M + mc - 1) / mc;
    int64_t nsplit = nbm >= nt ? 1 : (nt + nbm - 1) / nbm;
    int64_t nitems = nbm * nsplit;
    /* With at most DIRECT_B_ROWS rows each B strip is used by few tiles and
     * packing it costs more than it saves (measured: 2x faster at M = 6-12,
     * ~10% at 48, slower at 96): full strips of an untransposed B are then
     * read in place (row stride ldb). */
    int direct_b = !trans_b && M <= DIRECT_B_ROWS;

    int64_t kcmax = PT_SFX(min64)(K, block_k);
    int64_t nsmax = (PT_SFX(min64)(N, NC) + tile_n - 1) / tile_n;  /* strips per panel */
    void *Braw;
    real *Bp = PT_SFX(alloc_aligned)((size_t)(kcmax * nsmax * tile_n), &Braw);
    if (!Bp) return PT_ENOMEM;
    int status = PT_OK;

    #pragma omp parallel num_threads(nth) if (par)
    {
        void *Araw;
        real *Ap = PT_SFX(alloc_aligned)((size_t)(mc * kcmax), &Araw);
        if (!Ap) {
            #pragma omp atomic write
            status = PT_ENOMEM;
        }
        for (int64_t jc = 0; jc < N; jc += NC) {
            int64_t nc = PT_SFX(min64)(N - jc, NC), ns = (nc + tile_n - 1) / tile_n;
            for (int64_t pc = 0; pc < K; pc += block_k) {
                int64_t kc = PT_SFX(min64)(K - pc, block_k);
                real beta_k = pc == 0 ? beta : 1;

                #pragma omp for schedule(static)
                for (int64_t s = 0; s < ns; s++)
                    if (!direct_b || nc - s * tile_n < tile_n)
                        PT_SFX(pack_b)(Bp + s * tile_n * kc, trans_b, B, ldb, pc, kc, jc + s * tile_n,
                                   PT_SFX(min64)(nc - s * tile_n, tile_n), tile_n);
                /* (implicit barrier: Bp is complete) */

                #pragma omp for schedule(dynamic)
                for (int64_t it = 0; it < nitems; it++) {
                    if (!Ap) continue;
                    int64_t ic = (it / nsplit) * mc, part = it % nsplit;
                    int64_t m = PT_SFX(min64)(M - ic, mc);
                    int64_t s0 = ns * part / nsplit, s1 = ns * (part + 1) / nsplit;
                    if (s0 == s1) continue;
                    for (int64_t ir = 0; ir < m; ir += tile_m)
                        PT_SFX(pack_a)(Ap + ir * kc, trans_a, A, lda, ic + ir,
                                       PT_SFX(min64)(m - ir, tile_m), pc, kc, tile_m);
                    for (int64_t s = s0; s < s1; s++) {
                        int64_t jr = s * tile_n, nr = PT_SFX(min64)(nc - jr, tile_n);
                        int in_place = direct_b && nr == tile_n;
                        const real *b = in_place ? B + pc * ldb + jc + jr : Bp + jr * kc;
                        for (int64_t ir = 0; ir < m; ir += tile_m)
                            kr->ukernel(kc, Ap + ir * kc, b, in_place ? ldb : tile_n,
                                   C + (ic + ir) * ldc + jc + jr, ldc,
                                   PT_SFX(min64)(m - ir, tile_m), nr, alpha, beta_k);
                    }
                }
                /* (implicit barrier: Bp may be overwritten) */
            }
        }
        free(Araw);
    }
    free(Braw);
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
