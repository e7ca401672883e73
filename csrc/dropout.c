/*
 * dropout.c -- apply a dropout mask (the mask itself comes from rng.c).
 *
 *   y[i] = x[i] * (keep[i] ? 1 / (1 - p) : 0)
 *
 * The same kernel is the backward (dx = dy * keep / (1 - p)). Written as a
 * multiplication so NaN/Inf in x propagate per IEEE even where dropped, as
 * in PyTorch (x * mask * scale). p = 1 drops everything: the scale is never
 * formed, so there is no division by zero. y may equal x (in place).
 */
#include "pt_real.h"
#include "pt_omp.h"

int PT_FN(pt_dropout_apply)(real *y, const real *x, const uint8_t *keep,
                            int64_t n, real p)
{
    if (n < 0 || !(p >= 0 && p <= 1)) return PT_EINVAL;
    real scale = p < 1 ? (real)(1.0 / (1.0 - (double)p)) : 0;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * (keep[i] ? scale : (real)0);
    return PT_OK;
}
