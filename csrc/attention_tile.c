/*
 * attention_tile.c -- the inner loops of attention.c: tile product, tile
 * transpose, row exp (+ sum), row max, dot product.
 *
 * pt_att_mm: C(m,n) = alpha op(A)(m,K) B(K,n) + beta C, row-major, the small
 * matrix product every step of attention is made of (S = q kT, out += P v,
 * dP = dout vT, dv += PT dout, dk += dST q, dq += dS k; m, n, K are tile
 * sizes and head dims, 1..~128).
 *
 * Two implementations with the same summation order per element (over l,
 * in order, in a register accumulator):
 *   - portable C, register-blocked MR x NR and vectorised over NR columns
 *     by the compiler for the baseline ISA (SSE2 on x86-64);
 *   - on x86 with GCC/Clang, AVX2 + FMA intrinsics in functions with
 *     __attribute__((target("avx2,fma"))), so the default build (no -march)
 *     has them; chosen once by ISA level (dispatch.c), as every family.
 * The AVX2 kernel: a block is up to AMR = 6 rows x 2 vectors (16 floats or
 * 8 doubles) of C: 12 accumulators, 2 B vectors, 1 broadcast = 15 of 16
 * ymm registers. Per l it loads row l of the B strip, broadcasts A[r][l]
 * for each row r and does 12 FMAs. Edge blocks (fewer rows, or columns
 * past n) are the same code with the row count a compile-time constant
 * (switch) and masked loads/stores for the missing columns; so every
 * element is computed the same way wherever it lies in the tile. Blocks
 * run column strip outer, rows inner, so one K x 16 strip of B stays in L1.
 * The backward's mm_exp and mm_ds (float) are the same blocks with the
 * exp or the dS step applied to each accumulator before its store.
 *
 * The CPU choice is per machine, never per thread count: results are
 * bitwise independent of the number of threads (they may differ in the
 * last bits between an AVX2 machine and one without, FMA rounding once).
 *
 * pt_att_exp_rows: float, a branch-free exp: portable, pt_expf (pt_expf.h,
 * Cody-Waite by ln 2, ~2 ulp, as the portable rows'); AVX2 and
 * AVX-512, exp(s - b) as 2^((s - b) log2 e) (pt_exp2f_x86.h: 11 vector
 * operations per vector of scores on AVX-512, where the Cody-Waite form
 * takes 15; AVX2 15, its 2^k built by integer operations;
 * within 2.2e-7 relative for s - b in [-1, 0], 2.0e-6 down to -20). Row
 * sums in float lanes over 64 elements at a time, then in double
 * (portable: in double); double, libm exp.
 * pt_att_transpose (8 x 8 register blocks), pt_att_rowmax and pt_att_dot
 * have AVX2 float paths too, pt_att_maxabs AVX2 paths for both dtypes;
 * the AVX2 float pt_att_softmax_step takes 8 rows at a time
 * (att_softmax_step64_avx2), each row's operations those above.
 * Each public function calls its path's entry in the dispatch table
 * (pt_att_portable / pt_att_avx2 at the end); the float64 build uses the
 * AVX2 product (4 doubles per vector) and portable code for the rest.
 * The structs' `decode` slots (single-query attention) live in
 * attention_decode.c (portable) and attention_decode_x86.c.
 */
#include <string.h>
#include "pt_real.h"
#include "pt_expf.h"
#include "attention_tile.h"
#include "pt_dispatch.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define ATT_X86 1
#include <immintrin.h>
#include "pt_exp2f_x86.h"
#else
#define ATT_X86 0
#endif

/* ------------------------------------------------------ portable product */

/* Register block of the portable product: MR rows x NR columns, NR = two
 * SIMD vectors (16-byte SSE2 by default, 32-byte when built with AVX). */
#define MR 4
#ifdef __AVX__
#define NR (64 / (int)sizeof(real))
#else
#define NR (32 / (int)sizeof(real))
#endif

/* C[r, c] = alpha acc[r][c] + beta C[r, c] for r < mr, c < nr (the acc
 * rows have stride NR). */
static void PT_SFX(att_store)(real *C, int64_t ldc, const real *acc, int mr, int nr,
                              real alpha, int beta)
{
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++) {
            real x = alpha * acc[r * NR + c];
            C[r * ldc + c] = beta ? x + C[r * ldc + c] : x;
        }
}

/* Edge block: mr <= MR rows, nr <= NR columns, one dot product each. */
static void PT_SFX(att_mm_edge)(real *C, int64_t ldc, const real *A, int64_t ars,
                                int64_t acs, const real *B, int64_t ldb, int mr, int nr,
                                int64_t K, real alpha, int beta)
{
    real acc[MR * NR];
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < nr; c++) {
            real s = 0;
            for (int64_t l = 0; l < K; l++) s += A[r * ars + l * acs] * B[l * ldb + c];
            acc[r * NR + c] = s;
        }
    PT_SFX(att_store)(C, ldc, acc, mr, nr, alpha, beta);
}

/* The `omp simd` pragma matters: without it gcc sometimes vectorizes the l
 * loop as an in-order reduction instead of the NR contiguous columns. */
static void PT_SFX(att_mm_c)(real *C, int64_t ldc, const real *A, int64_t ars,
                             int64_t acs, const real *B, int64_t ldb, int64_t m, int64_t n,
                             int64_t K, real alpha, int beta)
{
    int64_t i = 0;
    for (; i + MR <= m; i += MR) {
        const real *a = A + i * ars;
        int64_t j = 0;
        for (; j + NR <= n; j += NR) {
            real acc[MR][NR] = {{0}};
            const real *b = B + j;
            for (int64_t l = 0; l < K; l++) {
                const real *br = b + l * ldb;
                for (int r = 0; r < MR; r++) {
                    real x = a[r * ars + l * acs];
                    #pragma omp simd
                    for (int c = 0; c < NR; c++) acc[r][c] += x * br[c];
                }
            }
            PT_SFX(att_store)(C + i * ldc + j, ldc, &acc[0][0], MR, NR, alpha, beta);
        }
        if (j < n)
            PT_SFX(att_mm_edge)(C + i * ldc + j, ldc, a, ars, acs, B + j, ldb, MR,
                                (int)(n - j), K, alpha, beta);
    }
    for (; i < m; i++)
        for (int64_t j = 0; j < n; j += NR)
            PT_SFX(att_mm_edge)(C + i * ldc + j, ldc, A + i * ars, ars, acs, B + j, ldb, 1,
                                (int)(n - j < NR ? n - j : NR), K, alpha, beta);
}

/* ---------------------------------------------------------- AVX2 product */
#if ATT_X86

#define AMR 6   /* rows of an AVX2 block; columns: 2 vectors */
#include "pt_avx2.h"

