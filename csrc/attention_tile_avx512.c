/*
 * attention_tile_avx512.c -- AVX-512 versions of the attention tile
 * functions (attention_tile.h): product, transpose, dot, row exp, row max,
 * maxabs, as the dispatch table's avx512 path of the attention family
 * (pt_att_avx512 at the end; slots in pt_dispatch_slots.h).
 *
 * Compiled in the default build (no -march): every function carries
 * PT_TARGET_AVX512 (pt_avx512.h); dispatch.c selects the path only where
 * the CPU and the OS run AVX-512 F/BW/DQ/VL, unless PT_ISA asks for less.
 *
 * Each function gives bitwise the result of its AVX2 version in
 * attention_tile.c (so the AVX-512 path inherits the AVX2 path's
 * tolerance against the portable one, and a result does not depend on
 * which of the two a machine runs):
 *   - pt_att_mm: each element is alpha * (the FMA chain over l = 0..K-1
 *     in order) + beta C, the last step one FMA, exactly as the AVX2
 *     kernel computes it; only the register blocking differs. A block is
 *     up to ZMR = 6 rows x 4 vectors (64 floats or 32 doubles) of C: 24
 *     accumulators, 4 B vectors, 1 broadcast = 29 of 32 zmm registers.
 *     Per l it loads row l of the B strip, broadcasts A[r][l] for each
 *     row r and does 24 FMAs. Narrower strips (n % 64 columns) use 1..3
 *     vectors; the last vector's missing columns are masked off in its
 *     loads and stores (mask registers: no cost for full vectors). Rows
 *     and vectors are compile-time constants in every block (switch), so
 *     the accumulators stay in registers. Blocks run column strip outer,
 *     rows inner, so one K x 64 strip of B stays in L1.
 *   - pt_att_mm_exp, pt_att_mm_ds (float): the same blocks, the exp
 *     (pt_expf_neg_avx512 of alpha acc - shift, alpha acc rounded first,
 *     as the stored tile holds it, or in one FMA where that is the same
 *     float: att_scale_pow2) or the dS step ((scale P) (alpha acc -
 *     Drow), likewise) applied to each accumulator before its store:
 *     the operations pt_att_mm's store, pt_att_exp_rows and
 *     pt_att_bwd_ds do on the stored tile, in registers. Double: the
 *     product, then the step.
 *   - pt_att_exp_rows (float): pt_expf_diff_avx512 (pt_exp2f_x86.h),
 *     the AVX2 twin's operations on 16 lanes. The row sum keeps the AVX2
 *     order: per chunk of 64 elements, lane c of one 16-float accumulator takes the
 *     elements at j % 16 == c in order (the AVX2 kernel's two 8-float
 *     accumulators are its halves), then the two halves are added, widened
 *     to double and summed in the same tree. A masked tail adds exact
 *     zeros, so trailing zeros (masked keys) change no bit of the sum.
 *     Double: libm exp, summed in order, as the portable code.
 *   - pt_att_dot (float): 8 double lanes (the AVX2 kernel's 4 + 4), same
 *     tree, then the tail in order; double: in order, as portable.
 *   - pt_att_rowmax: a max is exact, so the lanes only change speed.
 *   - pt_att_transpose: exact (float: 16 x 16 blocks; double: the AVX2
 *     path's).
 *   - pt_att_maxabs: exact (a max of |x|, and a NaN test of x * 0 sums).
 * The struct's `decode` slot is attention_decode_x86.c's AVX-512 one
 * (float64: the portable slot of attention_decode.c).
 */
#include <string.h>
#include "pt_real.h"
#include "pt_dispatch.h"
#include "attention_tile.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#include "pt_avx512.h"
#include "pt_exp2f_x86.h"

/* ------------------------------------------------------------- product */

#define ZMR 6   /* rows of a block; columns: up to 4 vectors */

/* What a block does with its accumulators (a compile-time constant at
 * every call): ATT_EPI_MM stores alpha acc + beta C; ATT_EPI_EXP stores
 * exp(alpha acc - rv[r]) (mm_exp); ATT_EPI_DS stores (scale P) (alpha acc
 * - rv[r]) (mm_ds). The last two exist for float (pt_expf_diff_avx512, as
 * att_exp_rows_avx512 computes it) and have beta = 0. */
#define ATT_EPI_MM 0
#define ATT_EPI_EXP 1
#define ATT_EPI_DS 2

#if PT_DTYPE != 64
/* alpha acc - rv[r], rounded as the stored product less rv[r]: one FMA
 * where the product is exact (ex: att_scale_pow2) */
#define ATT_Z_DIFF(r, acc) \
    (ex ? Z_FMS(va, acc, Z_SET1(rv[r])) : Z_SUB(Z_MUL(va, acc), Z_SET1(rv[r])))
#define ATT_Z_EPI(p_, k_, r, v, acc)                                              \
    if (epi == ATT_EPI_EXP) {                                                     \
        Z_MSTORE(p_, k_, pt_expf_neg_avx512(ATT_Z_DIFF(r, acc)));                 \
    } else {                                                                      \
        zreal e_ = Z_MLOAD(P + r * ldp + v * ZW, k_);                             \
        Z_MSTORE(p_, k_, Z_MUL(Z_MUL(vsc, e_), ATT_Z_DIFF(r, acc)));              \
    }
