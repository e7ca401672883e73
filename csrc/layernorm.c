/*
 * layernorm.c -- layer normalisation over the last axis, forward and backward.
 *
 *   mean = sum(x) / C,  var = sum((x - mean)^2) / C   (two passes: exact
 *   for rows whose mean is large, unlike E[x^2] - E[x]^2)
 *   rstd = 1 / sqrt(var + eps),  xhat = (x - mean) * rstd,  y = xhat * w + b
 *
 * Backward (per row, g = dy * w):
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 *   dw += dy * xhat,  db += dy   (summed over rows)
 * Row sums are accumulated in double for both dtypes.
 */
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"

int PT_FN(pt_layernorm_forward)(real *y, real *mean, real *rstd,
                                const real *x, const real *w, const real *b,
                                int64_t N, int64_t C, real eps)
{
    if (N < 0 || C < 0) return PT_EINVAL;
    if (C == 0) return PT_OK;
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (N * C > 16384)
    for (int64_t n = 0; n < N; n++) {
        const real *xr = x + n * C;
        real *yr = y + n * C;
        double s = 0;
        for (int64_t c = 0; c < C; c++) s += xr[c];
        real m = (real)(s / C);
        double ss = 0;
        for (int64_t c = 0; c < C; c++) {
            real d = xr[c] - m;
            ss += (double)d * d;
        }
        real rs = (real)(1.0 / sqrt(ss / C + eps));
        for (int64_t c = 0; c < C; c++) {
            real h = (xr[c] - m) * rs;
            yr[c] = h * (w ? w[c] : 1) + (b ? b[c] : 0);
        }
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = rs;
    }
    return PT_OK;
}

int PT_FN(pt_layernorm_backward)(real *dx, real *dw, real *db,
                                 const real *dy, const real *x, const real *w,
                                 const real *mean, const real *rstd,
                                 int64_t N, int64_t C)
{
    if (N < 0 || C < 0) return PT_EINVAL;
    if (C == 0 || N == 0) return PT_OK;
    int nth = pt_get_num_threads();
    int need_params = dw || db;
    /* Per-thread partial sums of dw and db, reduced in thread order so the
     * result does not depend on scheduling. */
    double *part = NULL;
    if (need_params) {
        part = calloc((size_t)nth * 2 * (size_t)C, sizeof(double));
        if (!part) return PT_ENOMEM;
    }
    #pragma omp parallel num_threads(nth) if (N * C > 16384)
    {
        int t = omp_get_thread_num();
        double *pdw = part ? part + (size_t)t * 2 * C : NULL;
        double *pdb = part ? pdw + C : NULL;
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const real *xr = x + n * C, *dyr = dy + n * C;
            real m = mean[n], rs = rstd[n];
            double sg = 0, sgx = 0;
            for (int64_t c = 0; c < C; c++) {
                real h = (xr[c] - m) * rs;
                real g = dyr[c] * (w ? w[c] : 1);
                sg += g;
                sgx += (double)g * h;
                if (pdw) { pdw[c] += (double)dyr[c] * h; pdb[c] += dyr[c]; }
            }
            if (dx) {
                real mg = (real)(sg / C), mgx = (real)(sgx / C);
                real *dxr = dx + n * C;
                for (int64_t c = 0; c < C; c++) {
                    real h = (xr[c] - m) * rs;
                    real g = dyr[c] * (w ? w[c] : 1);
                    dxr[c] += rs * (g - mg - h * mgx);
                }
            }
        }
    }
    if (part) {
        for (int64_t c = 0; c < C; c++) {
            double sw = 0, sb = 0;
            for (int t = 0; t < nth; t++) {
                sw += part[(size_t)t * 2 * C + c];
                sb += part[(size_t)t * 2 * C + C + c];
            }
            if (dw) dw[c] += (real)sw;
            if (db) db[c] += (real)sb;
        }
        free(part);
    }
    return PT_OK;
}