/* Lane mask of a vector whose first n lanes exist (n <= 0: none). */
__attribute__((target("avx2,fma")))
static inline __m256i PT_SFX(att_lanes)(int n)
{
#if PT_DTYPE == 64
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
#else
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#endif
}

/* What a block does with its accumulators (a compile-time constant at
 * every call): ATT_EPI_MM stores alpha acc + beta C; ATT_EPI_EXP stores
 * exp(alpha acc - rv[r]) (mm_exp), ATT_EPI_DS (scale P) (alpha acc -
 * rv[r]) (mm_ds): float only (pt_expf_diff_avx2), with beta = 0. The same
 * operations as the store, att_exp_rows_avx2 and att_bwd_ds_with on the
 * stored tile, so the same bits. */
#define ATT_EPI_MM 0
#define ATT_EPI_EXP 1
#define ATT_EPI_DS 2

/* Row r of a block: C[r, 0:2VW] from acc0 (first vector) and acc1
 * (second), masked by m0, m1 unless full; p is row r of P (ATT_EPI_DS),
 * rv its row value (ATT_EPI_EXP, ATT_EPI_DS); alpha acc - rv in two
 * roundings or, where ex (att_scale_pow2), in one FMA. */
__attribute__((always_inline, target("avx2,fma")))
static inline void PT_SFX(att_block_store)(real *c, vreal acc0, vreal acc1, const int full,
                                           __m256i m0, __m256i m1, vreal va, int beta,
                                           const int epi, const int ex, real rv, const real *p,
                                           vreal vsc)
{
#if PT_DTYPE != 64
    if (epi != ATT_EPI_MM) {
        vreal x0, x1;
        if (ex) {
            x0 = _mm256_fmsub_ps(va, acc0, V_SET1(rv));
            x1 = _mm256_fmsub_ps(va, acc1, V_SET1(rv));
        } else {
            x0 = V_SUB(V_MUL(va, acc0), V_SET1(rv));
            x1 = V_SUB(V_MUL(va, acc1), V_SET1(rv));
        }
        if (epi == ATT_EPI_EXP) {
            x0 = pt_expf_neg_avx2(x0);
            x1 = pt_expf_neg_avx2(x1);
        } else {
            x0 = V_MUL(V_MUL(vsc, full ? V_LOAD(p) : V_MLOAD(p, m0)), x0);
            x1 = V_MUL(V_MUL(vsc, full ? V_LOAD(p + VW) : V_MLOAD(p + VW, m1)), x1);
        }
        if (full) {
            V_STORE(c, x0);
            V_STORE(c + VW, x1);
        } else {
            V_MSTORE(c, m0, x0);
            V_MSTORE(c + VW, m1, x1);
        }
        return;
    }
#endif
    (void)rv; (void)p; (void)vsc; (void)ex;
    if (full) {
        V_STORE(c, beta ? V_FMA(va, acc0, V_LOAD(c)) : V_MUL(va, acc0));
        V_STORE(c + VW, beta ? V_FMA(va, acc1, V_LOAD(c + VW)) : V_MUL(va, acc1));
    } else {
        V_MSTORE(c, m0, beta ? V_FMA(va, acc0, V_MLOAD(c, m0)) : V_MUL(va, acc0));
        V_MSTORE(c + VW, m1, beta ? V_FMA(va, acc1, V_MLOAD(c + VW, m1)) : V_MUL(va, acc1));
    }
}

/* One block, mr rows x 2 vectors of columns:
 *   C[r, c] = alpha sum_{l<K} A[r*ars + l*acs] B[l*ldb + c] + beta C[r, c]
 * (or epi's step on the sum, with rv, P, ldp, scale its operands).
 * full: all 2 VW columns exist; else m0, m1 mask the two vectors. mr,
 * full and epi are compile-time constants at every call (always_inline),
 * so the `r < mr` tests vanish; the accumulators are named variables (an
 * array here is spilled to the stack by gcc). */
__attribute__((always_inline, target("avx2,fma")))
static inline void PT_SFX(att_block)(real *C, int64_t ldc, const real *A, int64_t ars,
                                     int64_t acs, const real *B, int64_t ldb, int64_t K,
                                     const int mr,
                                     const int full, __m256i m0, __m256i m1, real alpha,
                                     int beta, const int epi, const int ex, const real *rv,
                                     const real *P, int64_t ldp, real scale)
{
    vreal c00 = V_ZERO(), c01 = V_ZERO(), c10 = V_ZERO(), c11 = V_ZERO();
    vreal c20 = V_ZERO(), c21 = V_ZERO(), c30 = V_ZERO(), c31 = V_ZERO();
    vreal c40 = V_ZERO(), c41 = V_ZERO(), c50 = V_ZERO(), c51 = V_ZERO();
    const real *al = A;                   /* A[0, l] */
    for (int64_t l = 0; l < K; l++, al += acs) {
        const real *b = B + l * ldb;
        vreal b0 = full ? V_LOAD(b) : V_MLOAD(b, m0);
        vreal b1 = full ? V_LOAD(b + VW) : V_MLOAD(b + VW, m1);
        vreal a;
        a = V_BCAST(al); c00 = V_FMA(a, b0, c00); c01 = V_FMA(a, b1, c01);
        if (mr > 1) { a = V_BCAST(al + 1 * ars); c10 = V_FMA(a, b0, c10); c11 = V_FMA(a, b1, c11); }
        if (mr > 2) { a = V_BCAST(al + 2 * ars); c20 = V_FMA(a, b0, c20); c21 = V_FMA(a, b1, c21); }
        if (mr > 3) { a = V_BCAST(al + 3 * ars); c30 = V_FMA(a, b0, c30); c31 = V_FMA(a, b1, c31); }
        if (mr > 4) { a = V_BCAST(al + 4 * ars); c40 = V_FMA(a, b0, c40); c41 = V_FMA(a, b1, c41); }
        if (mr > 5) { a = V_BCAST(al + 5 * ars); c50 = V_FMA(a, b0, c50); c51 = V_FMA(a, b1, c51); }
    }
    vreal va = V_SET1(alpha), vsc = V_SET1(scale);
#define ATT_BST(r, a0, a1) \
    PT_SFX(att_block_store)(C + r * ldc, a0, a1, full, m0, m1, va, beta, epi, ex, \
                            rv ? rv[r] : 0, P ? P + r * ldp : NULL, vsc)
    ATT_BST(0, c00, c01);
    if (mr > 1) ATT_BST(1, c10, c11);
    if (mr > 2) ATT_BST(2, c20, c21);
    if (mr > 3) ATT_BST(3, c30, c31);
    if (mr > 4) ATT_BST(4, c40, c41);
    if (mr > 5) ATT_BST(5, c50, c51);
#undef ATT_BST
}