#else
#define ATT_Z_EPI(p_, k_, r, v, acc) (void)(k_);
#endif

/* C[r, v ZW : (v+1) ZW] from acc for vector v < nv of block row r, the
 * last one (v == nv - 1) masked by kl. */
#define ATT_Z_ST(c, r, v, acc)                                                    \
    if (nv > v) {                                                                 \
        real *p_ = (c) + v * ZW;                                                  \
        if (epi != ATT_EPI_MM) {                                                  \
            const zmask k_ = v < nv - 1 ? (zmask)~0u : kl;                        \
            ATT_Z_EPI(p_, k_, r, v, acc)                                          \
        } else if (v < nv - 1)                                                    \
            Z_STORE(p_, beta ? Z_FMA(va, acc, Z_LOAD(p_)) : Z_MUL(va, acc));      \
        else                                                                      \
            Z_MSTORE(p_, kl, beta ? Z_FMA(va, acc, Z_MLOAD(p_, kl)) : Z_MUL(va, acc)); \
    }
#define ATT_Z_STORE(r) \
    do { real *c_ = C + r * ldc; ATT_Z_ST(c_, r, 0, c##r##0) ATT_Z_ST(c_, r, 1, c##r##1) \
         ATT_Z_ST(c_, r, 2, c##r##2) ATT_Z_ST(c_, r, 3, c##r##3) } while (0)

/* One row's FMAs for column l: row r of the block. */
#define ATT_Z_ROW(r)                                                              \
    if (mr > r) {                                                                 \
        zreal a_ = Z_BCAST(al + r * ars);                                         \
        c##r##0 = Z_FMA(a_, b0, c##r##0);                                         \
        if (nv > 1) c##r##1 = Z_FMA(a_, b1, c##r##1);                             \
        if (nv > 2) c##r##2 = Z_FMA(a_, b2, c##r##2);                             \
        if (nv > 3) c##r##3 = Z_FMA(a_, b3, c##r##3);                             \
    }

#define ATT_Z_ACC(r) zreal c##r##0 = Z_ZERO(), c##r##1 = Z_ZERO(), c##r##2 = Z_ZERO(), \
    c##r##3 = Z_ZERO()

/* One block, mr rows x nv vectors of columns:
 *   C[r, c] = alpha sum_{l<K} A[r*ars + l*acs] B[l*ldb + c] + beta C[r, c]
 * (or epi's step on the sum, with rv, P, ldp, scale its operands) with
 * the last vector's lanes masked by kl. mr, nv and epi are compile-time
 * constants at every call (always_inline), so the tests on them vanish. */
__attribute__((always_inline)) PT_TARGET_AVX512
static inline void PT_SFX(att_zblock)(real *C, int64_t ldc, const real *A, int64_t ars,
                                      int64_t acs, const real *B, int64_t ldb, int64_t K,
                                      const int mr, const int nv, zmask kl, real alpha,
                                      int beta, const int epi, const int ex, const real *rv,
                                      const real *P, int64_t ldp, real scale)
{
    ATT_Z_ACC(0); ATT_Z_ACC(1); ATT_Z_ACC(2); ATT_Z_ACC(3); ATT_Z_ACC(4); ATT_Z_ACC(5);
    const zmask k0 = nv == 1 ? kl : (zmask)~0u, k1 = nv == 2 ? kl : (zmask)~0u;
    const zmask k2 = nv == 3 ? kl : (zmask)~0u, k3 = nv == 4 ? kl : (zmask)~0u;
    const real *al = A;                   /* A[0, l] */
    const real *b = B;                    /* B[l, 0] */
    for (int64_t l = 0; l < K; l++, al += acs, b += ldb) {
        zreal b0 = Z_MLOAD(b, k0), b1 = b0, b2 = b0, b3 = b0;
        if (nv > 1) b1 = Z_MLOAD(b + ZW, k1);
        if (nv > 2) b2 = Z_MLOAD(b + 2 * ZW, k2);
        if (nv > 3) b3 = Z_MLOAD(b + 3 * ZW, k3);
        ATT_Z_ROW(0) ATT_Z_ROW(1) ATT_Z_ROW(2) ATT_Z_ROW(3) ATT_Z_ROW(4) ATT_Z_ROW(5)
    }
    zreal va = Z_SET1(alpha), vsc = Z_SET1(scale);
    (void)vsc; (void)rv; (void)P; (void)ldp; (void)ex;
    ATT_Z_STORE(0);
    if (mr > 1) ATT_Z_STORE(1);
    if (mr > 2) ATT_Z_STORE(2);
    if (mr > 3) ATT_Z_STORE(3);
    if (mr > 4) ATT_Z_STORE(4);
    if (mr > 5) ATT_Z_STORE(5);
}

/* att_zblock with mr (1..ZMR), nv (1..4) and epi turned into constants. */
__attribute__((always_inline)) PT_TARGET_AVX512
static inline void PT_SFX(att_zblock_epi)(real *C, int64_t ldc, const real *A, int64_t ars,
                                          int64_t acs, const real *B, int64_t ldb, int64_t K,
                                          int mr, int nv, zmask kl, real alpha, int beta,
                                          const int epi, const int ex, const real *rv,
                                          const real *P, int64_t ldp, real scale)
{
#define ATT_ZB(R, V) \
    PT_SFX(att_zblock)(C, ldc, A, ars, acs, B, ldb, K, R, V, kl, alpha, beta, epi, ex, rv, P, \
                       ldp, scale)
#define ATT_ZB_ROWS(R) \
    case 4 * (R - 1) + 0: ATT_ZB(R, 1); break; \
    case 4 * (R - 1) + 1: ATT_ZB(R, 2); break; \
    case 4 * (R - 1) + 2: ATT_ZB(R, 3); break; \
    case 4 * (R - 1) + 3: ATT_ZB(R, 4); break;
    switch (4 * (mr - 1) + (nv - 1)) {
    ATT_ZB_ROWS(6)
    ATT_ZB_ROWS(5)
    ATT_ZB_ROWS(4)
    ATT_ZB_ROWS(3)
    ATT_ZB_ROWS(2)
    ATT_ZB_ROWS(1)
    default: break;
    }
#undef ATT_ZB_ROWS
#undef ATT_ZB
}

PT_TARGET_AVX512
static void PT_SFX(att_zblock_mm)(real *C, int64_t ldc, const real *A, int64_t ars,
                                  int64_t acs, const real *B, int64_t ldb, int64_t K, int mr,
                                  int nv, zmask kl, real alpha, int beta, const real *rv,
                                  const real *P, int64_t ldp, real scale)
{
    PT_SFX(att_zblock_epi)(C, ldc, A, ars, acs, B, ldb, K, mr, nv, kl, alpha, beta,
                           ATT_EPI_MM, 0, rv, P, ldp, scale);
}

#if PT_DTYPE != 64
/* The float epilogues' blocks: exp or dS step, alpha acc - rv[r] in two
 * roundings or (_x, att_scale_pow2) in one FMA. */
#define ATT_ZBLOCK_FN(name, EPI, EX)                                                      \
    PT_TARGET_AVX512                                                                      \
    static void name(float *C, int64_t ldc, const float *A, int64_t ars, int64_t acs,     \
                     const float *B, int64_t ldb, int64_t K, int mr, int nv, zmask kl,    \
                     float alpha, int beta, const float *rv, const float *P, int64_t ldp, \
                     float scale)                                                         \
    {                                                                                     \
        att_zblock_epi_f32(C, ldc, A, ars, acs, B, ldb, K, mr, nv, kl, alpha, 0, EPI, EX, \
                           rv, P, ldp, scale);                                            \
    }
ATT_ZBLOCK_FN(att_zblock_exp, ATT_EPI_EXP, 0)
ATT_ZBLOCK_FN(att_zblock_exp_x, ATT_EPI_EXP, 1)
ATT_ZBLOCK_FN(att_zblock_ds, ATT_EPI_DS, 0)
ATT_ZBLOCK_FN(att_zblock_ds_x, ATT_EPI_DS, 1)
#undef ATT_ZBLOCK_FN
#endif

typedef void (*PT_SFX(att_zblock_fn))(real *C, int64_t ldc, const real *A, int64_t ars,
                                      int64_t acs, const real *B, int64_t ldb, int64_t K,
                                      int mr, int nv, zmask kl, real alpha, int beta,
                                      const real *rv, const real *P, int64_t ldp, real scale);

/* The blocks of C(m,n) (column strip outer, rows inner), each by fn: row
 * i of C gets rv + i and P + i*ldp. */
__attribute__((always_inline)) PT_TARGET_AVX512
static inline void PT_SFX(att_zblocks)(PT_SFX(att_zblock_fn) fn, real *C, int64_t ldc,
                                       const real *A, int64_t ars, int64_t acs, const real *B,
                                       int64_t ldb, int64_t m, int64_t n, int64_t K,
                                       real alpha, int beta, const real *rv, const real *P,
                                       int64_t ldp, real scale)
{
    for (int64_t j = 0; j < n; j += 4 * ZW) {
        int nr = (int)(n - j < 4 * ZW ? n - j : 4 * ZW);
        int nv = (nr + ZW - 1) / ZW;
        zmask kl = Z_TAIL(nr - (nv - 1) * ZW);
        for (int64_t i = 0; i < m; i += ZMR) {
            int mr = (int)(m - i < ZMR ? m - i : ZMR);
            fn(C + i * ldc + j, ldc, A + i * ars, ars, acs, B + j, ldb, K, mr, nv, kl, alpha,
               beta, rv ? rv + i : NULL, P ? P + i * ldp + j : NULL, ldp, scale);
        }
    }
}

/* C(m,n) = alpha A(m,K) B(K,n) + (beta ? C : 0), A(r, l) = A[r*ars + l*acs]. */
PT_TARGET_AVX512
static void PT_SFX(att_mm_avx512)(real *C, int64_t ldc, const real *A, int64_t ars, int64_t acs,
                              const real *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                              real alpha, int beta)
{
    PT_SFX(att_zblocks)(PT_SFX(att_zblock_mm), C, ldc, A, ars, acs, B, ldb, m, n, K, alpha,
                        beta, NULL, NULL, 0, 0);
}

/* mm_exp and mm_ds (pt_dispatch_slots.h). Float: the exp or the dS step
 * on the accumulators before they are stored, the same operations as
 * att_exp_rows_avx512 and att_bwd_ds_avx512 on the stored product.
 * Double: the product, then the portable path's step. */
PT_TARGET_AVX512
static void PT_SFX(att_mm_exp_avx512)(real *C, int64_t ldc, const real *A, int64_t lda,
                                      const real *B, int64_t ldb, int64_t m, int64_t n,
                                      int64_t K, real alpha, const real *shift)
{
#if PT_DTYPE != 64
    att_zblocks_f32(att_scale_pow2(alpha) ? att_zblock_exp_x : att_zblock_exp, C, ldc, A, lda,
                    1, B, ldb, m, n, K, alpha, 0, shift, NULL, 0, 0);
#else
    PT_SFX(att_mm_avx512)(C, ldc, A, lda, 1, B, ldb, m, n, K, alpha, 0);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) C[i * ldc + j] = exp(C[i * ldc + j] - shift[i]);
#endif
}

PT_TARGET_AVX512
static void PT_SFX(att_mm_ds_avx512)(real *C, int64_t ldc, const real *A, int64_t lda,
                                     const real *B, int64_t ldb, int64_t m, int64_t n,
                                     int64_t K, real alpha, const real *Drow, const real *P,
                                     int64_t ldp, real scale)
{
#if PT_DTYPE != 64
    att_zblocks_f32(alpha == 1 ? att_zblock_ds_x : att_zblock_ds, C, ldc, A, lda, 1, B, ldb, m,
                    n, K, alpha, 0, Drow, P, ldp, scale);
#else
    PT_SFX(att_mm_avx512)(C, ldc, A, lda, 1, B, ldb, m, n, K, alpha, 0);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            C[i * ldc + j] = scale * P[i * ldp + j] * (C[i * ldc + j] - Drow[i]);
#endif
}

/* ----------------------------------------------------------- transpose */

#if PT_DTYPE != 64
/* Four 128-bit pieces, rows x, x + 4 ldx, x + 8 ldx, x + 12 ldx, as the
 * four lanes of one zmm register. */
__attribute__((always_inline)) PT_TARGET_AVX512
static inline __m512 att_zload4(const float *x, int64_t ldx)
{
    __m512 z = _mm512_castps128_ps512(_mm_loadu_ps(x));
    z = _mm512_insertf32x4(z, _mm_loadu_ps(x + 4 * ldx), 1);
    z = _mm512_insertf32x4(z, _mm_loadu_ps(x + 8 * ldx), 2);
    return _mm512_insertf32x4(z, _mm_loadu_ps(x + 12 * ldx), 3);
}

/* T[c*ldt + r] = X[r*ldx + c] for r < m, c < n, by 16 x 16 blocks: for
 * each group of 4 columns, four registers hold rows i, i+4, i+8, i+12
 * (i < 4) in their 128-bit lanes (loaded piecewise, so no shuffle puts
 * them there), and a 4 x 4 transpose within the lanes (4 unpacks, 4
 * shuffles) turns them into 4 whole columns of 16 rows: 32 shuffles per
 * 256 elements where the AVX2 path's 8 x 8 blocks take 96. Edges by the
 * AVX2 path. Exact. */
PT_TARGET_AVX512
static void att_ztranspose_f32(float *T, int64_t ldt, const float *X, int64_t ldx, int64_t m,
                              int64_t n)
{
    int64_t m16 = m - m % 16, n16 = n - n % 16;
    for (int64_t r = 0; r < m16; r += 16)
        for (int64_t c = 0; c < n16; c += 4) {
            const float *x = X + r * ldx + c;
            __m512 a0 = att_zload4(x, ldx), a1 = att_zload4(x + ldx, ldx);
            __m512 a2 = att_zload4(x + 2 * ldx, ldx), a3 = att_zload4(x + 3 * ldx, ldx);
            __m512 t0 = _mm512_unpacklo_ps(a0, a1), t1 = _mm512_unpackhi_ps(a0, a1);
            __m512 t2 = _mm512_unpacklo_ps(a2, a3), t3 = _mm512_unpackhi_ps(a2, a3);
            float *t = T + c * ldt + r;
            _mm512_storeu_ps(t, _mm512_shuffle_ps(t0, t2, 0x44));
            _mm512_storeu_ps(t + ldt, _mm512_shuffle_ps(t0, t2, 0xEE));
            _mm512_storeu_ps(t + 2 * ldt, _mm512_shuffle_ps(t1, t3, 0x44));
            _mm512_storeu_ps(t + 3 * ldt, _mm512_shuffle_ps(t1, t3, 0xEE));
        }
    /* right columns (every row), then the bottom rows */
    pt_att_avx2_f32.transpose(T + n16 * ldt, ldt, X + n16, ldx, m, n - n16);
    pt_att_avx2_f32.transpose(T + m16, ldt, X + m16 * ldx, ldx, m - m16, n16);
}
#endif

/* T[c*ldt + r] = X[r*ldx + c] for r < m, c < n. Float: 16 x 16 blocks
 * (above); double: the AVX2 path's (portable). */
static void PT_SFX(att_transpose_avx512)(real *T, int64_t ldt, const real *X, int64_t ldx,
                                     int64_t m, int64_t n)
{
#if PT_DTYPE != 64
    att_ztranspose_f32(T, ldt, X, ldx, m, n);
#else
    PT_SFX(pt_att_avx2).transpose(T, ldt, X, ldx, m, n);
#endif
}

/* ----------------------------------------------------------------- dot */

/* sum_d x[d] y[d] in double. Float: lane c of 8 double lanes takes the
 * products at d % 8 == c (FMA), then (lanes 0-3 + lanes 4-7) in a fixed
 * tree, then the tail in order. Double: in order. */
PT_TARGET_AVX512
static double PT_SFX(att_dot_avx512)(const real *x, const real *y, int64_t n)
{
    int64_t d = 0;
    double s = 0;
#if PT_DTYPE != 64
    __m512d acc = _mm512_setzero_pd();
    for (; d + 8 <= n; d += 8)
        acc = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + d)),
                              _mm512_cvtps_pd(_mm256_loadu_ps(y + d)), acc);
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(_mm512_castpd512_pd256(acc),
                                      _mm512_extractf64x4_pd(acc, 1)));
    s = (t[0] + t[1]) + (t[2] + t[3]);
