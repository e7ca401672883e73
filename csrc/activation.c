/*
 * activation.c -- fused bias + activation, forward and backward.
 *
 * Shapes: x, y, dx, dy (N, C); bias, dbias (C). z = x + bias (bias may be
 * NULL: z = x).
 *
 *   NONE       a(z) = z                                    a'(z) = 1
 *   RELU       a(z) = max(z, 0)   (NaN stays NaN)          a'(z) = [z > 0]  (0 at 0, as PyTorch)
 *   GELU_ERF   a(z) = z Phi(z),   Phi(z) = (1 + erf(z/sqrt2)) / 2
 *              a'(z) = Phi(z) + z phi(z),  phi(z) = exp(-z^2/2) / sqrt(2 pi)
 *   GELU_TANH  u = k0 (z + k1 z^3), k0 = sqrt(2/pi), k1 = 0.044715, t = tanh(u)
 *              a(z) = z (1 + t) / 2       (PyTorch approximate='tanh')
 *              a'(z) = (1 + t) / 2 + z (1 - t^2) k0 (1 + 3 k1 z^2) / 2
 *
 * forward:  y = a(x + bias); y may equal x (in place).
 * backward: g = dy * a'(x + bias); dx += g; dbias += sum_n g.
 *
 * Rows are independent (OpenMP over rows). dbias is summed without races
 * and independently of the thread count: fixed RB-row chunks times CB-column
 * blocks form tiles whose in-order double partials are added in chunk order.
 */
#include <stdlib.h>
#include "pt_real.h"
#include "pt_omp.h"

#define RB 256   /* rows per partial-sum chunk (fixed: thread-count independent) */
#define CB 512   /* columns per tile */

#define K_SQRT1_2   0.70710678118654752440    /* 1/sqrt(2) */
#define K_INV_SQRT_2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */
#define K_SQRT_2_PI 0.79788456080286535588    /* sqrt(2/pi) */
#define K_GELU_C    0.044715

/* a(x + bias) for one row segment [c0, c1). One loop per kind, so the
 * simple ones (none, relu) vectorise. */
static void PT_SFX(act_row)(real *y, const real *x, const real *bias,
                            int64_t c0, int64_t c1, int kind)
{
    int64_t c;
    switch (kind) {
    case PT_ACT_NONE:
        if (bias) for (c = c0; c < c1; c++) y[c] = x[c] + bias[c];
        else for (c = c0; c < c1; c++) y[c] = x[c];
        break;
    case PT_ACT_RELU:
        for (c = c0; c < c1; c++) {
            real z = x[c] + (bias ? bias[c] : 0);
            y[c] = z < 0 ? 0 : z;
        }
        break;
    case PT_ACT_GELU_ERF:
        for (c = c0; c < c1; c++) {
            real z = x[c] + (bias ? bias[c] : 0);
            y[c] = (real)0.5 * z * (1 + r_erf(z * (real)K_SQRT1_2));
        }
        break;
    case PT_ACT_GELU_TANH:
        for (c = c0; c < c1; c++) {
            real z = x[c] + (bias ? bias[c] : 0);
            real u = (real)K_SQRT_2_PI * (z + (real)K_GELU_C * z * z * z);
            y[c] = (real)0.5 * z * (1 + r_tanh(u));
        }
        break;
    }
}

/* g[c] = dy[c] * a'(x[c] + bias[c]) for c in [c0, c1) (pointers already
 * offset by the caller to the segment). */