/* att_block with mr (1..AMR), full and epi turned into constants. */
__attribute__((always_inline, target("avx2,fma")))
static inline void PT_SFX(att_block_epi)(real *C, int64_t ldc, const real *A, int64_t ars,
                                         int64_t acs, const real *B, int64_t ldb, int64_t K,
                                         int mr, int full, __m256i m0, __m256i m1, real alpha,
                                         int beta, const int epi, const int ex, const real *rv,
                                         const real *P, int64_t ldp, real scale)
{
#define ATT_BLOCK(R, F) \
    PT_SFX(att_block)(C, ldc, A, ars, acs, B, ldb, K, R, F, m0, m1, alpha, beta, epi, ex, rv, \
                      P, ldp, scale)
    switch (mr * 2 + (full != 0)) {
    case 13: ATT_BLOCK(6, 1); break;
    case 12: ATT_BLOCK(6, 0); break;
    case 11: ATT_BLOCK(5, 1); break;
    case 10: ATT_BLOCK(5, 0); break;
    case 9:  ATT_BLOCK(4, 1); break;
    case 8:  ATT_BLOCK(4, 0); break;
    case 7:  ATT_BLOCK(3, 1); break;
    case 6:  ATT_BLOCK(3, 0); break;
    case 5:  ATT_BLOCK(2, 1); break;
    case 4:  ATT_BLOCK(2, 0); break;
    case 3:  ATT_BLOCK(1, 1); break;
    case 2:  ATT_BLOCK(1, 0); break;
    default: break;
    }
#undef ATT_BLOCK
}

/* One block of each kind (not inlined: one copy of the switch each); the
 * _x ones form alpha acc - rv in one FMA (att_scale_pow2). */
#define ATT_BLOCK_FN(name, EPI, EX)                                                    \
    __attribute__((target("avx2,fma")))                                                \
    static void PT_SFX(name)(real *C, int64_t ldc, const real *A, int64_t ars,         \
                             int64_t acs, const real *B, int64_t ldb, int64_t K, int mr, \
                             int full, __m256i m0, __m256i m1, real alpha, int beta,   \
                             const real *rv, const real *P, int64_t ldp, real scale)   \
    {                                                                                  \
        PT_SFX(att_block_epi)(C, ldc, A, ars, acs, B, ldb, K, mr, full, m0, m1, alpha, \
                              beta, EPI, EX, rv, P, ldp, scale);                      \
    }
ATT_BLOCK_FN(att_block_mm, ATT_EPI_MM, 0)
#if PT_DTYPE != 64
ATT_BLOCK_FN(att_block_exp, ATT_EPI_EXP, 0)
ATT_BLOCK_FN(att_block_exp_x, ATT_EPI_EXP, 1)
ATT_BLOCK_FN(att_block_ds, ATT_EPI_DS, 0)
ATT_BLOCK_FN(att_block_ds_x, ATT_EPI_DS, 1)
#endif
#undef ATT_BLOCK_FN

typedef void (*PT_SFX(att_block_fn))(real *C, int64_t ldc, const real *A, int64_t ars,
                                     int64_t acs, const real *B, int64_t ldb, int64_t K,
                                     int mr, int full, __m256i m0, __m256i m1, real alpha,
                                     int beta, const real *rv, const real *P, int64_t ldp,
                                     real scale);

/* The blocks of C(m,n) (column strip outer, rows inner), each by fn: row
 * i of C gets rv + i and P + i*ldp. */
__attribute__((always_inline, target("avx2,fma")))
static inline void PT_SFX(att_blocks)(PT_SFX(att_block_fn) fn, real *C, int64_t ldc,
                                      const real *A, int64_t ars, int64_t acs, const real *B,
                                      int64_t ldb, int64_t m, int64_t n, int64_t K, real alpha,
                                      int beta, const real *rv, const real *P, int64_t ldp,
                                      real scale)
{
    for (int64_t j = 0; j < n; j += 2 * VW) {
        int nr = (int)(n - j < 2 * VW ? n - j : 2 * VW);
        __m256i m0 = PT_SFX(att_lanes)(nr), m1 = PT_SFX(att_lanes)(nr - VW);
        for (int64_t i = 0; i < m; i += AMR) {
            int mr = (int)(m - i < AMR ? m - i : AMR);
            fn(C + i * ldc + j, ldc, A + i * ars, ars, acs, B + j, ldb, K, mr, nr == 2 * VW,
               m0, m1, alpha, beta, rv ? rv + i : NULL, P ? P + i * ldp + j : NULL, ldp, scale);
        }
    }
}

__attribute__((target("avx2,fma")))
static void PT_SFX(att_mm_avx2)(real *C, int64_t ldc, const real *A, int64_t ars,
                                int64_t acs, const real *B, int64_t ldb, int64_t m,
                                int64_t n, int64_t K, real alpha, int beta)
{
    PT_SFX(att_blocks)(PT_SFX(att_block_mm), C, ldc, A, ars, acs, B, ldb, m, n, K, alpha, beta,
                       NULL, NULL, 0, 0);
}

#endif /* ATT_X86 */

void PT_SFX(pt_att_mm)(real *C, int64_t ldc, const real *A, int64_t lda, int trans_a,
                       const real *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                       real alpha, int beta)
{
    /* A(r, l) = A[r*ars + l*acs] */
    int64_t ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1;
    PT_KERNELS(att)->mm(C, ldc, A, ars, acs, B, ldb, m, n, K, alpha, beta);
}

/* ------------------------------------------------------------ transpose */

/* T[c*ldt + r] = X[r*ldx + c] for r < m, c < n (portable). */
static void PT_SFX(att_transpose_c)(real *T, int64_t ldt, const real *X, int64_t ldx,
                                    int64_t m, int64_t n)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++) T[c * ldt + r] = X[r * ldx + c];
}

#if ATT_X86 && PT_DTYPE != 64
/* The same for float, by 8 x 8 blocks in registers (unpack, shuffle,
 * 128-bit permute: the usual AVX in-register transpose); edges portable. */