#endif
    for (; d < n; d++) s += (double)x[d] * y[d];
    return s;
}

/* ----------------------------------------------------------------- exp */

#if PT_DTYPE != 64
/* 16 float lanes -> the sum of their two halves, widened to double and
 * summed in a fixed tree. */
__attribute__((always_inline)) PT_TARGET_AVX512
static inline double att_zhsum(__m512 s)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
    __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(h)),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(h, 1)));
    double t[4];
    _mm256_storeu_pd(t, d);
    return (t[0] + t[1]) + (t[2] + t[3]);
}
#endif

/* Rows i < nq of S (ld lds): S[i][j] = exp(S[i][j] - shift[i]) for j < n,
 * sum[i] = their sum (see the top of the file for the order). One call for
 * the whole tile, so that the out-of-order core overlaps the rows. */
PT_TARGET_AVX512
static void PT_SFX(att_exp_rows_avx512)(real *S, int64_t lds, int nq, int64_t n,
                                    const real *shift, double *sum)
{
    for (int i = 0; i < nq; i++) {
        real *p = S + i * lds;
#if PT_DTYPE == 64
        double t = 0;
        for (int64_t j = 0; j < n; j++) {
            p[j] = exp(p[j] - shift[i]);
            t += p[j];
        }
        sum[i] = t;
#else
        const __m512 sh = _mm512_set1_ps(shift[i]);
        double total = 0;
        for (int64_t c0 = 0; c0 < n; c0 += 64) {
            int64_t c1 = c0 + 64 < n ? c0 + 64 : n, j = c0;
            __m512 s = _mm512_setzero_ps();
            for (; j + 16 <= c1; j += 16) {
                __m512 e = pt_expf_diff_avx512(_mm512_loadu_ps(p + j), sh);
                _mm512_storeu_ps(p + j, e);
                s = _mm512_add_ps(s, e);
            }
            if (j < c1) {
                __mmask16 k = (__mmask16)((1u << (c1 - j)) - 1u);
                __m512 e = pt_expf_diff_avx512(_mm512_maskz_loadu_ps(k, p + j), sh);
                _mm512_mask_storeu_ps(p + j, k, e);
                s = _mm512_add_ps(s, _mm512_maskz_mov_ps(k, e));   /* missing lanes: +0 */
            }
            total += att_zhsum(s);
        }
        sum[i] = total;
#endif
    }
}

