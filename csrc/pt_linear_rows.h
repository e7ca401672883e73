/*
 * pt_linear_rows.h -- linear_rows.c: y = x w^T + b for inputs of few rows
 * (internal; include after pt.h or pt_real.h).
 */
#ifndef PT_LINEAR_ROWS_H
#define PT_LINEAR_ROWS_H

#include <stdint.h>

/* Rows up to which pt_linear_rows_forward uses its own kernel (float32,
 * avx512 level); above, pt_linear_forward. pt_linear_rows_max starts at
 * PT_LINEAR_ROWS_MAX; benchmarks and tests may set it (0: never). */
#define PT_LINEAR_ROWS_MAX 64
extern int64_t pt_linear_rows_max;

/* y(N,OUT) = x(N,IN) W(OUT,IN)^T + b(OUT), b may be NULL: the same
 * contract as pt_linear_forward, whose path it takes outside its range. */
int pt_linear_rows_forward_f32(float *y, const float *x, const float *w, const float *b,
                               int64_t N, int64_t IN, int64_t OUT);
int pt_linear_rows_forward_f64(double *y, const double *x, const double *w, const double *b,
                               int64_t N, int64_t IN, int64_t OUT);

#endif /* PT_LINEAR_ROWS_H */