__attribute__((target("avx2,fma")))
static void att_transpose_avx2(float *T, int64_t ldt, const float *X, int64_t ldx,
                               int64_t m, int64_t n)
{
    int64_t m8 = m - m % 8, n8 = n - n % 8;
    for (int64_t r = 0; r < m8; r += 8)
        for (int64_t c = 0; c < n8; c += 8) {
            const float *x = X + r * ldx + c;
            __m256 r0 = _mm256_loadu_ps(x), r1 = _mm256_loadu_ps(x + ldx);
            __m256 r2 = _mm256_loadu_ps(x + 2 * ldx), r3 = _mm256_loadu_ps(x + 3 * ldx);
            __m256 r4 = _mm256_loadu_ps(x + 4 * ldx), r5 = _mm256_loadu_ps(x + 5 * ldx);
            __m256 r6 = _mm256_loadu_ps(x + 6 * ldx), r7 = _mm256_loadu_ps(x + 7 * ldx);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *t = T + c * ldt + r;
            _mm256_storeu_ps(t, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(t + ldt, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(t + 2 * ldt, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(t + 3 * ldt, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(t + 4 * ldt, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(t + 5 * ldt, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(t + 6 * ldt, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(t + 7 * ldt, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    att_transpose_c_f32(T + n8 * ldt, ldt, X + n8, ldx, m, n - n8);    /* right columns */
    att_transpose_c_f32(T + m8, ldt, X + m8 * ldx, ldx, m - m8, n8);    /* bottom rows */
}
#endif

void PT_SFX(pt_att_transpose)(real *T, int64_t ldt, const real *X, int64_t ldx,
                              int64_t m, int64_t n)
{
    PT_KERNELS(att)->transpose(T, ldt, X, ldx, m, n);
}

/* ------------------------------------------------------------------ dot */

#if ATT_X86 && PT_DTYPE != 64
/* sum_d x[d] y[d] in double: 4 + 4 double lanes, then the tail. */
__attribute__((target("avx2,fma")))
static double att_dot_avx2(const float *x, const float *y, int64_t n)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t d = 0;
    for (; d + 8 <= n; d += 8) {
        __m256 a = _mm256_loadu_ps(x + d), b = _mm256_loadu_ps(y + d);
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                             _mm256_cvtps_pd(_mm256_castps256_ps128(b)), s0);
        s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)),
                             _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)), s1);
    }
    double t[4], s;
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; d < n; d++) s += (double)x[d] * y[d];
    return s;
}
#endif

/* Portable dot product. */
static double PT_SFX(att_dot_c)(const real *x, const real *y, int64_t n)
{
    double s = 0;
    for (int64_t d = 0; d < n; d++) s += (double)x[d] * y[d];
    return s;
}

double PT_SFX(pt_att_dot)(const real *x, const real *y, int64_t n)
{
    return PT_KERNELS(att)->dot(x, y, n);
}

/* ------------------------------------------------------------------ exp */

#if PT_DTYPE != 64
/* float exp of a tile row, shifted by the row max: pt_expf (pt_expf.h),
 * branch-free and vectorisable (~2 ulp; x < -86.98, including -inf, gives
 * 0, negligible next to the row maximum's exp(0) = 1; NaN stays NaN). */
static double att_exp_c(float *p, int64_t n, float shift)
{
    double sum = 0;
    for (int64_t j = 0; j < n; j++) {
        p[j] = pt_expf(p[j] - shift);
        sum += p[j];
    }
    return sum;
}

#if ATT_X86
/* 8 float lanes -> their sum in double, in a fixed order. */
__attribute__((always_inline, target("avx2,fma")))
static inline double att_hsum8(__m256 s)
{
    __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(s)),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
    double t[4];
    _mm256_storeu_pd(t, d);
    return (t[0] + t[1]) + (t[2] + t[3]);
}

/* Rows i < nq of S (ld lds): S[i][j] = exp(S[i][j] - shift[i]) for j < n,
 * as pt_expf_diff_avx2 (pt_exp2f_x86.h), sum[i] = their sum. Per chunk of
 * 64 elements, two float accumulators take the vectors at j % 16 < 8 and
 * j % 16 >= 8 (relative error below 4 float roundings, as every term is in
 * [0, 1]), then the chunk's sum goes into a double. Where an element is
 * added depends only on its position, and the masked load of the last n % 8
 * adds exact zeros: so trailing zeros (masked keys, whose exp is +0) change
 * no bit of the sum, which the padded-key skip in attention.c relies on.
 * One call for the whole tile, so that the out-of-order core overlaps the
 * rows' dependency chains. */
__attribute__((target("avx2,fma")))
static void att_exp_rows_avx2(float *S, int64_t lds, int nq, int64_t n, const float *shift,
                              double *sum)
{
    for (int i = 0; i < nq; i++) {
        float *p = S + i * lds;
        const __m256 sh = _mm256_set1_ps(shift[i]);
        double total = 0;
        for (int64_t c0 = 0; c0 < n; c0 += 64) {
            int64_t c1 = c0 + 64 < n ? c0 + 64 : n, j = c0;
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
            for (; j + 16 <= c1; j += 16) {            /* two independent chains */
                __m256 e = pt_expf_diff_avx2(_mm256_loadu_ps(p + j), sh);
                __m256 f = pt_expf_diff_avx2(_mm256_loadu_ps(p + j + 8), sh);
                _mm256_storeu_ps(p + j, e);
                _mm256_storeu_ps(p + j + 8, f);
                s0 = _mm256_add_ps(s0, e);
                s1 = _mm256_add_ps(s1, f);
            }
            if (j + 8 <= c1) {                          /* j % 16 == 0 */
                __m256 e = pt_expf_diff_avx2(_mm256_loadu_ps(p + j), sh);
                _mm256_storeu_ps(p + j, e);
                s0 = _mm256_add_ps(s0, e);
                j += 8;
            }
            if (j < c1) {
                __m256i msk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(c1 - j)),
                                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                __m256 e = pt_expf_diff_avx2(_mm256_maskload_ps(p + j, msk), sh);
                _mm256_maskstore_ps(p + j, msk, e);
                e = _mm256_and_ps(e, _mm256_castsi256_ps(msk));    /* missing lanes: +0 */
                if ((j - c0) % 16 == 0) s0 = _mm256_add_ps(s0, e);
                else s1 = _mm256_add_ps(s1, e);
            }
            total += att_hsum8(_mm256_add_ps(s0, s1));
        }
        sum[i] = total;
    }
}

/* max(m, max_j s[j]) over j < n, NaN ignored (max(s, lane) returns lane
 * when s is NaN). */
__attribute__((target("avx2,fma")))
static float att_max_avx2(const float *s, int n, float m)
{
    __m256 mx = _mm256_set1_ps(m);
    int j = 0;
    for (; j + 8 <= n; j += 8) mx = _mm256_max_ps(_mm256_loadu_ps(s + j), mx);
    float t[8];
    _mm256_storeu_ps(t, mx);
    for (int c = 0; c < 8; c++) m = t[c] > m ? t[c] : m;
    for (; j < n; j++) m = s[j] > m ? s[j] : m;
    return m;
}
#endif /* ATT_X86 */
#endif /* PT_DTYPE != 64 */

/* Portable row exp: pt_expf (float) or libm exp (double). */
static void PT_SFX(att_exp_rows_c)(real *S, int64_t lds, int nq, int64_t n, const real *shift,
                                   double *sum)
{
    for (int i = 0; i < nq; i++) {
        real *p = S + i * lds;
#if PT_DTYPE == 64
        double t = 0;
        for (int64_t j = 0; j < n; j++) {
            p[j] = r_exp(p[j] - shift[i]);
            t += p[j];
        }
        sum[i] = t;
#else
        sum[i] = att_exp_c(p, n, shift[i]);
#endif
    }
}