/* ------------------------------------------------------------- row max */

/* max(m, max_j s[j]) over j < n, NaN ignored: max(s, lane) returns lane
 * when s is NaN, so a lane is NaN only if m is, and then so is the result
 * (pt_att_rowmax applies attention_tile.h's rule for NaN in a -inf row). */
PT_TARGET_AVX512
static real PT_SFX(att_rowmax_avx512)(const real *s, int64_t n, real m)
{
    zreal mx = Z_SET1(m);
    int64_t j = 0;
    for (; j + ZW <= n; j += ZW) mx = Z_MAX(Z_LOAD(s + j), mx);
    if (j < n) mx = Z_MASK_MOV(mx, Z_TAIL(n - j), Z_MAX(Z_MLOAD(s + j, Z_TAIL(n - j)), mx));
    real r = Z_REDUCE_MAX(mx);
    return r > m ? r : m;
}

/* ------------------------------------------------------ online softmax */

/* pt_att_rowmax's rule on this path's row max: NaN if the max is -inf and
 * some s[j] is NaN (the first such s[j]). */
PT_TARGET_AVX512
static real PT_SFX(att_rowmax_rule_avx512)(const real *s, int64_t n, real m)
{
    m = PT_SFX(att_rowmax_avx512)(s, n, m);
    if (m == -INFINITY)
        for (int64_t j = 0; j < n; j++)
            if (s[j] != s[j]) return s[j];
    return m;
}

