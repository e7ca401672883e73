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

/* The AVX-512 versions of the functions above (attention_tile_avx512.c,
 * x86 with GCC/Clang only), bitwise the same results as the AVX2 versions.
 * Call only where the CPU has AVX-512 F/BW/DQ/VL. The product takes A's
 * row and column strides (A(r, l) = A[r*ars + l*acs]: ars = 1 reads A
 * transposed); the row max leaves the NaN rule above to pt_att_rowmax. */
void PT_SFX(pt_att_mm_avx512)(real *C, int64_t ldc, const real *A, int64_t ars, int64_t acs,
                              const real *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                              real alpha, int beta);
void PT_SFX(pt_att_transpose_avx512)(real *T, int64_t ldt, const real *X, int64_t ldx,
                                     int64_t m, int64_t n);
double PT_SFX(pt_att_dot_avx512)(const real *x, const real *y, int64_t n);
void PT_SFX(pt_att_exp_rows_avx512)(real *S, int64_t lds, int nq, int64_t n,
                                    const real *shift, double *sum);
real PT_SFX(pt_att_rowmax_avx512)(const real *s, int64_t n, real m);

#endif /* PT_ATTENTION_TILE_H */