void PT_SFX(pt_att_exp_rows)(real *S, int64_t lds, int nq, int64_t n, const real *shift,
                             double *sum)
{
    PT_KERNELS(att)->exp_rows(S, lds, nq, n, shift, sum);
}

/* Portable max(m, max_j s[j]), NaN ignored; eight lanes so it vectorizes. */
static real PT_SFX(att_max_c)(const real *s, int64_t n, real m)
{
    real lane[8];
    int64_t j = 0;
    for (int c = 0; c < 8; c++) lane[c] = m;
    for (; j + 8 <= n; j += 8)
        for (int c = 0; c < 8; c++) lane[c] = s[j + c] > lane[c] ? s[j + c] : lane[c];
    for (; j < n; j++) m = s[j] > m ? s[j] : m;
    for (int c = 0; c < 8; c++) m = lane[c] > m ? lane[c] : m;
    return m;
}

#if ATT_X86 && PT_DTYPE != 64
static float att_rowmax_avx2(const float *s, int64_t n, float m)
{
    return n <= 0x7fffffff ? att_max_avx2(s, (int)n, m) : att_max_c_f32(s, n, m);
}
#endif

real PT_SFX(pt_att_rowmax)(const real *s, int64_t n, real m)
{
    m = PT_KERNELS(att)->rowmax(s, n, m);
    if (m == -INFINITY)
        for (int64_t j = 0; j < n; j++)
            if (s[j] != s[j]) return s[j];
    return m;
}

/* ------------------------------------------ online softmax, backward dS */

/* pt_att_rowmax with the path kk's row max. */
__attribute__((always_inline))
static inline real PT_SFX(att_rowmax_with)(const struct PT_SFX(pt_att_kernels) *kk,
                                           const real *s, int64_t n, real m)
{
    m = kk->rowmax(s, n, m);
    if (m == -INFINITY)
        for (int64_t j = 0; j < n; j++)
            if (s[j] != s[j]) return s[j];
    return m;
}

/* The online-softmax bookkeeping of a row whose new max is mx
 * (pt_att_softmax_step): returns the shift of its exp (+inf for a row
 * with nothing unmasked yet, whose exp(-inf - inf) is 0); when the max
 * grew, rescales l and the row a of acc by exp(m - mx) (libm), skipped
 * for m = -inf, where they are still 0 (or NaN from 0 * inf in v, which
 * stays NaN); then m = mx. */
__attribute__((always_inline))
static inline real PT_SFX(att_sm_rescale)(real mx, real *m, double *l, real *a, int64_t Dv)
{
    if (mx == -INFINITY) return INFINITY;
    if (mx != *m) {
        if (*m != -INFINITY) {
            real alpha = r_exp(*m - mx);
            *l *= alpha;
            for (int64_t d = 0; d < Dv; d++) a[d] *= alpha;
        }
        *m = mx;
    }
    return mx;
}

/* pt_att_softmax_step from the path kk's rowmax and exp_rows (the portable
 * and AVX2 paths), ATT_SM_ROWS rows per exp_rows call. */
#define ATT_SM_ROWS 64
__attribute__((always_inline))
static inline void PT_SFX(att_softmax_step_with)(const struct PT_SFX(pt_att_kernels) *kk,
                                                 real *S, int64_t lds, int nq, int64_t n,
                                                 real *m, double *l, real *acc, int64_t ldacc,
                                                 int64_t Dv)
{
    real shift[ATT_SM_ROWS];
    double rsum[ATT_SM_ROWS];
    for (int i0 = 0; i0 < nq; i0 += ATT_SM_ROWS) {
        int rows = nq - i0 < ATT_SM_ROWS ? nq - i0 : ATT_SM_ROWS;
        for (int r = 0; r < rows; r++) {
            int i = i0 + r;
            real mx = PT_SFX(att_rowmax_with)(kk, S + (int64_t)i * lds, n, m[i]);
            shift[r] = PT_SFX(att_sm_rescale)(mx, m + i, l + i, acc + (int64_t)i * ldacc, Dv);
        }
        kk->exp_rows(S + (int64_t)i0 * lds, lds, rows, n, shift, rsum);
        for (int r = 0; r < rows; r++) l[i0 + r] += rsum[r];
    }
}

/* pt_att_bwd_ds from the path kk's exp_rows (its row sums unused). */
__attribute__((always_inline))
static inline void PT_SFX(att_bwd_ds_with)(const struct PT_SFX(pt_att_kernels) *kk, real *P,
                                           real *dS, int64_t ld, int nq, int64_t n,
                                           const real *lse, const real *Drow, real scale)
{
    real shift[ATT_SM_ROWS];
    double rsum[ATT_SM_ROWS];
    for (int i0 = 0; i0 < nq; i0 += ATT_SM_ROWS) {
        int rows = nq - i0 < ATT_SM_ROWS ? nq - i0 : ATT_SM_ROWS;
        for (int r = 0; r < rows; r++) {
            real L = lse[i0 + r];
            shift[r] = L == -INFINITY ? INFINITY : L;
        }
        kk->exp_rows(P + (int64_t)i0 * ld, ld, rows, n, shift, rsum);
    }
    for (int i = 0; i < nq; i++) {
        real *p = P + (int64_t)i * ld, *ds = dS + (int64_t)i * ld;
        real Dr = Drow[i];
        if (lse[i] == -INFINITY) {    /* fully masked row: no gradient */
            for (int64_t j = 0; j < n; j++) { p[j] = 0; ds[j] = 0; }
            continue;
        }
        for (int64_t j = 0; j < n; j++) ds[j] = scale * p[j] * (ds[j] - Dr);
    }
}

/* mm_exp and mm_ds from the path kk's product and row exp: the product
 * stored, then the elementwise step over it (att_bwd_ds_with's). */
__attribute__((always_inline))
static inline void PT_SFX(att_mm_exp_with)(const struct PT_SFX(pt_att_kernels) *kk, real *C,
                                           int64_t ldc, const real *A, int64_t lda,
                                           const real *B, int64_t ldb, int64_t m, int64_t n,
                                           int64_t K, real alpha, const real *shift)
{
    double rsum[ATT_SM_ROWS];
    kk->mm(C, ldc, A, lda, 1, B, ldb, m, n, K, alpha, 0);
    for (int64_t i0 = 0; i0 < m; i0 += ATT_SM_ROWS) {
        int rows = (int)(m - i0 < ATT_SM_ROWS ? m - i0 : ATT_SM_ROWS);
        kk->exp_rows(C + i0 * ldc, ldc, rows, n, shift + i0, rsum);
    }
}