/* The online-softmax bookkeeping of row i, whose new max is mx: returns
 * the shift of its exp (+inf for a row with nothing unmasked yet, whose
 * exp(-inf - inf) is 0); rescales l[i] and acc_i by a = exp(m[i] - mx)
 * when the max grew (zmm products, exact as the scalar ones; skipped for
 * m[i] = -inf, where l and acc are still 0, or NaN, which stays NaN). */
__attribute__((always_inline)) PT_TARGET_AVX512
static inline real PT_SFX(att_sm_rescale)(real mx, real *m, double *l, real *a, int64_t Dv)
{
    if (mx == -INFINITY) return INFINITY;
    if (mx != *m) {
        if (*m != -INFINITY) {
            real alpha = r_exp(*m - mx);
            zreal va = Z_SET1(alpha);
            int64_t d = 0;
            *l *= alpha;
            for (; d + ZW <= Dv; d += ZW) Z_STORE(a + d, Z_MUL(Z_LOAD(a + d), va));
            if (d < Dv) {
                zmask k = Z_TAIL(Dv - d);
                Z_MSTORE(a + d, k, Z_MUL(Z_MLOAD(a + d, k), va));
            }
        }
        *m = mx;
    }
    return mx;
}

#if PT_DTYPE != 64
/* Lane r of the result = the max of v[r]'s 16 lanes (a transposing tree:
 * 15 max instead of 16 separate reductions; a max is exact in any order). */
