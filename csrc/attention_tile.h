/*
 * attention_tile.h -- internal to attention.c: the small tile products and
 * the row exp it is made of (attention_tile.c). Include after pt_real.h.
 */
#ifndef PT_ATTENTION_TILE_H
#define PT_ATTENTION_TILE_H

#include <stdint.h>

/* Each function below calls its path's entry in the dispatch table
 * (pt_dispatch.h: PT_KERNELS(att)), chosen once by ISA level. */

/* C(m,n) = alpha * op(A)(m,K) B(K,n) + (beta ? C : 0), all row-major with
 * leading dimensions lda, ldb, ldc; op(A) = A, or A^T when trans_a (then A
 * is (K,m)). beta is 0 or 1; with beta == 0, C is not read (it may hold
 * garbage or NaN). Each element is summed over l = 0..K-1 in order,
 * whatever its position in C: deterministic. */
void PT_SFX(pt_att_mm)(real *C, int64_t ldc, const real *A, int64_t lda, int trans_a,
                       const real *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                       real alpha, int beta);

/* T[c*ldt + r] = X[r*ldx + c] for r < m, c < n. */
void PT_SFX(pt_att_transpose)(real *T, int64_t ldt, const real *X, int64_t ldx,
                              int64_t m, int64_t n);

/* sum_d x[d] y[d] for d < n, in double, in a fixed order. */
double PT_SFX(pt_att_dot)(const real *x, const real *y, int64_t n);

/* For rows i < nq of S (leading dim lds) and j < n:
 * S[i][j] = exp(S[i][j] - shift[i]) (see attention_tile.c for accuracy),
 * sum[i] = sum_j S[i][j], summed in double in a fixed order. A shift of
 * +inf turns a row of -inf into zeros. */
void PT_SFX(pt_att_exp_rows)(real *S, int64_t lds, int nq, int64_t n, const real *shift,
                             double *sum);

/* max(m, max_j s[j]) over j < n, ignoring NaN; then NaN if the result is
 * -inf and some s[j] is NaN (so a row of NaN scores is not mistaken for a
 * fully masked one; any other NaN propagates through exp and the sum). */
real PT_SFX(pt_att_rowmax)(const real *s, int64_t n, real m);

/* One key tile of the tiled forward's online softmax, rows i < nq of the
 * score tile S (ld lds, n columns, scaled and masked), with the running
 * row max m[i], row sum l[i] and output accumulator acc (row i at
 * acc + i*ldacc, Dv columns):
 *   mx = pt_att_rowmax(S_i, m[i]);
 *   mx == -inf (nothing unmasked yet): S_i = exp(S_i - inf) = 0;
 *   else, when mx != m[i] and m[i] != -inf: a = exp(m[i] - mx) (libm),
 *     l[i] *= a, acc_i *= a; then m[i] = mx, S_i = exp(S_i - mx);
 *   l[i] += sum_j S_i[j] (pt_att_exp_rows' exp and summation order). */
void PT_SFX(pt_att_softmax_step)(real *S, int64_t lds, int nq, int64_t n, real *m, double *l,
                                 real *acc, int64_t ldacc, int64_t Dv);

/* The backward's elementwise step, rows i < nq and j < n of P and dS
 * (ld ld), P holding the masked scores and dS holding dP = dout v^T:
 *   lse[i] == -inf (a fully masked row): P_i = dS_i = 0;
 *   else P_i = exp(P_i - lse[i]) (pt_att_exp_rows' exp),
 *        dS_i = (scale * P_i) * (dS_i - Drow[i]), each step rounded. */
void PT_SFX(pt_att_bwd_ds)(real *P, real *dS, int64_t ld, int nq, int64_t n, const real *lse,
                           const real *Drow, real scale);

/* The backward's P and dS straight from their products (pt_att_mm with
 * trans_a = 0, beta = 0), each element bitwise the product's followed by
 * pt_att_bwd_ds' step for a row whose lse is above -inf:
 *   mm_exp: C = exp(alpha A B - shift[i]) for row i;
 *   mm_ds:  C = (scale P) (alpha A B - Drow[i]), P (ld ldp) = mm_exp's.
 * The AVX2 and AVX-512 float paths apply the step to the accumulators
 * before storing them; portable and float64 store the product, then run
 * the step. */
void PT_SFX(pt_att_mm_exp)(real *C, int64_t ldc, const real *A, int64_t lda, const real *B,
                           int64_t ldb, int64_t m, int64_t n, int64_t K, real alpha,
                           const real *shift);

/* Is alpha a power of two in [2^-126, 1]? Then alpha acc - b rounded once
 * (one FMA) is the same float as alpha acc rounded, less b, rounded: the
 * product is exact unless it falls below 2^-126, and then it is either
 * lost beside b (|b| >= 2^-100) or b and both results are so small that
 * the exp of either is 1 (the float x86 mm_exp; mm_ds, whose dS would keep
 * such a difference, takes the FMA for alpha = 1 only). */
static inline int att_scale_pow2(float alpha)
{
    union { float f; uint32_t u; } a = {alpha};
    uint32_t e = (a.u >> 23) & 0xFFu;
    return (a.u & 0x7FFFFFu) == 0 && e >= 1 && e <= 127;
}
void PT_SFX(pt_att_mm_ds)(real *C, int64_t ldc, const real *A, int64_t lda, const real *B,
                          int64_t ldb, int64_t m, int64_t n, int64_t K, real alpha,
                          const real *Drow, const real *P, int64_t ldp, real scale);

/* max |x[i]| over i < n (0 for n == 0), or -1 if some x[i] is inf or NaN.
 * Exact (a max, and a test per element), so every path gives the same. */
double PT_SFX(pt_att_maxabs)(const real *x, int64_t n);

/* The `decode` slots of the attention family (pt_dispatch_slots.h): the
 * portable one (attention_decode.c, both dtypes) and the float32 AVX2 and
 * AVX-512 ones (attention_decode_x86.c). */
void PT_SFX(att_decode_c)(real *o, real *s, const real *q, const real *k, const real *v,
                          const real *mask, int64_t n, int64_t D, real scale);
#if PT_DTYPE != 64
void att_decode_avx2_f32(float *o, float *s, const float *q, const float *k, const float *v,
                         const float *mask, int64_t n, int64_t D, float scale);
void att_decode_avx512_f32(float *o, float *s, const float *q, const float *k,
                           const float *v, const float *mask, int64_t n, int64_t D,
                           float scale);
#endif

#endif /* PT_ATTENTION_TILE_H */