__attribute__((always_inline))
static inline void PT_SFX(att_mm_ds_with)(const struct PT_SFX(pt_att_kernels) *kk, real *C,
                                          int64_t ldc, const real *A, int64_t lda,
                                          const real *B, int64_t ldb, int64_t m, int64_t n,
                                          int64_t K, real alpha, const real *Drow,
                                          const real *P, int64_t ldp, real scale)
{
    kk->mm(C, ldc, A, lda, 1, B, ldb, m, n, K, alpha, 0);
    for (int64_t i = 0; i < m; i++) {
        real *ds = C + i * ldc, Dr = Drow[i];
        const real *p = P + i * ldp;
        for (int64_t j = 0; j < n; j++) ds[j] = scale * p[j] * (ds[j] - Dr);
    }
}

static void PT_SFX(att_mm_exp_c)(real *C, int64_t ldc, const real *A, int64_t lda,
                                 const real *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                                 real alpha, const real *shift)
{
    PT_SFX(att_mm_exp_with)(&PT_SFX(pt_att_portable), C, ldc, A, lda, B, ldb, m, n, K, alpha,
                            shift);
}

static void PT_SFX(att_mm_ds_c)(real *C, int64_t ldc, const real *A, int64_t lda,
                                const real *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                                real alpha, const real *Drow, const real *P, int64_t ldp,
                                real scale)
{
    PT_SFX(att_mm_ds_with)(&PT_SFX(pt_att_portable), C, ldc, A, lda, B, ldb, m, n, K, alpha,
                           Drow, P, ldp, scale);
}

static void PT_SFX(att_softmax_step_c)(real *S, int64_t lds, int nq, int64_t n, real *m,
                                       double *l, real *acc, int64_t ldacc, int64_t Dv)
{
    PT_SFX(att_softmax_step_with)(&PT_SFX(pt_att_portable), S, lds, nq, n, m, l, acc, ldacc, Dv);
}

static void PT_SFX(att_bwd_ds_c)(real *P, real *dS, int64_t ld, int nq, int64_t n,
                                 const real *lse, const real *Drow, real scale)
{
    PT_SFX(att_bwd_ds_with)(&PT_SFX(pt_att_portable), P, dS, ld, nq, n, lse, Drow, scale);
}

#if ATT_X86 && PT_DTYPE != 64
/* Lane r of the result = the max of v[r]'s 8 lanes (a transposing tree:
 * 7 max instead of 8 separate reductions; a max is exact in any order,
 * and a lane is NaN only where all of its row's lanes are). */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256 att_max8(const __m256 *v)
{
    __m256 c[4], d[2], e;
    for (int k = 0; k < 4; k++)       /* lanes 0-3: row 2k, 4-7: row 2k+1 */
        c[k] = _mm256_max_ps(_mm256_permute2f128_ps(v[2 * k], v[2 * k + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * k], v[2 * k + 1], 0x31));
    for (int k = 0; k < 2; k++)       /* 128-bit lane h: rows 4k + h (0-1), 4k + 2 + h (2-3) */
        d[k] = _mm256_max_ps(_mm256_shuffle_ps(c[2 * k], c[2 * k + 1], 0x44),
                             _mm256_shuffle_ps(c[2 * k], c[2 * k + 1], 0xEE));
    /* lanes: rows 0, 2, 4, 6, 1, 3, 5, 7 */
    e = _mm256_max_ps(_mm256_shuffle_ps(d[0], d[1], 0x88), _mm256_shuffle_ps(d[0], d[1], 0xDD));
    return _mm256_permutevar8x32_ps(e, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Lane r of the result = att_hsum8(h[r]) for r < 4, bitwise: the same
 * additions with the same operands (d = h[0:4] + h[4:8] in double, then
 * (d0 + d1) + (d2 + d3)), four rows per instruction after the first. */
__attribute__((always_inline, target("avx2,fma")))
static inline __m256d att_hsum8x4(const __m256 *h)
{
    __m256d d[4];
    for (int r = 0; r < 4; r++)
        d[r] = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(h[r])),
                             _mm256_cvtps_pd(_mm256_extractf128_ps(h[r], 1)));
    __m256d e0 = _mm256_hadd_pd(d[0], d[1]);    /* u0, u1, w0, w1 (u = d0 + d1, w = d2 + d3) */
    __m256d e1 = _mm256_hadd_pd(d[2], d[3]);    /* u2, u3, w2, w3 */
    return _mm256_add_pd(_mm256_permute2f128_pd(e0, e1, 0x20),
                         _mm256_permute2f128_pd(e0, e1, 0x31));
}

/* pt_att_softmax_step for n <= 64 (one 64-element chunk of
 * att_exp_rows_avx2), 8 rows at a time: their maxima found across the
 * rows (att_max8) and compared with m in one vector, their sums' last
 * steps done across the rows (att_hsum8x4), each row's own operations
 * those of att_max_avx2 and att_exp_rows_avx2, so the same bits. */