__attribute__((always_inline)) PT_TARGET_AVX512
static inline __m512 att_max16(const __m512 *v)
{
    __m512 c[8], d[4], e[2], f;
    for (int k = 0; k < 8; k++)       /* lanes 0-7: row 2k, 8-15: row 2k+1 */
        c[k] = _mm512_max_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
    for (int k = 0; k < 4; k++)       /* 128-bit lane j: row 4k + j */
        d[k] = _mm512_max_ps(_mm512_shuffle_f32x4(c[2 * k], c[2 * k + 1], 0x88),
                             _mm512_shuffle_f32x4(c[2 * k], c[2 * k + 1], 0xDD));
    for (int k = 0; k < 2; k++)       /* 128-bit lane j: rows 8k + j, 8k + 4 + j */
        e[k] = _mm512_max_ps(_mm512_shuffle_ps(d[2 * k], d[2 * k + 1], 0x44),
                             _mm512_shuffle_ps(d[2 * k], d[2 * k + 1], 0xEE));
    /* lane 4j + t: row j + 4t */
    f = _mm512_max_ps(_mm512_shuffle_ps(e[0], e[1], 0x88), _mm512_shuffle_ps(e[0], e[1], 0xDD));
    return _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), f);
}

/* out[r] = att_zhsum(s[r]) for r < 16, bitwise: the same additions with
 * the same operands (h = low half + high half in float; d = h[0:4] +
 * h[4:8] in double; (d0 + d1) + (d2 + d3)), eight or sixteen rows per
 * instruction instead of one. */
__attribute__((always_inline)) PT_TARGET_AVX512
static inline void att_hsum16(const __m512 *s, double *out)
{
    __m512d D[8], E[4];
    for (int k = 0; k < 8; k++) {
        /* lanes 0-7: h of row 2k, 8-15: h of row 2k+1 */
        __m512 c = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * k], s[2 * k + 1], 0x44),
                                 _mm512_shuffle_f32x4(s[2 * k], s[2 * k + 1], 0xEE));
        /* [h_a[0:4], h_b[0:4]] + [h_a[4:8], h_b[4:8]] in double: [d_a, d_b] */
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_shuffle_f32x4(c, c, 0x88)));
        __m512d hi = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_shuffle_f32x4(c, c, 0xDD)));
        D[k] = _mm512_add_pd(lo, hi);
    }
    /* rows a, b, c, d = 4k .. 4k+3: [u_a, u_c, w_a, w_c, u_b, u_d, w_b, w_d]
     * with u = d0 + d1, w = d2 + d3 */
    for (int k = 0; k < 4; k++)
        E[k] = _mm512_add_pd(_mm512_unpacklo_pd(D[2 * k], D[2 * k + 1]),
                             _mm512_unpackhi_pd(D[2 * k], D[2 * k + 1]));
    for (int k = 0; k < 2; k++) {
        /* u + w for rows 8k + (0, 2, 1, 3, 4, 6, 5, 7) */
        __m512d F = _mm512_add_pd(_mm512_shuffle_f64x2(E[2 * k], E[2 * k + 1], 0x88),
                                  _mm512_shuffle_f64x2(E[2 * k], E[2 * k + 1], 0xDD));
        double t[8];
        _mm512_storeu_pd(t, F);
        out[8 * k + 0] = t[0]; out[8 * k + 2] = t[1]; out[8 * k + 1] = t[2];
        out[8 * k + 3] = t[3]; out[8 * k + 4] = t[4]; out[8 * k + 6] = t[5];
        out[8 * k + 5] = t[6]; out[8 * k + 7] = t[7];
    }
}

