/*
 * attention_tile.h -- internal to attention.c: the small tile products and
 * the row exp it is made of (attention_tile.c). Include after pt_real.h.
 */
#ifndef PT_ATTENTION_TILE_H
#define PT_ATTENTION_TILE_H

#include <stdint.h>

/* C(m,n) = alpha * A(m,K) B(K,n) + (beta ? C : 0), all row-major with
 * leading dimensions lda, ldb, ldc. beta is 0 or 1; with beta == 0, C is
 * not read (it may hold garbage or NaN). Each element is summed over
 * l = 0..K-1 in order, whatever its position in C: deterministic. */
void PT_SFX(pt_att_mm)(real *C, int64_t ldc, const real *A, int64_t lda,
                       const real *B, int64_t ldb, int64_t m, int64_t n, int64_t K,
                       real alpha, int beta);

/* p[j] = exp(p[j] - shift) for j < n (see attention_tile.c for accuracy). */
void PT_SFX(pt_att_exp_row)(real *p, int n, real shift);

#endif /* PT_ATTENTION_TILE_H */