__attribute__((target("avx2,fma")))
static void att_softmax_step64_avx2(float *S, int64_t lds, int nq, int n, float *m, double *l,
                                    float *acc, int64_t ldacc, int64_t Dv)
{
    const int nf = n / 8, tail = n % 8;      /* whole vectors; lanes of the last */
    const __m256i kt = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 zero = _mm256_setzero_ps();
    for (int i0 = 0; i0 < nq; i0 += 8) {
        int rows = nq - i0 < 8 ? nq - i0 : 8;
        __m256 v[8];
        float shift[8];
        for (int r = 0; r < 8; r++) {
            if (r >= rows) { v[r] = v[0]; continue; }
            const float *s = S + (int64_t)(i0 + r) * lds;
            __m256 mx = _mm256_set1_ps(m[i0 + r]), my = mx;
            int c = 0;
            for (; c + 2 <= nf; c += 2) {    /* two chains: the max is exact */
                mx = _mm256_max_ps(_mm256_loadu_ps(s + 8 * c), mx);
                my = _mm256_max_ps(_mm256_loadu_ps(s + 8 * c + 8), my);
            }
            if (c < nf) mx = _mm256_max_ps(_mm256_loadu_ps(s + 8 * c), mx);
            if (tail)
                my = _mm256_blendv_ps(my, _mm256_max_ps(_mm256_maskload_ps(s + 8 * nf, kt), my),
                                      _mm256_castsi256_ps(kt));
            v[r] = _mm256_max_ps(mx, my);
        }
        /* mx = max(row max, m) (max_ps's rule); shift = mx, except in the
         * rows whose max grew (or is NaN) or is -inf, which take
         * att_sm_rescale one by one */
        const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows),
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 mo = _mm256_maskload_ps(m + i0, live);
        const __m256 mx = _mm256_max_ps(att_max8(v), mo);
        _mm256_storeu_ps(shift, mx);
        unsigned odd = (unsigned)_mm256_movemask_ps(_mm256_and_ps(
            _mm256_castsi256_ps(live),
            _mm256_or_ps(_mm256_cmp_ps(mx, mo, _CMP_NEQ_UQ),
                         _mm256_cmp_ps(mx, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ))));
        for (; odd; odd &= odd - 1) {
            int r = __builtin_ctz(odd), i = i0 + r;
            const float *s = S + (int64_t)i * lds;
            float x = shift[r];
            if (x == -INFINITY)        /* pt_att_rowmax's rule for NaN */
                for (int j = 0; j < n; j++)
                    if (s[j] != s[j]) { x = s[j]; break; }
            shift[r] = att_sm_rescale_f32(x, m + i, l + i, acc + (int64_t)i * ldacc, Dv);
        }
        __m256 h[8];
        for (int r = 0; r < 8; r++) {
            if (r >= rows) { h[r] = zero; continue; }
            float *p = S + (int64_t)(i0 + r) * lds;
            const __m256 sh = _mm256_set1_ps(shift[r]);
            __m256 s0 = zero, s1 = zero;     /* vectors c even, c odd (att_exp_rows_avx2) */
            int c = 0;
            for (; c + 2 <= nf; c += 2) {
                __m256 e = pt_expf_diff_avx2(_mm256_loadu_ps(p + 8 * c), sh);
                __m256 f = pt_expf_diff_avx2(_mm256_loadu_ps(p + 8 * c + 8), sh);
                _mm256_storeu_ps(p + 8 * c, e);
                _mm256_storeu_ps(p + 8 * c + 8, f);
                s0 = _mm256_add_ps(s0, e);
                s1 = _mm256_add_ps(s1, f);
            }
            if (c < nf) {
                __m256 e = pt_expf_diff_avx2(_mm256_loadu_ps(p + 8 * c), sh);
                _mm256_storeu_ps(p + 8 * c, e);
                s0 = _mm256_add_ps(s0, e);
                c++;
            }
            if (tail) {
                __m256 e = pt_expf_diff_avx2(_mm256_maskload_ps(p + 8 * c, kt), sh);
                _mm256_maskstore_ps(p + 8 * c, kt, e);
                e = _mm256_and_ps(e, _mm256_castsi256_ps(kt));    /* missing lanes: +0 */
                if (c & 1) s1 = _mm256_add_ps(s1, e);
                else s0 = _mm256_add_ps(s0, e);
            }
            h[r] = _mm256_add_ps(s0, s1);
        }
        /* l += 0 + the sum, as att_exp_rows_avx2's total and the caller's l += */
        double tot[8];
        _mm256_storeu_pd(tot, att_hsum8x4(h));
        _mm256_storeu_pd(tot + 4, att_hsum8x4(h + 4));
        for (int r = 0; r < rows; r++) l[i0 + r] += 0.0 + tot[r];
    }
}
#endif

#if ATT_X86
/* The same on the AVX2 path: its row max and row exp, the loops around
 * them compiled for AVX2 (elementwise products: the same bits). Float
 * rows of at most 64 keys (every tile attention.c makes):
 * att_softmax_step64_avx2. */
__attribute__((target("avx2,fma")))
static void PT_SFX(att_softmax_step_avx2)(real *S, int64_t lds, int nq, int64_t n, real *m,
                                          double *l, real *acc, int64_t ldacc, int64_t Dv)
{
#if PT_DTYPE != 64
    if (n > 0 && n <= 64) {
        att_softmax_step64_avx2(S, lds, nq, (int)n, m, l, acc, ldacc, Dv);
        return;
    }
#endif
    PT_SFX(att_softmax_step_with)(&PT_SFX(pt_att_avx2), S, lds, nq, n, m, l, acc, ldacc, Dv);
}

__attribute__((target("avx2,fma")))
static void PT_SFX(att_bwd_ds_avx2)(real *P, real *dS, int64_t ld, int nq, int64_t n,
                                    const real *lse, const real *Drow, real scale)
{
    PT_SFX(att_bwd_ds_with)(&PT_SFX(pt_att_avx2), P, dS, ld, nq, n, lse, Drow, scale);
}

/* mm_exp and mm_ds on the AVX2 path. Float: the step on each
 * accumulator before its store (att_block); double: the product, then
 * the step. */
__attribute__((target("avx2,fma")))
static void PT_SFX(att_mm_exp_avx2)(real *C, int64_t ldc, const real *A, int64_t lda,
                                    const real *B, int64_t ldb, int64_t m, int64_t n,
                                    int64_t K, real alpha, const real *shift)
{
#if PT_DTYPE != 64
    att_blocks_f32(att_scale_pow2(alpha) ? att_block_exp_x_f32 : att_block_exp_f32, C, ldc, A,
                   lda, 1, B, ldb, m, n, K, alpha, 0, shift, NULL, 0, 0);
#else
    PT_SFX(att_mm_exp_with)(&PT_SFX(pt_att_avx2), C, ldc, A, lda, B, ldb, m, n, K, alpha,
                            shift);
#endif
}

__attribute__((target("avx2,fma")))
static void PT_SFX(att_mm_ds_avx2)(real *C, int64_t ldc, const real *A, int64_t lda,
                                   const real *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                                   real alpha, const real *Drow, const real *P, int64_t ldp,
                                   real scale)
{
#if PT_DTYPE != 64
    att_blocks_f32(alpha == 1 ? att_block_ds_x_f32 : att_block_ds_f32, C, ldc, A, lda, 1, B, ldb,
                   m, n, K, alpha, 0, Drow, P, ldp, scale);
#else
    PT_SFX(att_mm_ds_with)(&PT_SFX(pt_att_avx2), C, ldc, A, lda, B, ldb, m, n, K, alpha, Drow,
                           P, ldp, scale);
#endif
}
#endif

void PT_SFX(pt_att_mm_exp)(real *C, int64_t ldc, const real *A, int64_t lda, const real *B,
                           int64_t ldb, int64_t m, int64_t n, int64_t K, real alpha,
                           const real *shift)
{
    PT_KERNELS(att)->mm_exp(C, ldc, A, lda, B, ldb, m, n, K, alpha, shift);
}

void PT_SFX(pt_att_mm_ds)(real *C, int64_t ldc, const real *A, int64_t lda, const real *B,
                          int64_t ldb, int64_t m, int64_t n, int64_t K, real alpha,
                          const real *Drow, const real *P, int64_t ldp, real scale)
{
    PT_KERNELS(att)->mm_ds(C, ldc, A, lda, B, ldb, m, n, K, alpha, Drow, P, ldp, scale);
}