/* pt_att_softmax_step for n <= 64 (one 64-element chunk of
 * att_exp_rows_avx512), 16 rows at a time: their maxima and their sums'
 * horizontal steps done across the rows (att_max16, att_hsum16), each
 * row's own operations unchanged. */
PT_TARGET_AVX512
static void att_softmax_step64(float *S, int64_t lds, int nq, int n, float *m, double *l,
                               float *acc, int64_t ldacc, int64_t Dv)
{
    const int nv = (n + 15) / 16;
    const __mmask16 kt = Z_TAIL(n - (nv - 1) * 16);   /* the last vector's lanes */
    const __m512 zero = _mm512_setzero_ps();
    for (int i0 = 0; i0 < nq; i0 += 16) {
        int rows = nq - i0 < 16 ? nq - i0 : 16;
        __m512 v[16];
        float shift[16];
        double tot[16];
        for (int r = 0; r < 16; r++) {
            if (r >= rows) { v[r] = v[0]; continue; }
            const float *s = S + (int64_t)(i0 + r) * lds;
            __m512 mx = _mm512_set1_ps(m[i0 + r]);
            for (int c = 0; c < nv - 1; c++) mx = _mm512_max_ps(_mm512_loadu_ps(s + 16 * c), mx);
            v[r] = _mm512_mask_mov_ps(mx, kt, _mm512_max_ps(
                _mm512_maskz_loadu_ps(kt, s + 16 * (nv - 1)), mx));
        }
        /* mx = mxv > m ? mxv : m (max_ps's rule); shift = mx, except in
         * the rows whose max grew (or is NaN) or is -inf, which take the
         * bookkeeping of att_sm_rescale_f32 one by one */
        const __mmask16 live = (__mmask16)(rows == 16 ? 0xFFFFu : (1u << rows) - 1u);
        const __m512 mo = _mm512_maskz_loadu_ps(live, m + i0);
        const __m512 mx = _mm512_max_ps(att_max16(v), mo);
        _mm512_storeu_ps(shift, mx);
        unsigned odd = live & (_mm512_cmp_ps_mask(mx, mo, _CMP_NEQ_UQ)
                               | _mm512_cmp_ps_mask(mx, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ));
        for (; odd; odd &= odd - 1) {
            int r = __builtin_ctz(odd), i = i0 + r;
            const float *s = S + (int64_t)i * lds;
            float x = shift[r];
            if (x == -INFINITY)        /* pt_att_rowmax's rule for NaN */
                for (int j = 0; j < n; j++)
                    if (s[j] != s[j]) { x = s[j]; break; }
            shift[r] = att_sm_rescale_f32(x, m + i, l + i, acc + (int64_t)i * ldacc, Dv);
        }
        for (int r = 0; r < 16; r++) {
            if (r >= rows) { v[r] = zero; continue; }
            float *p = S + (int64_t)(i0 + r) * lds;
            const __m512 sh = _mm512_set1_ps(shift[r]);
            __m512 sum = zero;
            for (int c = 0; c < nv - 1; c++) {
                __m512 e = pt_expf_diff_avx512(_mm512_loadu_ps(p + 16 * c), sh);
                _mm512_storeu_ps(p + 16 * c, e);
                sum = _mm512_add_ps(sum, e);
            }
            float *pt = p + 16 * (nv - 1);
            __m512 e = pt_expf_diff_avx512(_mm512_maskz_loadu_ps(kt, pt), sh);
            _mm512_mask_storeu_ps(pt, kt, e);
            if (kt == 0xFFFF)
                sum = _mm512_add_ps(sum, e);
            else
                sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(kt, e));   /* missing lanes: +0 */
            v[r] = sum;
        }
        att_hsum16(v, tot);
        for (int r = 0; r < rows; r++) l[i0 + r] += 0.0 + tot[r];
    }
}
#endif

/* pt_att_softmax_step (attention_tile.h): the row max, the rescale of l
 * and of acc's row, then the row's exp and sum as att_exp_rows_avx512
 * computes them, so the result is bitwise the AVX2 path's. Float rows of
 * at most 64 keys (every tile attention.c makes): att_softmax_step64;
 * else row by row. */
PT_TARGET_AVX512
static void PT_SFX(att_softmax_step_avx512)(real *S, int64_t lds, int nq, int64_t n, real *m,
                                            double *l, real *acc, int64_t ldacc, int64_t Dv)
{
#if PT_DTYPE != 64
    if (n > 0 && n <= 64) {
        att_softmax_step64(S, lds, nq, (int)n, m, l, acc, ldacc, Dv);
        return;
    }
#endif
    for (int i = 0; i < nq; i++) {
        real *s = S + (int64_t)i * lds;
        real mx = PT_SFX(att_rowmax_rule_avx512)(s, n, m[i]);
        real shift = PT_SFX(att_sm_rescale)(mx, m + i, l + i, acc + (int64_t)i * ldacc, Dv);
        double rsum;
        PT_SFX(att_exp_rows_avx512)(s, lds, 1, n, &shift, &rsum);
        l[i] += rsum;
    }
}

/* pt_att_bwd_ds (attention_tile.h): per vector of a row, e = exp(P - lse)
 * (att_exp_rows_avx512's exp), P = e, dS = (scale e) (dS - Drow). Float:
 * pt_expf_diff_avx512; double: libm exp, as the portable path. */