static void PT_SFX(grad_row)(real *g, const real *dy, const real *x,
                             const real *bias, int64_t c0, int64_t c1, int kind)
{
    int64_t c;
    switch (kind) {
    case PT_ACT_NONE:
        for (c = c0; c < c1; c++) g[c] = dy[c];
        break;
    case PT_ACT_RELU:
        for (c = c0; c < c1; c++) {
            real z = x[c] + (bias ? bias[c] : 0);
            g[c] = z > 0 ? dy[c] : 0;
        }
        break;
    case PT_ACT_GELU_ERF:
        for (c = c0; c < c1; c++) {
            real z = x[c] + (bias ? bias[c] : 0);
            real cdf = (real)0.5 * (1 + r_erf(z * (real)K_SQRT1_2));
            real pdf = (real)K_INV_SQRT_2PI * r_exp((real)-0.5 * z * z);
            g[c] = dy[c] * (cdf + z * pdf);
        }
        break;
    case PT_ACT_GELU_TANH:
        for (c = c0; c < c1; c++) {
            real z = x[c] + (bias ? bias[c] : 0);
            real z2 = z * z;
            real u = (real)K_SQRT_2_PI * (z + (real)K_GELU_C * z2 * z);
            real t = r_tanh(u);
            real du = (real)K_SQRT_2_PI * (1 + 3 * (real)K_GELU_C * z2);
            g[c] = dy[c] * ((real)0.5 * (1 + t) + (real)0.5 * z * (1 - t * t) * du);
        }
        break;
    }
}

int PT_FN(pt_bias_act_forward)(real *y, const real *x, const real *bias,
                               int64_t N, int64_t C, int kind)
{
    if (N < 0 || C < 0 || kind < PT_ACT_NONE || kind > PT_ACT_GELU_TANH) return PT_EINVAL;
    if (N == 0 || C == 0) return PT_OK;
    /* Cheap kinds are memory bound: go parallel only for big arrays. */
    int64_t work = N * C * (kind >= PT_ACT_GELU_ERF ? 8 : 1);
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (work > 65536)
    for (int64_t n = 0; n < N; n++)
        PT_SFX(act_row)(y + n * C, x + n * C, bias, 0, C, kind);
    return PT_OK;
}

int PT_FN(pt_bias_act_backward)(real *dx, real *dbias, const real *dy,
                                const real *x, const real *bias,
                                int64_t N, int64_t C, int kind)
{
    if (N < 0 || C < 0 || kind < PT_ACT_NONE || kind > PT_ACT_GELU_TANH) return PT_EINVAL;
    if (N == 0 || C == 0 || (!dx && !dbias)) return PT_OK;
    int nth = pt_get_num_threads();
    int64_t work = N * C * (kind >= PT_ACT_GELU_ERF ? 8 : 1);
    int64_t nchunks = (N + RB - 1) / RB, nblocks = (C + CB - 1) / CB;
    double *part = NULL;
    if (dbias) {
        part = malloc((size_t)(nchunks * C) * sizeof(double));
        if (!part) return PT_ENOMEM;
    }
    int status = PT_OK;
    #pragma omp parallel num_threads(nth) if (work > 65536)
    {
        /* One scratch segment of g per thread (CB wide). */
        real *g = malloc(CB * sizeof(real));
        if (!g) {
            #pragma omp atomic write
            status = PT_ENOMEM;
        }
        #pragma omp for collapse(2) schedule(static)
        for (int64_t r = 0; r < nchunks; r++)
            for (int64_t cb = 0; cb < nblocks; cb++) {
                if (!g) continue;
                int64_t n0 = r * RB, n1 = n0 + RB < N ? n0 + RB : N;
                int64_t c0 = cb * CB, c1 = c0 + CB < C ? c0 + CB : C;
                double *p = part ? part + r * C : NULL;
                if (p) for (int64_t c = c0; c < c1; c++) p[c] = 0;
                for (int64_t n = n0; n < n1; n++) {
                    PT_SFX(grad_row)(g, dy + n * C + c0, x + n * C + c0,
                                     bias ? bias + c0 : NULL, 0, c1 - c0, kind);
                    if (dx) {
                        real *dxr = dx + n * C;
                        for (int64_t c = c0; c < c1; c++) dxr[c] += g[c - c0];
                    }
                    if (p) for (int64_t c = c0; c < c1; c++) p[c] += g[c - c0];
                }
            }
        free(g);
        /* After the implicit barrier of the loop above, status is the same
         * for every thread. */
        if (part && status == PT_OK) {
            #pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) {
                double s = 0;
                for (int64_t r = 0; r < nchunks; r++) s += part[r * C + c];
                dbias[c] += (real)s;
            }
        }
    }
    free(part);
    return status;
}