void PT_SFX(pt_att_softmax_step)(real *S, int64_t lds, int nq, int64_t n, real *m, double *l,
                                 real *acc, int64_t ldacc, int64_t Dv)
{
    PT_KERNELS(att)->softmax_step(S, lds, nq, n, m, l, acc, ldacc, Dv);
}

void PT_SFX(pt_att_bwd_ds)(real *P, real *dS, int64_t ld, int nq, int64_t n, const real *lse,
                           const real *Drow, real scale)
{
    PT_KERNELS(att)->bwd_ds(P, dS, ld, nq, n, lse, Drow, scale);
}

/* --------------------------------------------------------------- maxabs */

/* max |x| over x[0:n], or -1 if some element is not finite: x * 0 is NaN
 * exactly for inf and NaN, and a NaN in z survives the additions. Both
 * reductions are exact in any order (z sums zeros unless it is NaN; a max
 * of non-NaN values), so ATT_MAXABS_LANES independent lanes keep the
 * vector units busy instead of waiting on one chain. */
#define ATT_MAXABS_LANES 32
static double PT_SFX(att_maxabs_c)(const real *x, int64_t n)
{
    real m[ATT_MAXABS_LANES] = {0}, z[ATT_MAXABS_LANES] = {0};
    int64_t i = 0;
    for (; i + ATT_MAXABS_LANES <= n; i += ATT_MAXABS_LANES) {
        #pragma omp simd
        for (int c = 0; c < ATT_MAXABS_LANES; c++) {
            real a = r_fabs(x[i + c]);
            m[c] = a > m[c] ? a : m[c];
            z[c] += x[i + c] * 0;
        }
    }
    for (; i < n; i++) {
        real a = r_fabs(x[i]);
        m[0] = a > m[0] ? a : m[0];
        z[0] += x[i] * 0;
    }
    for (int c = 1; c < ATT_MAXABS_LANES; c++) {
        m[0] = m[c] > m[0] ? m[c] : m[0];
        z[0] += z[c];
    }
    return z[0] == 0 ? (double)m[0] : -1;
}

#if ATT_X86
/* The same with ymm vectors: two lanes of maxima and two of x * 0 sums
 * (max(|x|, m) keeps m when x is NaN; the sums catch it), the tail scalar. */
#if PT_DTYPE == 64
#define ATT_Y_REAL __m256d
#define ATT_Y_W 4
#define ATT_Y_ZERO _mm256_setzero_pd
#define ATT_Y_LOAD _mm256_loadu_pd
#define ATT_Y_MAX _mm256_max_pd
#define ATT_Y_FMA _mm256_fmadd_pd
#define ATT_Y_ABS(a) _mm256_andnot_pd(_mm256_set1_pd(-0.0), (a))
#define ATT_Y_STORE _mm256_storeu_pd
#define ATT_Y_ADD _mm256_add_pd
#else
#define ATT_Y_REAL __m256
#define ATT_Y_W 8
#define ATT_Y_ZERO _mm256_setzero_ps
#define ATT_Y_LOAD _mm256_loadu_ps
#define ATT_Y_MAX _mm256_max_ps
#define ATT_Y_FMA _mm256_fmadd_ps
#define ATT_Y_ABS(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (a))
#define ATT_Y_STORE _mm256_storeu_ps
#define ATT_Y_ADD _mm256_add_ps
#endif
__attribute__((target("avx2,fma")))
static double PT_SFX(att_maxabs_avx2)(const real *x, int64_t n)
{
    const ATT_Y_REAL zero = ATT_Y_ZERO();
    ATT_Y_REAL m0 = zero, m1 = zero, z0 = zero, z1 = zero;
    int64_t i = 0;
    for (; i + 2 * ATT_Y_W <= n; i += 2 * ATT_Y_W) {
        ATT_Y_REAL a = ATT_Y_LOAD(x + i), b = ATT_Y_LOAD(x + i + ATT_Y_W);
        m0 = ATT_Y_MAX(ATT_Y_ABS(a), m0);
        m1 = ATT_Y_MAX(ATT_Y_ABS(b), m1);
        z0 = ATT_Y_FMA(a, zero, z0);
        z1 = ATT_Y_FMA(b, zero, z1);
    }
    real m[ATT_Y_W], z[ATT_Y_W];
    ATT_Y_STORE(m, ATT_Y_MAX(m0, m1));
    ATT_Y_STORE(z, ATT_Y_ADD(z0, z1));
    real mx = 0, zs = 0;
    for (int c = 0; c < ATT_Y_W; c++) { mx = m[c] > mx ? m[c] : mx; zs += z[c]; }
    for (; i < n; i++) {
        real a = r_fabs(x[i]);
        mx = a > mx ? a : mx;
        zs += x[i] * 0;
    }
    return zs == 0 ? (double)mx : -1;
}
#endif

/* pt_att_maxabs (attention_tile.h). */
double PT_SFX(pt_att_maxabs)(const real *x, int64_t n)
{
    return PT_KERNELS(att)->maxabs(x, n);
}

/* ---------------------------------------------- the paths (pt_dispatch.h) */

const struct PT_SFX(pt_att_kernels) PT_SFX(pt_att_portable) = {
    "portable", PT_SFX(att_mm_c), PT_SFX(att_transpose_c), PT_SFX(att_dot_c),
    PT_SFX(att_exp_rows_c), PT_SFX(att_max_c), PT_SFX(att_softmax_step_c),
    PT_SFX(att_bwd_ds_c), PT_SFX(att_mm_exp_c), PT_SFX(att_mm_ds_c),
    PT_SFX(att_maxabs_c),
    PT_SFX(att_decode_c)};
#if ATT_X86 && PT_DTYPE != 64
const struct PT_SFX(pt_att_kernels) PT_SFX(pt_att_avx2) = {
    "avx2", PT_SFX(att_mm_avx2), att_transpose_avx2, att_dot_avx2, att_exp_rows_avx2,
    att_rowmax_avx2, PT_SFX(att_softmax_step_avx2), PT_SFX(att_bwd_ds_avx2),
    PT_SFX(att_mm_exp_avx2), PT_SFX(att_mm_ds_avx2), PT_SFX(att_maxabs_avx2),
    att_decode_avx2_f32};
#elif ATT_X86
/* float64: the AVX2 product (4 doubles per vector), the rest portable. */
const struct PT_SFX(pt_att_kernels) PT_SFX(pt_att_avx2) = {
    "avx2", PT_SFX(att_mm_avx2), PT_SFX(att_transpose_c), PT_SFX(att_dot_c),
    PT_SFX(att_exp_rows_c), PT_SFX(att_max_c), PT_SFX(att_softmax_step_avx2),
    PT_SFX(att_bwd_ds_avx2), PT_SFX(att_mm_exp_avx2), PT_SFX(att_mm_ds_avx2),
    PT_SFX(att_maxabs_avx2), PT_SFX(att_decode_c)};
#endif