PT_TARGET_AVX512
static void PT_SFX(att_bwd_ds_avx512)(real *P, real *dS, int64_t ld, int nq, int64_t n,
                                      const real *lse, const real *Drow, real scale)
{
    const zreal vs = Z_SET1(scale);
    for (int i = 0; i < nq; i++) {
        real *p = P + (int64_t)i * ld, *ds = dS + (int64_t)i * ld;
        if (lse[i] == -INFINITY) {     /* fully masked row: no gradient */
            memset(p, 0, sizeof(real) * (size_t)n);
            memset(ds, 0, sizeof(real) * (size_t)n);
            continue;
        }
        const zreal vd = Z_SET1(Drow[i]);
#if PT_DTYPE == 64
        for (int64_t j = 0; j < n; j++) p[j] = exp(p[j] - lse[i]);
#else
        const __m512 sh = _mm512_set1_ps(lse[i]);
#endif
        int64_t j = 0;
        for (; j + ZW <= n; j += ZW) {
#if PT_DTYPE == 64
            zreal e = Z_LOAD(p + j);
#else
            zreal e = pt_expf_diff_avx512(_mm512_loadu_ps(p + j), sh);
            Z_STORE(p + j, e);
#endif
            Z_STORE(ds + j, Z_MUL(Z_MUL(vs, e), Z_SUB(Z_LOAD(ds + j), vd)));
        }
        if (j < n) {
            zmask k = Z_TAIL(n - j);
#if PT_DTYPE == 64
            zreal e = Z_MLOAD(p + j, k);
#else
            zreal e = pt_expf_diff_avx512(_mm512_maskz_loadu_ps(k, p + j), sh);
            Z_MSTORE(p + j, k, e);
#endif
            Z_MSTORE(ds + j, k, Z_MUL(Z_MUL(vs, e), Z_SUB(Z_MLOAD(ds + j, k), vd)));
        }
    }
}

/* -------------------------------------------------------------- maxabs */

/* pt_att_maxabs: four zmm lanes of maxima of |x| (vrange's absolute max,
 * which ignores a NaN operand) and four of x * 0 + z, NaN exactly when
 * some x is inf or NaN: two operations per vector, four independent
 * chains of each; the tail masked (missing lanes load 0). Exact, as the
 * portable path. */
#if PT_DTYPE == 64
#define ATT_Z_ABSMAX(m, x) _mm512_range_pd((m), (x), 0x0B)
#else
#define ATT_Z_ABSMAX(m, x) _mm512_range_ps((m), (x), 0x0B)
#endif
PT_TARGET_AVX512
static double PT_SFX(att_maxabs_avx512)(const real *x, int64_t n)
{
    const zreal zero = Z_ZERO();
    zreal m0 = zero, m1 = zero, m2 = zero, m3 = zero, z0 = zero, z1 = zero, z2 = zero,
          z3 = zero;
    int64_t i = 0;
    for (; i + 4 * ZW <= n; i += 4 * ZW) {
        zreal a = Z_LOAD(x + i), b = Z_LOAD(x + i + ZW);
        zreal c = Z_LOAD(x + i + 2 * ZW), d = Z_LOAD(x + i + 3 * ZW);
        m0 = ATT_Z_ABSMAX(m0, a);
        m1 = ATT_Z_ABSMAX(m1, b);
        m2 = ATT_Z_ABSMAX(m2, c);
        m3 = ATT_Z_ABSMAX(m3, d);
        z0 = Z_FMA(a, zero, z0);
        z1 = Z_FMA(b, zero, z1);
        z2 = Z_FMA(c, zero, z2);
        z3 = Z_FMA(d, zero, z3);
    }
    for (; i < n; i += ZW) {
        zreal a = Z_MLOAD(x + i, Z_TAIL(n - i));
        m0 = ATT_Z_ABSMAX(m0, a);
        z0 = Z_FMA(a, zero, z0);
    }
    z0 = Z_ADD(Z_ADD(z0, z1), Z_ADD(z2, z3));
    if (Z_CMP_MASK(z0, z0, _CMP_UNORD_Q)) return -1;
    return (double)Z_REDUCE_MAX(Z_MAX(Z_MAX(m0, m1), Z_MAX(m2, m3)));
}
#undef ATT_Z_ABSMAX

/* ------------------------------------------ the path (pt_dispatch.h) */

const struct PT_SFX(pt_att_kernels) PT_SFX(pt_att_avx512) = {
    "avx512", PT_SFX(att_mm_avx512), PT_SFX(att_transpose_avx512), PT_SFX(att_dot_avx512),
    PT_SFX(att_exp_rows_avx512), PT_SFX(att_rowmax_avx512), PT_SFX(att_softmax_step_avx512),
    PT_SFX(att_bwd_ds_avx512), PT_SFX(att_mm_exp_avx512), PT_SFX(att_mm_ds_avx512),
    PT_SFX(att_maxabs_avx512),
#if PT_DTYPE == 64
    PT_SFX(att_decode_c)};
#else
    att_decode_avx512_f32};
#endif

#endif /* x86 with GCC/Clang */
